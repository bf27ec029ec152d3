"""Severity of a parsed level value: `level_of` (cached), and syslog priority names."""

from __future__ import annotations

import re
from typing import Any

from pipeline.pdata.logfields import parse_severity

__all__ = ["level_of", "syslog_severity_name"]

_SYSLOG_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_TRACE_N = re.compile(r"(?i)trace([1-8])")
_CACHE_MAX = 4096

_LEVELS: dict[str, tuple[int, str] | None] = {}  # level text -> level_of(text)
_NO_LEVEL: Any = object()


def level_of(v: Any) -> tuple[int, str] | None:
    """(severity_number, severity_text) of a level value (text or number), or None.
    Results for text are cached (level words repeat from line to line)."""
    if type(v) is str:
        sev: tuple[int, str] | None = _LEVELS.get(v, _NO_LEVEL)
        if sev is _NO_LEVEL:
            sev = _level_of(v)
            if len(_LEVELS) >= _CACHE_MAX:
                _LEVELS.clear()
            _LEVELS[v] = sev
        return sev
    return _level_of(v)


def _level_of(v: Any) -> tuple[int, str] | None:
    sev = parse_severity(v)
    if sev is not None and sev[0] == 0 and type(v) is str:
        m = _TRACE_N.fullmatch(v.strip())  # Apache's trace1..trace8
        if m:
            return 1 + (int(m.group(1)) - 1) // 2, v
    return sev


def syslog_severity_name(pri: int) -> str:
    """The syslog severity keyword of a PRI value (`err` for 11)."""
    return _SYSLOG_NAMES[pri & 7]
