"""filelog: a short last batch of a full read waits for the next read's lines (fewer,
fuller batches and checkpoints), without losing, repeating or reordering a line."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from pipeline.receivers.filelog import FileLogReceiver
from tests.support import Sink
from tests.unit.receivers.test_filelog import bodies, polls, running, wait_until, write


@pytest.fixture
def small_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    # 64-byte reads of ~10-byte lines: every read is "full" and ends in a short batch.
    monkeypatch.setattr(FileLogReceiver, "READ_SIZE", 64)


@pytest.mark.parametrize("tail", ["", "unterminated", "\r\n"])
async def test_short_batches_wait_for_the_next_read(tmp_path: Path, small_reads: None,
                                                    tail: str) -> None:
    lines = [f"line {i:04d}" for i in range(500)]
    path = tmp_path / "a.log"
    nl = "\r\n" if tail == "\r\n" else "\n"
    write(path, nl.join(lines) + nl + ("unterminated" if tail == "unterminated" else ""))
    sink = Sink()
    want = lines + (["unterminated"] if tail == "unterminated" else [])
    async with running(sink, include=[str(tmp_path / "*.log")], start_at="beginning",
                       storage_dir=str(tmp_path / "state"), max_batch_lines=4) as r:
        await wait_until(lambda: sink.items == len(want))
        await polls(r)
    assert bodies(sink) == want
    sizes = [b.items for b in sink.batches]
    # 64-byte reads hold 5-6 lines: without holding back, every read gave a batch of 4
    # and one of 1-2.
    assert sizes.count(4) >= len(lines) // 4 - 2, sizes
    ckpt = orjson.loads(next((tmp_path / "state").iterdir()).read_bytes())
    assert ckpt["files"][0]["offset"] == path.stat().st_size


async def test_file_ending_at_a_read_boundary_emits_held_lines(tmp_path: Path,
                                                                small_reads: None) -> None:
    path = tmp_path / "a.log"
    write(path, "".join(f"{i:07d}\n" for i in range(8)))  # 64 bytes: exactly one read
    sink = Sink()
    async with running(sink, include=[str(path)], start_at="beginning",
                       max_batch_lines=3) as r:
        await wait_until(lambda: sink.items == 8)
        write(path, "".join(f"{i:07d}\n" for i in range(8, 24)))  # two more full reads
        await wait_until(lambda: sink.items == 24)
        await polls(r)
    assert bodies(sink) == [f"{i:07d}" for i in range(24)]
