"""filelog checkpoints: valid JSON written atomically, exact resumption across
restarts (also while a writer appends and rotates), a corrupt checkpoint set aside."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tests.support import Sink, aeventually
from tests.unit.receivers.filelog.helpers import (
    Writer,
    bodies,
    check_exactly_once,
    polls,
    running,
    write,
)


def offsets(path: Path) -> list[int] | None:
    """The offsets in a checkpoint file; None while there is none."""
    try:
        return [e["offset"] for e in orjson.loads(path.read_bytes())["files"]]
    except FileNotFoundError:
        return None


async def test_checkpoint_is_valid_json_and_atomic(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    ckpt = tmp_path / "ck" / "offsets.json"
    write(log, "a\nb\n")
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning",
                       checkpoint_path=str(ckpt)):
        await aeventually(lambda: sink.items == 2)
        # Written in the checkpoint thread once the batch was accepted: read it when the
        # write landed (before, it holds the offsets written at start).
        await aeventually(lambda: offsets(ckpt) == [4])
        doc = orjson.loads(ckpt.read_bytes())
    st = log.stat()
    assert doc["version"] == 1
    (entry,) = doc["files"]
    assert (entry["dev"], entry["ino"], entry["offset"]) == (st.st_dev, st.st_ino, 4)
    assert not (tmp_path / "ck" / "offsets.json.tmp").exists()


async def test_start_at_end_does_not_skip_lines_written_while_stopped(tmp_path: Path) -> None:
    """With a checkpoint, lines appended (and files created) while otelpipe was down are
    read on restart, although start_at is end."""
    log = tmp_path / "app.log"
    state = tmp_path / "state"
    write(log, "before start\n")
    cfg: dict[str, Any] = {"include": [str(tmp_path / "*.log")], "storage_dir": str(state)}
    sink = Sink()
    async with running(sink, **cfg) as r:
        write(log, "one\n")
        await aeventually(lambda: sink.items == 1)
        await polls(r)
    write(log, "two\n")
    write(tmp_path / "other.log", "created while down\n")
    sink2 = Sink()
    async with running(sink2, **cfg):
        await aeventually(lambda: sink2.items == 2)
    assert sorted(bodies(sink2)) == ["created while down", "two"]


async def test_corrupt_checkpoint_is_set_aside(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    state = tmp_path / "state"
    state.mkdir()
    (state / "filelog-filelog.json").write_bytes(b"{not json")
    write(log, "x\n")
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning",
                       storage_dir=str(state)):
        await aeventually(lambda: sink.items == 1)
    assert (state / "filelog-filelog.json.corrupt").exists()
    assert orjson.loads((state / "filelog-filelog.json").read_bytes())["files"]


async def test_restart_resumes_exactly_while_writing(tmp_path: Path) -> None:
    """Stop and start the receiver three times while a writer appends and rotates:
    every line exactly once."""
    log = tmp_path / "app.log"
    state = tmp_path / "state"
    total = 20000
    cfg: dict[str, Any] = {"include": [str(tmp_path / "app.log*")], "storage_dir": str(state),
           "max_batch_lines": 250, "start_at": "beginning"}
    w = Writer(log, total, every=6000, mode="rename", pause=0.001)
    write(log, "")
    sinks = []
    w.start()
    for _ in range(4):
        sink = Sink()
        sinks.append(sink)
        async with running(sink, **cfg):
            # Reading runs while the writer goes on; stop mid-stream.
            await aeventually(lambda: sink.items >= 1500 or not w.is_alive(), timeout=30)  # noqa: B023
    await aeventually(lambda: not w.is_alive(), timeout=60)
    assert w.error is None
    sink = Sink()
    sinks.append(sink)
    async with running(sink, **cfg) as r:
        await aeventually(lambda: sum(s.items for s in sinks) >= total, timeout=30)
        await polls(r, 5)
    check_exactly_once([b for s in sinks for b in bodies(s)], total)
