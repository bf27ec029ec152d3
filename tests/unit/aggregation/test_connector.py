"""AggregatingConnector: the flush loop, shutdown, and what a refused flush keeps."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from pipeline.errors import PermanentError, RetryableError
from pipeline.telemetry.metrics import Telemetry
from tests.support import Sink
from tests.unit.aggregation.support import CALLS, DURATION, make
from tests.unit.connectors.spans import FakeClock, metrics, span_batch


class TwoBatches(Sink):
    """Sets `two` once it holds two batches."""

    def __init__(self) -> None:
        super().__init__()
        self.two = asyncio.Event()

    async def consume(self, batch: Any) -> None:
        await super().consume(batch)
        if len(self.batches) >= 2:
            self.two.set()


async def test_flush_interval_emits_on_its_own() -> None:
    sink = TwoBatches()
    conn = make(sink, metrics_flush_interval="50ms")
    conn.clock = __import__("time").time_ns
    await conn.start(None)
    try:
        await conn.consume(span_batch([{"name": "a"}]))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sink.two.wait(), 5)
        elapsed = loop.time() - t0
    finally:
        await conn.shutdown()
    assert len(sink.batches) >= 2
    assert 0.05 <= elapsed < 2
    assert metrics(sink.batches[:1])[CALLS][0][2].as_int == 1


async def test_shutdown_flushes_what_is_left() -> None:
    sink = Sink()
    conn = make(sink, metrics_flush_interval="1h")
    await conn.start(None)
    await conn.consume(span_batch([{"name": "a"}]))
    await conn.shutdown()
    assert metrics(sink.batches)[CALLS][0][2].as_int == 1


async def test_retryable_error_at_flush_keeps_cumulative_state() -> None:
    sink = Sink()
    tel = Telemetry()
    conn = make(sink, telemetry=tel)
    await conn.consume(span_batch([{"name": "a"}] * 3))
    sink.refuse = RetryableError("queue full")
    assert not await conn.flush()
    await conn.consume(span_batch([{"name": "a"}] * 2))
    sink.refuse = None
    assert await conn.flush()
    assert metrics(sink.batches)[CALLS][0][2].as_int == 5
    assert tel.registry.get_sample_value("otelpipe_connector_flushes_total",
                                         {"connector": "redmetrics", "outcome": "retry"}) == 1


async def test_retryable_error_at_flush_resends_the_identical_delta_request() -> None:
    """Delta: the refused request goes again as it was (same points, start and time: a
    consumer that applied it drops the repeat), then what arrived since, from its time."""
    sink = Sink()
    clock = FakeClock()
    conn = make(sink, clock, aggregation_temporality="delta")
    start = clock.now
    await conn.consume(span_batch([{"name": "a", "ms": 3}] * 3))
    clock.advance(15)
    refused_at = clock.now
    seen: list[bytes] = []

    class Recording(Sink):
        async def consume(self, batch: Any) -> None:
            seen.append(batch.to_bytes())
            raise RetryableError("down")

    conn.next = Recording()
    assert not await conn.flush()
    await conn.consume(span_batch([{"name": "a", "ms": 3}] * 2))
    clock.advance(15)
    assert not await conn.flush()  # refused again: the same request, nothing newer
    assert len(seen) == 2
    assert seen[0] == seen[1]
    conn.next = sink
    clock.advance(15)
    assert await conn.flush()
    assert sink.batches[0].to_bytes() == seen[0]
    first, second = (metrics([b])[DURATION][0][2] for b in sink.batches)
    assert (first.count, first.start_time_unix_nano, first.time_unix_nano) == \
        (3, start, refused_at)
    assert (second.count, second.start_time_unix_nano) == (2, refused_at)
    clock.advance(15)
    await conn.flush()
    assert len(sink.batches) == 2  # nothing new, nothing sent


async def test_retryable_error_at_shutdown_flush_then_success_sends_both() -> None:
    sink = Sink()
    conn = make(sink, aggregation_temporality="delta")
    await conn.consume(span_batch([{"name": "a"}] * 2))
    sink.refuse = RetryableError("down")
    assert not await conn.flush()
    await conn.consume(span_batch([{"name": "a"}]))
    sink.refuse = None
    await conn.shutdown()
    assert [metrics([b])[CALLS][0][2].as_int for b in sink.batches] == [2, 1]


async def test_concurrent_spans_during_a_delta_flush_are_not_lost() -> None:
    release = asyncio.Event()

    class Slow(Sink):
        async def consume(self, batch: Any) -> None:
            await release.wait()
            await super().consume(batch)

    sink = Slow()
    conn = make(sink, aggregation_temporality="delta")
    await conn.consume(span_batch([{"name": "a"}] * 2))
    flush = asyncio.create_task(conn.flush())
    await asyncio.sleep(0)
    await conn.consume(span_batch([{"name": "a"}] * 3))  # arrives while the flush waits
    release.set()
    await flush
    await conn.flush()
    assert [metrics([b])[CALLS][0][2].as_int for b in sink.batches] == [2, 3]


async def test_permanent_error_at_flush_drops_and_moves_on() -> None:
    sink = Sink()
    conn = make(sink, aggregation_temporality="delta")
    await conn.consume(span_batch([{"name": "a"}]))
    sink.refuse = PermanentError("bad")
    assert not await conn.flush()
    sink.refuse = None
    await conn.flush()
    assert sink.batches == []

