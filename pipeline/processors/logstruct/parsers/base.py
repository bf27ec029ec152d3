"""What every parser shares: the `Parser` contract and the `ParserConfigBase` options.

A parser type is one module in this package holding its `Parser` subclass and
its config class (a `ParserConfigBase` with a `type` literal and a `build()`
that returns the compiled parser); `parsers/__init__.py` lists the config
classes in the discriminated union the processor's config uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from pipeline.component import ComponentConfig
from pipeline.processors.logstruct.normalize import Normalizer
from pipeline.processors.logstruct.record import Record

__all__ = [
    "SOURCE",
    "Continuation",
    "Parser",
    "ParserConfigBase",
    "Reparse",
    "Scalar",
    "WhenConfig",
    "check_source",
    "check_timezone",
]

#: Parses the inner line of a wrapper (a container log line) through the processor's
#: parsers again; True if one of them took it.
Reparse = Callable[[str, Record], bool]
Scalar = str | int | float | bool
SOURCE = re.compile(r"""^(?:body|attributes\[(["'])(?P<key>[^"']+)\1\])$""")


class Parser:
    """Fills a `Record` from one line of text.

    Contract: `parse(text, rec)` returns False *before touching* `rec` when the
    line is not in its format, True once it has filled `rec`. It may raise on a
    bug or a pathological line; the processor contains that per record.
    `format` names the parser in metrics; `reason` says why a line did not fit;
    a `wrapper` (container logs) hands its inner line back to the processor.
    """

    format = "?"
    reason = "line does not match"
    wrapper = False
    #: `parse(text, rec, endpos)` reads only `text[:endpos]` (a regex's window) and
    #: gives the lines after it to the field the match ended with: a multi-line text
    #: over `max_parse_bytes` is parsed from its first lines (regex, grok).
    windowed = False

    def __init__(self, norm: Normalizer):
        self.norm = norm

    def parse(self, text: str, rec: Record) -> bool:
        raise NotImplementedError

    def set_reparse(self, reparse: Reparse) -> None:
        """Called once by the processor: how to parse an unwrapped inner line."""


class Continuation:
    """Where a regex match leaves the lines after it: the continuation lines of a
    multi-line record (a stack trace after `%{GREEDYDATA:message}`) go to the field
    whose group ends where the match ends (the last such group of the pattern), else to
    the `message` field; they are not lost. A slice, no regex work: linear.

    `groups[i]` is the field of Python group `i + 1`; `body` the groups of fields that
    become the body (message, msg)."""

    __slots__ = ("body", "groups")

    def __init__(self, groups: list[int], body: list[int]):
        self.groups = groups[::-1]  # the last group first
        self.body = body

    def apply(self, text: str, m: re.Match[str], values: tuple[str | None, ...]
              ) -> tuple[str | None, ...]:
        """`values` (the match's groups) with the text after the match appended to the
        field it belongs to, if the match ends at a newline."""
        end = m.end()
        if end >= len(text) or text[end] != "\n":
            return values
        for i in self.groups:
            if values[i] is not None and m.end(i + 1) == end:
                break
        else:
            for i in self.body:
                if values[i] is not None:
                    break
            else:
                return values
        out = list(values)
        out[i] = f"{values[i]}{text[end:]}"
        return tuple(out)


def check_source(v: str) -> str:
    if not SOURCE.match(v):
        raise ValueError('source must be `body` or `attributes["key"]`')
    return v


def check_timezone(v: str | None) -> str | None:
    if v is not None and v != "UTC":
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as "
                             "Europe/Berlin)") from None
    return v


class WhenConfig(ComponentConfig):
    """All given conditions must hold for the parser to be tried."""

    matches: str | None = Field(None, description="regex that must be found in the source text")
    starts_with: str | list[str] | None = Field(
        None, description="prefix (or list of prefixes) the source text must start with")
    attributes: dict[str, Scalar] | None = Field(
        None, description="record attributes that must equal these values")
    resource: dict[str, Scalar] | None = Field(
        None, description="resource attributes that must equal these values")

    @field_validator("matches")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"invalid regex: {exc}") from None
        return v


class ParserConfigBase(ComponentConfig):
    """Options of every parser; a parser type adds `type: Literal[...]` and its own."""

    when: WhenConfig | None = None
    source: str | None = Field(None, description='`body` or `attributes["key"]`; '
                                                 "default: the processor's source")
    time_format: str | None = Field(None, description="strptime format or epoch_s/ms/us/ns")
    timezone: str | None = Field(None, description="IANA zone of stamps without an offset")

    _src = field_validator("source")(lambda v: v if v is None else check_source(v))
    _tz = field_validator("timezone")(lambda v: check_timezone(v))

    def build(self, norm: Normalizer) -> Parser:
        """The compiled parser, normalising fields with `norm`."""
        raise NotImplementedError
