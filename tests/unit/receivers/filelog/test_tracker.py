"""filelog file tracking: globs, start_at, new files, truncation, rename and
copytruncate rotation while a writer appends, deleted files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.telemetry.metrics import Telemetry
from tests.support import Sink, aeventually
from tests.unit.receivers.filelog.helpers import (
    Writer,
    bodies,
    check_exactly_once,
    polls,
    running,
    write,
)


def truncate_and_write(path: Path, data: bytes) -> None:
    """Truncate in place (same inode) and write new content from the start."""
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(data)


def unlink_and_append(path: Path, data: bytes) -> None:
    """Delete the file while a writer holds it open, then append through that writer."""
    with open(path, "ab") as f:
        path.unlink()
        f.write(data)


async def test_start_at_end_reads_only_new_lines(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, "old 1\nold 2\npartial")  # a line being written when we start: read whole
    sink = Sink()
    async with running(sink, include=[str(log)]) as r:
        await polls(r)
        assert sink.items == 0
        write(log, " line\nnew 1\nnew 2\n")
        await aeventually(lambda: sink.items == 3)
        await polls(r)
    assert bodies(sink) == ["partial line", "new 1", "new 2"]


async def test_glob_include_exclude_and_new_files(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deep").mkdir(parents=True)
    for name in ("a.log", "b.log", "c.txt", "sub/d.log", "sub/deep/e.log", "sub/skip.log"):
        write(tmp_path / name, f"{name}\n")
    sink = Sink()
    async with running(sink, include=[str(tmp_path / "*.log"), str(tmp_path / "**/*.log")],
                       exclude=[str(tmp_path / "b.log"), "*/skip*"],
                       start_at="beginning") as r:
        await aeventually(lambda: sink.items == 3)
        # A file created while running is read from its start, although start_at is end.
        write(tmp_path / "sub" / "new.log", "new 1\nnew 2\n")
        write(tmp_path / "new.txt", "not matched\n")
        await aeventually(lambda: sink.items == 5)
        await polls(r)
    assert sorted(bodies(sink)) == ["a.log", "new 1", "new 2", "sub/d.log", "sub/deep/e.log"]


async def test_new_file_found_later_is_read_from_start_even_with_start_at_end(
        tmp_path: Path) -> None:
    sink = Sink()
    async with running(sink, include=[str(tmp_path / "*.log")]) as r:
        await polls(r)
        write(tmp_path / "late.log", "first\nsecond\n")
        await aeventually(lambda: sink.items == 2)
    assert bodies(sink) == ["first", "second"]


async def test_truncation_rereads_from_start(tmp_path: Path, telemetry: Telemetry) -> None:
    log = tmp_path / "app.log"
    write(log, "".join(f"before {i}\n" for i in range(10)))
    sink = Sink()
    async with running(sink, telemetry=telemetry, include=[str(log)], start_at="beginning") as r:
        await aeventually(lambda: sink.items == 10)
        os.truncate(log, 0)
        await polls(r)
        write(log, "after 0\nafter 1\n")
        await aeventually(lambda: sink.items == 12)
        # Truncated and rewritten past the old size before the next poll: the first bytes
        # changed, so it is still seen as new content.
        truncate_and_write(log, "".join(f"AGAIN {i:04d} and a longer line\n"
                                        for i in range(20)).encode())
        await aeventually(lambda: sink.items == 32)
        await polls(r)
    got = bodies(sink)
    assert got[:12] == [f"before {i}" for i in range(10)] + ["after 0", "after 1"]
    assert got[12:] == [f"AGAIN {i:04d} and a longer line" for i in range(20)]
    assert telemetry.registry.get_sample_value(
        "otelpipe_filelog_rotations_total", {"receiver": "filelog", "kind": "truncate"}) == 2


@pytest.mark.parametrize("pattern", ["app.log", "app.log*"])
async def test_rename_rotation_while_writing(tmp_path: Path, pattern: str) -> None:
    log = tmp_path / "app.log"
    total = 12000
    sink = Sink()
    async with running(sink, include=[str(tmp_path / pattern)], start_at="beginning",
                       max_batch_lines=300) as r:
        w = Writer(log, total, every=2000, mode="rename")
        w.start()
        await aeventually(lambda: not w.is_alive(), timeout=60)
        assert w.error is None, w.error
        await aeventually(lambda: sink.items >= total, timeout=30)
        await polls(r, 5)
    assert w.rotations == 5
    check_exactly_once(bodies(sink), total)


async def test_copytruncate_rotation_while_writing(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    total = 12000
    sink = Sink()
    async with running(sink, include=[str(tmp_path / "app.log*")], start_at="beginning",
                       max_batch_lines=300) as r:
        w = Writer(log, total, every=2000, mode="copytruncate")
        w.start()
        await aeventually(lambda: not w.is_alive(), timeout=60)
        assert w.error is None, w.error
        await aeventually(lambda: sink.items >= total, timeout=30)
        await polls(r, 5)
    assert w.rotations == 5
    check_exactly_once(bodies(sink), total)


async def test_deleted_file_is_read_to_end_and_closed(tmp_path: Path,
                                                      telemetry: Telemetry) -> None:
    log = tmp_path / "app.log"
    write(log, "a\nb\n")
    sink = Sink()

    def watched() -> float | None:
        return telemetry.registry.get_sample_value("otelpipe_filelog_files_watched",
                                                   {"receiver": "filelog"})

    async with running(sink, telemetry=telemetry, include=[str(log)], start_at="beginning") as r:
        await aeventually(lambda: sink.items == 2)
        assert watched() == 1
        unlink_and_append(log, b"written after the unlink\n")
        await aeventually(lambda: watched() == 0)
        await polls(r)
    assert bodies(sink) == ["a", "b", "written after the unlink"]
