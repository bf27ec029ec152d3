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


def varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload


T1, T2, T3 = b"\x0a", b"\x12", b"\x1a"  # fields 1, 2, 3 of wire type 2 (length-delimited)


def encode_request(spans: Iterable[tuple[Any, bytes]]) -> bytes:
    """`(envelope, span bytes)` pairs, envelope = (resource bytes, resource schema url,
    scope bytes, scope schema url), as one request."""
    by_resource: dict[tuple[bytes, str], dict[tuple[bytes, str], list[bytes]]] = {}
    for env, span in spans:
        scopes = by_resource.get(env[:2])
        if scopes is None:
            scopes = by_resource[env[:2]] = {}
        lst = scopes.get(env[2:])
        if lst is None:
            lst = scopes[env[2:]] = []
        lst.append(_field(T2, span))
    parts: list[bytes] = []
    for (res, rschema), scopes in by_resource.items():
        rs: list[bytes] = [_field(T1, res)] if res else []
        for (scope, sschema), encoded in scopes.items():
            ss = [_field(T1, scope)] if scope else []
            ss.extend(encoded)
            if sschema:
                ss.append(_field(T3, sschema.encode()))
            rs.append(_field(T2, b"".join(ss)))
        if rschema:
            rs.append(_field(T3, rschema.encode()))
        parts.append(_field(T1, b"".join(rs)))
    return b"".join(parts)


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
