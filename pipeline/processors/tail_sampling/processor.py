"""The `tail_sampling` processor: groups spans by trace id across requests, waits
`decision_wait` after a trace's first span, decides with the policies and emits the
sampled traces as new batches.

One periodic tick (every second, or a quarter of `decision_wait` when shorter, as
the Collector's one-second ticker) decides every trace whose wait is over, in
chunks of `CHUNK_TRACES` traces with a yield to the event loop between chunks, so
no tick holds the loop. Waiting traces are kept in arrival order, which is also
their expiry order, so a tick reads a prefix. How spans join their waiting traces
is in `waiting.py`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

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
    encode_request,
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
from pipeline.processors.tail_sampling.waiting import WaitingTraces

SAMPLED_RECORD = {"otelpipe.tail_sampling": "sampled"}  # metadata of a decided record
_DECIDED = b"decided"  # trace id of the holder of a decided record

CHUNK_TRACES = 2000  # traces decided between two yields to the event loop ...
CHUNK_SPANS = 20_000  # ... or this many spans (their encoding is the costly part)
MAX_TICK = 1.0


class TailSamplingProcessor(WaitingTraces, Component, Consumer):
    def __init__(self, settings: ProcessorCreateSettings, config: TailSamplingConfig, *,
                 clock: Callable[[], float] = time.monotonic):
        self.next = settings.next_consumer
        self.id = str(settings.id)
        self.pipeline = settings.pipeline_id
        self.clock = clock
        self.wait = config.decision_wait
        self.tick = max(0.01, min(MAX_TICK, config.decision_wait / 4))
        facts = Facts()
        compiled = [(p, compile_policy(p, facts)) for p in config.policies]
        # Drop policies are evaluated first (a drop wins); the rest in their order.
        self.drops: list[Evaluator] = [e for p, e in compiled if p.type == "drop"]
        self.policies: list[Evaluator] = [e for p, e in compiled if p.type != "drop"]
        self.first_match = config.sample_on_first_match
        store = None
        if config.storage == "disk":
            assert config.directory is not None
            store = WaitingStore(
                queue_directory(config.directory, f"{self.id}.{self.pipeline}"),
                config.fsync, self.id)
        m = Instruments(settings.telemetry, self.id, self.pipeline,
                        [e.name for e in self.drops + self.policies])
        WaitingTraces.__init__(self, config, facts, store, m, settings.logger)
        self._closed = False  # shutdown() is done
        self._task: asyncio.Task[None] | None = None
        self._retry: collections.deque[tuple[Batch, list[TraceData]]] = collections.deque()
        self.last_tick_seconds = 0.0
        self.last_error: str | None = None

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
        """What the status page shows of this processor (read by shape, by its name)."""
        return {
            "processor": self.id, "pipeline": self.pipeline,
            "decision_wait_seconds": self.wait, "num_traces": self.config.num_traces,
            "storage": self.config.storage, "traces_in_memory": len(self.pending),
            "spans_in_memory": sum(len(t.spans) for t in self.pending.values())
            if len(self.pending) < 100_000 else None,
            **self.m.snapshot(), "last_tick_seconds": self.last_tick_seconds,
            "retry_batches": len(self._retry), "last_error": self.last_error}
