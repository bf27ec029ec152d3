"""filelog reading: lines to records, unterminated lines, batches of
max_batch_lines, long lines split and flagged."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from pipeline.pdata.otlpjson import attributes
from pipeline.telemetry.metrics import Telemetry
from tests.support import Sink, aeventually
from tests.unit.receivers.filelog.helpers import (
    bodies,
    check_exactly_once,
    polls,
    records,
    running,
    write,
)


async def test_start_at_beginning(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, "one\ntwo\r\n\nthree\n")
    sink = Sink()
    async with running(sink, include=[str(tmp_path / "*.log")], start_at="beginning",
                       include_file_path=True, resource={"host.name": "h1"},
                       attributes={"env": "test"}) as r:
        await aeventually(lambda: sink.items == 3)
        await polls(r)
    assert records(sink) == [
        (b, {"log.file.name": "app.log", "log.file.path": str(log), "env": "test"})
        for b in ("one", "two", "three")]
    res = sink.batches[0].message.resource_logs[0].resource
    assert attributes(res.attributes) == {"host.name": "h1"}
    assert sink.batches[0].message.resource_logs[0].scope_logs[0].log_records[0] \
        .observed_time_unix_nano > 0


async def test_unterminated_last_line_is_flushed(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, "a\nb")
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning") as r:
        await aeventually(lambda: sink.items == 2)
        write(log, "\nc\n")
        await aeventually(lambda: sink.items == 3)
        await polls(r)
    assert bodies(sink) == ["a", "b", "c"]  # the late newline adds no empty record


async def test_unterminated_line_waits_when_force_flush_disabled(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, "a\nb")
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning",
                       force_flush_period=0) as r:
        await aeventually(lambda: sink.items == 1)
        await polls(r, 5)
        assert bodies(sink) == ["a"]
        write(log, "cd\n")
        await aeventually(lambda: sink.items == 2)
    assert bodies(sink) == ["a", "bcd"]


async def test_batches_respect_max_batch_lines(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, "".join(f"line {i}\n" for i in range(2500)))
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning", max_batch_lines=1000):
        await aeventually(lambda: sink.items == 2500)
    assert [b.items for b in sink.batches] == [1000, 1000, 500]
    assert bodies(sink) == [f"line {i}" for i in range(2500)]


async def test_large_file_exact(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    n = 60000
    write(log, "".join(f"{i:08d} gen=0 {'y' * (i % 200)}\n" for i in range(n)))
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning"):
        await aeventually(lambda: sink.items == n)
    check_exactly_once(bodies(sink), n)


async def test_long_line_is_split_and_flagged(tmp_path: Path, telemetry: Telemetry) -> None:
    log = tmp_path / "app.log"
    long = "é" * 700  # 1400 bytes
    write(log, f"short\n{long}\nafter\n")
    sink = Sink()
    async with running(sink, telemetry=telemetry, include=[str(log)], start_at="beginning",
                       max_log_size=512):
        await aeventually(lambda: sink.items == 5)
    got = records(sink)
    assert got[0] == ("short", {"log.file.name": "app.log"})
    pieces = got[1:4]
    assert "".join(b for b, _ in pieces) == long  # cut at character boundaries
    assert all(len(b.encode()) <= 512 and a["log.split"] is True for b, a in pieces)
    assert got[4] == ("after", {"log.file.name": "app.log"})
    flagged = telemetry.registry.get_sample_value(
        "otelpipe_filelog_flagged_records_total", {"receiver": "filelog", "flag": "split"})
    assert flagged == 3


async def test_long_line_written_in_parts_is_split_while_reading(tmp_path: Path) -> None:
    """A line over max_log_size that has no newline yet is not held in memory whole."""
    log = tmp_path / "app.log"
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning", max_log_size=100,
                       force_flush_period=0) as r:
        write(log, "a" * 250)
        await aeventually(lambda: sink.items == 2)
        await polls(r)
        write(log, "b" * 10 + "\nnext\n")
        await aeventually(lambda: sink.items == 4)
    got = records(sink)
    assert [b for b, _ in got] == ["a" * 100, "a" * 100, "a" * 50 + "b" * 10, "next"]
    assert [a.get("log.split") for _, a in got] == [True, True, True, None]


# A short last batch of a full read waits for the next read's lines (fewer, fuller
# batches and checkpoints), without losing, repeating or reordering a line.

# 64-byte reads of ~10-byte lines: every read is "full" and ends in a short batch.
SMALL_READS = 64


@pytest.mark.parametrize("tail", ["", "unterminated", "\r\n"])
async def test_short_batches_wait_for_the_next_read(tmp_path: Path, tail: str) -> None:
    lines = [f"line {i:04d}" for i in range(500)]
    path = tmp_path / "a.log"
    nl = "\r\n" if tail == "\r\n" else "\n"
    write(path, nl.join(lines) + nl + ("unterminated" if tail == "unterminated" else ""))
    sink = Sink()
    want = lines + (["unterminated"] if tail == "unterminated" else [])
    async with running(sink, read_size=SMALL_READS, include=[str(tmp_path / "*.log")],
                       start_at="beginning", storage_dir=str(tmp_path / "state"),
                       max_batch_lines=4) as r:
        await aeventually(lambda: sink.items == len(want))
        await polls(r)
    assert bodies(sink) == want
    sizes = [b.items for b in sink.batches]
    # 64-byte reads hold 5-6 lines: without holding back, every read gave a batch of 4
    # and one of 1-2.
    assert sizes.count(4) >= len(lines) // 4 - 2, sizes
    ckpt = orjson.loads(next((tmp_path / "state").iterdir()).read_bytes())
    assert ckpt["files"][0]["offset"] == path.stat().st_size


async def test_file_ending_at_a_read_boundary_emits_held_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    write(path, "".join(f"{i:07d}\n" for i in range(8)))  # 64 bytes: exactly one read
    sink = Sink()
    async with running(sink, read_size=SMALL_READS, include=[str(path)],
                       start_at="beginning", max_batch_lines=3) as r:
        await aeventually(lambda: sink.items == 8)
        write(path, "".join(f"{i:07d}\n" for i in range(8, 24)))  # two more full reads
        await aeventually(lambda: sink.items == 24)
        await polls(r)
    assert bodies(sink) == [f"{i:07d}" for i in range(24)]
