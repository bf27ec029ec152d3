"""Protobuf wire format, written by hand: varints and length-delimited fields.

The one writer every hand-written encoder uses (OTLP log records in
`pdata/logrecords.py`, Loki's `PushRequest`, Prometheus' `WriteRequest`, the
filelog receiver's records, attribute key prefixes): building upb messages
field by field costs about twice as much as joining bytes (docs/benchmarks.md,
"Hand-written protobuf encoders"). The schemas of what is written are in
`proto/`; the generated messages (`pipeline.proto`) parse the hand-written
bytes in the tests.

- `varint(n)`: base-128 varint of `0 <= n < 2**64`; `int64_varint(n)` for a
  signed int64 (a negative one is ten bytes of two's complement);
- `ld(tag, payload)`: a length-delimited field, `tag` being its key byte(s)
  (`b"\\x0a"` is field 1, wire type 2);
- `read_varint(buf, pos)`: the varint at `buf[pos:]` and the position after it,
  for the few places that peek into serialized bytes (a string `AnyValue`);
- `SMALL_VARINTS[n]`: the one-byte varints (`n < 0x80`) as ready bytes. A hot
  loop writes `SMALL_VARINTS[n] if n < 0x80 else varint(n)` to save the call
  for the common short length.

Measured (timeit, min of 60 rounds, CPython 3.11): a one-byte varint 40 ns;
record lengths of 40-400 bytes 150 ns (217 ns with a plain loop: the two-byte
case is written directly); five- and six-byte timestamps 480-570 ns.
"""

from __future__ import annotations

__all__ = ["MASK64", "SMALL_VARINTS", "int64_varint", "ld", "read_varint", "varint"]

MASK64 = (1 << 64) - 1
SMALL_VARINTS: list[bytes] = [bytes((i,)) for i in range(0x80)]


def varint(n: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer (< 2**64)."""
    if n < 0x80:
        return SMALL_VARINTS[n]
    if n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    out: list[int] = []
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def int64_varint(n: int) -> bytes:
    """Varint of a protobuf `int64`: negative numbers as ten-byte two's complement."""
    return varint(n & MASK64 if n < 0 else n)


def ld(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: `tag`, the payload's length, the payload."""
    n = len(payload)
    return tag + (SMALL_VARINTS[n] if n < 0x80 else varint(n)) + payload


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The varint starting at `buf[pos]` and the position after it. Raises IndexError
    when `buf` ends inside it, ValueError past ten bytes."""
    n = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint longer than ten bytes")
