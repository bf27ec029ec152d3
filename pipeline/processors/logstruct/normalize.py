"""Normalisation of parsed fields: timestamps, severity, body, trace context, semconv names.

Every parser hands its fields to a `Normalizer`, which decides per field name
(after the `rename` map and, with `semconv: true`, the semantic-convention
map) what the field becomes:

- `timestamp`, `time`, `ts`, `@timestamp`, `datetime` -> `time_unix_nano`
  (first parseable one wins; an unparseable value stays an attribute);
- `level`, `severity`, `lvl`, `loglevel`, `log.level` -> `severity_number` / `severity_text`;
- `message`, `msg` -> the body;
- `trace_id`, `traceId`, `trace.id`, `traceid` (32 hex digits), `span_id`,
  `spanId`, `span.id`, `spanid` (16 hex digits), `trace_flags`, and a W3C
  `traceparent` -> the record's trace context (invalid ids stay attributes);
- `request`, `request_uri`, `uri`, `url` when it is a request target
  (`/path?query`) -> `url.path` and `url.query`;
- anything else -> an attribute, renamed by `SEMCONV` (`status` ->
  `http.response.status_code` as an int, `client_ip` -> `client.address` …).

Timestamps (`TimeParser`): ISO 8601 / RFC 3339 (any offset, `Z`, `T` or space,
`,` or `.` fractions up to nanoseconds, basic `20240115T102030Z`), RFC 3164
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
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.pdata.logfields import any_value_dict, parse_severity

__all__ = [
    "DEFAULT_SEMCONV",
    "Normalizer",
    "Record",
    "TimeParser",
    "level_of",
]

# ---------------------------------------------------------------------------------------
# The parsed record


class Record:
    """What parsing one line produced, before it is written into the LogRecord."""

    __slots__ = ("attrs", "body", "fallback_time", "flags", "format", "sev_num", "sev_text",
                 "span_id", "time", "trace_id")

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        self.time = 0
        self.fallback_time = 0  # a container wrapper's time, used when the line has none
        self.sev_num = 0
        self.sev_text: str | None = None
        self.body: Any = None  # None: the body stays as it is
        self.trace_id = b""
        self.span_id = b""
        self.flags = -1
        # attribute name -> value (a later one replaces); may be the record's own dict
        self.attrs: dict[str, Any] = {} if attrs is None else attrs
        self.format = ""


# ---------------------------------------------------------------------------------------
# Severity

_SYSLOG_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_TRACE_N = re.compile(r"(?i)trace([1-8])")


_LEVELS: dict[str, tuple[int, str] | None] = {}  # level text -> level_of(text)
_NO_LEVEL: Any = object()


def level_of(v: Any) -> tuple[int, str] | None:
    """(severity_number, severity_text) of a level value (text or number), or None.
    Results for text are cached (level words repeat from line to line)."""
    if type(v) is str:
        sev = _LEVELS.get(v, _NO_LEVEL)
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
    return _SYSLOG_NAMES[pri & 7]


# ---------------------------------------------------------------------------------------
# Timestamps

_MONTHS: dict[str, int] = {}
for _i, _m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                         "nov", "dec"), 1):
    _MONTHS[_m] = _MONTHS[_m.upper()] = _MONTHS[_m.capitalize()] = _i
_WEEKDAYS = frozenset(d for w in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
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

_EPOCH_UNITS = {"epoch_s": 1_000_000_000, "epoch_ms": 1_000_000, "epoch_us": 1000,
                "epoch_ns": 1}


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
        t = type(v)
        if t is str:
            if len(v) == 24 and v[23] == "Z" and v[19] == ".":
                # `2024-01-15T10:20:30.123Z` (JavaScript, Go, pino, Serilog ...): the
                # cached whole second (only set for valid UTC RFC 3339 stamps, and only
                # without a time_format) plus the milliseconds, looked up.
                secs = self._utc_seconds.get(v[:19])
                if secs is not None:
                    ms = _MILLIS.get(v[20:23])
                    if ms is not None and 0 < secs + ms < _UINT64:
                        return secs + ms
            elif len(v) == 23 and v[4] == "-" and (v[19] == "." or v[19] == ",") \
                    and (v[10] == " " or v[10] == "T") and self._strptime_fmt is None:
                # `2024-01-15 10:20:30.123` / `…,123` (log4j, Python logging) in the
                # configured zone: the same per-second cache.
                ms = _MILLIS.get(v[20:23])
                if ms is not None:
                    secs = self._local_seconds.get(v[:19])
                    if secs is not None and 0 < secs + ms < _UINT64:
                        return secs + ms
                    local = self._iso(v)
                    if local is not None:
                        if len(self._local_seconds) >= _CACHE_MAX:
                            self._local_seconds.clear()
                        self._local_seconds[v[:19]] = local - ms
                        return local
            if len(v) >= 20 and v[10] == "T" and v[4] == "-" and self._strptime_fmt is None:
                if v[-1] == "Z" and (len(v) == 20 or v[19] == "."):
                    # UTC RFC 3339: the whole seconds repeat from line to line, cache them
                    secs = self._utc_seconds.get(v[:19])
                    frac = v[20:-1]
                    if secs is not None and (not frac or (frac.isdigit() and frac.isascii())):
                        fast = secs + (int(frac[:9].ljust(9, "0")) if frac else 0)
                        if 0 < fast < _UINT64:
                            return fast
                    iso = self._iso(v)
                    if iso is not None:
                        if len(self._utc_seconds) < _CACHE_MAX and v[:19].isascii():
                            self._utc_seconds[v[:19]] = iso - iso % 1_000_000_000
                        return iso
                ns = self._iso(v)  # unique to the microsecond: not worth caching
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
        if t is int or t is float:
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

    # -- strings -------------------------------------------------------------------------

    def _parse_str(self, s: str) -> int | None:
        s = s.strip()
        if not s:
            return None
        if self._strptime_fmt is not None:
            ns = self._strptime(s, self._strptime_fmt)
            if ns is not None:
                return ns
        elif self._epoch_mult is not None and _RE_NUMBER.fullmatch(s):
            ns = int(float(s) * self._epoch_mult) if "." in s else int(s) * self._epoch_mult
            return ns if 0 < ns < _UINT64 else None
        if s[0] == "[" and s[-1] == "]":
            s = s[1:-1].strip()
            if not s:
                return None
        c = s[0]
        if c.isdigit():
            if len(s) >= 10 and s[4] == "-":
                ns = self._iso(s)
                if ns is not None:
                    return ns
                m = _RE_ISO_SPACE_ZONE.fullmatch(s)
                if m:
                    return self._iso(m.group(1) + ("+00:00" if m.group(2).isalpha()
                                                   else m.group(2)))
                return None
            m2 = _RE_HTTPDATE.fullmatch(s)
            if m2:
                g = m2.groups()
                mo = _MONTHS.get(g[1])
                if mo is None:
                    return None
                return self.civil(int(g[2]), mo, int(g[0]), int(g[3]), int(g[4]), int(g[5]),
                                  _frac_ns(g[6]), _offset_s(g[7]))
            m2 = _RE_SLASHED.fullmatch(s)
            if m2:
                g = m2.groups()
                y = int(g[0])
                if len(g[0]) == 2:
                    y += 2000 if y < 70 else 1900
                return self.civil(y, int(g[1]), int(g[2]), int(g[3]), int(g[4]), int(g[5]),
                                  _frac_ns(g[6]), _offset_s(g[7]))
            m2 = _RE_COMPACT.fullmatch(s)
            if m2:
                g = m2.groups()
                y = int(g[0])
                y += 2000 if y < 70 else 1900
                return self.civil(y, int(g[1]), int(g[2]), int(g[3]), int(g[4]), int(g[5]))
            m2 = _RE_KLOG.fullmatch(s)
            if m2:
                g = m2.groups()
                return self.yearless(int(g[0]), int(g[1]), int(g[2]), int(g[3]), int(g[4]),
                                     _frac_ns(g[5]))
            if _RE_NUMBER.fullmatch(s):
                return _epoch_guess(int(s) if "." not in s else float(s))
            if len(s) >= 15 and s[8] == "T":  # basic ISO 8601: 20240115T102030Z
                return self._iso(s)
            return None
        if c.isalpha():
            head = s[:3]
            if head in _MONTHS:
                m3 = _RE_MONTH_FIRST.fullmatch(s)
                if m3:
                    g = m3.groups()
                    mo = _MONTHS.get(g[0][:3])
                    if mo is None:
                        return None
                    year = g[2] or g[7]
                    off = _offset_s(g[8])
                    if year:
                        return self.civil(int(year), mo, int(g[1]), int(g[3]), int(g[4]),
                                          int(g[5]), _frac_ns(g[6]), off)
                    return self.yearless(mo, int(g[1]), int(g[3]), int(g[4]), int(g[5]),
                                         _frac_ns(g[6]), off)
                return None
            if head in _WEEKDAYS:
                if s[3] == ",":
                    m3 = _RE_RFC1123.fullmatch(s)
                    if m3:
                        g = m3.groups()
                        mo = _MONTHS.get(g[1])
                        if mo is None:
                            return None
                        return self.civil(int(g[2]), mo, int(g[0]), int(g[3]), int(g[4]),
                                          int(g[5]), _frac_ns(g[6]), _offset_s(g[7]))
                    return None
                m3 = _RE_CTIME.fullmatch(s)
                if m3:
                    g = m3.groups()
                    mo = _MONTHS.get(g[0])
                    if mo is None:
                        return None
                    if g[7]:
                        return self.civil(int(g[7]), mo, int(g[1]), int(g[2]), int(g[3]),
                                          int(g[4]), _frac_ns(g[5]), _offset_s(g[6]))
                    return self.yearless(mo, int(g[1]), int(g[2]), int(g[3]), int(g[4]),
                                         _frac_ns(g[5]), _offset_s(g[6]))
                return None
            if c in "IWEFD" and len(s) > 5 and s[1:5].isdigit():
                m2 = _RE_KLOG.fullmatch(s)
                if m2:
                    g = m2.groups()
                    return self.yearless(int(g[0]), int(g[1]), int(g[2]), int(g[3]),
                                         int(g[4]), _frac_ns(g[5]))
        return None

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


def parse_http_date(s: str, tp: TimeParser) -> int | None:
    """Fast path for `10/Oct/2000:13:55:36 -0700` (access logs)."""
    if len(s) == 26 and s[2] == "/" and s[6] == "/" and s[11] == ":" and s[20] == " ":
        mo = _MONTHS.get(s[3:6])
        sign = s[21]
        if mo is not None and (sign == "+" or sign == "-"):
            try:
                off = int(s[22:24]) * 3600 + int(s[24:26]) * 60
                return tp.civil(int(s[7:11]), mo, int(s[0:2]), int(s[12:14]), int(s[15:17]),
                                int(s[18:20]), 0, -off if sign == "-" else off)
            except ValueError:
                return None
    return tp.parse(s)


# ---------------------------------------------------------------------------------------
# Field names

TIME, LEVEL, BODY, TRACE, SPAN, FLAGS, TRACEPARENT, TARGET, ATTR = range(9)

ROLE_KEYS: dict[str, int] = {
    "timestamp": TIME, "time": TIME, "ts": TIME, "@timestamp": TIME, "datetime": TIME,
    "level": LEVEL, "severity": LEVEL, "lvl": LEVEL, "loglevel": LEVEL, "log.level": LEVEL,
    "message": BODY, "msg": BODY,
    "trace_id": TRACE, "traceId": TRACE, "trace.id": TRACE, "traceid": TRACE,
    "span_id": SPAN, "spanId": SPAN, "span.id": SPAN, "spanid": SPAN,
    "trace_flags": FLAGS, "traceFlags": FLAGS, "trace.flags": FLAGS,
    "traceparent": TRACEPARENT,
    "request": TARGET, "request_uri": TARGET, "uri": TARGET,
}

#: Field names renamed to OpenTelemetry semantic conventions when `semconv: true`.
DEFAULT_SEMCONV: dict[str, str] = {
    # client / network
    "client_ip": "client.address", "clientip": "client.address", "remote_addr": "client.address",
    "remote_ip": "client.address", "client_addr": "client.address", "client": "client.address",
    "client_port": "client.port", "remote_port": "client.port",
    "httpversion": "network.protocol.version", "http_version": "network.protocol.version",
    "protocol_version": "network.protocol.version",
    # HTTP
    "method": "http.request.method", "verb": "http.request.method",
    "request_method": "http.request.method", "http_method": "http.request.method",
    "path": "url.path", "request_path": "url.path", "uri_path": "url.path",
    "query": "url.query", "query_string": "url.query", "querystring": "url.query",
    "status": "http.response.status_code", "status_code": "http.response.status_code",
    "response": "http.response.status_code", "http_status": "http.response.status_code",
    "response_code": "http.response.status_code",
    "bytes": "http.response.body.size", "body_bytes_sent": "http.response.body.size",
    "response_size": "http.response.body.size", "size": "http.response.body.size",
    "referrer": "http.request.header.referer", "referer": "http.request.header.referer",
    "http_referer": "http.request.header.referer",
    "agent": "user_agent.original", "user_agent": "user_agent.original",
    "useragent": "user_agent.original", "http_user_agent": "user_agent.original",
    "auth": "user.name", "remote_user": "user.name", "user": "user.name",
    # process / host / code
    "pid": "process.pid", "process_id": "process.pid", "procid": "process.pid",
    "tid": "thread.id", "thread_id": "thread.id", "threadid": "thread.id",
    "thread": "thread.name", "thread_name": "thread.name",
    "host": "host.name", "hostname": "host.name", "logsource": "host.name",
    "program": "process.executable.name", "appname": "process.executable.name",
    "logger": "log.logger", "logger_name": "log.logger", "component": "log.logger",
    "file": "code.file.path", "caller_file": "code.file.path",
    "line": "code.line.number", "lineno": "code.line.number",
    "func": "code.function.name", "function": "code.function.name",
    "stacktrace": "exception.stacktrace", "stack_trace": "exception.stacktrace",
}

#: Attributes that are integers by convention: numeric strings are converted.
INT_ATTRS = frozenset({
    "http.response.status_code", "http.response.body.size", "process.pid", "thread.id",
    "code.line.number", "client.port", "syslog.facility", "syslog.version",
})

#: Attributes for which `-` means "no value" (access-log convention): left out.
DASH_MEANS_NONE = frozenset({
    "ident", "user.name", "http.request.header.referer", "user_agent.original",
    "http.response.status_code", "http.response.body.size", "client.address",
})

_HEX = frozenset("0123456789abcdefABCDEF")


_ZERO16, _ZERO8 = bytes(16), bytes(8)
_ZEROS = {16: _ZERO16, 8: _ZERO8}


def hex_id(v: Any, size: int) -> bytes | None:
    """The bytes of a trace id (size 16) or span id (8) written in hex; None if `v` is
    not one (wrong length, not hex, all zeros)."""
    if type(v) is str and len(v) == 2 * size:
        try:
            b = bytes.fromhex(v)
        except ValueError:
            return None
        if len(b) == size and b != _ZEROS[size]:
            return b
    return None


#: (role, attribute name, int attribute, field name, plain: store the value as it is)
Plan = tuple[int, str, bool, str, bool]


class Normalizer:
    """Maps field names to what they become; one per parser configuration."""

    def __init__(self, times: TimeParser, *, semconv: bool = True,
                 rename: dict[str, str] | None = None):
        self.times = times
        names = dict(DEFAULT_SEMCONV) if semconv else {}
        names.update(rename or {})
        self.names = names
        self.plans: dict[str, Plan] = {}

    def plan(self, key: str) -> Plan:
        """How a field name is handled (see `Plan`)."""
        p = self.plans.get(key)
        if p is None:
            name = self.names.get(key, key)
            role = ROLE_KEYS.get(name, ATTR)
            is_int = name in INT_ATTRS
            p = (role, name, is_int, key,
                 role == ATTR and not is_int and name not in DASH_MEANS_NONE)
            if len(self.plans) < 10_000:  # JSON keys are unbounded: bound the cache
                self.plans[key] = p
        return p

    def fill(self, rec: Record, items: Iterable[tuple[str, Any]]) -> None:
        """`put` for every (field name, value), with the common cases inlined (this loop
        is most of the cost of a JSON or logfmt line): plain attributes, time, level,
        message, trace and span ids, numbers. `None` values are left out."""
        plans = self.plans
        put = self.put
        attrs = rec.attrs
        fromhex = bytes.fromhex
        for k, v in items:
            try:
                p = plans[k]
            except KeyError:
                p = self.plan(k)
            tv = type(v)
            if p[4]:  # an attribute stored as it is
                if tv is str or tv is int or tv is float or tv is bool:
                    attrs[p[1]] = v
                elif v is not None:
                    put(rec, p, v)  # a container keeps its own key
                continue
            role = p[0]
            if role == TIME:
                if not rec.time:
                    ns = self.times.parse(v)
                    if ns is not None:
                        rec.time = ns
                        continue
            elif role == LEVEL:
                if rec.sev_text is None:
                    sev = level_of(v)
                    if sev is not None:
                        rec.sev_num, rec.sev_text = sev
                        continue
            elif role == BODY:
                if rec.body is None:
                    if v is not None:
                        rec.body = v
                    continue
            elif role == TRACE:  # hex_id(v, 16), inlined
                if not rec.trace_id and tv is str and len(v) == 32:
                    try:
                        b = fromhex(v)
                    except ValueError:
                        b = b""
                    if len(b) == 16 and b != _ZERO16:
                        rec.trace_id = b
                        continue
            elif role == SPAN:  # hex_id(v, 8), inlined
                if not rec.span_id and tv is str and len(v) == 16:
                    try:
                        b = fromhex(v)
                    except ValueError:
                        b = b""
                    if len(b) == 8 and b != _ZERO8:
                        rec.span_id = b
                        continue
            elif role == ATTR and (tv is int or tv is float or tv is bool):
                attrs[p[1]] = v  # what put() does with a number
                continue
            elif v is not None:
                put(rec, p, v)
                continue
            if v is not None:  # not usable for its role: an attribute
                attrs[p[1]] = v

    def field(self, rec: Record, key: str, value: Any) -> None:
        p = self.plans.get(key)
        self.put(rec, self.plan(key) if p is None else p, value)

    def put(self, rec: Record, plan: Plan, value: Any) -> None:
        role, name, is_int, _, _ = plan
        if role == ATTR:
            tv = type(value)
            if tv is dict or tv is list:
                name = plan[3]  # semconv names are for scalars: a container keeps its key
            elif tv is str:
                if value == "-" and name in DASH_MEANS_NONE:
                    return  # "no value" in access logs
                if is_int and value.isdigit():
                    value = int(value)
            rec.attrs[name] = value
            return
        if role == BODY:
            if rec.body is None:
                rec.body = value
                return
        elif role == TIME:
            if not rec.time:
                ns = self.times.parse(value)
                if ns is not None:
                    rec.time = ns
                    return
        elif role == LEVEL:
            if rec.sev_text is None:
                sev = level_of(value)
                if sev is not None:
                    rec.sev_num, rec.sev_text = sev
                    return
        elif role == TRACE:
            if not rec.trace_id:
                tid = hex_id(value, 16)
                if tid is not None:
                    rec.trace_id = tid
                    return
        elif role == SPAN:
            if not rec.span_id:
                sid = hex_id(value, 8)
                if sid is not None:
                    rec.span_id = sid
                    return
        elif role == FLAGS:
            if rec.flags < 0:
                if type(value) is int and 0 <= value <= 255:
                    rec.flags = value
                    return
                if type(value) is str and len(value) <= 2 and set(value) <= _HEX and value:
                    rec.flags = int(value, 16)
                    return
        elif role == TRACEPARENT:
            if not rec.trace_id and type(value) is str and self.traceparent(rec, value):
                return
        elif role == TARGET and type(value) is str and value[:1] == "/":
            path, q, query = value.partition("?")
            names = self.names
            rec.attrs[names.get("path", "path")] = path
            if q:
                rec.attrs[names.get("query", "query")] = query
            return
        if value is not None:  # not usable for its role: keep it as an attribute
            rec.attrs[name] = value

    @staticmethod
    def traceparent(rec: Record, v: str) -> bool:
        """W3C `00-<trace id>-<span id>-<flags>`."""
        parts = v.strip().split("-")
        if len(parts) < 4 or len(parts[0]) != 2:
            return False
        tid, sid = hex_id(parts[1], 16), hex_id(parts[2], 8)
        if tid is None or sid is None or len(parts[3]) != 2 or not set(parts[3]) <= _HEX:
            return False
        rec.trace_id, rec.span_id, rec.flags = tid, sid, int(parts[3], 16)
        return True


# ---------------------------------------------------------------------------------------
# Writing a Record into an OTLP LogRecord

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def any_dict(v: Any) -> dict[str, Any]:
    """OTLP AnyValue (as a dict) of a Python value."""
    return any_value_dict(v, 1, 31)


def write_record(rec: Record, lr: Any) -> None:
    """Apply a parse result to a LogRecord, in place."""
    t = rec.time or rec.fallback_time
    if t:
        lr.time_unix_nano = t
    if rec.sev_text is not None:
        lr.severity_number = rec.sev_num
        lr.severity_text = rec.sev_text
    body = rec.body
    if body is not None:
        if type(body) is str:
            lr.body.string_value = body
        else:
            lr.body.CopyFrom(type(lr.body)(**any_dict(body)))
    if rec.trace_id:
        lr.trace_id = rec.trace_id
        if rec.span_id:
            lr.span_id = rec.span_id
        if rec.flags >= 0:
            lr.flags = (lr.flags & ~0xFF) | rec.flags
    elif rec.span_id:
        lr.span_id = rec.span_id
    attrs = rec.attrs
    if not attrs:
        return
    existing = lr.attributes
    if len(existing):
        by_key: dict[str, Any] | None = {kv.key: kv for kv in existing}
        if by_key is not None and by_key.keys() & attrs.keys():
            for k, v in attrs.items():
                kv = by_key.get(k)
                if kv is None:
                    kv = by_key[k] = existing.add(key=k)
                set_value(kv.value, v)
            return
    add = existing.add
    for k, v in attrs.items():
        tv = type(v)
        if tv is str:
            add(key=k).value.string_value = v
        elif tv is int and _INT64_MIN <= v <= _INT64_MAX:
            add(key=k).value.int_value = v
        else:
            set_value(add(key=k).value, v)


def apply_record(rec: Record, lr: Any) -> None:
    """Apply a parse result to a Python record (pdata.logrecords.LogRecord), in place:
    the same result as `write_record` gives on the record's OTLP encoding."""
    t = rec.time or rec.fallback_time
    if t:
        lr.time_unix_nano = t
    if rec.sev_text is not None:
        lr.severity_number = rec.sev_num
        lr.severity_text = rec.sev_text
    if rec.body is not None:
        lr.body = rec.body
    if rec.trace_id:
        lr.trace_id = rec.trace_id
        if rec.span_id:
            lr.span_id = rec.span_id
        if rec.flags >= 0:
            lr.flags = (lr.flags & ~0xFF) | rec.flags
    elif rec.span_id:
        lr.span_id = rec.span_id
    if rec.attrs:
        lr.attributes.update(rec.attrs)


def set_value(av: Any, v: Any) -> None:
    tv = type(v)
    if tv is str:
        av.string_value = v
    elif tv is bool:
        av.bool_value = v
    elif tv is int and _INT64_MIN <= v <= _INT64_MAX:
        av.int_value = v
    elif tv is float:
        av.double_value = v
    elif tv is bytes:
        av.bytes_value = v
    else:
        av.CopyFrom(type(av)(**any_dict(v)))
