from __future__ import annotations

import asyncio
import time

import pytest

from pipeline.component import Signal
from pipeline.errors import PermanentError, RetryableError
from pipeline.pdata.batch import Batch
from pipeline.processors.batch import BatchConfig, BatchProcessor, factory
from pipeline.telemetry.metrics import Telemetry
from tests.builders import span_names, traces, traces_request
from tests.support import Sink, processor_settings


def make(sink: Sink, telemetry: Telemetry | None = None, **cfg: object) -> BatchProcessor:
    """A batch processor; size/timeout semantics unless flush_when_idle is given."""
    cfg.setdefault("flush_when_idle", False)
    settings = processor_settings("batch", telemetry=telemetry, next_consumer=sink,
                                  signal=Signal.TRACES)
    proc = factory.create(settings, BatchConfig.model_validate(cfg))
    assert isinstance(proc, BatchProcessor)
    return proc


def sample(telemetry: Telemetry, name: str, **labels: str) -> float | None:
    return telemetry.registry.get_sample_value(name, labels)


async def test_merges_until_send_batch_size() -> None:
    sink = Sink()
    tel = Telemetry()
    proc = make(sink, tel, send_batch_size=6, timeout="10s")
    t1 = asyncio.create_task(proc.consume(traces(2)))
    t2 = asyncio.create_task(proc.consume(traces(2, start=2)))
    await asyncio.sleep(0)
    assert sink.batches == []
    assert not t1.done()
    assert not t2.done()
    await proc.consume(traces(2, start=4))
    await asyncio.gather(t1, t2)
    assert [b.items for b in sink.batches] == [6]
    assert span_names(Batch(Signal.TRACES, raw=sink.batches[0].to_bytes())) == [
        f"span-{i}" for i in range(6)]
    assert sample(tel, "otelpipe_processor_batch_sends_total", processor="batch",
                  pipeline="traces", trigger="size") == 1.0
    assert sample(tel, "otelpipe_processor_batch_send_size_sum", processor="batch",
                  pipeline="traces") == 6.0


async def test_timeout_flushes_a_partial_batch() -> None:
    sink = Sink()
    tel = Telemetry()
    proc = make(sink, tel, send_batch_size=100, timeout="50ms")
    start = time.monotonic()
    await asyncio.gather(proc.consume(traces(2)), proc.consume(traces(1)))
    elapsed = time.monotonic() - start
    assert [b.items for b in sink.batches] == [3]
    assert 0.04 <= elapsed < 2.0
    assert sample(tel, "otelpipe_processor_batch_sends_total", processor="batch",
                  pipeline="traces", trigger="timeout") == 1.0


async def test_send_batch_max_size_splits() -> None:
    sink = Sink()
    proc = make(sink, send_batch_size=4, send_batch_max_size=5, timeout="10s")
    await asyncio.gather(proc.consume(traces(3)), proc.consume(traces(4, start=3)))
    assert [b.items for b in sink.batches] == [5, 2]
    assert [n for b in sink.batches for n in span_names(b)] == [f"span-{i}" for i in range(7)]


async def test_single_oversized_batch_is_split_without_batching() -> None:
    sink = Sink()
    proc = make(sink, send_batch_size=0, send_batch_max_size=4)
    await proc.consume(traces(10))
    assert [b.items for b in sink.batches] == [4, 4, 2]


async def test_callers_acknowledged_only_after_downstream_accepted() -> None:
    release = asyncio.Event()
    accepted: list[Batch] = []

    class Slow(Sink):
        async def consume(self, batch: Batch) -> None:
            await release.wait()
            accepted.append(batch)

    proc = make(Slow(), send_batch_size=2, timeout="10s")
    t1 = asyncio.create_task(proc.consume(traces(1)))
    t2 = asyncio.create_task(proc.consume(traces(1, start=1)))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not t1.done()
    assert not t2.done()
    release.set()
    await asyncio.wait_for(asyncio.gather(t1, t2), 5)
    assert [b.items for b in accepted] == [2]


