"""filelog end to end: a real `python -m pipeline run` tails files that a writer appends
to and rotates, writes flat JSON with the file exporter, and is stopped mid-stream and
started again -- gracefully (SIGTERM: every line exactly once) and by SIGKILL
(at-least-once: no gap; only the batch in flight may be repeated, and is counted)."""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support import OtelpipeProcess, eventually, free_port, with_logs

TOTAL = 60_000
BATCH = 500


class Writer(threading.Thread):
    """Appends `TOTAL` numbered lines in bursts of 1000 (so that a stop often finds a batch
    in flight); renames the file every 20k lines (rename rotation: a new file is created
    at the same path)."""

    def __init__(self, path: Path, total: int, every: int):
        super().__init__(daemon=True)
        self.path, self.total, self.every = path, total, every
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            gen = seq = 0
            f = open(self.path, "a")  # noqa: SIM115 - rotated below
            while seq < self.total:
                n = min(1000, self.total - seq)
                f.write("".join(f"{s:08d} gen={gen} GET /item/{s} 200\n"
                                for s in range(seq, seq + n)))
                f.flush()
                seq += n
                if seq % self.every == 0 and seq < self.total:
                    f.close()
                    os.replace(self.path, self.path.with_name(f"app.log.{gen}"))
                    gen += 1
                    f = open(self.path, "a")  # noqa: SIM115
                time.sleep(0.03)
            f.close()
        except BaseException as exc:
            self.error = exc


def config(tmp_path: Path, health: int) -> dict[str, Any]:
    return {
        "receivers": {"filelog": {
            "include": [str(tmp_path / "logs" / "app.log*")],
            "start_at": "beginning",
            "storage_dir": str(tmp_path / "state"),
            "poll_interval": "50ms",
            "max_batch_lines": BATCH,
        }},
        "exporters": {"file": {"path": str(tmp_path / "out.jsonl"), "format": "json"}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"extensions": ["health"], "pipelines": {
            "logs": {"receivers": ["filelog"], "exporters": ["file"]}}},
    }


def read_output(path: Path) -> tuple[list[tuple[int, int]], int]:
    """(generation, sequence number) of each output record, in order, and the count of
    torn lines (a write cut short by SIGKILL, to which the next process appended)."""
    seqs: list[tuple[int, int]] = []
    torn = 0
    if not path.exists():
        return seqs, torn
    for line in path.read_bytes().splitlines():
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            torn += 1
            cut = line.rfind(b'{"time":')
            if cut <= 0:
                continue
            rec = orjson.loads(line[cut:])
        seq, gen, _ = rec["body"].split(" ", 2)
        seqs.append((int(gen[4:]), int(seq)))
    return seqs, torn


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def has_lines(path: Path, n: int) -> bool:
    return count_lines(path) >= n


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_restart_mid_stream(tmp_path: Path, sig: signal.Signals) -> None:
    (tmp_path / "logs").mkdir()
    out = tmp_path / "out.jsonl"
    health = free_port()
    cfg = config(tmp_path, health)
    writer = Writer(tmp_path / "logs" / "app.log", TOTAL, every=20_000)
    writer.start()
    stops = 0
    # Stop the pipeline three times while the writer goes on, each time mid-stream.
    for target in (8_000, 22_000, 40_000):
        proc = OtelpipeProcess(cfg, tmp_path, wait_ports=(health,)).start()
        eventually(functools.partial(has_lines, out, target), timeout=60,
                   what=with_logs(f"{target} lines", proc))
        rc = proc.stop(sig)
        stops += 1
        if sig == signal.SIGTERM:
            assert rc == 0, proc.logs()[-3000:]
    writer.join(120)
    assert writer.error is None
    assert not writer.is_alive()
    proc = OtelpipeProcess(cfg, tmp_path, wait_ports=(health,)).start()
    try:
        eventually(lambda: len(set(read_output(out)[0])) >= TOTAL, timeout=60,
                   what=with_logs("all lines", proc))
        time.sleep(0.5)  # a few more polls: nothing else may arrive
    finally:
        proc.stop(signal.SIGTERM)

    records, torn = read_output(out)
    seqs = [s for _, s in records]
    unique = set(seqs)
    missing = sorted(set(range(TOTAL)) - unique)
    duplicates = len(seqs) - len(unique)
    print(f"\n{sig.name}: {len(seqs)} records for {TOTAL} lines, {duplicates} duplicates, "
          f"{torn} torn output lines, {stops} stops")
    assert not missing, f"gap: {len(missing)} lines lost, first {missing[:10]}"
    assert unique == set(range(TOTAL))
    if sig == signal.SIGTERM:
        assert duplicates == 0
        assert torn == 0
        for gen in range(3):  # in order within each file
            in_file = [s for g, s in records if g == gen]
            assert in_file == sorted(in_file)
    else:
        # At most the batch in flight at each kill is delivered twice.
        assert duplicates <= stops * BATCH, duplicates
