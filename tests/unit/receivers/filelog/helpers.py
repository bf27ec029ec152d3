"""Helpers of the filelog tests: a running receiver on real files in tmp_path, a real
event loop, no mocks; a writer thread that appends numbered lines and rotates."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pipeline.component import Signal
from pipeline.pdata.otlpjson import attributes
from pipeline.receivers.filelog.config import FileLogConfig
from pipeline.receivers.filelog.reader import READ_SIZE
from pipeline.receivers.filelog.receiver import FileLogReceiver
from pipeline.telemetry.metrics import Telemetry
from tests.support import Sink, aeventually, receiver_settings

FAST = {"poll_interval": 0.02, "force_flush_period": 0.1}


@contextlib.asynccontextmanager
async def running(sink: Sink, *, telemetry: Telemetry | None = None,
                  read_size: int = READ_SIZE, **config: Any) -> AsyncIterator[FileLogReceiver]:
    cfg = FileLogConfig(**{**FAST, **config})
    settings = receiver_settings("filelog", telemetry=telemetry,
                                 consumers={Signal.LOGS: sink})
    r = FileLogReceiver(settings, cfg, read_size=read_size)
    await r.start(None)  # type: ignore[arg-type]
    try:
        yield r
    finally:
        await r.shutdown()


def records(sink: Sink) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for b in sink.batches:
        for rl in b.message.resource_logs:
            for sl in rl.scope_logs:
                for lr in sl.log_records:
                    out.append((lr.body.string_value, attributes(lr.attributes)))
    return out


def bodies(sink: Sink) -> list[str]:
    return [b for b, _ in records(sink)]


async def polls(r: FileLogReceiver, n: int = 3) -> None:
    """Let the receiver run `n` more full polls (to see that nothing else arrives)."""
    target = r.polls + n
    await aeventually(lambda: r.polls >= target, what=f"{n} more polls")


def write(path: Path, text: str | bytes, mode: str = "a") -> None:
    data = text.encode() if isinstance(text, str) else text
    with open(path, mode + "b") as f:
        f.write(data)


def seq_of(body: str) -> tuple[int, int]:
    """(generation, sequence) of a line written by `Writer`."""
    seq, gen, _ = body.split(" ", 2)
    return int(gen[4:]), int(seq)


def check_exactly_once(got: list[str], total: int) -> None:
    pairs = [seq_of(b) for b in got]
    seqs = sorted(s for _, s in pairs)
    dups = len(seqs) - len(set(seqs))
    missing = sorted(set(range(total)) - set(seqs))
    assert dups == 0, f"duplicates {dups}, missing {missing[:20]}"
    assert not missing, f"duplicates {dups}, missing {missing[:20]}"
    by_gen: dict[int, list[int]] = {}
    for g, s in pairs:
        by_gen.setdefault(g, []).append(s)
    for g, ss in by_gen.items():
        assert ss == sorted(ss), f"generation {g} out of order"


class Writer(threading.Thread):
    """Appends numbered lines continuously and rotates the file every `every` lines.

    Each line is `<seq> gen=<n> <padding>`, where `gen` counts the file generations
    (rotations), so order can be checked per file.
    """

    def __init__(self, path: Path, total: int, every: int, mode: str | None,
                 late: int = 5, pause: float = 0.0005):
        super().__init__(daemon=True)
        self.path = path
        self.total = total
        self.every = every
        self.mode = mode
        self.late = late
        self.pause = pause
        self.rotations = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def _line(self, seq: int, gen: int) -> str:
        return f"{seq:08d} gen={gen} " + "x" * (seq % 50) + "\n"

    def _run(self) -> None:
        gen = 0
        f = open(self.path, "a")  # noqa: SIM115 - rotated below
        seq = 0
        while seq < self.total:
            n = min(7, self.total - seq)
            f.write("".join(self._line(s, gen) for s in range(seq, seq + n)))
            f.flush()
            seq += n
            if self.mode and seq < self.total and seq // self.every != (seq - n) // self.every:
                rotated = self.path.with_name(self.path.name + ".1")
                older = self.path.with_name(self.path.name + ".2")
                if rotated.exists():
                    os.replace(rotated, older)
                if self.mode == "rename":
                    os.rename(self.path, rotated)
                    # The application writes a few more lines before it reopens its file.
                    n = min(self.late, self.total - seq)
                    f.write("".join(self._line(s, gen) for s in range(seq, seq + n)))
                    f.flush()
                    seq += n
                    f.close()
                    gen += 1
                    f = open(self.path, "a")  # noqa: SIM115
                else:  # copytruncate, as logrotate does it
                    shutil.copyfile(self.path, rotated)
                    os.truncate(self.path, 0)
                    gen += 1
                self.rotations += 1
            time.sleep(self.pause)
        f.close()
