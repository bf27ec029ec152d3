"""Timestamps of `logstruct`: `TimeParser` turns a timestamp value into Unix nanoseconds.

Formats: ISO 8601 / RFC 3339 (any offset, `Z`, `T` or space, `,` or `.`
fractions up to nanoseconds, basic `20240115T102030Z`), RFC 3164
`Jun 14 15:16:01` and `Jun  4 15:16:01.123`, ctime / Apache error log
`Sun Dec 04 04:47:44 2005` (optionally with microseconds), HTTP access log
`10/Oct/2000:13:55:36 -0700`, RFC 1123 `Sun, 04 Dec 2005 04:47:44 GMT`,
`2024/01/15 10:20:30` (nginx error log), `yy/MM/dd HH:mm:ss` (log4j default
of Spark), compact `081109 203615` (yyMMdd HHmmss), klog `0115 10:20:30.123456`
(MMdd, after the level letter), and epoch seconds / ms / µs / ns (by
magnitude). A configured `time_format` (strptime, or `epoch_s|epoch_ms|epoch_us|epoch_ns`)
is tried first. Stamps without a zone are read in `timezone` (IANA name,
default UTC). Stamps without a year get the year that puts them no more than
one day in the future of the (injectable) clock.

Hot path: UTC RFC 3339 stamps and `yyyy-MM-dd HH:mm:ss.SSS` stamps are served
from per-second caches (the whole seconds repeat from line to line), every
other text from a cache of recent results.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["MONTHS", "WEEKDAYS", "TimeParser"]

#: Month abbreviations (`jan`, `Jan`, `JAN`) -> month number.
MONTHS: dict[str, int] = {}
for _i, _m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                         "nov", "dec"), 1):
    MONTHS[_m] = MONTHS[_m.upper()] = MONTHS[_m.capitalize()] = _i
#: Weekday abbreviations (`mon`, `Mon`, `MON`).
WEEKDAYS = frozenset(d for w in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
                     for d in (w, w.upper(), w.capitalize()))

_EPOCH_ORD = date(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_UINT64 = 1 << 64
_DAY_NS = 86_400 * 1_000_000_000
_CACHE_MAX = 4096
_MILLIS = {f"{i:03d}": i * 1_000_000 for i in range(1000)}  # "123" -> 123 ms in ns

_RE_ISO_SPACE_ZONE = re.compile(r"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?) ?"
                                r"(Z|UTC|GMT|[+-]\d\d:?\d\d)")
_RE_MONTH_FIRST = re.compile(  # Jun 14 15:16:01[.123] [2024]  /  Jun 14 2024 15:16:01
    r"([A-Za-z]{3})[a-z]* +(\d{1,2}),? +(?:(\d{4}) +)?(\d{1,2}):(\d\d):(\d\d)(?:[.,](\d{1,9}))?"
    r"(?: +(\d{4}))?(?: *(Z|UTC|GMT|[+-]\d\d:?\d\d))?")
_RE_CTIME = re.compile(  # Sun Dec 04 04:47:44[.902022] 2005
    r"[A-Za-z]{3} +([A-Za-z]{3}) +(\d{1,2}) +(\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?"
    r"(?: +(?:(UTC|GMT|[+-]\d\d:?\d\d) +)?(\d{4}))?")
_RE_RFC1123 = re.compile(  # Sun, 04 Dec 2005 04:47:44 GMT
    r"[A-Za-z]{3}, +(\d{1,2}) +([A-Za-z]{3}) +(\d{4}) +(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?"
    r" *(Z|UT|UTC|GMT|[+-]\d\d:?\d\d)?")
_RE_HTTPDATE = re.compile(  # 10/Oct/2000:13:55:36 -0700
    r"(\d\d)/([A-Za-z]{3})/(\d{4}):(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))? *([+-]\d\d:?\d\d|Z)?")
_RE_SLASHED = re.compile(  # 2024/01/15 10:20:30[.123]  or  17/06/09 20:10:40 (yy/MM/dd)
    r"(\d{4}|\d\d)/(\d\d)/(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?"
    r"(?: *(Z|[+-]\d\d:?\d\d))?")
_RE_COMPACT = re.compile(r"(\d\d)(\d\d)(\d\d) (\d\d)(\d\d)(\d\d)")  # 081109 203615
_RE_KLOG = re.compile(r"[IWEFD]?(\d\d)(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?")
_RE_NUMBER = re.compile(r"\d+(?:\.\d+)?")
#: Longest numeric epoch stamp looked at: int() raises past 4,300 digits, and no epoch
#: in nanoseconds has more than 20 digits (+ a fraction).
_MAX_NUMBER = 40

_EPOCH_UNITS = {"epoch_s": 1_000_000_000, "epoch_ms": 1_000_000, "epoch_us": 1000,
                "epoch_ns": 1}

#: The groups of a regex match (None for a group that did not take part).
_Groups = tuple[Any, ...]


def _frac_ns(frac: str | None) -> int:
    if not frac:
        return 0
    return int(frac[:9].ljust(9, "0"))


def _offset_s(zone: str | None) -> int | None:
    """Seconds east of UTC of `Z`, `UTC`, `+0200`, `-07:00`; None if no zone."""
    if not zone:
        return None
    if zone[0] in "+-":
        hh, mm = int(zone[1:3]), int(zone[-2:])
        s = hh * 3600 + mm * 60
        return -s if zone[0] == "-" else s
    return 0


def _century(yy: int) -> int:
    """The year of a two-digit year: 00-69 -> 20xx, 70-99 -> 19xx."""
    return yy + (2000 if yy < 70 else 1900)


class TimeParser:
    """Unix nanoseconds of a timestamp value; see the module docstring for formats."""

    def __init__(self, time_format: str | None = None, timezone: str | None = None,
                 clock: Callable[[], float] = time.time):
        self.time_format = time_format
        self.tz: tzinfo | None = ZoneInfo(timezone) if timezone and timezone != "UTC" else None
        self.clock = clock
        self._cache: dict[str, int | None] = {}
        self._utc_seconds: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" of ...Z stamps -> ns
        self._local_seconds: dict[str, int] = {}  # the same of stamps without a zone
        self._epoch_mult = _EPOCH_UNITS.get(time_format or "")
        fmt = time_format if self._epoch_mult is None else None
        self._strptime_fmt = fmt
        self._fmt_yearless = fmt is not None and not any(
            d in fmt for d in ("%Y", "%y", "%G", "%s"))

    # -- public --------------------------------------------------------------------------

    def parse(self, v: Any) -> int | None:
        """Unix nanoseconds of `v` (text or epoch number), or None if it is no timestamp."""
        if type(v) is str:
            n = len(v)
            if n == 24 and v[23] == "Z" and v[19] == ".":
                # `2024-01-15T10:20:30.123Z` (JavaScript, Go, pino, Serilog ...): the
                # cached whole second (only set for valid UTC RFC 3339 stamps, and only
                # without a time_format) plus the milliseconds, looked up.
                secs = self._utc_seconds.get(v[:19])
                if secs is not None:
                    ms = _MILLIS.get(v[20:23])
                    if ms is not None and 0 < secs + ms < _UINT64:
                        return secs + ms
            elif n == 23 and v[4] == "-" and (v[19] == "." or v[19] == ",") \
                    and (v[10] == " " or v[10] == "T") and self._strptime_fmt is None:
                ns = self._local_millis(v)
                if ns is not None:
                    return ns
            if n >= 20 and v[10] == "T" and v[4] == "-" and self._strptime_fmt is None:
                ns = self._rfc3339(v)
                if ns is not None:
                    return ns
            cache = self._cache
            ns = cache.get(v, -1)
            if ns != -1:
                return ns
            ns = self._parse_str(v)
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[v] = ns
            return ns
        if type(v) is int or type(v) is float:
            if self._epoch_mult is not None:
                ns = int(v * self._epoch_mult)
                return ns if 0 < ns < _UINT64 else None
            return _epoch_guess(v)
        return None

    def civil(self, y: int, mo: int, d: int, hh: int, mi: int, ss: int, ns: int = 0,
              offset: int | None = None) -> int | None:
        """Nanoseconds of a wall-clock time; `offset` None means the configured zone."""
        try:
            days = date(y, mo, d).toordinal() - _EPOCH_ORD
        except ValueError:
            return None
        if not (hh < 24 and mi < 60 and ss < 61):
            return None
        if offset is None:
            tz = self.tz
            if tz is not None:
                off = datetime(y, mo, d, hh, mi, min(ss, 59), tzinfo=tz).utcoffset()
                offset = int(off.total_seconds()) if off is not None else 0
            else:
                offset = 0
        total = ((days * 86400 + hh * 3600 + mi * 60 + ss - offset) * 1_000_000_000) + ns
        return total if 0 < total < _UINT64 else None

    def yearless(self, mo: int, d: int, hh: int, mi: int, ss: int, ns: int = 0,
                 offset: int | None = None) -> int | None:
        """A stamp without a year: the latest year that is not more than a day ahead."""
        now = int(self.clock() * 1_000_000_000)
        year = datetime.fromtimestamp(now / 1e9, self.tz or UTC).year + 1
        for y in range(year, year - 9, -1):
            ts = self.civil(y, mo, d, hh, mi, ss, ns, offset)
            if ts is not None and ts <= now + _DAY_NS:
                return ts
        return None

    # -- cached fast paths ---------------------------------------------------------------

    def _local_millis(self, v: str) -> int | None:
        """`2024-01-15 10:20:30.123` / `…,123` (log4j, Python logging) in the configured
        zone: the whole second from a per-second cache plus the milliseconds."""
        ms = _MILLIS.get(v[20:23])
        if ms is None:
            return None
        secs = self._local_seconds.get(v[:19])
        if secs is not None and 0 < secs + ms < _UINT64:
            return secs + ms
        local = self._iso(v)
        if local is not None:
            if len(self._local_seconds) >= _CACHE_MAX:
                self._local_seconds.clear()
            self._local_seconds[v[:19]] = local - ms
        return local

    def _rfc3339(self, v: str) -> int | None:
        """`yyyy-MM-ddTHH:mm:ss…`; the whole seconds of UTC stamps (`…Z`) are cached."""
        if v[-1] == "Z" and (len(v) == 20 or v[19] == "."):
            secs = self._utc_seconds.get(v[:19])
            frac = v[20:-1]
            if secs is not None and (not frac or (frac.isdigit() and frac.isascii())):
                fast = secs + (int(frac[:9].ljust(9, "0")) if frac else 0)
                if 0 < fast < _UINT64:
                    return fast
            iso = self._iso(v)
            if iso is not None and len(self._utc_seconds) < _CACHE_MAX and v[:19].isascii():
                self._utc_seconds[v[:19]] = iso - iso % 1_000_000_000
            return iso
        return self._iso(v)  # unique to the microsecond: not worth caching

    # -- strings -------------------------------------------------------------------------

    def _parse_str(self, s: str) -> int | None:
        s = s.strip()
        if not s:
            return None
        if self._strptime_fmt is not None:
            ns = self._strptime(s, self._strptime_fmt)
            if ns is not None:
                return ns
        elif self._epoch_mult is not None and len(s) <= _MAX_NUMBER and _RE_NUMBER.fullmatch(s):
            ns = int(float(s) * self._epoch_mult) if "." in s else int(s) * self._epoch_mult
            return ns if 0 < ns < _UINT64 else None
        if s[0] == "[" and s[-1] == "]":
            s = s[1:-1].strip()
            if not s:
                return None
        c = s[0]
        if c.isdigit():
            return self._parse_digits(s)
        if c.isalpha():
            return self._parse_alpha(s)
        return None

    def _parse_digits(self, s: str) -> int | None:
        """A stamp starting with a digit."""
        if len(s) >= 10 and s[4] == "-":
            ns = self._iso(s)
            if ns is not None:
                return ns
            m = _RE_ISO_SPACE_ZONE.fullmatch(s)
            if m:
                return self._iso(m.group(1) + ("+00:00" if m.group(2).isalpha()
                                               else m.group(2)))
            return None
        m = _RE_HTTPDATE.fullmatch(s)
        if m:
            return self._httpdate(m.groups())
        m = _RE_SLASHED.fullmatch(s)
        if m:
            g = m.groups()
            y = int(g[0])
            if len(g[0]) == 2:
                y = _century(y)
            return self.civil(y, int(g[1]), int(g[2]), int(g[3]), int(g[4]), int(g[5]),
                              _frac_ns(g[6]), _offset_s(g[7]))
        m = _RE_COMPACT.fullmatch(s)
        if m:
            g = m.groups()
            return self.civil(_century(int(g[0])), int(g[1]), int(g[2]), int(g[3]), int(g[4]),
                              int(g[5]))
        m = _RE_KLOG.fullmatch(s)
        if m:
            return self._klog(m.groups())
        if len(s) <= _MAX_NUMBER and _RE_NUMBER.fullmatch(s):
            return _epoch_guess(int(s) if "." not in s else float(s))
        if len(s) >= 15 and s[8] == "T":  # basic ISO 8601: 20240115T102030Z
            return self._iso(s)
        return None

    def _parse_alpha(self, s: str) -> int | None:
        """A stamp starting with a letter: month first, weekday first, or klog."""
        head = s[:3]
        if head in MONTHS:
            m = _RE_MONTH_FIRST.fullmatch(s)
            return self._month_first(m.groups()) if m else None
        if head in WEEKDAYS:
            if s[3] == ",":
                m = _RE_RFC1123.fullmatch(s)
                return self._rfc1123(m.groups()) if m else None
            m = _RE_CTIME.fullmatch(s)
            return self._ctime(m.groups()) if m else None
        if s[0] in "IWEFD" and len(s) > 5 and s[1:5].isdigit():
            m = _RE_KLOG.fullmatch(s)
            if m:
                return self._klog(m.groups())
        return None

    # -- one format each, from its regex groups --------------------------------------------

    def _httpdate(self, g: _Groups) -> int | None:
        mo = MONTHS.get(g[1])
        if mo is None:
            return None
        return self.civil(int(g[2]), mo, int(g[0]), int(g[3]), int(g[4]), int(g[5]),
                          _frac_ns(g[6]), _offset_s(g[7]))

    def _klog(self, g: _Groups) -> int | None:
        return self.yearless(int(g[0]), int(g[1]), int(g[2]), int(g[3]), int(g[4]),
                             _frac_ns(g[5]))

    def _month_first(self, g: _Groups) -> int | None:
        mo = MONTHS.get(g[0][:3])
        if mo is None:
            return None
        year = g[2] or g[7]
        off = _offset_s(g[8])
        if year:
            return self.civil(int(year), mo, int(g[1]), int(g[3]), int(g[4]), int(g[5]),
                              _frac_ns(g[6]), off)
        return self.yearless(mo, int(g[1]), int(g[3]), int(g[4]), int(g[5]), _frac_ns(g[6]),
                             off)

    def _rfc1123(self, g: _Groups) -> int | None:
        mo = MONTHS.get(g[1])
        if mo is None:
            return None
        return self.civil(int(g[2]), mo, int(g[0]), int(g[3]), int(g[4]), int(g[5]),
                          _frac_ns(g[6]), _offset_s(g[7]))

    def _ctime(self, g: _Groups) -> int | None:
        mo = MONTHS.get(g[0])
        if mo is None:
            return None
        if g[7]:
            return self.civil(int(g[7]), mo, int(g[1]), int(g[2]), int(g[3]), int(g[4]),
                              _frac_ns(g[5]), _offset_s(g[6]))
        return self.yearless(mo, int(g[1]), int(g[2]), int(g[3]), int(g[4]), _frac_ns(g[5]),
                             _offset_s(g[6]))

    # -- datetime ------------------------------------------------------------------------

    def _iso(self, s: str) -> int | None:
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            try:
                dt = datetime.fromisoformat(s.upper())
            except ValueError:
                return None
        return self._aware_ns(dt, s)

    def _aware_ns(self, dt: datetime, s: str) -> int | None:
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=self.tz or UTC)
        ns = (dt - _EPOCH) // _US * 1000
        # datetime keeps microseconds; add the nanoseconds of longer fractions.
        dot = s.find(".", 14)
        if dot < 0:
            dot = s.find(",", 14)
        if dot > 0:
            frac = s[dot + 1:dot + 10]
            digits = len(frac) - len(frac.lstrip("0123456789"))
            if digits > 6:
                ns += int(frac[6:digits].ljust(3, "0"))
        return ns if 0 < ns < _UINT64 else None

    def _strptime(self, s: str, fmt: str) -> int | None:
        if self._fmt_yearless:
            # Parse in a leap year (so Feb 29 is valid), then pick the real year.
            try:
                dt = datetime.strptime(s + " 2000", fmt + " %Y")
            except ValueError:
                return None
            off = dt.utcoffset()
            return self.yearless(dt.month, dt.day, dt.hour, dt.minute, dt.second,
                                 dt.microsecond * 1000,
                                 None if off is None else int(off.total_seconds()))
        try:
            dt = datetime.strptime(s, fmt)
        except ValueError:
            return None
        if dt.tzinfo is None and self.tz is not None:
            return self.civil(dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second,
                              dt.microsecond * 1000)
        return self._aware_ns(dt, s) if "%f" in fmt else \
            self._aware_ns(dt, "")


def _epoch_guess(v: int | float) -> int | None:
    """Epoch seconds / ms / µs / ns by magnitude (as the jsonlogs receiver does)."""
    if not v > 0:
        return None
    if v < 1e11:
        mult = 1_000_000_000
    elif v < 1e14:
        mult = 1_000_000
    elif v < 1e17:
        mult = 1000
    else:
        mult = 1
    if type(v) is int:
        ns = v * mult
    else:
        whole = int(v)
        ns = whole * mult + round((v - whole) * mult)
    return ns if 0 < ns < _UINT64 else None
