"""Disk queues (segment log and SQLite): order, ack, restart, torn tails, capacity."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.component import Signal
from pipeline.errors import RetryableError
from pipeline.exporterhelper import Exporter, ExporterSettings
from pipeline.exporterhelper.diskqueue import (
    PersistentQueue,
    SegmentLogStore,
    make_store,
    queue_directory,
)
from pipeline.exporterhelper.queue import QueueFullError
from pipeline.pdata.batch import Batch
from pipeline.telemetry.metrics import Telemetry
from tests.support import REPO, create_settings
from tests.unit.builders import logs, traces

ENGINES = ["segment", "sqlite"]


def make_queue(path: Path, engine: str, capacity: int = 1000, sizer: str = "requests",
               block: bool = False, segment_bytes: int = 1 << 20,
               cache_bytes: int = 1 << 20) -> PersistentQueue:
    store = make_store(engine, path, True, segment_bytes)
    return PersistentQueue(store, capacity, sizer, block, "test",  # type: ignore[arg-type]
                           cache_bytes=cache_bytes)


def span_names(batch: Batch) -> list[str]:
    return [sp.name for rs in batch.message.resource_spans for ss in rs.scope_spans
            for sp in ss.spans]


async def drain(q: PersistentQueue, n: int, ack: bool = True) -> list[Batch]:
    out = []
    for _ in range(n):
        e = await asyncio.wait_for(q.get(), 2)
        assert e.batch is not None
        out.append(e.batch)
        if ack:
            await q.ack(e)
    return out


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
async def test_one_process_per_directory(tmp_path: Path, engine: str) -> None:
    q = make_queue(tmp_path, engine)
    await q.open()
    q2 = make_queue(tmp_path, engine)
    with pytest.raises(OSError, match="in use by another process"):
        await q2.open()
    await q.close()


def snapshot(src: Path, dst: Path) -> Path:
    """The directory as a crash would leave it (files copied while the queue is open)."""
    shutil.copytree(src, dst)
    return dst


async def test_segment_torn_tail_is_skipped_and_logged(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    q = make_queue(tmp_path / "live", "segment")
    await q.open()
    for i in range(3):
        await q.put(traces(1, start=i))
    crash = snapshot(tmp_path / "live", tmp_path / "crash")
    await q.close()
    seg = next(crash.glob("*.seg"))
    size = seg.stat().st_size
    os.truncate(seg, size - 7)  # the last record half written
    with caplog.at_level(logging.WARNING):
        q2 = make_queue(crash, "segment")
        await q2.open()
    assert "torn or corrupt record" in caplog.text
    assert q2.recovered.corrupt_records == 1
    assert [span_names(b)[0] for b in await drain(q2, q2.size)] == ["span-0", "span-1"]
    # The tail was cut off: new records follow the last good one.
    await q2.put(traces(1, start=7))
    await q2.close()
    q3 = make_queue(crash, "segment")
    await q3.open()
    assert q3.recovered.corrupt_records == 0
    assert [span_names(b)[0] for b in await drain(q3, q3.size)] == ["span-7"]
    await q3.close()


async def test_segment_garbage_tail_and_flipped_byte(tmp_path: Path) -> None:
    q = make_queue(tmp_path, "segment")
    await q.open()
    for i in range(3):
        await q.put(traces(1, start=i))
    await q.close()
    seg = next(tmp_path.glob("*.seg"))
    data = bytearray(seg.read_bytes())
    third = len(data) * 2 // 3 + 40  # inside the third record's payload
    data[third] ^= 0xFF
    seg.write_bytes(bytes(data) + b"\x00" * 100)
    q2 = make_queue(tmp_path, "segment")
    await q2.open()
    assert q2.recovered.corrupt_records == 1
    assert [span_names(b)[0] for b in await drain(q2, q2.size)] == ["span-0", "span-1"]
    await q2.close()


async def test_segment_corrupt_ack_file_resends_everything(tmp_path: Path) -> None:
    q = make_queue(tmp_path, "segment")
    await q.open()
    for i in range(3):
        await q.put(traces(1, start=i))
    await q.ack(await q.get())
    await q.close()
    (tmp_path / "ack").write_bytes(b"\x01" * 12)
    q2 = make_queue(tmp_path, "segment")
    await q2.open()
    assert q2.size == 3  # duplicates, never loss
    await q2.close()


async def test_sqlite_torn_wal_tail_keeps_committed_rows(tmp_path: Path) -> None:
    q = make_queue(tmp_path / "live", "sqlite")
    await q.open()
    for i in range(3):
        await q.put(traces(1, start=i))
    crash = snapshot(tmp_path / "live", tmp_path / "crash")
    await q.close()
    wal = crash / "queue.db-wal"
    assert wal.exists()
    assert wal.stat().st_size > 0
    os.truncate(wal, wal.stat().st_size - 100)  # the last commit torn
    q2 = make_queue(crash, "sqlite")
    await q2.open()
    assert [span_names(b)[0] for b in await drain(q2, q2.size)] == ["span-0", "span-1"]
    await q2.close()


async def test_sqlite_corrupt_database_is_moved_aside(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "queue.db").write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.ERROR):
        q = make_queue(tmp_path, "sqlite")
        await q.open()
    assert "corrupt" in caplog.text
    assert list(tmp_path.glob("queue.db.corrupt-*"))
    await q.put(traces(1))
    assert q.size == 1
    await q.close()


async def test_segments_roll_and_are_deleted_once_acknowledged(tmp_path: Path) -> None:
    q = make_queue(tmp_path, "segment", segment_bytes=1000)
    await q.open()
    for i in range(20):
        await q.put(traces(5, start=i))
    assert len(list(tmp_path.glob("*.seg"))) > 3
    await drain(q, 20)
    await q.close()
    assert len(list(tmp_path.glob("*.seg"))) == 1
    q2 = make_queue(tmp_path, "segment", segment_bytes=1000)
    await q2.open()
    assert q2.size == 0
    await q2.put(traces(1, start=99))
    await q2.close()
    q3 = make_queue(tmp_path, "segment", segment_bytes=1000)
    await q3.open()
    assert [span_names(b)[0] for b in await drain(q3, 1)] == ["span-99"]
    await q3.close()


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


def test_queue_directory_per_exporter_id(tmp_path: Path) -> None:
    assert queue_directory(tmp_path, "otlp/jaeger") == tmp_path / "otlp%2Fjaeger"
    assert queue_directory(tmp_path, "otlp") == tmp_path / "otlp"


CHILD = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from pipeline.exporterhelper.diskqueue import PersistentQueue, make_store
    from tests.unit.builders import traces

    async def main():
        q = PersistentQueue(make_store(sys.argv[2], Path(sys.argv[1]), True, 1 << 16),
                            10**9, "requests", False, "child")
        await q.open()
        i = 0
        while True:
            # 8 concurrent puts share one fsync (group commit)
            await asyncio.gather(*(q.put(traces(3, start=i + k)) for k in range(8)))
            for k in range(8):
                print(i + k, flush=True)
            i += 8

    asyncio.run(main())
""")


