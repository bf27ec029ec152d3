"""Grouping across requests, the tick, late spans, num_traces overflow, delivery
failures and durable waiting (storage disk, in process)."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.component import Signal
from pipeline.errors import RetryableError
from pipeline.pdata.batch import Batch
from pipeline.processors.tail_sampling.config import TailSamplingConfig
from pipeline.processors.tail_sampling.processor import TailSamplingProcessor
from pipeline.telemetry.metrics import Telemetry
from tests.support import Sink, aeventually, processor_settings
from tests.unit.processors.tail_sampling.spans import S, batch, sampled, trace_ids
from tests.unit.processors.tail_sampling.test_policies import Clock, p

ERRORS = [p("errors", "status_code", status_codes=["ERROR"])]


def make(sink: Any, telemetry: Telemetry | None = None, clock: Any = None,
         policies: list[dict[str, Any]] | None = None, **cfg: Any) -> TailSamplingProcessor:
    settings = processor_settings("tail_sampling", telemetry, next_consumer=sink,
                                  signal=Signal.TRACES)
    config = TailSamplingConfig.model_validate({"policies": policies or ERRORS, **cfg})
    kw = {"clock": clock} if clock is not None else {}
    return TailSamplingProcessor(settings, config, **kw)


class _Host:
    def components(self) -> dict[Any, Any]:
        return {}

    def pipelines(self) -> dict[str, Any]:
        return {}

    def started(self) -> bool:
        return True


async def test_spans_of_one_trace_in_requests_seconds_apart_are_decided_together() -> None:
    sink = Sink()
    proc = make(sink, decision_wait="1.5s")
    await proc.start(_Host())  # type: ignore[arg-type]
    try:
        await proc.consume(batch([S(1, "root"), S(2, "root")]))
        await asyncio.sleep(1.0)
        # The error arrives a second later, in another request, for trace 1 only.
        await proc.consume(batch([S(1, "child", status="ERROR"), S(2, "child")]))
        assert sink.batches == []
        await aeventually(lambda: sink.items == 2, what="trace 1 emitted")
        assert sorted(sp.name for b in sink.batches for rs in b.message.resource_spans
                      for ss in rs.scope_spans for sp in ss.spans) == ["child", "root"]
        assert sampled(sink.batches) == {1}
        assert proc.pending == {}
    finally:
        await proc.shutdown()


async def test_the_decision_waits_decision_wait_after_the_first_span() -> None:
    clock = Clock(100.0)
    sink = Sink()
    proc = make(sink, clock=clock, decision_wait="10s")
    await proc.consume(batch([S(1, status="ERROR")]))
    clock.t = 105.0
    await proc.consume(batch([S(1, "late-but-waiting"), S(2, status="ERROR")]))
    assert await proc.decide_due(109.9) == 0
    assert await proc.decide_due(110.0) == 1  # trace 1 only: trace 2 came at 105
    assert trace_ids(sink.batches) == [1, 1]
    assert await proc.decide_due(115.0) == 1
    assert trace_ids(sink.batches) == [1, 1, 2]


async def test_late_spans_follow_the_decision() -> None:
    tel = Telemetry()
    sink = Sink()
    proc = make(sink, tel, clock=Clock(), num_traces=10)
    await proc.consume(batch([S(1, status="ERROR"), S(2)]))
    await proc.decide_due(float("inf"))
    assert trace_ids(sink.batches) == [1]
    # Late spans: trace 1's are forwarded at once, trace 2's dropped; 3 is new.
    await proc.consume(batch([S(1, "late"), S(2, "late"), S(3, status="ERROR")]))
    assert trace_ids(sink.batches) == [1, 1]
    assert list(proc.pending) == [(3).to_bytes(16, "big")]
    st = proc.sampling_status()
    assert (st["late_spans_sampled"], st["late_spans_dropped"]) == (1, 1)
    assert tel.registry.get_sample_value(
        "otelpipe_processor_tail_sampling_late_spans_total",
        {"processor": "tail_sampling", "pipeline": "traces", "sampled": "true"}) == 1


async def test_decision_cache_outlives_num_traces() -> None:
    sink = Sink()
    proc = make(sink, clock=Clock(), num_traces=2,
                decision_cache={"sampled_cache_size": 100, "non_sampled_cache_size": 100})
    await proc.consume(batch([S(t, status="ERROR" if t % 2 else "UNSET")
                              for t in range(1, 7)]))
    # num_traces 2: traces 1..4 were evicted before their decision.
    await proc.decide_due(float("inf"))
    assert sampled(sink.batches) == {5}
    await proc.consume(batch([S(5, "late"), S(6, "late")]))
    assert trace_ids(sink.batches) == [5, 5]
    assert proc.pending == {}


async def test_overflow_evicts_the_oldest_traces() -> None:
    tel = Telemetry()
    sink = Sink()
    proc = make(sink, tel, clock=Clock(), num_traces=3)
    for t in range(1, 6):
        await proc.consume(batch([S(t, status="ERROR")]))
    assert [int.from_bytes(k, "big") for k in proc.pending] == [3, 4, 5]
    assert proc.sampling_status()["evicted_traces"] == 2
    await proc.decide_due(float("inf"))
    assert sampled(sink.batches) == {3, 4, 5}


async def test_overflow_blocks_with_block_on_overflow() -> None:
    clock = Clock(0.0)
    sink = Sink()
    proc = make(sink, clock=clock, num_traces=2, block_on_overflow=True, decision_wait="1s")
    await proc.consume(batch([S(1, status="ERROR"), S(2, status="ERROR")]))
    # A span of a waiting trace still passes; a new trace waits for room.
    await proc.consume(batch([S(1, "more")]))
    blocked = asyncio.create_task(proc.consume(batch([S(3, status="ERROR")])))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    assert proc.sampling_status()["blocked_requests"] >= 1
    clock.t = 1.0
    await proc.decide_due(1.0)
    await asyncio.wait_for(blocked, 5)
    assert list(proc.pending) == [(3).to_bytes(16, "big")]
    assert proc.sampling_status()["evicted_traces"] == 0
    # Shutting down lets a blocked sender go with a retryable error.
    await proc.consume(batch([S(4)]))
    waiting = asyncio.create_task(proc.consume(batch([S(5)])))
    await asyncio.sleep(0.05)
    proc.begin_shutdown()
    with pytest.raises(RetryableError):
        await asyncio.wait_for(waiting, 5)


class FlakySink(Sink):
    def __init__(self, failures: int):
        super().__init__()
        self.failures = failures

    async def consume(self, batch: Batch) -> None:
        if self.failures:
            self.failures -= 1
            raise RetryableError("queue full", retry_after=0.1)
        await super().consume(batch)


async def test_refused_sampled_traces_are_retried_at_the_next_tick() -> None:
    sink = FlakySink(failures=2)
    proc = make(sink, clock=Clock())
    await proc.consume(batch([S(1, status="ERROR"), S(1)]))
    await proc.decide_due(float("inf"))
    assert sink.items == 0
    assert not proc.health().healthy
    await proc._retry_failed()
    assert sink.items == 0
    await proc._retry_failed()
    assert sink.items == 2
    assert proc.health().healthy
    assert proc.sampling_status()["emit_failures"] == 2


async def test_shutdown_in_memory_decides_what_waits() -> None:
    sink = Sink()
    proc = make(sink, clock=Clock(), decision_wait="1h")
    await proc.start(_Host())  # type: ignore[arg-type]
    await proc.consume(batch([S(1, status="ERROR"), S(2)]))
    proc.begin_shutdown()
    # An upstream processor flushing during the shutdown is accepted ...
    await proc.consume(batch([S(3, status="ERROR")]))
    await proc.shutdown()
    assert sorted(trace_ids(sink.batches)) == [1, 3]
    # ... and after it, spans are decided at once: nothing is left waiting.
    await proc.consume(batch([S(4, status="ERROR"), S(5)]))
    assert sorted(trace_ids(sink.batches)) == [1, 3, 4]
    assert proc.pending == {}


async def test_disk_storage_keeps_waiting_traces_across_a_restart(tmp_path: Path) -> None:
    cfg: dict[str, Any] = {"storage": "disk", "directory": str(tmp_path), "decision_wait": "1h"}
    sink = Sink()
    proc = make(sink, clock=Clock(), **cfg)
    await proc.start(_Host())  # type: ignore[arg-type]
    await proc.consume(batch([S(1, status="ERROR"), S(2), S(3, status="ERROR")]))
    await proc.consume(batch([S(1, "child")]))
    await proc.shutdown()  # storage disk: nothing decided, all stays on disk
    assert sink.batches == []
    assert list((tmp_path / "tail_sampling.traces").glob("*.seg"))

    tel = Telemetry()
    sink2 = Sink()
    again = make(sink2, tel, clock=Clock(), **cfg)
    await again.start(_Host())  # type: ignore[arg-type]
    assert again.sampling_status()["recovered_traces"] == 3
    await again.decide_due(0.0)  # recovered traces are due at once
    assert sorted(trace_ids(sink2.batches)) == [1, 1, 3]
    await again.shutdown()

    third = make(Sink(), clock=Clock(), **cfg)
    await third.start(_Host())  # type: ignore[arg-type]
    assert third.pending == {}  # every record was acknowledged
    await third.shutdown()


async def test_disk_storage_keeps_a_refused_decision(tmp_path: Path) -> None:
    cfg: dict[str, Any] = {"storage": "disk", "directory": str(tmp_path), "fsync": False,
                           "policies": [p("r", "rate_limiting", spans_per_second=1,
                                          burst_capacity=2)]}
    sink = FlakySink(failures=100)
    proc = make(sink, clock=Clock(), **cfg)
    await proc.start(_Host())  # type: ignore[arg-type]
    await proc.consume(batch([S(1), S(2), S(3)]))
    await proc.decide_due(float("inf"))  # 1 and 2 sampled (the bucket), refused
    await proc.shutdown()
    sink2 = Sink()
    again = make(sink2, clock=Clock(), **cfg)
    await again.start(_Host())  # type: ignore[arg-type]
    assert again.sampling_status()["recovered_traces"] == 0
    await again._retry_failed()
    await again.decide_due(0.0)
    # Sent as decided: a second decision (a fresh bucket) would have kept other traces.
    assert sorted(trace_ids(sink2.batches)) == [1, 2]
    await again.shutdown()
    third = make(Sink(), clock=Clock(), **cfg)
    await third.start(_Host())  # type: ignore[arg-type]
    assert third.pending == {}
    assert third.sampling_status()["retry_batches"] == 0
    await third.shutdown()


async def test_a_big_decision_round_never_holds_the_loop() -> None:
    """30,000 traces due at once (all sampled): decided in chunks, each under 100 ms of
    CPU between two yields to the event loop."""
    sink = Sink()
    proc = make(sink, clock=Clock(), policies=[p("all", "always_sample")],
                num_traces=100_000)
    from tests.unit.processors.tail_sampling.spans import request

    for start in range(0, 30_000, 3000):
        spans = [S(t, str(i)) for t in range(start + 1, start + 3001) for i in range(2)]
        await proc.consume(Batch(Signal.TRACES, raw=request(spans).SerializeToString()))
    longest = 0.0
    done = False

    async def watch() -> None:
        nonlocal longest
        last = time.thread_time()
        while not done:
            await asyncio.sleep(0)
            now = time.thread_time()
            longest = max(longest, now - last)
            last = now

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)
    gc.disable()
    try:
        assert await proc.decide_due(float("inf")) == 30_000
    finally:
        gc.enable()
        done = True
        await watcher
    assert sink.items == 60_000
    assert longest < 0.1, f"{longest * 1000:.0f} ms without a yield"


async def test_disk_storage_late_spans_are_held_until_delivered(tmp_path: Path) -> None:
    cfg: dict[str, Any] = {"storage": "disk", "directory": str(tmp_path), "fsync": False}
    sink = FlakySink(failures=0)
    proc = make(sink, clock=Clock(), **cfg)
    await proc.start(_Host())  # type: ignore[arg-type]
    await proc.consume(batch([S(1, status="ERROR"), S(2)]))
    await proc.decide_due(float("inf"))
    assert trace_ids(sink.batches) == [1]
    # A late span of trace 1 while the next consumer refuses: kept (and its record).
    sink.failures = 5
    await proc.consume(batch([S(1, "late"), S(2, "late")]))
    assert trace_ids(sink.batches) == [1]
    await proc.shutdown()
    sink2 = Sink()
    again = make(sink2, clock=Clock(), **cfg)
    await again.start(_Host())  # type: ignore[arg-type]
    # The refused late span was written as a decided record: it is sent as decided
    # (trace 2's late span, not sampled, is gone; nothing is decided again).
    assert again.sampling_status()["recovered_traces"] == 0
    await again._retry_failed()
    await again.decide_due(0.0)
    assert trace_ids(sink2.batches) == [1]
    await again.shutdown()
    third = make(Sink(), clock=Clock(), **cfg)
    await third.start(_Host())  # type: ignore[arg-type]
    assert third.pending == {}
    await third.shutdown()


async def test_disk_storage_acks_a_delivered_late_span(tmp_path: Path) -> None:
    cfg: dict[str, Any] = {"storage": "disk", "directory": str(tmp_path), "fsync": False}
    sink = Sink()
    proc = make(sink, clock=Clock(), **cfg)
    await proc.start(_Host())  # type: ignore[arg-type]
    await proc.consume(batch([S(1, status="ERROR")]))
    await proc.decide_due(float("inf"))
    await proc.consume(batch([S(1, "late")]))
    assert trace_ids(sink.batches) == [1, 1]
    await proc.shutdown()
    again = make(Sink(), clock=Clock(), **cfg)
    await again.start(_Host())  # type: ignore[arg-type]
    assert again.pending == {}
    await again.shutdown()


async def test_maximum_trace_size_bytes_drops_a_trace_and_its_later_spans() -> None:
    sink = Sink()
    proc = make(sink, clock=Clock(), policies=[p("all", "always_sample")],
                maximum_trace_size_bytes=600)
    big = {"pad": "x" * 200}
    await proc.consume(batch([S(1, "a", attrs=big), S(2, "a", attrs=big)]))
    await proc.consume(batch([S(1, "b", attrs=big), S(1, "c", attrs=big)]))  # 1 passes 600
    assert list(proc.pending) == [(2).to_bytes(16, "big")]
    await proc.consume(batch([S(1, "d")]))  # a later span of the dropped trace
    await proc.decide_due(float("inf"))
    assert trace_ids(sink.batches) == [2]
    st = proc.sampling_status()
    assert st["oversized_traces"] == 1
    assert st["late_spans_dropped"] == 1


async def test_drop_pending_traces_on_shutdown() -> None:
    sink = Sink()
    proc = make(sink, clock=Clock(), decision_wait="1h", drop_pending_traces_on_shutdown=True)
    await proc.start(_Host())  # type: ignore[arg-type]
    await proc.consume(batch([S(1, status="ERROR")]))
    await proc.shutdown()
    assert sink.batches == []
