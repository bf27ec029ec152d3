"""`python -m pipeline run` as a real process: SIGTERM drains and exits 0."""

from __future__ import annotations

import concurrent.futures
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

from pipeline.component import Signal
from pipeline.pdata.otlpjson import decode_request
from tests.builders import traces_request
from tests.support import OtelpipeProcess, eventually, free_port


def config(tmp_path: Path, port: int, batch_timeout: str) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{port}"}}}},
        "processors": {"batch": {"send_batch_size": 1000, "timeout": batch_timeout,
                                 "flush_when_idle": False}},
        "exporters": {"file": {"path": str(tmp_path / "out" / "traces.jsonl")}},
        "service": {"shutdown_timeout": "5s", "pipelines": {"traces": {
            "receivers": ["otlp"], "processors": ["batch"], "exporters": ["file"]}}},
    }


def post_traces(port: int, n: int) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/traces", data=traces_request(n).SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"}, method="POST")
    with urllib.request.urlopen(req, timeout=20) as resp:
        return int(resp.status)


def test_sigterm_exits_0_after_delivering(tmp_path: Path) -> None:
    port = free_port()
    with OtelpipeProcess(config(tmp_path, port, "10ms"), tmp_path, wait_ports=(port,)) as proc:
        assert post_traces(port, 4) == 200
        start = time.monotonic()
        code = proc.stop(signal.SIGTERM, timeout=10)
        elapsed = time.monotonic() - start
    assert code == 0, proc.logs()
    assert elapsed < 5.0
    lines = (tmp_path / "out" / "traces.jsonl").read_bytes().splitlines()
    assert [decode_request(Signal.TRACES, line) for line in lines] == [traces_request(4)]


def test_sigterm_drains_a_batch_held_by_the_batch_processor(tmp_path: Path) -> None:
    port = free_port()
    with OtelpipeProcess(config(tmp_path, port, "1h"), tmp_path, wait_ports=(port,)) as proc, \
            concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(post_traces, port, 3)
        out = tmp_path / "out" / "traces.jsonl"
        # the request is held in the batch (acknowledged only after delivery)
        eventually(lambda: "otelpipe started" in proc.logs(), timeout=30, what="start-up")
        time.sleep(0.3)  # give the held request time to reach the batch, if it were sent on
        assert not pending.done()
        assert not out.exists() or out.read_bytes() == b""
        code = proc.stop(signal.SIGTERM, timeout=10)
        assert pending.result(timeout=10) == 200
    assert code == 0, proc.logs()
    lines = out.read_bytes().splitlines()
    assert [decode_request(Signal.TRACES, line) for line in lines] == [traces_request(3)]