async def test_retryable_error_reaches_every_caller_of_the_merged_batch() -> None:
    sink = Sink()
    err = RetryableError("exporter queue full", retry_after=3.0)
    sink.refuse = err
    proc = make(sink, send_batch_size=3, timeout="10s")
    results = await asyncio.gather(proc.consume(traces(1)), proc.consume(traces(1)),
                                   proc.consume(traces(1)), return_exceptions=True)
    assert list(results) == [err, err, err]
    # the next batch is unaffected once downstream accepts again
    sink.refuse = None
    proc2 = make(sink, send_batch_size=1)
    await proc2.consume(traces(1))
    assert sink.items == 1


async def test_permanent_error_reaches_callers() -> None:
    sink = Sink()
    sink.refuse = PermanentError("bad data", rejected=2)
    proc = make(sink, send_batch_size=2, timeout="10s")
    results = await asyncio.gather(proc.consume(traces(1)), proc.consume(traces(1)),
                                   return_exceptions=True)
    assert [type(r) for r in results] == [PermanentError, PermanentError]


async def test_metadata_keys_batch_separately() -> None:
    sink = Sink()
    proc = make(sink, send_batch_size=2, timeout="10s", metadata_keys=["tenant"])

    def b(tenant: str, start: int) -> Batch:
        return Batch(Signal.TRACES, raw=traces_request(1, start=start).SerializeToString(),
                     metadata={"tenant": tenant, "other": str(start)})

    ta = asyncio.create_task(proc.consume(b("a", 0)))
    tb = asyncio.create_task(proc.consume(b("b", 1)))
    await asyncio.sleep(0)
    assert sink.batches == []
    await asyncio.gather(proc.consume(b("b", 2)), proc.consume(b("a", 3)), ta, tb)
    got = sorted((dict(x.metadata)["tenant"], span_names(x)) for x in sink.batches)
    assert got == [("a", ["span-0", "span-3"]), ("b", ["span-1", "span-2"])]
    assert all(dict(x.metadata) == {"tenant": dict(x.metadata)["tenant"]}
               for x in sink.batches)


async def test_shutdown_flushes_pending_batches() -> None:
    sink = Sink()
    tel = Telemetry()
    proc = make(sink, tel, send_batch_size=100, timeout="1h")
    task = asyncio.create_task(proc.consume(traces(3)))
    await asyncio.sleep(0)
    assert sink.batches == []
    await asyncio.wait_for(proc.shutdown(), 5)
    assert [b.items for b in sink.batches] == [3]
    await asyncio.wait_for(task, 1)
    assert sample(tel, "otelpipe_processor_batch_sends_total", processor="batch",
                  pipeline="traces", trigger="shutdown") == 1.0


async def test_cancelled_caller_does_not_cancel_the_send() -> None:
    sink = Sink()
    proc = make(sink, send_batch_size=2, timeout="10s")
    t1 = asyncio.create_task(proc.consume(traces(1)))
    await asyncio.sleep(0)
    t1.cancel()
    await proc.consume(traces(1, start=1))
    assert [b.items for b in sink.batches] == [2]


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="send_batch_max_size must be 0 or at least"):
        BatchConfig(send_batch_size=10, send_batch_max_size=5)
    assert BatchConfig.model_validate({"timeout": "1s"}).timeout == 1.0


async def test_flush_when_idle_sends_at_once_then_groups_while_a_send_is_in_flight() -> None:
    release = asyncio.Event()
    received: list[int] = []

    class SlowSink(Sink):
        async def consume(self, batch: Batch) -> None:
            received.append(batch.items)
            await release.wait()

    tel = Telemetry()
    proc = make(SlowSink(), tel, send_batch_size=1000, timeout="10s", flush_when_idle=True)
    first = asyncio.create_task(proc.consume(traces(2)))
    await asyncio.sleep(0.01)
    assert received == [2]  # nothing in flight: sent at once, no 10 s wait
    later = [asyncio.create_task(proc.consume(traces(3, start=2 + 3 * i))) for i in range(3)]
    await asyncio.sleep(0.01)
    assert received == [2]  # a send is in flight: the three accumulate
    release.set()
    await asyncio.wait_for(asyncio.gather(first, *later), 2)
    assert received == [2, 9]  # grouped into one send when the first completed
    assert sample(tel, "otelpipe_processor_batch_sends_total", processor="batch",
                  pipeline="traces", trigger="idle") == 2.0


async def test_flush_when_idle_is_the_default() -> None:
    assert BatchConfig().flush_when_idle is True
