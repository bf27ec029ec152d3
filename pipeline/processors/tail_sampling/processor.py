"""The `tail_sampling` processor: groups spans by trace id across requests, waits
`decision_wait` after a trace's first span, decides with the policies and emits the
sampled traces as new batches.

One periodic tick (every second, or a quarter of `decision_wait` when shorter, as
the Collector's one-second ticker) decides every trace whose wait is over, in
chunks of `CHUNK_TRACES` traces with a yield to the event loop between chunks, so
no tick holds the loop. Waiting traces are kept in arrival order, which is also
their expiry order, so a tick reads a prefix and eviction (num_traces) takes the
oldest in O(1).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import time
from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf.message import DecodeError

from pipeline.component import (
    Component,
    ComponentHealth,
    Consumer,
    Host,
    ProcessorCreateSettings,
    Signal,
)
from pipeline.errors import PermanentError, RetryableError
from pipeline.exporterhelper.diskqueue import queue_directory
from pipeline.pdata.batch import Batch
from pipeline.processors.tail_sampling.config import TailSamplingConfig
from pipeline.processors.tail_sampling.durable import WaitingStore
from pipeline.processors.tail_sampling.encode import (
    Envelope,
    WireError,
    encode_request,
    span_slices,
)
from pipeline.processors.tail_sampling.facts import Facts, TraceData
from pipeline.processors.tail_sampling.policies import (
    SAMPLED_ONES,
    Decision,
    Evaluator,
    combine,
    compile_policy,
)
from pipeline.processors.tail_sampling.telemetry import Instruments
from pipeline.proto.otelpipe.tailsampling_pb2 import (
    Envelopes,
    SpanAttributes,
    SpanFacts,
)
from pipeline.proto.otelpipe.tailsampling_pb2 import Status as StatusView

SAMPLED_RECORD = {"otelpipe.tail_sampling": "sampled"}  # metadata of a decided record
_DECIDED = b"decided"  # trace id of the holder of a decided record

CHUNK_TRACES = 2000  # traces decided between two yields to the event loop ...
CHUNK_SPANS = 20_000  # ... or this many spans (their encoding is the costly part)
EVICTION_LOG_INTERVAL = 10.0  # seconds between two warnings about evictions
MAX_TICK = 1.0


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


class TailSamplingProcessor(Component, Consumer):
    def __init__(self, settings: ProcessorCreateSettings, config: TailSamplingConfig, *,
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.next = settings.next_consumer
        self.id = str(settings.id)
        self.pipeline = settings.pipeline_id
        self.log = settings.logger
        self.clock = clock
        self.wait = config.decision_wait
        self.tick = max(0.01, min(MAX_TICK, config.decision_wait / 4))
        self.facts = Facts()
        compiled = [(p, compile_policy(p, self.facts)) for p in config.policies]
        # Drop policies are evaluated first (a drop wins); the rest in their order.
        self.drops: list[Evaluator] = [e for p, e in compiled if p.type == "drop"]
        self.policies: list[Evaluator] = [e for p, e in compiled if p.type != "drop"]
        self.first_match = config.sample_on_first_match
        self.max_bytes = config.maximum_trace_size_bytes
        self.pending: dict[bytes, TraceData] = {}  # insertion order = arrival = expiry
        # Decided trace ids: the last num_traces (the Collector keeps decided traces in its
        # num_traces buffer, so late spans follow), then the configured decision caches.
        self.recent = _LRU(config.num_traces)
        self.sampled_cache = _LRU(config.decision_cache.sampled_cache_size)
        self.dropped_cache = _LRU(config.decision_cache.non_sampled_cache_size)
        self._room = asyncio.Event()
        self._stopping = False  # shutdown began: blocked senders are let go
        self._closed = False  # shutdown() is done
        self._task: asyncio.Task[None] | None = None
        self._retry: collections.deque[tuple[Batch, list[TraceData]]] = collections.deque()
        self._refs: dict[int, int] = {}  # storage disk: record key -> traces pending in it
        self.store: WaitingStore | None = None
        if config.storage == "disk":
            assert config.directory is not None
            self.store = WaitingStore(
                queue_directory(config.directory, f"{self.id}.{self.pipeline}"),
                config.fsync, self.id)
        self.m = Instruments(settings.telemetry, self.id, self.pipeline,
                             [e.name for e in self.drops + self.policies])
        self.last_tick_seconds = 0.0
        self.last_error: str | None = None
        self._evict_logged = float("-inf")
        self._envs: dict[tuple[bytes, bytes, bytes, bytes], Envelope] = {}

    # Lifecycle ---------------------------------------------------------------------------
    async def start(self, host: Host) -> None:
        if self.store is not None:
            records = await self.store.open()
            await self._recover(records)
        self._task = asyncio.get_running_loop().create_task(self._run(),
                                                           name=f"tail_sampling-{self.id}")

    def begin_shutdown(self) -> None:
        self._stopping = True
        self._room.set()

    async def shutdown(self) -> None:
        self._stopping = True
        self._room.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.store is None:
            # Nothing survives the process: decide what waits, with what has arrived
            # (or drop it, drop_pending_traces_on_shutdown).
            await self._retry_failed()
            if self.config.drop_pending_traces_on_shutdown:
                self.pending.clear()
            await self.decide_due(float("inf"))
            self._closed = True
            if self._retry:
                lost = sum(b.items for b, _ in self._retry)
                self.log.error("sampled spans could not be delivered before shutdown",
                               extra={"spans": lost})
                self._retry.clear()
        else:
            # Waiting traces stay on disk; they are decided after the restart.
            self._closed = True
            await self.store.close()
        self.m.in_memory.set(0)

    def health(self) -> ComponentHealth:
        return ComponentHealth(healthy=not self._retry, last_error=self.last_error,
                               queue_size=len(self.pending),
                               queue_capacity=self.config.num_traces)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            try:
                await self._retry_failed()
                await self.decide_due(self.clock())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a tick must never kill the processor
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.log.exception("tail sampling tick failed")

    # Ingest ------------------------------------------------------------------------------
    async def consume(self, batch: Batch) -> None:
        # While shutting down, upstream processors (batch) still flush into this one:
        # accept. After shutdown(), spans are decided at once (memory) or refused (the
        # store is closed).
        if self._closed and self.store is not None:
            raise RetryableError("tail_sampling has shut down", retry_after=1.0)
        # The spans are read from the request's bytes (serialized once if an upstream
        # processor decoded it) through two projections; the decoded message only when
        # a policy needs whole spans (slo).
        raw = batch.to_bytes()
        views = self._views(raw)
        if self.config.block_on_overflow:
            await self._wait_for_room(batch.message)
        key = None
        if self.store is not None:
            # Durable before anything is kept: a refused write leaves nothing behind.
            key = await self.store.put(batch.to_bytes(), batch.items)
        if views is not None:
            late, holder = self._ingest_views(views, raw, self.clock(), key)
        else:
            late, holder = self._ingest(batch.message, self.clock(), key, raw)
        if self._closed:
            await self.decide_due(float("inf"))
        if late:
            # Spans of decided, sampled traces follow the decision now; if the next
            # consumer refuses them they are retried at the next tick, like the traces.
            await self._deliver(Batch(Signal.TRACES, raw=encode_request(
                [(env, [sb]) for env, sb in late]), items=len(late)),
                                [holder] if holder is not None else [])

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

    async def _recover(self, records: list[tuple[int, bytes, Mapping[str, str]]]) -> None:
        """Traces found on disk after a restart: decided at the first tick; batches
        already decided sampled: sent at the first tick."""
        from pipeline.pdata.otlp import REQUEST_TYPES

        assert self.store is not None
        before = len(self.pending)
        decided = 0
        for i, (key, raw, meta) in enumerate(records):
            if meta.get("otelpipe.tail_sampling") == "sampled":
                holder = TraceData(_DECIDED, 0.0)
                holder.records = [key]
                self._refs[key] = 1
                self._retry.append((Batch(Signal.TRACES, raw=raw), [holder]))
                decided += 1
                continue
            msg = REQUEST_TYPES[Signal.TRACES]()
            try:
                msg.ParseFromString(raw)
            except Exception:
                self.log.warning("skipped an unreadable waiting-traces record",
                                 extra={"key": key})
                self.store.ack([key])
                continue
            self._ingest(msg, float("-inf"), key, raw)
            if i % 50 == 49:
                await asyncio.sleep(0)
        recovered = len(self.pending) - before
        if records:
            self.m.recovered.inc(recovered)
            self.log.info("recovered waiting traces from disk; they are decided now",
                          extra={"records": len(records), "traces": recovered,
                                 "decided_batches": decided,
                                 "corrupt_records": self.store.stats.corrupt_records})

    # Deciding ----------------------------------------------------------------------------
    def decide(self, t: TraceData, now: float, counts: dict[str, list[int]]) -> bool:
        """The final decision on one trace; each policy's vote is tallied in `counts`."""
        for ev in self.drops:
            d = ev.evaluate(t, now)
            counts[ev.name][1] += 1  # a drop policy never votes to sample
            if d is Decision.DROPPED:
                return False
        decisions: list[Decision] = []
        for ev in self.policies:
            d = ev.evaluate(t, now)
            counts[ev.name][0 if d in SAMPLED_ONES else 1] += 1
            decisions.append(d)
            if d is Decision.SAMPLED and self.first_match:
                break  # an earlier inverted not-sampled still wins, as in the Collector
        return combine(decisions)

    def decide_chunk(self, chunk: list[TraceData], now: float,
                     counts: dict[str, list[int]]) -> list[bool]:
        """`decide` over traces in order, one policy at a time over all of them (each
        policy sees the traces in the same order as trace by trace, so the stateful ones
        — rate limiting, composite — decide alike)."""
        if self.first_match or self.drops:
            return [self.decide(t, now, counts) for t in chunk]
        columns = []
        for ev in self.policies:
            col = ev.batch(chunk, now)
            yes = col.count(Decision.SAMPLED) + col.count(Decision.INVERT_SAMPLED)
            c = counts[ev.name]
            c[0] += yes
            c[1] += len(col) - yes
            columns.append(col)
        if not columns:
            return [False] * len(chunk)
        return [combine(ds) for ds in zip(*columns, strict=True)]

    async def decide_due(self, now: float) -> int:
        """Decide every trace whose decision_wait is over at `now`; emit the sampled ones.
        Returns the number of traces decided."""
        pending = self.pending
        deadline = now - self.wait
        done = 0
        while pending:
            started = time.perf_counter()
            chunk: list[TraceData] = []
            spans = 0
            for t in pending.values():
                if t.first_seen > deadline or len(chunk) >= CHUNK_TRACES \
                        or spans >= CHUNK_SPANS:
                    break
                chunk.append(t)
                spans += len(t.spans)
            if not chunk:
                break
            for t in chunk:
                del pending[t.trace_id]
            self._room.set()
            sampled: list[TraceData] = []
            wall = self.clock()
            counts = self.m.policy_counts()
            for t, keep in zip(chunk, self.decide_chunk(chunk, wall, counts), strict=True):
                self.recent.put(t.trace_id, keep)
                if keep:
                    self.sampled_cache.put(t.trace_id, True)
                    sampled.append(t)
                else:
                    self.dropped_cache.put(t.trace_id, False)
                    self._release(t)
            self.m.add_policy_counts(counts)
            self.m.traces_sampled.inc(len(sampled))
            self.m.traces_dropped.inc(len(chunk) - len(sampled))
            self.m.spans_sampled.inc(sum(len(t.spans) for t in sampled))
            self.m.in_memory.set(len(pending))
            done += len(chunk)
            if sampled:
                await self._emit(sampled)
            self.last_tick_seconds = time.perf_counter() - started
            self.m.latency.observe(self.last_tick_seconds)
            if len(chunk) >= CHUNK_TRACES or spans >= CHUNK_SPANS:
                await asyncio.sleep(0)
        return done

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

    # Emitting ----------------------------------------------------------------------------
    async def _emit(self, traces: list[TraceData]) -> None:
        limit = self.config.max_batch_spans
        group: list[TraceData] = []
        n = 0
        for t in traces:
            if group and n + len(t.spans) > limit:
                await self._send(group, n)
                group, n = [], 0
            group.append(t)
            n += len(t.spans)
        if group:
            await self._send(group, n)

    async def _send(self, traces: list[TraceData], n: int) -> None:
        raw = encode_request([g for t in traces for g in t.groups()])
        batch = Batch(Signal.TRACES, raw=raw, items=n)
        for t in traces:
            t.spans = []  # the batch holds them now
            t.envs = None
        await self._deliver(batch, traces)

    async def _deliver(self, batch: Batch, traces: list[TraceData]) -> None:
        """Hand sampled spans on; if refused for now, keep them for the next tick."""
        if not await self._try(batch, traces):
            self._retry.append((batch, await self._persist(batch, traces)))

    async def _try(self, batch: Batch, traces: list[TraceData]) -> bool:
        """True when done with the batch (delivered, or refused for good)."""
        try:
            await self.next.consume(batch)
        except RetryableError as exc:
            # Acknowledged upstream already: kept, tried again at the next tick.
            self.last_error = str(exc)
            self.m.emit_failures.inc()
            return False
        except PermanentError as exc:
            self.last_error = str(exc)
            self.m.emit_failures.inc()
            self.log.error("the next consumer refused sampled spans for good; they are "
                           "dropped", extra={"spans": batch.items, "error": str(exc)})
        else:
            self.last_error = None
        for t in traces:
            self._release(t)
        return True

    async def _persist(self, batch: Batch, traces: list[TraceData]) -> list[TraceData]:
        """storage disk: a decided batch waiting for a retry is written as one record
        marked sampled (its traces' records are then acknowledged), so a restart sends it
        as decided instead of deciding its spans again."""
        if self.store is None or any(t.trace_id == _DECIDED for t in traces):
            return traces
        try:
            key = await self.store.put(batch.to_bytes(), batch.items, SAMPLED_RECORD)
        except Exception:  # the spans' own records still hold them
            return traces
        for t in traces:
            self._release(t)
        holder = TraceData(_DECIDED, 0.0)
        holder.records = [key]
        self._refs[key] = 1
        return [holder]

    async def _retry_failed(self) -> None:
        while self._retry:
            batch, traces = self._retry[0]
            if not await self._try(batch, traces):
                return  # still refused: keep it first, try again next tick
            self._retry.popleft()

    # Status ------------------------------------------------------------------------------
    def sampling_status(self) -> dict[str, Any]:
        """What the status page shows of this processor (`SamplingStatusSource`)."""
        return {
            "processor": self.id, "pipeline": self.pipeline,
            "decision_wait_seconds": self.wait, "num_traces": self.config.num_traces,
            "storage": self.config.storage, "traces_in_memory": len(self.pending),
            "spans_in_memory": sum(len(t.spans) for t in self.pending.values())
            if len(self.pending) < 100_000 else None,
            **self.m.snapshot(), "last_tick_seconds": self.last_tick_seconds,
            "retry_batches": len(self._retry), "last_error": self.last_error}


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
