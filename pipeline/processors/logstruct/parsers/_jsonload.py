"""JSON text to Python values for the JSON and container parsers: orjson, and for the
numbers orjson refuses (beyond a double's range, e.g. a run of 5,000 digits) the
standard library with those numbers kept as their text.

What a number becomes: an integer within 64 bits stays an int; a longer integer within
a double's range becomes a float (orjson's rule); a number beyond a double's range
(`1e999`, 400+ digits) stays a **string holding its exact text**. Nothing here calls
`int()` on more than `MAX_INT_DIGITS` digits, so the interpreter's int-string limit
(`ValueError: Exceeds the limit (4300 digits)`) cannot be reached."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

__all__ = ["MAX_INT_DIGITS", "loads"]

#: Longest integer text converted with int(): 20 digits hold every 64-bit value.
MAX_INT_DIGITS = 20


def _int(text: str) -> int | float | str:
    if len(text.lstrip("-")) <= MAX_INT_DIGITS:
        return int(text)
    f = float(text)  # float() has no digit limit and is linear
    return f if math.isfinite(f) else text


def _float(text: str) -> float | str:
    f = float(text)
    return f if math.isfinite(f) else text


def _constant(text: str) -> str:
    raise ValueError(f"{text} is not JSON")  # orjson refuses NaN and Infinity too


def loads(s: str) -> Any:
    """The value of JSON text `s`; raises orjson.JSONDecodeError if it is not JSON."""
    try:
        return orjson.loads(s)
    except orjson.JSONDecodeError as exc:
        if not str(exc).startswith("number is infinity"):
            raise
        first = exc
    try:
        obj = json.loads(s, parse_int=_int, parse_float=_float, parse_constant=_constant)
        orjson.dumps(obj)  # refuses what orjson would (lone surrogates in strings)
    except (ValueError, TypeError, RecursionError):  # JSONDecodeError is a ValueError
        raise first from None
    return obj