@pytest.mark.parametrize("engine", ENGINES)
async def test_sigkill_loses_nothing_that_was_acknowledged(tmp_path: Path, engine: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), engine],
                             stdout=subprocess.PIPE, cwd=REPO, text=True)
    assert child.stdout is not None
    deadline = time.monotonic() + 20
    acked: list[int] = []
    while len(acked) < 400 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        acked.append(int(line))
    child.send_signal(signal.SIGKILL)
    rest = child.communicate()[0]
    acked += [int(x) for x in rest.split()]
    assert len(acked) >= 400
    q = make_queue(tmp_path, engine, cache_bytes=0)
    await q.open()
    got = await drain(q, q.size)
    starts = [int(span_names(b)[0].split("-")[1]) for b in got]
    # Every batch whose put returned is there, in order; a put in flight at the kill may
    # be there too (written, not yet reported).
    assert set(acked) <= set(starts)
    assert starts == sorted(starts)
    await q.close()


class Flaky(Exporter):
    def __init__(self, tel: Telemetry, helper: ExporterSettings, up: bool):
        super().__init__(create_settings("exporter", "otlp/flaky", telemetry=tel), helper)
        self.up = up
        self.delivered: list[Batch] = []

    async def send(self, batch: Batch) -> int | None:
        if not self.up:
            raise RetryableError("backend down")
        self.delivered.append(batch)
        return None


@pytest.mark.parametrize("engine", ENGINES)
async def test_exporter_with_disk_queue_delivers_after_restart(tmp_path: Path,
                                                               engine: str) -> None:
    helper = ExporterSettings.model_validate({
        "retry_on_failure": {"initial_interval": "5ms", "max_interval": "10ms",
                             "max_elapsed_time": 0},
        "sending_queue": {"storage": "disk", "directory": str(tmp_path), "engine": engine,
                          "num_consumers": 2, "sizer": "items", "queue_size": 100}})
    tel = Telemetry()
    down = Flaky(tel, helper, up=False)
    await down.start(None)  # type: ignore[arg-type]
    for i in range(10):
        await down.consume(traces(3, start=i * 3))
    await asyncio.sleep(0.05)
    h = down.health()
    assert h.healthy is False
    assert h.last_error == "backend down"
    assert h.queue_size == 30
    assert h.queue_capacity == 100
    await asyncio.wait_for(down.shutdown(), 5)
    assert (tmp_path / "otlp%2Fflaky").is_dir()

    tel2 = Telemetry()
    up = Flaky(tel2, helper, up=True)
    await up.start(None)  # type: ignore[arg-type]
    assert tel2.registry.get_sample_value("otelpipe_exporter_queue_recovered_items_total",
                                          {"exporter": "otlp/flaky"}) == 30.0
    for _ in range(100):
        if up.health().queue_size == 0:
            break
        await asyncio.sleep(0.02)
    await asyncio.wait_for(up.shutdown(), 5)
    names = sorted(n for b in up.delivered for n in span_names(b))
    assert names == sorted(f"span-{i}" for i in range(30))
    assert up.health().healthy


def test_disk_storage_needs_a_directory() -> None:
    with pytest.raises(ValueError, match="directory is required"):
        ExporterSettings.model_validate({"sending_queue": {"storage": "disk"}})


def test_segment_store_is_the_default_engine() -> None:
    s = ExporterSettings.model_validate({"sending_queue": {"storage": "disk",
                                                           "directory": "/tmp/x"}})
    assert s.sending_queue.engine == "segment"
    assert isinstance(make_store("segment", Path("/tmp/x"), True, 1), SegmentLogStore)
