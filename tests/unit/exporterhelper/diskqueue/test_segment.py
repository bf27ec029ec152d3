"""The segment log engine: torn and corrupt records, the ack file, segment rolling."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from tests.builders import traces
from tests.unit.exporterhelper.diskqueue.helpers import (
    drain,
    files,
    make_queue,
    snapshot,
    span_names,
)


def flip_byte_and_append_garbage(seg: Path) -> None:
    data = bytearray(seg.read_bytes())
    third = len(data) * 2 // 3 + 40  # inside the third record's payload
    data[third] ^= 0xFF
    seg.write_bytes(bytes(data) + b"\x00" * 100)


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
    flip_byte_and_append_garbage(files(tmp_path, "*.seg")[0])
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


async def test_segments_roll_and_are_deleted_once_acknowledged(tmp_path: Path) -> None:
    q = make_queue(tmp_path, "segment", segment_bytes=1000)
    await q.open()
    for i in range(20):
        await q.put(traces(5, start=i))
    assert len(files(tmp_path, "*.seg")) > 3
    await drain(q, 20)
    await q.close()
    assert len(files(tmp_path, "*.seg")) == 1
    q2 = make_queue(tmp_path, "segment", segment_bytes=1000)
    await q2.open()
    assert q2.size == 0
    await q2.put(traces(1, start=99))
    await q2.close()
    q3 = make_queue(tmp_path, "segment", segment_bytes=1000)
    await q3.open()
    assert [span_names(b)[0] for b in await drain(q3, 1)] == ["span-99"]
    await q3.close()
