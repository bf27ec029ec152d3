"""Sampled spans back into one OTLP `ExportTraceServiceRequest`, encoded by hand.

Spans are kept as the decoded messages they arrived in, with an *envelope*: the
serialized Resource and InstrumentationScope and their schema URLs. Emitting
serializes only the sampled spans and writes the envelopes around them, grouping
spans that share a resource and scope (protobuf fields, by number):

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


def encode_request(spans: Iterable[tuple[Any, Any]]) -> bytes:
    """`(envelope, span)` pairs, envelope = (resource bytes, resource schema url,
    scope bytes, scope schema url), as one request."""
    by_resource: dict[tuple[bytes, str], dict[tuple[bytes, str], list[bytes]]] = {}
    for env, span in spans:
        scopes = by_resource.get(env[:2])
        if scopes is None:
            scopes = by_resource[env[:2]] = {}
        lst = scopes.get(env[2:])
        if lst is None:
            lst = scopes[env[2:]] = []
        lst.append(_field(T2, span.SerializeToString()))
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
