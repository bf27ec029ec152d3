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

import itertools
from collections.abc import Iterable
from typing import Any

from pipeline.pdata.wire import SMALL_VARINTS, read_varint, varint

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


_SPAN_HEADS: dict[int, bytes] = {}  # span length -> its key and length (memoised)
SPAN_HEADS = 1 << 16


def _framed(spans: list[bytes]) -> tuple[list[bytes], int]:
    """Spans as repeated field 2 (key, length, bytes each) for one join, and their size;
    the per-span work (lengths, heads, interleaving) done by C loops (map, slices)."""
    lens = list(map(len, spans))
    heads = _SPAN_HEADS
    missing = set(lens).difference(heads)
    if missing:
        if len(heads) + len(missing) > SPAN_HEADS:
            heads.clear()
        for n in missing:
            heads[n] = T2 + (SMALL_VARINTS[n] if n < 0x80 else varint(n))
    hs = list(map(heads.__getitem__, lens))
    parts: list[bytes] = [b""] * (2 * len(spans))
    parts[0::2] = hs
    parts[1::2] = spans
    return parts, sum(lens) + sum(map(len, hs))


def encode_request(groups: Iterable[tuple[Any, list[bytes]]]) -> bytes:
    """`(envelope, spans)` groups, envelope = an `Envelope` or its key (resource bytes,
    resource schema url, scope bytes, scope schema url; schema URLs as UTF-8 bytes), as
    one request: spans of one resource and scope together, in first-seen order.

    The spans' bytes are not copied field by field: each is framed (key, length), the
    sizes of the enclosing ScopeSpans and ResourceSpans are summed, and the whole
    request is written by one `bytes.join`."""
    by_key: dict[Any, list[list[bytes]]] = {}
    for env, spans in groups:
        if not spans:
            continue
        k = env.key if type(env) is Envelope else env
        lists = by_key.get(k)
        if lists is None:
            by_key[k] = [spans]
        else:
            lists.append(spans)
    by_resource: dict[tuple[bytes, bytes], list[tuple[list[bytes], int]]] = {}
    for (res, rschema, scope, sschema), lists in by_key.items():
        spans = lists[0] if len(lists) == 1 else list(itertools.chain.from_iterable(lists))
        parts, size = _framed(spans)
        if scope:
            parts[:0] = (_head(T1, len(scope)), scope)
            size += len(parts[0]) + len(scope)
        if sschema:
            tail = _head(T3, len(sschema))
            parts += (tail, sschema)
            size += len(tail) + len(sschema)
        head = _head(T2, size)
        parts.insert(0, head)
        by_resource.setdefault((res, rschema), []).append((parts, size + len(head)))
    out: list[bytes] = []
    for (res, rschema), blocks in by_resource.items():
        rparts: list[bytes] = [_head(T1, len(res)), res] if res else []
        for parts, _ in blocks:
            rparts += parts
        if rschema:
            rparts += (_head(T3, len(rschema)), rschema)
        size = sum(size for _, size in blocks) + (len(rparts[0]) + len(res) if res else 0) \
            + (len(rparts[-2]) + len(rschema) if rschema else 0)
        out.append(_head(T1, size))
        out += rparts
    return b"".join(out)


class WireError(ValueError):
    """The bytes are not the protobuf the walk expects (the caller re-encodes instead)."""


def _fields(buf: bytes, pos: int, end: int, want: int) -> list[tuple[int, int]]:
    """(start, end) of every length-delimited field number `want` in buf[pos:end]."""
    out: list[tuple[int, int]] = []
    rv = read_varint  # IndexError when truncated, ValueError past ten bytes
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
    except ValueError as exc:
        raise WireError(str(exc)) from None
