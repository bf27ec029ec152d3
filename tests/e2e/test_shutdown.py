"""SIGTERM / SIGINT on a real `otelpipe run` while spans flow.

The batch processor holds a partial batch (send_batch_size 100, timeout 60 s)
while client threads keep sending small requests over gRPC and HTTP. On the
signal the process must drain: exit 0 within service.shutdown_timeout, with
every span whose request got OK in the file exactly once. Its logs are JSON
lines, every one of them.

A shutdown_timeout shorter than a stuck exporter: the process still exits 0,
and says in its log that it did not drain in time.
"""

from __future__ import annotations

import http.client
import os
import signal
import struct
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest

from pipeline.processors.batch import BatchConfig
from tests.builders import spans_request
from tests.support import REPO, OtelpipeProcess, eventually, free_port

METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
# 16 senders x 7 spans: every 15 requests fill a batch of 100 (sent at once), the
# others wait in a partial batch that only its 60 s timeout or the shutdown sends.
SPANS_PER_REQUEST = 7
SHUTDOWN_TIMEOUT = 10.0


def spans(trace_id: bytes, n: int) -> bytes:
    raw: bytes = spans_request(trace_id, n, service="shutdown").SerializeToString()
    return raw


class Stream:
    """Client threads sending one request after another until stopped.

    Each request has its own trace id; `ok` maps the ids of acknowledged
    requests to their span count, `sent` holds every id sent.
    """

    def __init__(self, grpc_port: int, http_port: int, threads: int = 16):
        self.grpc_port, self.http_port = grpc_port, http_port
        self.ok: dict[str, int] = {}
        self.sent: set[str] = set()
        self.errors: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(t,), daemon=True)
                        for t in range(threads)]

    def start(self) -> Stream:
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(30)
            assert not t.is_alive(), "a client thread hung"

    def acked_spans(self) -> int:
        with self.lock:
            return sum(self.ok.values())

    def _run(self, t: int) -> None:
        use_grpc = t % 2 == 0
        channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        seq = 0
        try:
            while not self.stopping.is_set():
                tid = struct.pack(">HI", t, seq) + b"\x5a" * 10
                seq += 1
                with self.lock:
                    self.sent.add(tid.hex())
                outcome = self._send_grpc(call, tid) if use_grpc else self._send_http(tid)
                with self.lock:
                    if outcome == "ok":
                        self.ok[tid.hex()] = SPANS_PER_REQUEST
                    else:
                        self.errors[outcome] += 1
                if outcome != "ok":
                    time.sleep(0.05)  # the server is going away; do not spin
        finally:
            channel.close()

    def _send_grpc(self, call: Any, tid: bytes) -> str:
        try:
            call(spans(tid, SPANS_PER_REQUEST), timeout=SHUTDOWN_TIMEOUT * 3)
        except grpc.RpcError as exc:
            return f"grpc {exc.code().name}"
        return "ok"

    def _send_http(self, tid: bytes) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port,
                                          timeout=SHUTDOWN_TIMEOUT * 3)
        try:
            conn.request("POST", "/v1/traces", spans(tid, SPANS_PER_REQUEST),
                         {"Content-Type": "application/x-protobuf"})
            resp = conn.getresponse()
            resp.read()
        except OSError as exc:
            return f"http {type(exc).__name__}"
        finally:
            conn.close()
        return "ok" if resp.status == 200 else f"http {resp.status}"


def batch_config() -> dict[str, Any]:
    """Size-or-timeout batching: a partial batch waits for the 60 s timeout."""
    cfg: dict[str, Any] = {"send_batch_size": 100, "timeout": "60s"}
    if "flush_when_idle" in BatchConfig.model_fields:  # else it never flushes early
        cfg["flush_when_idle"] = False
    return cfg


def config(tmp_path: Path, grpc_port: int, http_port: int, exporter: dict[str, Any],
           shutdown_timeout: float) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                                             "http": {"endpoint": f"127.0.0.1:{http_port}"}}}},
        "processors": {"batch": batch_config()},
        "exporters": exporter,
        "service": {"shutdown_timeout": f"{shutdown_timeout}s", "pipelines": {"traces": {
            "receivers": ["otlp"], "processors": ["batch"], "exporters": list(exporter)}}},
    }


