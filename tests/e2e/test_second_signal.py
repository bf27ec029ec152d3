"""Telling the operator at once, on a real `otelpipe run` whose backend is down.

- the exporter's first delivery failure is logged at warn as it happens, not when
  its retries run out (5 minutes with the defaults);
- SIGTERM starts the drain (the memory queue waits for the backend, up to
  `shutdown_timeout`); a second SIGTERM 0.5 s later exits at once with 143 (128 +
  SIGTERM) and the log names what was left: the exporter's queue, the receiver's
  requests in flight.
"""

from __future__ import annotations

import http.client
import signal
import time
from pathlib import Path
from typing import Any

import orjson

from tests.builders import spans_request
from tests.support import OtelpipeProcess, eventually, free_port


def post_spans(port: int, n: int) -> int:
    body = spans_request(bytes([n]) * 16, 2, service="second-signal").SerializeToString()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def records(proc: OtelpipeProcess) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in proc.logs().splitlines() if line.startswith("{")]


def test_backend_down_is_logged_at_once_and_a_second_sigterm_exits(tmp_path: Path) -> None:
    port, dead = free_port(), free_port()  # nothing listens on `dead`
    cfg = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{port}"}}}},
        "exporters": {"otlphttp/down": {
            "endpoint": f"http://user:hunter2@127.0.0.1:{dead}",
            "sending_queue": {"enabled": True, "num_consumers": 1,
                              "sizer": "requests"}}},
        "service": {"shutdown_timeout": "30s", "pipelines": {"traces": {
            "receivers": ["otlp"], "exporters": ["otlphttp/down"]}}},
    }
    proc = OtelpipeProcess(cfg, tmp_path, wait_ports=(port,)).start()
    try:
        started = time.monotonic()
        for i in range(3):
            assert post_spans(port, i + 1) == 200  # acknowledged once queued
        failed = eventually(
            lambda: [r for r in records(proc) if r["msg"] == "exporter otlphttp/down cannot "
                     "deliver"], timeout=10, interval=0.05, what="the first failure logged")
        assert time.monotonic() - started < 5  # not when retries run out
        assert failed[0]["level"] == "warning"
        assert "hunter2" not in proc.logs()
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGTERM)
        eventually(lambda: [r for r in records(proc) if r["msg"] == "shutting down"],
                   timeout=5, interval=0.02, what="the drain to begin")
        time.sleep(0.5)
        second = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        code = proc.proc.wait(10)
        elapsed = time.monotonic() - second
    finally:
        proc.stop()
    assert code == 143, proc.logs()
    assert elapsed < 2, f"exited {elapsed:.1f}s after the second signal"
    [report] = [r for r in records(proc) if r["msg"] == "second signal: exiting without draining"]
    assert report["signal"] == "SIGTERM"
    left = {c["component"]: c for c in report["not_drained"]}
    assert left["exporter otlphttp/down"]["queue_size"] == 3, left
    assert left["receiver otlp"]["requests_in_flight"] == 0, left
    assert not [r for r in records(proc) if r["msg"] == "stopped"]
