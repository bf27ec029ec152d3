"""The file exporter never corrupts its file, in a real `otelpipe run`.

- SIGKILL mid-stream, 6 rounds: senders post OTLP logs continuously (`format: json`,
  so a batch is many lines) and the process is killed while they do, then started
  again. Whatever a kill tore (bytes after the last newline: part of a batch that was
  never acknowledged) is truncated when the exporter opens the file, counted in
  `otelpipe_exporter_file_torn_tail_bytes_total` and logged; one round also gets a torn
  line appended by hand, so the repair runs even when no kill landed inside a write.
  After every restart each line parses as JSON, and every acknowledged record is
  there exactly once.
- Full disk: RLIMIT_FSIZE set on the running process (`prlimit`) makes writes past N
  bytes fail with EFBIG after writing what fits, as ENOSPC does. The batch is refused
  (HTTP 503), the part of it that was written is rolled back (the file is byte for
  byte what it was), and after a restart without the limit the retried batch is in
  the file exactly once.

Before: the torn last line stayed and the restart appended to it (an acknowledged
record inside an invalid JSON line); on a full disk the refused batch's partial write
stayed (1 corrupt line + duplicates after the retry)."""

from __future__ import annotations

import http.client
import resource
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from tests.builders import tagged_logs_request
from tests.support import OtelpipeProcess, eventually, free_port, http_get

ROUNDS = 6
PAD = "p" * 200  # a resource attribute copied into every flat record: longer writes


def logs_body(tag: str, records: int) -> bytes:
    req = tagged_logs_request(1, records, tag=tag,
                              resource_attrs=[{"service.name": "crash", "pad": PAD}])
    raw: bytes = req.SerializeToString()
    return raw


def post(port: int, body: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/v1/logs", body, {"Content-Type": "application/x-protobuf"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def config(out: Path, hport: int, health: int) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{hport}"}}}},
        "exporters": {"file": {"path": str(out), "format": "json"}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"extensions": ["health"], "pipelines": {"logs": {
            "receivers": ["otlp"], "exporters": ["file"]}}},
    }