def json_logs(proc: OtelpipeProcess) -> list[dict[str, Any]]:
    """Every line the process wrote (stderr, and stdout with it), parsed as JSON."""
    lines = proc.logs().splitlines()
    assert lines
    return [orjson.loads(line) for line in lines]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_drains_in_flight_spans(tmp_path: Path, sig: signal.Signals) -> None:
    gport, hport = free_port(), free_port()
    out = tmp_path / "spans.jsonl"
    exporter = {"file": {"path": str(out), "format": "json"}}
    proc = OtelpipeProcess(config(tmp_path, gport, hport, exporter, SHUTDOWN_TIMEOUT), tmp_path,
                           wait_ports=(gport, hport)).start()
    stream = Stream(gport, hport).start()
    try:
        # Spans flow: several full batches were written and acknowledged.
        eventually(lambda: stream.acked_spans() >= 300, timeout=20, interval=0.02,
                   what="300 acknowledged spans")
        assert proc.proc is not None
        started = time.monotonic()
        proc.proc.send_signal(sig)
        code = proc.proc.wait(SHUTDOWN_TIMEOUT + 5)
        elapsed = time.monotonic() - started
    finally:
        stream.stop()
        proc.stop()
    assert code == 0, proc.logs()
    assert elapsed < SHUTDOWN_TIMEOUT, f"shutdown took {elapsed:.1f}s"

    written = Counter(orjson.loads(line)["trace_id"] for line in out.read_bytes().splitlines())
    missing = {t: n for t, n in stream.ok.items() if written[t] != n}
    assert not missing, f"{len(missing)} acknowledged requests not written exactly once"
    # At-least-once: a request can be written and still get an error (the connection
    # closed before the answer); it must be one that was sent, written whole, once.
    assert set(written) <= stream.sent
    assert all(n == SPANS_PER_REQUEST for n in written.values())
    extra = set(written) - set(stream.ok)
    print(f"{sig.name}: {len(stream.ok)} requests acknowledged "
          f"({sum(stream.ok.values())} spans), {len(extra)} written without an OK, "
          f"shutdown in {elapsed:.2f}s, client errors {dict(stream.errors)}")

    logs = json_logs(proc)
    stopped = [r for r in logs if r["msg"] == "stopped"]
    assert stopped, logs[-5:]
    assert stopped[-1]["drained"] is True, logs[-5:]
    assert not [r for r in logs if r["level"] == "error"], logs


STUCK_EXPORTER = """
import asyncio
import os

from pipeline.component import ComponentConfig, Factory, Kind, Signal
from pipeline.exporterhelper import Exporter


class StuckConfig(ComponentConfig):
    pass


class StuckExporter(Exporter):
    async def send(self, batch):
        with open(os.environ["STUCK_MARKER"], "a") as f:  # tell the test a send began
            f.write(f"{batch.items}\\n")
        await asyncio.Event().wait()  # a backend that never answers


factory = Factory(type="stuck", kind=Kind.EXPORTER, config_model=StuckConfig,
                  create=lambda settings, config: StuckExporter(settings),
                  signals=frozenset(Signal), description="never finishes a send (tests)")
"""


def stuck_exporter_plugin(tmp_path: Path) -> dict[str, str]:
    """A third-party exporter, installed the way plugins are: an `otelpipe.components`
    entry point of a distribution on the path. Returns the environment that sees it."""
    root = tmp_path / "plugins"
    dist = root / "otelpipe_stuck_exporter-0.1.dist-info"
    dist.mkdir(parents=True)
    (root / "otelpipe_stuck_exporter.py").write_text(STUCK_EXPORTER)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: otelpipe-stuck-exporter\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[otelpipe.components]\nstuck = otelpipe_stuck_exporter:factory\n")
    return {"PYTHONPATH": os.pathsep.join([str(root), str(REPO)]),
            "STUCK_MARKER": str(tmp_path / "sends")}


def test_shutdown_timeout_shorter_than_a_stuck_exporter(tmp_path: Path) -> None:
    """An exporter that never returns holds the batch: the drain cannot finish."""
    gport, hport = free_port(), free_port()
    timeout = 1.0
    cfg = config(tmp_path, gport, hport, {"stuck": {}}, timeout)
    cfg["processors"]["batch"]["send_batch_size"] = SPANS_PER_REQUEST  # send each at once
    proc = OtelpipeProcess(cfg, tmp_path, env=stuck_exporter_plugin(tmp_path),
                           wait_ports=(gport, hport))
    proc.start()
    stream = Stream(gport, hport, threads=2).start()
    sends = tmp_path / "sends"
    try:
        eventually(lambda: len(sends.read_text().split()) >= 2, timeout=10, interval=0.02,
                   what="both clients' requests stuck in the exporter")
        assert proc.proc is not None
        started = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        code = proc.proc.wait(15)
        elapsed = time.monotonic() - started
    finally:
        stream.stop()
        proc.stop()
    assert code == 0, proc.logs()
    # Each component still due gets at least 0.1 s after the deadline passed.
    assert elapsed < timeout + 3, f"shutdown took {elapsed:.1f}s"
    assert not stream.ok  # nothing was delivered: nothing was acknowledged
    logs = json_logs(proc)
    assert [r for r in logs if r["msg"] == "component did not drain in time"], logs
    stopped = [r for r in logs if r["msg"] == "stopped"]
    assert stopped, logs
    assert stopped[-1]["drained"] is False, logs
