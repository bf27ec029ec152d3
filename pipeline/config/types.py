"""Config value types shared by component models: durations, sizes, endpoints, regexes."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, WithJsonSchema

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                 "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds from a number (seconds) or a Go-style string: `200ms`, `1m30s`, `1.5h`."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 5s, 200ms or 1m30s")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "0":
            return 0.0
        pos, total = 0, 0.0
        for m in _DURATION_PART.finditer(text):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
            pos = m.end()
        if pos == len(text) and text:
            return total
    raise ValueError(f"invalid duration {value!r}: expected a number of seconds or e.g. 5s, "
                     "200ms, 1m30s")


def format_duration(seconds: float) -> str:
    if seconds and seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0},
                              {"type": "string",
                               "pattern": r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h|d))+$|^0$"}],
                    "description": "seconds, or a duration such as 200ms, 5s, 1m30s"}),
]


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {None: 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2,
               "gb": 1000**3, "gib": 1024**3}


def parse_byte_size(value: object) -> int:
    """Bytes from an int or a string such as `1000`, `1kb` (1000), `64KiB`, `1MiB`."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 1024, 64KiB or 1MiB")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            unit = m.group(2).lower() if m.group(2) else None
            return int(float(m.group(1)) * _SIZE_UNITS[unit])
    raise ValueError(f"invalid size {value!r}: expected bytes or e.g. 1kb, 64KiB, 1MiB")


# _SIZE for JSON Schema, which has no case-insensitive flag.
_SIZE_SCHEMA_PATTERN = r"^\s*\d+(\.\d+)?\s*([kKmMgG][iI]?[bB]|[bB])?\s*$"
ByteSize = Annotated[
    int,
    BeforeValidator(parse_byte_size),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 0},
                              {"type": "string", "pattern": _SIZE_SCHEMA_PATTERN}],
                    "description": "bytes, or a size such as 64KiB, 1MiB, 1kb"}),
]


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


Regex = Annotated[str, AfterValidator(_check_regex),
                  Field(json_schema_extra={"format": "regex"})]
"""A string that must compile as a Python regular expression."""


def _check_endpoint(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("expected host:port")
    _host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid endpoint {value!r}: expected host:port, e.g. 0.0.0.0:4317")
    return value


Endpoint = Annotated[str, BeforeValidator(_check_endpoint),
                     Field(json_schema_extra={"pattern": r"^.*:\d+$"})]


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)
