"""Masks of the template miner: what in a message is a variable (IPs, numbers, UUIDs,
paths, … become `<*>`) before it is split into tokens.

Every built-in runs in time linear in the message: each starts only where a token
starts (`MASK_GATE`), and uses possessive quantifiers, atomic groups or leading
look-aheads wherever a plain quantifier could backtrack (a long `1:1:1:…` or a run
of spaces costs a few steps per character). Custom masks are user regexes, applied
as given: keeping them linear is the user's part (docs/logstruct.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import Field, field_validator

from pipeline.component import ComponentConfig

__all__ = [
    "BUILTIN_MASKS",
    "DEFAULT_MASKS",
    "MASK_GATE",
    "PARAM",
    "BuiltinMaskName",
    "CustomMask",
    "MaskEntry",
    "compile_masks",
    "default_masks",
    "mask_regex",
]

PARAM = "<*>"

# Built-in masks match whole "words": they start only where a token starts
# (start of text, after whitespace or an opening/separating character such as
# `(`, `=`, `:`, `/`), never inside an identifier (`blk_123`, `ssh2`, `Log4j`
# are left to the miner, which generalises them when they vary). That shared
# left boundary, `MASK_GATE`, is written once in front of all built-ins, which
# also makes the combined regex cheap: most positions fail on one assertion.
MASK_GATE = r"(?<![^\s(\[{<\"'=,;:/@|#])"
_R = r"(?![\w\-]|\.\w)"   # not followed by a word char, a dash, or `.x`
_UNITS = (r"(?:[kKMGTP]i?[bB](?:ytes?)?|[bB](?:ytes?)?|ns|us|µs|ms|s|sec|secs|seconds?"
          r"|mins?|minutes?|h|hrs?|hours?|d|days?|%)")
# after a space only unambiguous units (`5 KB`, `3 ms`, `2 bytes`; not `1 b`, `2 d`)
_SPACED_UNITS = (r"(?:[kKMGTP]i?[bB](?:ytes?)?|B|bytes?|ns|us|µs|ms|secs?|seconds?"
                 r"|mins?|minutes?|hrs?|hours?|days?)")
_HEX = "[0-9a-fA-F]"

#: Built-in masks by name, in the order they are tried at one position (more
#: specific first). Each replaces what it matches with `<*>`; each is meant to
#: follow `MASK_GATE`. Possessive quantifiers and leading look-aheads make a
#: non-matching word fail after a character or two.
BUILTIN_MASKS: dict[str, str] = {
    # scheme://anything-up-to-whitespace
    "url": r"[a-zA-Z][a-zA-Z0-9+.\-]*+://[^\s\"'<>]++",
    "email": r"[\w.+\-]++@[A-Za-z0-9\-]++(?:\.[A-Za-z0-9\-]++)++",
    "uuid": rf"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}(?![\w\-])",
    # date/time stamps inside the message: ISO 8601, syslog/ctime style, hh:mm:ss
    "datetime": (
        r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?(?:Z|[+-]\d\d:?\d\d)?(?!\w)"
        r"|(?=[A-Z][a-z][a-z]\s)(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)\s++)?"
        r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s++\d\d?\s++"
        r"\d\d:\d\d:\d\d(?:\s++\d{4})?(?!\w)"
        r"|\d\d:\d\d:\d\d(?:[.,]\d+)?(?!\w)"
    ),
    # full or compressed IPv6, optional %zone
    # (possessive: a shorter group or count would leave a hex digit or `:` next, which
    # what follows refuses, so giving back never helps; without that, every `1:` of a
    # long `1:1:1:…` cost dozens of steps)
    "ipv6": (
        rf"(?=:|{_HEX}{{1,4}}:[0-9a-fA-F:])"
        rf"(?:(?:{_HEX}{{1,4}}+:){{7}}{_HEX}{{1,4}}+"
        rf"|(?:{_HEX}{{1,4}}+:){{1,7}}+:(?:{_HEX}{{1,4}}+(?::{_HEX}{{1,4}}+){{0,6}}+)?+"
        rf"|::(?:{_HEX}{{1,4}}+(?::{_HEX}{{1,4}}+){{0,6}}+)?+)(?:%\w++)?(?![\w:])"
    ),
    # dotted quad, optional :port
    "ipv4": r"(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.])",
    # 0x-prefixed, or a run of 8+ hex digits holding both digits and letters (ids,
    # hashes; an all-digit run is a number)
    "hex": (rf"0[xX]{_HEX}++(?!\w)"
            rf"|(?={_HEX}{{8}})(?=[a-fA-F]*+\d)(?=\d*+[a-fA-F]){_HEX}++(?![\w\-])"),
    # absolute Unix paths with at least two segments
    "path": r"/(?:[\w.\-@%+~]++/)++[\w.\-@%+~]*+",
    # a decimal number or version, alone or with a unit (`12`, `-3.5`, `1.2.3`, `10ms`, `4 KB`)
    # (a unit is looked for only where a letter, `µ` or `%` follows)
    "number": (r"[-+]?\d++(?:\.\d+)*+(?:(?=[%a-zA-Zµ])" + _UNITS + r"|\s(?=[a-zA-Zµ])"
               + _SPACED_UNITS + r")?" + _R),
}

BuiltinMaskName = Literal["url", "email", "uuid", "datetime", "ipv6", "ipv4", "hex", "path",
                          "number"]

#: Masks applied when `masks` is not configured.
DEFAULT_MASKS: tuple[BuiltinMaskName, ...] = (
    "url", "email", "uuid", "datetime", "ipv6", "ipv4", "hex", "path", "number",
)


class CustomMask(ComponentConfig):
    """A user-defined mask: text matching `regex` is replaced by `replacement`."""

    name: str = Field(min_length=1)
    regex: str = Field(min_length=1)
    replacement: str = PARAM

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regex: {exc}") from None
        return value


MaskEntry = Annotated[BuiltinMaskName | CustomMask, Field(union_mode="left_to_right")]


def default_masks() -> list[BuiltinMaskName | CustomMask]:
    return list(DEFAULT_MASKS)


def mask_regex(mask: str | CustomMask) -> tuple[str, str]:
    """(regex, replacement) of one mask, as applied on its own (built-ins with `MASK_GATE`)."""
    if isinstance(mask, str):
        return f"{MASK_GATE}(?:{BUILTIN_MASKS[mask]})", PARAM
    return mask.regex, mask.replacement


def compile_masks(masks: Iterable[str | CustomMask]) -> list[tuple[re.Pattern[str], str]]:
    """Ordered (regex, replacement) pairs: one alternation per run of equal replacements.

    Adjacent built-ins share one `MASK_GATE` in front of their alternation.
    """
    # runs of masks with the same replacement → one regex each
    groups: list[tuple[list[tuple[bool, str]], str]] = []
    for m in masks:
        if isinstance(m, str):
            builtin, pattern, replacement = True, BUILTIN_MASKS[m], PARAM
        else:
            builtin, pattern, replacement = False, m.regex, m.replacement
        if groups and groups[-1][1] == replacement:
            groups[-1][0].append((builtin, pattern))
        else:
            groups.append(([(builtin, pattern)], replacement))
    out = []
    for patterns, replacement in groups:
        parts: list[str] = []
        run: list[str] = []
        for builtin, pattern in patterns:
            if builtin:
                run.append(f"(?:{pattern})")
                continue
            if run:
                parts.append(f"{MASK_GATE}(?:{'|'.join(run)})")
                run = []
            parts.append(f"(?:{pattern})")
        if run:
            parts.append(f"{MASK_GATE}(?:{'|'.join(run)})")
        rx = re.compile("|".join(parts))
        # a plain string replacement (no group references) keeps `sub` on its fast path
        out.append((rx, replacement.replace("\\", "\\\\")))
    return out
