"""batch processor: a big merged batch is split in the offload worker (decode, copy and
encode of 30k spans hold a core for about a second), into the parts the loop would make."""

from __future__ import annotations

from pipeline.component import Signal
from pipeline.pdata.batch import Batch
from pipeline.processors.batch import BatchConfig, BatchProcessor, factory
from tests.big_batches import BIG_SPANS, big_request
from tests.loop_lag import LoopLag
from tests.support import Sink, processor_settings


def make(sink: Sink, **cfg: object) -> BatchProcessor:
    settings = processor_settings("batch", next_consumer=sink, signal=Signal.TRACES)
    proc = factory.create(settings, BatchConfig.model_validate(cfg))
    assert isinstance(proc, BatchProcessor)
    return proc


async def test_big_batch_is_split_off_the_loop() -> None:
    req = big_request()
    raw = req.SerializeToString()
    sink = Sink()
    proc = make(sink, send_batch_size=0, send_batch_max_size=8192)
    try:
        async with LoopLag() as lag:
            await proc.consume(Batch(Signal.TRACES, raw=raw, metadata={"tenant": "a"}))
        assert proc._offload.calls == 1
    finally:
        await proc.shutdown()
    expected = Batch(Signal.TRACES, raw=raw).split(8192)
    assert [b.items for b in sink.batches] == [8192, 8192, 8192, BIG_SPANS - 3 * 8192]
    assert [b.to_bytes() for b in sink.batches] == [b.to_bytes() for b in expected]
    assert all(b.metadata == {"tenant": "a"} for b in sink.batches)
    lag.assert_bounded()


async def test_small_batch_is_split_on_the_loop() -> None:
    raw = big_request(spans=300, resources=1).SerializeToString()
    sink = Sink()
    proc = make(sink, send_batch_size=0, send_batch_max_size=100)
    await proc.consume(Batch(Signal.TRACES, raw=raw))
    await proc.shutdown()
    assert proc._offload.calls == 0
    assert [b.items for b in sink.batches] == [100, 100, 100]
