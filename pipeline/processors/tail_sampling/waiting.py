"""The traces waiting for their decision (`WaitingTraces`, the state the
`tail_sampling` processor builds on): the spans of each request added to their
traces (from the request's bytes through two projections, or from the decoded
message when a policy needs whole spans), the ids already decided (late spans follow
the decision), eviction at `num_traces` or blocking until there is room, the
`maximum_trace_size_bytes` limit, and with `storage: disk` which records still hold
a waiting trace.

Waiting traces are kept in arrival order, which is also their expiry order, so
eviction takes the oldest in O(1).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from typing import Any

from google.protobuf.message import DecodeError

from pipeline.errors import RetryableError
from pipeline.processors.tail_sampling.config import TailSamplingConfig
from pipeline.processors.tail_sampling.durable import WaitingStore
from pipeline.processors.tail_sampling.encode import Envelope, WireError, span_slices
from pipeline.processors.tail_sampling.facts import Facts, TraceData
from pipeline.processors.tail_sampling.telemetry import Instruments
from pipeline.proto.otelpipe.tailsampling_pb2 import (
    Envelopes,
    SpanAttributes,
    SpanFacts,
)
from pipeline.proto.otelpipe.tailsampling_pb2 import Status as StatusView

EVICTION_LOG_INTERVAL = 10.0  # seconds between two warnings about evictions

ENVELOPES = 10_000  # distinct (resource, scope) envelopes shared across requests
_STATUS_BITS: dict[bytes, int] = {b"": 1, b"\x18\x00": 1, b"\x18\x01": 2, b"\x18\x02": 4}
STATUS_CACHE = 1024  # serialized statuses (codes with their messages) remembered


def _status_bit(status: bytes) -> int:
    """The status bit (1 << code: UNSET 1, OK 2, ERROR 4) of a serialized Status."""
    try:
        code = StatusView.FromString(status).code
    except DecodeError:
        code = 0
    bit = 1 << (code if 0 <= code < 3 else 0)
    if len(_STATUS_BITS) < STATUS_CACHE:
        _STATUS_BITS[status] = bit
    return bit


class _LRU:
    """Trace ids and their decision, at most `size` (the oldest go first)."""

    __slots__ = ("d", "size")

    def __init__(self, size: int):
        self.size = size
        self.d: collections.OrderedDict[bytes, bool] = collections.OrderedDict()

    def put(self, key: bytes, value: bool) -> None:
        if self.size <= 0:
            return
        d = self.d
        d[key] = value
        d.move_to_end(key)
        if len(d) > self.size:
            d.popitem(last=False)

    def get(self, key: bytes) -> bool | None:
        return self.d.get(key)


class WaitingTraces:
    """Traces waiting for their decision and the ids already decided."""

    def __init__(self, config: TailSamplingConfig, facts: Facts, store: WaitingStore | None,
                 m: Instruments, log: logging.Logger):
        self.config = config
        self.facts = facts
        self.store = store
        self.m = m
        self.log = log
        self.max_bytes = config.maximum_trace_size_bytes
        self.pending: dict[bytes, TraceData] = {}  # insertion order = arrival = expiry
        # Decided trace ids: the last num_traces (the Collector keeps decided traces in its
        # num_traces buffer, so late spans follow), then the configured decision caches.
        self.recent = _LRU(config.num_traces)
        self.sampled_cache = _LRU(config.decision_cache.sampled_cache_size)
        self.dropped_cache = _LRU(config.decision_cache.non_sampled_cache_size)
        self._room = asyncio.Event()
        self._stopping = False  # shutdown began: blocked senders are let go
        self._refs: dict[int, int] = {}  # storage disk: record key -> traces pending in it
        self._evict_logged = float("-inf")
        self._envs: dict[tuple[bytes, bytes, bytes, bytes], Envelope] = {}

    def _decided(self, tid: bytes) -> bool | None:
        d = self.recent.get(tid)
        if d is None:
            d = self.sampled_cache.get(tid)
            if d is None:
                d = self.dropped_cache.get(tid)
        return d

    def _views(self, raw: bytes) -> tuple[Any, Any] | None:
        """The request's two projections (spans as bytes, what policies read), parsed by
        upb; None when the policies need the whole span (slo) or the bytes are not read."""
        if self.facts.slo:
            return None
        try:
            return Envelopes.FromString(raw), SpanFacts.FromString(raw)
        except DecodeError:
            return None

    def _ingest_views(self, views: tuple[Any, Any], raw: bytes, now: float, key: int | None,
                      ) -> tuple[list[tuple[Any, Any]], TraceData | None]:
        """`_ingest` over the projections: no Python walk over the wire, no re-encoding
        of resources and scopes. A span's attributes are parsed (`SpanAttributes`, one
        map lookup per watched key) only when a policy may match in it: its bytes hold
        one of the exact values looked for, or a test has no such values."""
        pending = self.pending
        facts = self.facts
        watch = facts.active(raw)
        may_match = facts.span_filter(watch) if watch else None
        map_bits = facts.map_bits
        attrs_of = SpanAttributes.FromString
        state = facts.state_bits if facts.trace_state else None
        status_bit = _STATUS_BITS.get
        sizes = facts.need_bytes or self.max_bytes > 0
        decided = self._decided
        intern = self._env
        new = 0
        late: list[tuple[Any, Any]] = []
        late_dropped: list[tuple[Any, Any]] = []
        touched: set[bytes] = set()
        track = key is not None or self.max_bytes > 0
        envs, spanfacts = views
        for er, fr in zip(envs.resources, spanfacts.resources, strict=True):
            rbits = map_bits(fr.resource.attributes, watch) if watch else 0
            res, rschema = er.resource, er.schema_url
            for es, fs in zip(er.scopes, fr.scopes, strict=True):
                env = intern(res, rschema, es.scope, es.schema_url)
                for sb, span in zip(es.spans, fs.spans, strict=True):
                    tid = span.trace_id
                    t = pending.get(tid)
                    if t is None:
                        d = decided(tid)
                        if d is not None:  # late: follows the decision
                            (late if d else late_dropped).append((env, sb))
                            continue
                        t = pending[tid] = TraceData(tid, now)
                        new += 1
                    if t.env is not env or t.envs is not None:
                        t.add(env, sb)
                    else:
                        t.spans.append(sb)
                    v = span.start
                    if v < t.start:
                        t.start = v
                    v = span.end
                    if v > t.end:
                        t.end = v
                    st = span.status
                    bit = status_bit(st)
                    t.status |= bit if bit is not None else _status_bit(st)
                    bits = rbits
                    if watch and (may_match is None or may_match(sb)):
                        bits |= map_bits(attrs_of(sb).attributes, watch)
                    if state is not None:
                        bits |= state(span.trace_state)
                    if bits:
                        t.facts |= bits
                    if sizes:
                        t.nbytes += len(sb)
                    if track:
                        touched.add(tid)
        holder = self._hold(key, touched, bool(late)) if key is not None else None
        if self.max_bytes:
            self._drop_oversized(touched)
        self._ingested(new, len(late), len(late_dropped))
        return late, holder

    def _env(self, res: bytes, rschema: bytes, scope: bytes, sschema: bytes) -> Envelope:
        """The one envelope of a resource and scope (shared by their spans across
        requests; at most ENVELOPES remembered, then they start over)."""
        k = (res, rschema, scope, sschema)
        env = self._envs.get(k)
        if env is None:
            if len(self._envs) >= ENVELOPES:
                self._envs.clear()
            env = self._envs[k] = Envelope(k)
        return env

    def _ingest(self, msg: Any, now: float, key: int | None, raw: bytes | None = None,
                ) -> tuple[list[tuple[Any, Any]], TraceData | None]:
        """Add the spans of a request to their waiting traces. Returns the late spans of
        sampled traces to forward (and, storage disk, what holds their record)."""
        pending = self.pending
        facts = self.facts
        watch = facts.active(raw)
        span_facts = facts.span if (watch or facts.trace_state or facts.slo) else None
        sizes = facts.need_bytes or self.max_bytes > 0
        decided = self._decided
        new = 0
        late: list[tuple[Any, Any]] = []
        late_dropped = 0
        touched: set[bytes] = set()
        track = key is not None or self.max_bytes > 0
        cut = _cut(msg, raw)
        for ri, rs in enumerate(msg.resource_spans):
            env_r = _resource_env(rs)
            res_attrs = rs.resource.attributes
            rbits = facts.resource(res_attrs, watch) if watch else 0
            rtexts = facts.resource_texts(res_attrs) if facts.slo else {}
            cut_r = cut[ri]
            for si, ss in enumerate(rs.scope_spans):
                env = self._env(*env_r, *_scope_env(ss))
                encoded = cut_r[si]
                for span, sb in zip(ss.spans, encoded, strict=True):
                    tid = span.trace_id
                    t = pending.get(tid)
                    if t is None:
                        d = decided(tid)
                        if d is not None:
                            if d:
                                late.append((env, sb))
                            else:
                                late_dropped += 1
                            continue
                        t = pending[tid] = TraceData(tid, now)
                        new += 1
                    if t.env is not env or t.envs is not None:
                        t.add(env, sb)
                    else:
                        t.spans.append(sb)
                    v = span.start_time_unix_nano
                    if v < t.start:
                        t.start = v
                    v = span.end_time_unix_nano
                    if v > t.end:
                        t.end = v
                    v = span.status.code
                    t.status |= 1 << (v if 0 <= v < 3 else 0)
                    if span_facts is not None:
                        t.facts |= rbits | span_facts(span, rtexts, watch)
                    elif rbits:
                        t.facts |= rbits
                    if sizes:
                        t.nbytes += len(sb)
                    if track:
                        touched.add(tid)
        holder = self._hold(key, touched, bool(late)) if key is not None else None
        if self.max_bytes:
            self._drop_oversized(touched)
        self._ingested(new, len(late), late_dropped)
        return late, holder

    def _ingested(self, new: int, late_sampled: int, late_dropped: int) -> None:
        m = self.m
        m.late_sampled.inc(late_sampled)
        m.late_dropped.inc(late_dropped)
        m.new_traces.inc(new)
        n = len(self.pending)
        if n > self.config.num_traces and not self.config.block_on_overflow:
            self._evict(n - self.config.num_traces)
        m.in_memory.set(len(self.pending))

    def _drop_oversized(self, touched: set[bytes]) -> None:
        """maximum_trace_size_bytes: a trace past it is dropped now, and so are its
        later spans (remembered as not sampled)."""
        pending = self.pending
        n = 0
        for tid in touched:
            t = pending.get(tid)
            if t is not None and t.nbytes > self.max_bytes:
                del pending[tid]
                self.recent.put(tid, False)
                self.dropped_cache.put(tid, False)
                self._release(t)
                n += 1
        if n:
            self.m.oversized.inc(n)

    def _hold(self, key: int, touched: set[bytes], late: bool) -> TraceData | None:
        """storage disk: the record `key` stays until every trace in it is done (and the
        late spans in it delivered: the returned holder)."""
        assert self.store is not None
        if not touched and not late:
            self.store.ack([key])
            return None
        pending = self.pending
        for tid in touched:
            t = pending[tid]
            if t.records is None:
                t.records = [key]
            else:
                t.records.append(key)
        holder = None
        if late:
            holder = TraceData(b"", 0.0)
            holder.records = [key]
        self._refs[key] = len(touched) + late
        return holder

    def _evict(self, n: int) -> None:
        """Drop the oldest undecided traces (the Collector's dropped-too-early)."""
        pending = self.pending
        for tid in list(itertools.islice(pending, n)):
            t = pending.pop(tid)
            self._release(t)
        self.m.evicted.inc(n)
        now = time.monotonic()
        if now - self._evict_logged >= EVICTION_LOG_INTERVAL:
            self._evict_logged = now
            self.log.warning("num_traces reached: dropping the oldest traces before their "
                             "decision (counted in ..._evicted_traces_total)",
                             extra={"traces": n, "num_traces": self.config.num_traces})

    async def _wait_for_room(self, msg: Any) -> None:
        limit = self.config.num_traces
        pending = self.pending
        while True:
            room = limit - len(pending)
            new = self._new_traces(msg, max(room, 0) + 1)
            if new == 0 or new <= room or not pending:
                return
            if self._stopping:
                raise RetryableError("tail_sampling is shutting down", retry_after=1.0)
            self.m.blocked.inc()
            self._room.clear()
            await self._room.wait()

    def _new_traces(self, msg: Any, stop: int) -> int:
        """How many trace ids of the request are new (counting stops at `stop`)."""
        seen: set[bytes] = set()
        pending = self.pending
        for rs in msg.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    tid = span.trace_id
                    if tid not in pending and tid not in seen and self._decided(tid) is None:
                        seen.add(tid)
                        if len(seen) >= stop:
                            return len(seen)
        return len(seen)

    def _release(self, t: TraceData) -> None:
        """A trace is done with (delivered, dropped or evicted): ack its records."""
        if t.records is None or self.store is None:
            return
        refs = self._refs
        done = []
        for k in t.records:
            n = refs.get(k, 0) - 1
            if n <= 0:
                refs.pop(k, None)
                done.append(k)
            else:
                refs[k] = n
        t.records = None
        self.store.ack(done)


def _cut(msg: Any, raw: bytes | None) -> list[list[list[bytes]]]:
    """Each span's encoded bytes, [resource][scope][span], cut from the request's bytes
    when they match the decoded message, else encoded span by span."""
    if raw is not None:
        try:
            cut = span_slices(raw)
        except WireError:
            cut = None
        if cut is not None and len(cut) == len(msg.resource_spans) and all(
                len(cr) == len(rs.scope_spans) and all(
                    len(cs) == len(ss.spans) for cs, ss in zip(cr, rs.scope_spans,
                                                               strict=True))
                for cr, rs in zip(cut, msg.resource_spans, strict=True)):
            return cut
    return [[[sp.SerializeToString() for sp in ss.spans] for ss in rs.scope_spans]
            for rs in msg.resource_spans]


def _resource_env(rs: Any) -> tuple[bytes, bytes]:
    return (rs.resource.SerializeToString() if rs.HasField("resource") else b"",
            rs.schema_url.encode())


def _scope_env(ss: Any) -> tuple[bytes, bytes]:
    return (ss.scope.SerializeToString() if ss.HasField("scope") else b"",
            ss.schema_url.encode())
