"""PersistentQueue over both engines: order, restart, acks, capacity (crash safety under
SIGKILL of a writing process: tests/e2e/test_diskqueue_kill.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pipeline.component import Signal
from pipeline.errors import RetryableError
from pipeline.exporterhelper.queue import QueueFullError
from tests.builders import logs, traces
from tests.unit.exporterhelper.diskqueue.helpers import ENGINES, drain, make_queue, span_names


@pytest.mark.parametrize("engine", ENGINES)
async def test_fifo_order_bytes_and_metadata_survive_restart(tmp_path: Path, engine: str) -> None:
    q = make_queue(tmp_path, engine)
    await q.open()
    sent = [traces(2, start=10 * i) for i in range(5)]
    sent[1].metadata = {"tenant": "a"}
    for b in sent:
        await q.put(b)
    await q.put(logs(3))
    assert q.size == 6
    got = await drain(q, 2)
    assert [span_names(b) for b in got] == [span_names(sent[0]), span_names(sent[1])]
    assert got[1].metadata == {"tenant": "a"}
    await q.close()

    q2 = make_queue(tmp_path, engine, cache_bytes=0)
    await q2.open()
    assert q2.size == 4
    assert q2.recovered.items == 9
    got = await drain(q2, 4)
    assert [b.to_bytes() for b in got] == [b.to_bytes() for b in sent[2:]] + \
        [logs(3).to_bytes()]
    assert got[3].signal is Signal.LOGS
    assert got[3].items == 3
    await q2.close()
    q3 = make_queue(tmp_path, engine)
    await q3.open()
    assert q3.size == 0
    await q3.close()


@pytest.mark.parametrize("engine", ENGINES)
async def test_in_flight_entry_not_acked_is_sent_again(tmp_path: Path, engine: str) -> None:
    q = make_queue(tmp_path, engine)
    await q.open()
    for i in range(3):
        await q.put(traces(1, start=i))
    e = await q.get()  # handed to a worker that dies before the backend answered
    assert span_names(e.batch) == ["span-0"]  # type: ignore[arg-type]
    await q.close()
    q2 = make_queue(tmp_path, engine)
    await q2.open()
    assert [span_names(b) for b in await drain(q2, 3)] == [["span-0"], ["span-1"], ["span-2"]]
    await q2.close()


@pytest.mark.parametrize("engine", ENGINES)
async def test_out_of_order_acks(tmp_path: Path, engine: str) -> None:
    q = make_queue(tmp_path, engine)
    await q.open()
    for i in range(4):
        await q.put(traces(1, start=i))
    entries = [await q.get() for _ in range(4)]
    await q.ack(entries[1])
    await q.ack(entries[3])
    await q.close()
    q2 = make_queue(tmp_path, engine)
    await q2.open()
    names = [span_names(b)[0] for b in await drain(q2, q2.size)]
    if engine == "sqlite":
        assert names == ["span-0", "span-2"]
    else:
        # The ack file holds the acknowledged prefix: what was acknowledged above the
        # first unacknowledged entry comes back (a duplicate, never a loss).
        assert names == ["span-0", "span-1", "span-2", "span-3"]
    await q2.close()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("sizer", "capacity", "sizes"), [
    ("requests", 2, [1, 1]),
    ("items", 5, [3, 2]),
    ("bytes", 0, []),  # capacity computed below
])
async def test_full_queue_refuses_with_retryable_error(tmp_path: Path, engine: str, sizer: str,
                                                        capacity: int, sizes: list[int]) -> None:
    if sizer == "bytes":
        capacity = len(traces(3).to_bytes()) + len(traces(2, start=3).to_bytes())
    q = make_queue(tmp_path, engine, capacity=capacity, sizer=sizer)
    await q.open()
    await q.put(traces(3))
    await q.put(traces(2, start=3))
    assert q.size == capacity
    with pytest.raises(QueueFullError) as exc:
        await q.put(traces(1, start=9))
    assert isinstance(exc.value, RetryableError)
    assert exc.value.retry_after == 1.0
    e = await q.get()
    assert q.size == capacity  # in flight still counts
    await q.ack(e)
    await q.put(traces(1, start=9))
    await q.close()
    # The size is recomputed from what is on disk.
    q2 = make_queue(tmp_path, engine, capacity=capacity, sizer=sizer)
    await q2.open()
    expect = {"requests": 2, "items": 3, "bytes": len(traces(2, start=3).to_bytes())
              + len(traces(1, start=9).to_bytes())}[sizer]
    assert q2.size == expect
    await q2.close()


@pytest.mark.parametrize("engine", ENGINES)
async def test_block_on_overflow_waits_for_an_ack(tmp_path: Path, engine: str) -> None:
    q = make_queue(tmp_path, engine, capacity=1, block=True)
    await q.open()
    await q.put(traces(1))
    blocked = asyncio.create_task(q.put(traces(1, start=1)))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    await q.ack(await q.get())
    await asyncio.wait_for(blocked, 2)
    assert q.size == 1
    await q.close()


@pytest.mark.parametrize("engine", ENGINES)
async def test_uncached_entries_are_read_back_from_disk(tmp_path: Path, engine: str) -> None:
    q = make_queue(tmp_path, engine, cache_bytes=0)
    await q.open()
    b = traces(4)
    await q.put(b)
    e = await q.get()
    assert e.batch is not b
    assert e.batch is not None
    assert e.batch.to_bytes() == b.to_bytes()
    await q.ack(e)
    await q.close()


@pytest.mark.parametrize("engine", ENGINES)
async def test_bytes_on_disk_are_bounded_whatever_the_sizer(tmp_path: Path, engine: str) -> None:
    one = len(traces(2).to_bytes())
    q = make_queue(tmp_path, engine, capacity=1000, sizer="requests", max_bytes=2 * one)
    await q.open()
    await q.put(traces(2))
    await q.put(traces(2, start=2))
    assert q.bytes == 2 * one
    with pytest.raises(QueueFullError):
        await q.put(traces(2, start=4))
    first, second = await q.get(), await q.get()
    # Acknowledged behind an older unacknowledged record, the second stays on disk (a
    # segment goes only as a whole), so it still counts against the bound.
    await q.ack(second)
    assert q.bytes == one
    with pytest.raises(QueueFullError):
        await q.put(traces(2, start=4))
    await q.ack(first)
    assert q.bytes == 0
    await q.put(traces(2, start=4))
    await q.put(traces(2, start=6))
    await q.close()
    # Recovered records count too.
    q2 = make_queue(tmp_path, engine, capacity=1000, sizer="requests", max_bytes=2 * one)
    await q2.open()
    assert (q2.size, q2.bytes) == (2, 2 * one)
    with pytest.raises(QueueFullError):
        await q2.put(traces(2, start=8))
    await q2.close()


@pytest.mark.parametrize("engine", ENGINES)
async def test_cancelled_put_leaves_nothing_to_send(tmp_path: Path, engine: str) -> None:
    """A sender that goes away while its batch is written was not acknowledged: the
    record is acknowledged as soon as it is written, so no restart sends it."""
    q = make_queue(tmp_path, engine, sizer="bytes", capacity=1 << 20)
    await q.open()
    put = asyncio.create_task(q.put(traces(3)))
    await asyncio.sleep(0)  # the write is queued on the I/O thread
    put.cancel()
    with pytest.raises(asyncio.CancelledError):
        await put
    assert (q.size, q.bytes, q.pending()) == (0, 0, 0)
    await q.put(traces(1, start=7))
    await q.close()
    q2 = make_queue(tmp_path, engine)
    await q2.open()
    assert [span_names(b) for b in await drain(q2, q2.size)] == [["span-7"]]
    await q2.close()
