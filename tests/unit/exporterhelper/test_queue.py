"""The memory queue and what every sending queue shares: sizers, bounds, refusal, ack."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.component import Signal
from pipeline.errors import RetryableError
from pipeline.exporterhelper.queue import MemoryQueue, QueueFullError, batch_bytes
from pipeline.pdata.batch import Batch
from pipeline.pdata.logrecords import LogGroup, LogRecord
from tests.builders import traces, traces_request


def record_batch(n: int) -> Batch:
    return Batch(Signal.LOGS, logs=[LogGroup([LogRecord(body=f"line {i}") for i in range(n)])])


def test_batch_bytes_is_the_otlp_protobuf_size() -> None:
    raw = traces(3)
    assert batch_bytes(raw) == len(raw.to_bytes())
    decoded = Batch(Signal.TRACES, message=traces_request(4))
    assert batch_bytes(decoded) == len(traces_request(4).SerializeToString())
    assert not decoded.has_raw  # computed, not serialized
    # Records not encoded yet are weighed without encoding them: an estimate that never
    # under-counts (it bounds memory) and is off by at most a record's fixed cost.
    records = record_batch(5)
    exact = len(record_batch(5).to_bytes())
    assert exact <= batch_bytes(records) <= exact + 48 * 5
    assert not records.has_raw


async def test_bytes_sizer_accounting_is_exact() -> None:
    batches = [traces(3), Batch(Signal.TRACES, message=traces_request(4)), record_batch(5)]
    sizes = [batch_bytes(b) for b in batches]
    q = MemoryQueue(sum(sizes), "bytes", False, "q")
    for b in batches:
        await q.put(b)
    assert q.size == q.bytes == sum(sizes)
    entries = [await q.get() for _ in batches]
    assert [e.nbytes for e in entries] == [e.size for e in entries] == sizes
    assert q.size == sum(sizes)  # handed out, not finished: still counted
    for e in entries:
        await q.ack(e)
    assert q.size == q.bytes == 0
    await asyncio.wait_for(q.join(), 1)


async def test_full_queue_refuses_at_the_byte_bound() -> None:
    one, two = traces(2), traces(2, start=2)
    q = MemoryQueue(batch_bytes(one) + batch_bytes(two), "bytes", False, "q")
    await q.put(one)
    await q.put(two)
    with pytest.raises(QueueFullError) as exc:
        await q.put(traces(1, start=9))  # one byte over would be refused too
    assert isinstance(exc.value, RetryableError)
    assert exc.value.retry_after == 1.0
    assert str(exc.value) == "sending queue of exporter q is full"
    assert q.size == batch_bytes(one) + batch_bytes(two)
    await q.ack(await q.get())
    await q.put(traces(2, start=4))  # the same size as the one acknowledged: fits


async def test_a_batch_larger_than_the_queue_passes_only_when_it_is_empty() -> None:
    q = MemoryQueue(10, "bytes", False, "q")
    big = traces(50)
    await q.put(big)
    assert q.size == batch_bytes(big) > 10
    with pytest.raises(QueueFullError):
        await q.put(traces(1))
    await q.ack(await q.get())
    await q.put(traces(1))


async def test_requests_and_items_sizers_keep_the_collectors_meaning() -> None:
    q = MemoryQueue(2, "requests", False, "q")
    await q.put(traces(100))
    await q.put(traces(100))
    assert q.size == 2
    assert q.bytes == 2 * batch_bytes(traces(100))
    with pytest.raises(QueueFullError):
        await q.put(traces(1))
    items = MemoryQueue(5, "items", False, "q")
    await items.put(traces(3))
    with pytest.raises(QueueFullError):
        await items.put(traces(3))
    await items.put(traces(2))
    assert items.size == 5


async def test_max_bytes_bounds_a_queue_sized_in_requests() -> None:
    one = batch_bytes(traces(2))
    q = MemoryQueue(1000, "requests", False, "q", max_bytes=2 * one)
    await q.put(traces(2))
    await q.put(traces(2))
    with pytest.raises(QueueFullError):
        await q.put(traces(2))


async def test_block_on_overflow_waits_and_a_cancelled_put_takes_no_room() -> None:
    q = MemoryQueue(batch_bytes(traces(2)), "bytes", True, "q")
    await q.put(traces(2))
    waiting = asyncio.create_task(q.put(traces(2, start=2)))
    await asyncio.sleep(0.02)
    assert not waiting.done()
    waiting.cancel()  # its sender went away
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert (q.size, q.pending()) == (batch_bytes(traces(2)), 1)
    blocked = asyncio.create_task(q.put(traces(2, start=4)))
    await asyncio.sleep(0.02)
    await q.ack(await q.get())
    await asyncio.wait_for(blocked, 1)
    assert q.pending() == 1
