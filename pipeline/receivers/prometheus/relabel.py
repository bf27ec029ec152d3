"""Prometheus relabelling (`relabel_configs`, `metric_relabel_configs`), with
Prometheus' semantics: regexes anchored at both ends, `$1` / `${name}`
replacements, an empty result of `replace` deleting the target label, and
`hashmod` as the the last eight bytes of the
value's MD5, big-endian, modulo `modulus`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence

from pipeline.receivers.prometheus.config import LABEL_NAME, RelabelConfig, go_regex

_DOLLAR = re.compile(r"\$(?:\{(\w+)\}|(\w+)|\$)")


def go_expand(m: re.Match[str], template: str) -> str:
    """Go's `Regexp.Expand`: `$1`, `${1}`, `$name`, `${name}`, `$$`; unknown groups -> ""."""
    if "$" not in template:
        return template

    def sub(g: re.Match[str]) -> str:
        name = g.group(1) or g.group(2)
        if name is None:
            return "$"
        try:
            value = m.group(int(name) if name.isdigit() else name)
        except (IndexError, re.error):
            return ""
        return value or ""

    return _DOLLAR.sub(sub, template)


class Rule:
    __slots__ = ("action", "modulus", "regex", "replacement", "separator", "source",
                 "target")

    def __init__(self, cfg: RelabelConfig):
        self.action = cfg.action
        self.source = tuple(cfg.source_labels)
        self.separator = cfg.separator
        self.regex = go_regex(cfg.regex)
        self.replacement = cfg.replacement
        self.target = cfg.target_label or ""
        self.modulus = cfg.modulus or 0


def compile_rules(cfgs: Sequence[RelabelConfig]) -> list[Rule]:
    return [Rule(c) for c in cfgs]


def _replace(r: Rule, out: dict[str, str], value: str) -> bool:
    m = r.regex.match(value)
    if m is not None:
        target = go_expand(m, r.target)
        if LABEL_NAME.match(target):
            res = go_expand(m, r.replacement)
            if res:
                out[target] = res
            else:
                out.pop(target, None)
    return True


def _hashmod(r: Rule, out: dict[str, str], value: str) -> bool:
    digest = hashlib.md5(value.encode(), usedforsecurity=False).digest()
    out[r.target] = str(int.from_bytes(digest[8:], "big") % r.modulus)
    return True


def _labelmap(r: Rule, out: dict[str, str], value: str) -> bool:
    for name in list(out):
        m = r.regex.match(name)
        if m is not None:
            new = go_expand(m, r.replacement)
            if new and LABEL_NAME.match(new):
                out[new] = out[name]
    return True


def _labeldrop(r: Rule, out: dict[str, str], value: str) -> bool:
    for name in [n for n in out if r.regex.match(n)]:
        del out[name]
    return True


def _labelkeep(r: Rule, out: dict[str, str], value: str) -> bool:
    for name in [n for n in out if not r.regex.match(n)]:
        del out[name]
    return True


def _set(r: Rule, out: dict[str, str], value: str) -> bool:
    out[r.target] = value
    return True


_ACTIONS: dict[str, Callable[[Rule, dict[str, str], str], bool]] = {
    "replace": _replace,
    "keep": lambda r, out, v: r.regex.match(v) is not None,
    "drop": lambda r, out, v: r.regex.match(v) is None,
    "keepequal": lambda r, out, v: v == out.get(r.target, ""),
    "dropequal": lambda r, out, v: v != out.get(r.target, ""),
    "hashmod": _hashmod,
    "lowercase": lambda r, out, v: _set(r, out, v.lower()),
    "uppercase": lambda r, out, v: _set(r, out, v.upper()),
    "labelmap": _labelmap,
    "labeldrop": _labeldrop,
    "labelkeep": _labelkeep,
}


def relabel(labels: dict[str, str], rules: Sequence[Rule]) -> dict[str, str] | None:
    """Apply `rules` to a copy of `labels`; None when a rule drops the series/target."""
    out = dict(labels)
    for r in rules:
        value = r.separator.join([out.get(s, "") for s in r.source])
        if not _ACTIONS[r.action](r, out, value):
            return None
    return {k: v for k, v in out.items() if v != ""}