def metric(health: int, name: str) -> float:
    status, body = http_get(f"http://127.0.0.1:{health}/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(f"{name}{{") and 'exporter="file"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not on /metrics")


def records(out: Path) -> Counter[str]:
    """Bodies in the file; every line must parse (the file may end torn only while no
    otelpipe has it open, which callers check separately)."""
    data = out.read_bytes()
    return Counter(orjson.loads(line)["body"] for line in data.splitlines())


def torn_tail(out: Path) -> int:
    data = out.read_bytes()
    return len(data) - (data.rfind(b"\n") + 1)


class Sender(threading.Thread):
    """Posts batches of 400 records until the process goes away; remembers what got 200."""

    def __init__(self, port: int, tag: str):
        super().__init__(daemon=True)
        self.port, self.tag = port, tag
        self.acked: list[str] = []
        self.batches = 0

    def run(self) -> None:
        seq = 0
        while True:
            tag = f"{self.tag}b{seq}-"
            try:
                status = post(self.port, logs_body(tag, 400))
            except OSError:
                return  # killed
            if status == 200:
                self.acked += [f"{tag}r0l{i}" for i in range(400)]
                self.batches += 1
            seq += 1


def kill_mid_stream(cfg: dict[str, Any], tmp_path: Path, hport: int, health: int,
                    rnd: int, torn_before: int, acked: list[str]) -> list[str]:
    """One round: start (checking the repair of what the last round tore and that every
    acknowledged record is there once), post from 2 senders, SIGKILL while they post.
    Returns what was acknowledged in this round."""
    proc = OtelpipeProcess(cfg, tmp_path, wait_ports=(hport, health)).start()
    senders = [Sender(hport, f"k{rnd}s{i}") for i in range(2)]
    try:
        eventually(lambda: metric(health, "otelpipe_exporter_file_torn_tail_bytes_total")
                   == torn_before, what=proc.logs)
        if torn_before:
            assert "truncated a torn last line" in proc.logs()
        out = Path(cfg["exporters"]["file"]["path"])
        if out.exists():
            assert torn_tail(out) == 0
            present = records(out)  # every line parses
            assert all(present[body] == 1 for body in acked), "acknowledged lost/doubled"
        for s in senders:
            s.start()
        eventually(lambda: sum(s.batches for s in senders) >= 4 + rnd,
                   what=lambda: f"batches acknowledged in round {rnd}:\n{proc.logs()}")
    finally:
        proc.kill()
    for s in senders:
        s.join(30)
        assert not s.is_alive()
    return [body for s in senders for body in s.acked]


def test_sigkill_mid_stream_never_leaves_a_broken_line(tmp_path: Path) -> None:
    out = tmp_path / "out" / "logs.jsonl"
    hport, health = free_port(), free_port()
    cfg = config(out, hport, health)
    acked: list[str] = []
    torn_seen: list[int] = []
    for rnd in range(ROUNDS):
        acked += kill_mid_stream(cfg, tmp_path, hport, health, rnd,
                                 torn_seen[-1] if torn_seen else 0, acked)
        torn = torn_tail(out)
        if rnd == 2 and torn == 0:  # a kill inside a write is luck: make sure of one tear
            with out.open("ab") as f:
                f.write(b'{"body":"torn by han')
            torn = torn_tail(out)
        torn_seen.append(torn)
        # whole lines before the tear parse; acknowledged records are all written
        data = out.read_bytes()
        present = Counter(orjson.loads(line)["body"]
                          for line in data[: len(data) - torn].splitlines())
        assert all(present[body] == 1 for body in acked)

    with OtelpipeProcess(cfg, tmp_path, wait_ports=(hport, health)) as proc:
        assert metric(health, "otelpipe_exporter_file_torn_tail_bytes_total") == torn_seen[-1]
        assert post(hport, logs_body("final-", 3)) == 200
        assert proc.stop() == 0, proc.logs()
    present = records(out)  # every line parses
    assert torn_tail(out) == 0
    assert len(acked) >= 400 * sum(4 + r for r in range(ROUNDS))
    assert all(present[body] == 1 for body in acked)
    assert all(present[f"final-r0l{i}"] == 1 for i in range(3))
    assert max(present.values()) == 1  # each body was sent once: none written twice
    assert torn_seen[2] > 0


def test_full_disk_rolls_the_refused_batch_back_and_the_retry_lands_once(
        tmp_path: Path) -> None:
    out = tmp_path / "logs.jsonl"
    hport, health = free_port(), free_port()
    cfg = config(out, hport, health)
    with OtelpipeProcess(cfg, tmp_path, wait_ports=(hport, health)) as proc:
        assert post(hport, logs_body("a-", 300)) == 200  # ~100 KB
        before = out.read_bytes()
        assert before.count(b"\n") == 300
        # Room for a few lines more: several whole lines of the next batch fit, so
        # repairing the torn tail on the next open would not be enough.
        limit = len(before) + 4000
        _, hard = resource.prlimit(proc.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (limit, hard))
        started = time.monotonic()
        for _ in range(2):  # refused, and refused again: nothing piles up
            assert post(hport, logs_body("b-", 300)) == 503
            assert out.read_bytes() == before
        assert time.monotonic() - started < 10
        assert metric(health, "otelpipe_exporter_file_rolled_back_bytes_total") == 2 * 4000
        assert proc.stop() == 0, proc.logs()
    assert out.read_bytes() == before

    with OtelpipeProcess(cfg, tmp_path, wait_ports=(hport, health)) as proc:  # no limit
        assert metric(health, "otelpipe_exporter_file_torn_tail_bytes_total") == 0
        assert post(hport, logs_body("b-", 300)) == 200  # the sender's retry
        assert proc.stop() == 0, proc.logs()
    data = out.read_bytes()
    assert data.startswith(before)
    present = records(out)
    assert present == Counter({f"{t}r0l{i}": 1 for t in ("a-", "b-") for i in range(300)})
