"""Edit the resource of every group of a batch without touching the items.

The resource part of an OTLP request is small; spans, records and points are most of
it. `ResourceEditor.apply(batch)` changes only resources:

- a serialized batch (the usual case): the request is scanned at the wire level --
  each `Resource{Spans,Logs,Metrics}` (field 1 of the request) is split into its
  `resource` field (field 1 in all three) and the rest, which is copied as bytes. Only
  the `Resource` message is parsed, edited and serialized again, and the result is
  cached by the resource's bytes (a service sends the same resource in every request),
  so the common case is a dictionary hit and a byte join;
- a decoded batch: the messages' resources are edited in place;
- a batch of Python log records (`LogGroup`s): each group's resource dict.

`apply_async` edits a big request (over 256 KiB, or over 1000 decoded resources) in
a thread, so that no request holds the event loop.

The edit is a function of the resource alone (`Edit`: repeated KeyValue -> changed),
which is what makes the cache sound.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from pipeline.component import Signal
from pipeline.pdata.attractions import Edit
from pipeline.pdata.batch import Batch
from pipeline.pdata.logrecords import encode_attributes
from pipeline.pdata.wire import ld, read_varint

__all__ = ["ResourceEditor", "WireError"]

CACHE_ENTRIES = 256
CACHE_KEY_BYTES = 16 * 1024  # larger resources are edited every time, never cached
# A request this large, or a decoded one with this many resources, is edited in a
# thread (20,000 distinct resources in 1.3 MB take ~150 ms: more than a loop may stall).
THREAD_BYTES = 256 * 1024
THREAD_RESOURCES = 1000


class WireError(ValueError):
    """The request is not valid protobuf."""


def _varint(buf: bytes, i: int, end: int) -> tuple[int, int]:
    """`read_varint` within `buf[:end]` (the enclosing message's end)."""
    try:
        n, after = read_varint(buf, i)
    except (IndexError, ValueError):
        raise WireError("truncated varint") from None
    if after > end:
        raise WireError("truncated varint")
    return n, after


def _fields(buf: bytes, start: int, end: int) -> list[tuple[int, int, int, int, int]]:
    """(field number, wire type, field start, payload start, field end) of each field."""
    out = []
    i = start
    while i < end:
        fstart = i
        key, i = _varint(buf, i, end)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise WireError("field number 0")
        if wt == 0:
            _, i = _varint(buf, i, end)
            pstart = i
        elif wt == 2:
            n, i = _varint(buf, i, end)
            pstart = i
            i += n
        elif wt == 1:
            pstart = i
            i += 8
        elif wt == 5:
            pstart = i
            i += 4
        else:
            raise WireError(f"unsupported wire type {wt}")
        if i > end:
            raise WireError("field runs past the end")
        out.append((num, wt, fstart, pstart, i))
    return out


def _py(v: Any) -> Any:
    """A Python value of an AnyValue as `LogGroup` dicts hold them (bytes stay bytes)."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_py(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _py(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


class ResourceEditor:
    """Applies one `Edit` to the resource attributes of batches."""

    def __init__(self, edit: Edit):
        self.edit = edit
        self._cache: OrderedDict[bytes, bytes | None] = OrderedDict()

    async def apply_async(self, batch: Batch) -> Batch:
        """`apply`, in a thread for a big request (with a cache of its own: the shared
        one belongs to the event loop's thread)."""
        if batch.logs is None and self._big(batch):
            worker = ResourceEditor(self.edit)
            return await asyncio.to_thread(worker.apply, batch)
        return self.apply(batch)

    @staticmethod
    def _big(batch: Batch) -> bool:
        if batch.has_raw:
            return len(batch.to_bytes()) > THREAD_BYTES
        return len(_resources(batch.signal, batch.message)) > THREAD_RESOURCES

    def apply(self, batch: Batch) -> Batch:
        """The batch with its resources edited: the same object when nothing changed or
        it holds records, else a new batch over the edited message or new bytes (the
        original batch must not be used after). Raises WireError on a malformed
        request."""
        if batch.logs is not None:
            self._groups(batch)
            return batch
        # The item count does not change: carry it over (counting again would parse the
        # request, or serialize a decoded one).
        if batch.decoded:
            msg = batch.message
            items = _items(batch)
            changed = False
            for r in _resources(batch.signal, msg):
                changed = self.edit(r.resource.attributes) or changed
            if not changed:
                return batch
            return Batch(batch.signal, message=msg, items=items, metadata=batch.metadata)
        raw = batch.to_bytes()
        new = self.edit_bytes(raw)
        if new is raw:
            return batch
        return Batch(batch.signal, raw=new, items=_items(batch), metadata=batch.metadata)

    def _groups(self, batch: Batch) -> None:
        groups = batch.mutable_logs()
        assert groups is not None
        for g in groups:
            res = Resource.FromString(encode_attributes(g.resource, tag=b"\x0a"))
            if self.edit(res.attributes):
                g.resource = {kv.key: _py(kv.value) for kv in res.attributes}

    def edit_bytes(self, raw: bytes) -> bytes:
        """The request with each resource edited; `raw` itself when nothing changed."""
        parts: list[bytes] = []
        changed = False
        pos = 0
        for num, wt, fstart, pstart, fend in _fields(raw, 0, len(raw)):
            if num != 1 or wt != 2:
                continue
            new = self._group(raw, pstart, fend)
            if new is not None:
                parts.append(raw[pos:fstart])
                parts.append(ld(b"\x0a", new))
                pos = fend
                changed = True
        if not changed:
            return raw
        parts.append(raw[pos:])
        return b"".join(parts)

    def _group(self, raw: bytes, start: int, end: int) -> bytes | None:
        """A new Resource* payload, or None when its resource stays as it is."""
        fields = _fields(raw, start, end)
        res_fields = [f for f in fields if f[0] == 1 and f[1] == 2]
        if len(res_fields) == 1:
            resource = raw[res_fields[0][3]:res_fields[0][4]]
        else:  # absent (an empty resource) or repeated (protobuf merges them)
            resource = b"".join(raw[f[3]:f[4]] for f in res_fields)
        new = self._resource(resource)
        if new is None:
            if len(res_fields) <= 1:
                return None
            new = resource
        rest = [raw[f[2]:f[4]] for f in fields if not (f[0] == 1 and f[1] == 2)]
        return ld(b"\x0a", new) + b"".join(rest)

    def _resource(self, data: bytes) -> bytes | None:
        """The edited Resource bytes, or None when the edit changes nothing."""
        cache = self._cache
        if data in cache:
            cache.move_to_end(data)
            return cache[data]
        try:
            res = Resource.FromString(data)
        except DecodeError as exc:
            raise WireError(f"undecodable resource: {exc}") from exc
        out = res.SerializeToString() if self.edit(res.attributes) else None
        if len(data) <= CACHE_KEY_BYTES:
            cache[data] = out
            if len(cache) > CACHE_ENTRIES:
                cache.popitem(last=False)
        return out


def _items(batch: Batch) -> int | None:
    """The batch's item count (cached by the receiver, as a rule); None when its items
    do not parse (whoever reads them next reports it)."""
    try:
        return batch.items
    except DecodeError:
        return None


def _resources(signal: Signal, msg: Any) -> Any:
    if signal is Signal.TRACES:
        return msg.resource_spans
    if signal is Signal.LOGS:
        return msg.resource_logs
    return msg.resource_metrics
