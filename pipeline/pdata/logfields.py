"""Log-record fields from loosely typed values: severity words and numbers,
timestamps in any common form, hex trace/span ids, JSON text of any depth, and
JSON values as OTLP AnyValue dicts. Shared by the receivers that build records
from JSON (jsonlogs) and the processors that parse lines (logstruct).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

# ---------------------------------------------------------------------------------------
# Severity

_SEVERITY_WORDS = {
    "trace": 1, "trc": 1, "finest": 1, "verbose": 1,
    "finer": 2,
    "debug": 5, "dbg": 5, "fine": 5,
    "config": 7,
    "info": 9, "inf": 9, "information": 9, "informational": 9,
    "notice": 10,
    "warn": 13, "warning": 13, "wrn": 13,
    "error": 17, "err": 17, "eror": 17, "severe": 17, "dpanic": 17,
    "fatal": 21, "critical": 21, "crit": 21, "panic": 21,
    "alert": 22,
    "emerg": 24, "emergency": 24,
}
# Exact-match table with the usual spellings, so most levels cost one dict lookup.
_SEVERITY_EXACT: dict[str, int] = {}
for _w, _n in _SEVERITY_WORDS.items():
    _SEVERITY_EXACT[_w] = _SEVERITY_EXACT[_w.upper()] = _SEVERITY_EXACT[_w.capitalize()] = _n
_SYSLOG = (24, 22, 21, 17, 13, 10, 9, 5)  # 0 emerg .. 7 debug
_SHORT_NAMES = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")


def _numeric_severity(n: int) -> int:
    """OTLP severity number of a numeric level, or 0 if it is none we know."""
    if 0 <= n <= 7:
        return _SYSLOG[n]
    if 8 <= n <= 99:  # bunyan / pino: 10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal
        return 1 if n < 20 else 5 if n < 30 else 9 if n < 40 else 13 if n < 50 else \
            17 if n < 60 else 21
    return 0


def parse_severity(v: Any) -> tuple[int, str] | None:
    """(severity_number, severity_text) of a level value, or None if unusable."""
    t = type(v)
    if t is str:
        n = _SEVERITY_EXACT.get(v)
        if n is not None:
            return n, v
        word = v.strip().lower()
        n = _SEVERITY_WORDS.get(word)
        if n is not None:
            return n, v
        if word.isdigit() and word.isascii() and len(word) <= MAX_INT_DIGITS:
            return _numeric_severity(int(word)), v
        return (0, v) if word else None
    if t is int or (t is float and v.is_integer()):
        num = _numeric_severity(int(v))
        if num > 0:
            return num, _SHORT_NAMES[(num - 1) // 4]
    return None


# ---------------------------------------------------------------------------------------
# Timestamps

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_UINT64 = 1 << 64
_DIGITS = "0123456789"
#: Longest run of digits given to int(): 20 hold every 64-bit value. Longer runs stay
#: text: int() raises ValueError past 4,300 digits (the interpreter's int-string limit)
#: and is quadratic below it. Unicode digits that int() refuses ('²') stay text too.
MAX_INT_DIGITS = 20


def _scale_int(v: int) -> int | None:
    if v <= 0:
        return None
    if v < 100_000_000_000:
        ns = v * 1_000_000_000
    elif v < 100_000_000_000_000:
        ns = v * 1_000_000
    elif v < 100_000_000_000_000_000:
        ns = v * 1000
    else:
        ns = v
    return ns if ns < _UINT64 else None


def _scale_float(v: float) -> int | None:
    if not v > 0 or v >= 1.8e19:  # also false for NaN
        return None
    if v < 1e11:
        mult = 1_000_000_000
    elif v < 1e14:
        mult = 1_000_000
    elif v < 1e17:
        mult = 1000
    else:
        return int(v) if v < _UINT64 else None
    whole = int(v)
    ns = whole * mult + round((v - whole) * mult)
    return ns if ns < _UINT64 else None


def _parse_iso(s: str) -> int | None:
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        try:
            dt = datetime.fromisoformat(s.strip().upper())
        except ValueError:
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    ns = (dt - _EPOCH) // _MICROSECOND * 1000
    # datetime keeps microseconds; add the nanoseconds of longer fractions.
    dot = s.find(".", 14)
    if dot < 0:
        dot = s.find(",", 14)
    if dot > 0:
        frac = s[dot + 1:dot + 10]
        digits = len(frac) - len(frac.lstrip(_DIGITS))
        if digits > 6:
            ns += int(frac[6:digits].ljust(3, "0"))
    return ns if 0 < ns < _UINT64 else None


def parse_timestamp(v: Any) -> int | None:
    """Unix nanoseconds of a timestamp value, or None if it is not one."""
    t = type(v)
    if t is str:
        if len(v) >= 10 and v[4:5] == "-":
            return _parse_iso(v)
        s = v.strip()
        if s.isdigit():
            # int() of 4,300+ digits raises; 21+ digits are no timestamp anyway
            return _scale_int(int(s)) if len(s) <= MAX_INT_DIGITS and s.isascii() else None
        try:
            f = float(s)
        except ValueError:
            return None
        return _scale_float(f)
    if t is int:
        return _scale_int(v)
    if t is float:
        return _scale_float(v)
    return None


def hex_id(v: Any, size: int) -> bytes | None:
    if type(v) is str and len(v) == 2 * size:
        try:
            b = bytes.fromhex(v)
        except ValueError:
            return None
        if len(b) == size and b.count(0) != size:
            return b
    return None


# ---------------------------------------------------------------------------------------
# JSON values -> OTLP AnyValue (as dicts: upb builds the whole request from them in C,
# about twice as fast as constructing AnyValue/KeyValue objects one by one).

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class _JSONText(str):
    """A piece of JSON text (as opposed to a string value) in `_dumps_deep`."""


def dumps(v: Any) -> str:
    try:
        return orjson.dumps(v).decode()
    except orjson.JSONEncodeError:  # deeper than orjson writes (255 levels)
        return dumps_deep(v)


def dumps_deep(value: Any) -> str:
    """JSON text of arbitrarily deep data, without recursion."""
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is _JSONText:
            out.append(v)
        elif t is dict:
            items = list(v.items())
            stack.append(_JSONText("}"))
            for i in range(len(items) - 1, -1, -1):
                k, x = items[i]
                stack.append(x)
                stack.append(_JSONText(orjson.dumps(str(k)).decode() + ":"))
                if i:
                    stack.append(_JSONText(","))
            stack.append(_JSONText("{"))
        elif t is list:
            stack.append(_JSONText("]"))
            for i in range(len(v) - 1, -1, -1):
                stack.append(v[i])
                if i:
                    stack.append(_JSONText(","))
            stack.append(_JSONText("["))
        else:
            try:
                out.append(orjson.dumps(v).decode())
            except orjson.JSONEncodeError:
                out.append(orjson.dumps(str(v)).decode())
    return "".join(out)


def any_value_dict(v: Any, depth: int, max_depth: int) -> dict[str, Any]:
    """AnyValue (as a dict) of a JSON value; `depth` counts containers from the record."""
    t = type(v)
    if t is str:
        return {"string_value": v}
    if t is bool:
        return {"bool_value": v}
    if t is int:
        if _INT64_MIN <= v <= _INT64_MAX:
            return {"int_value": v}
        return {"string_value": str(v)}
    if t is float:
        return {"double_value": v}
    if t is dict:
        if depth > max_depth:
            return {"string_value": dumps(v)}
        d = depth + 1
        return {"kvlist_value": {"values": [
            {"key": k, "value": any_value_dict(x, d, max_depth)}
            for k, x in v.items() if x is not None]}}
    if t is list:
        if depth > max_depth:
            return {"string_value": dumps(v)}
        d = depth + 1
        return {"array_value": {"values": [any_value_dict(x, d, max_depth) for x in v]}}
    if v is None:
        return {}
    return {"string_value": str(v)}
