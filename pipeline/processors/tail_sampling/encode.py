"""Spans as bytes: cut out of the request they arrived in, and written back into one
OTLP `ExportTraceServiceRequest` by hand.

A waiting span is kept as its encoded bytes (cut from the request with `span_slices`,
a walk over the protobuf wire format — no re-encoding, and the decoded request can go),
with an *envelope*: the serialized Resource and InstrumentationScope and their schema
URLs. Emitting writes the envelopes around the sampled spans' bytes, grouping spans
that share a resource and scope (protobuf fields, by number):

    ExportTraceServiceRequest { 1: ResourceSpans* }
    ResourceSpans { 1: Resource, 2: ScopeSpans*, 3: schema_url }
    ScopeSpans    { 1: InstrumentationScope, 2: Span*, 3: schema_url }
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pipeline.pdata.wire import SMALL_VARINTS, varint

__all__ = ["Envelope", "WireError", "encode_request", "span_slices", "varint"]

T1, T2, T3 = b"\x0a", b"\x12", b"\x1a"  # fields 1, 2, 3 of wire type 2 (length-delimited)


class Envelope:
    """The resource and scope of waiting spans, `key` = (resource bytes, resource schema
    URL, scope bytes, scope schema URL); one object per distinct key (the processor
    interns them), hashed by identity, so grouping spans by envelope is cheap."""

    __slots__ = ("key",)

    def __init__(self, key: tuple[bytes, bytes, bytes, bytes]):
        self.key = key


def _head(tag: bytes, n: int) -> bytes:
    """The key and length of a length-delimited field of `n` bytes."""
    return tag + (SMALL_VARINTS[n] if n < 0x80 else varint(n))


_SPAN_HEADS: dict[int, bytes] = {}  # span length -> its key and length (at most 64 Ki)


def encode_request(spans: Iterable[tuple[Any, bytes]]) -> bytes:
    """`(envelope, span bytes)` pairs, envelope = (resource bytes, resource schema url,
    scope bytes, scope schema url) (schema URLs as UTF-8 bytes), as one request.

    The spans' bytes are not copied field by field: each is framed (key, length) and
    everything is joined once per scope, resource and request (`bytes.join`)."""
    by_env: dict[Any, list[bytes]] = {}
    for env, span in spans:
        lst = by_env.get(env)
        if lst is None:
            lst = by_env[env] = []
        lst.append(span)
    small = SMALL_VARINTS
    by_resource: dict[tuple[bytes, bytes], list[bytes]] = {}
    for env, lst in by_env.items():
        res, rschema, scope, sschema = env.key if type(env) is Envelope else env
        parts: list[bytes] = [_head(T1, len(scope)), scope] if scope else []
        append = parts.append
        heads = _SPAN_HEADS
        for sb in lst:
            n = len(sb)
            h = heads.get(n)
            if h is None:
                h = T2 + (small[n] if n < 0x80 else varint(n))
                if n < 0x10000:
                    heads[n] = h
            append(h)
            append(sb)
        if sschema:
            parts.append(_head(T3, len(sschema)))
            parts.append(sschema)
        body = b"".join(parts)
        rparts = by_resource.get((res, rschema))
        if rparts is None:
            rparts = by_resource[(res, rschema)] = [_head(T1, len(res)), res] if res else []
        rparts.append(_head(T2, len(body)))
        rparts.append(body)
    out: list[bytes] = []
    for (_, rschema), rparts in by_resource.items():
        if rschema:
            rparts.append(_head(T3, len(rschema)))
            rparts.append(rschema)
        body = b"".join(rparts)
        out.append(_head(T1, len(body)))
        out.append(body)
    return b"".join(out)


class WireError(ValueError):
    """The bytes are not the protobuf the walk expects (the caller re-encodes instead)."""


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint too long")


def _fields(buf: bytes, pos: int, end: int, want: int) -> list[tuple[int, int]]:
    """(start, end) of every length-delimited field number `want` in buf[pos:end]."""
    out: list[tuple[int, int]] = []
    rv = _read_varint
    while pos < end:
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = rv(buf, pos)
        wt = key & 7
        if wt == 2:
            b = buf[pos]
            if b < 0x80:
                n = b
                pos += 1
            else:
                n, pos = rv(buf, pos)
            if key >> 3 == want:
                out.append((pos, pos + n))
            pos += n
        elif wt == 0:
            _, pos = rv(buf, pos)
        elif wt == 1:
            pos += 8
        elif wt == 5:
            pos += 4
        else:
            raise WireError(f"wire type {wt}")
    if pos != end:
        raise WireError("field runs past its message")
    return out


def span_slices(raw: bytes) -> list[list[list[bytes]]]:
    """The encoded spans of a request: [resource][scope][span] bytes, in wire order (the
    order of the decoded message's repeated fields). Raises `WireError`."""
    try:
        out = []
        for rs, re_ in _fields(raw, 0, len(raw), 1):
            scopes = []
            for ss, se in _fields(raw, rs, re_, 2):
                scopes.append([raw[a:b] for a, b in _fields(raw, ss, se, 2)])
            out.append(scopes)
        return out
    except IndexError:
        raise WireError("truncated") from None
