"""Trace context in parsed fields: hex trace / span ids, trace flags, W3C `traceparent`."""

from __future__ import annotations

from typing import Any

__all__ = ["HEX", "ZERO_SPAN", "ZERO_TRACE", "hex_id", "trace_flags", "traceparent"]

HEX = frozenset("0123456789abcdefABCDEF")
ZERO_TRACE, ZERO_SPAN = bytes(16), bytes(8)
_ZEROS = {16: ZERO_TRACE, 8: ZERO_SPAN}


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


def trace_flags(v: Any) -> int | None:
    """Trace flags given as an int 0-255 or as one or two hex digits; None otherwise."""
    if type(v) is int and 0 <= v <= 255:
        return v
    if type(v) is str and len(v) <= 2 and set(v) <= HEX and v:
        return int(v, 16)
    return None


def traceparent(v: str) -> tuple[bytes, bytes, int] | None:
    """(trace id, span id, flags) of a W3C `00-<trace id>-<span id>-<flags>`, or None."""
    parts = v.strip().split("-")
    if len(parts) < 4 or len(parts[0]) != 2:
        return None
    tid, sid = hex_id(parts[1], 16), hex_id(parts[2], 8)
    if tid is None or sid is None or len(parts[3]) != 2 or not set(parts[3]) <= HEX:
        return None
    return tid, sid, int(parts[3], 16)
