"""The SQLite engine: a torn WAL, a corrupt database."""

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
    assert files(tmp_path, "queue.db.corrupt-*")
    await q.put(traces(1))
    assert q.size == 1
    await q.close()
