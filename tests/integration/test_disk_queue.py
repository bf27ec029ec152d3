"""The disk queue across a SIGKILL, and permanent errors from a backend, end to end.

The backend of the SIGKILL test is a second otelpipe (otlp receiver → file
exporter), so every delivered span can be counted exactly, duplicates
included (Jaeger's query API de-duplicates spans by id, which would hide them).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import orjson
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support import OtelpipeProcess, aeventually, eventually, free_port, http_get, with_logs

pytestmark = pytest.mark.integration

METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
ITEMS = 10_000
PER_REQUEST = 100


def request(n: int, first_span: int, name: str = "op") -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "disk-queue-it"
    ss = rs.scope_spans.add()
    trace_id = uuid.uuid4().bytes
    for i in range(first_span, first_span + n):
        sp = ss.spans.add()
        sp.trace_id = trace_id
        sp.span_id = (i + 1).to_bytes(8, "big")
        sp.name = f"{name}-{i}"
        sp.start_time_unix_nano = 1_700_000_000_000_000_000 + i
        sp.end_time_unix_nano = sp.start_time_unix_nano + 1000
        a = sp.attributes.add()
        a.key, a.value.string_value = "payload", "x" * 64
    return req


async def send_all(port: int, requests: list[bytes]) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = ch.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        sem = asyncio.Semaphore(8)

        async def one(body: bytes) -> None:
            async with sem:
                await call(body, timeout=10)

        await asyncio.gather(*(one(r) for r in requests))


def span_ids_in(path: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    if not path.exists():
        return counts
    for line in path.read_bytes().splitlines():
        for rs in orjson.loads(line).get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for sp in ss.get("spans", []):
                    counts[sp["spanId"]] += 1
    return counts


def metric(port: int, name: str, exporter: str, signal: str | None = "traces") -> float:
    _, body = http_get(f"http://127.0.0.1:{port}/metrics")
    want = f'exporter="{exporter}"'
    for line in body.decode().splitlines():
        if line.startswith(name + "{") and want in line and \
                (signal is None or f'signal="{signal}"' in line):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def queue_size(health: int, exporter: str) -> int:
    _, body = http_get(f"http://127.0.0.1:{health}/health/detailed")
    return int(next(c for c in orjson.loads(body)["components"]
                    if c["id"] == exporter)["queue_size"] or 0)


@pytest.mark.parametrize("engine", ["segment", "sqlite"])
def test_sigkill_with_10000_items_queued_then_all_delivered(tmp_path: Path,
                                                            engine: str) -> None:
    backend_port, port, health = free_port(), free_port(), free_port()
    out = tmp_path / "backend" / "spans.jsonl"
    backend_cfg = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{backend_port}"}}}},
        "exporters": {"file": {"path": str(out)}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }
    exporter = "otlp/backend"
    cfg = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{port}"}}}},
        "exporters": {exporter: {
            "endpoint": f"127.0.0.1:{backend_port}", "tls": {"insecure": True},
            "retry_on_failure": {"initial_interval": "100ms", "max_interval": "500ms",
                                 "max_elapsed_time": 0},
            "sending_queue": {"storage": "disk", "directory": str(tmp_path / "queue"),
                              "engine": engine, "sizer": "items", "queue_size": 50_000,
                              "num_consumers": 4}}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"extensions": ["health"],
                    "pipelines": {"traces": {"receivers": ["otlp"], "exporters": [exporter]}}},
    }
    requests = [request(PER_REQUEST, i).SerializeToString()
                for i in range(0, ITEMS, PER_REQUEST)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sender = OtelpipeProcess(cfg, tmp_path / "a", wait_ports=(port, health)).start()
    try:
        # The backend is down: every request is acknowledged once on disk.
        asyncio.run(send_all(port, requests))
        assert queue_size(health, exporter) == ITEMS
        sender.kill()  # SIGKILL: no shutdown, no flush
    finally:
        if sender.proc is not None and sender.proc.poll() is None:
            sender.kill()
    files = sorted(p.name for p in (tmp_path / "queue" / "otlp%2Fbackend").iterdir())
    print(f"\n{engine}: queue directory after SIGKILL: {files}")

    backend = OtelpipeProcess(backend_cfg, tmp_path / "b", wait_ports=(backend_port,))
    restarted = OtelpipeProcess(cfg, tmp_path / "a", wait_ports=(port, health))
    with backend, restarted:
        assert metric(health, "otelpipe_exporter_queue_recovered_items_total", exporter,
                      None) == ITEMS
        eventually(lambda: len(span_ids_in(out)) >= ITEMS, timeout=60,
                   what=with_logs("every span at the backend", restarted, backend),
                   interval=0.2)
        eventually(lambda: queue_size(health, exporter) == 0,
                   what=with_logs("an empty queue", restarted), interval=0.2)
        time.sleep(1.0)  # anything arriving now would be a duplicate; count it too
        sent_metric = metric(health, "otelpipe_exporter_sent_items_total", exporter)
    counts = span_ids_in(out)
    duplicates = sum(c - 1 for c in counts.values())
    print(f"{engine}: {len(counts)} distinct spans of {ITEMS} delivered after SIGKILL + "
          f"restart; {duplicates} duplicates; sender counted {sent_metric:.0f} sent")
    assert len(counts) == ITEMS
    assert set(counts) == {(i + 1).to_bytes(8, "big").hex() for i in range(ITEMS)}
    assert sent_metric == ITEMS + duplicates


class PickyBackend:
    """An OTLP/HTTP backend answering 400 to requests with a span named `poison-*`."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()  # first span name -> times received
        self.accepted: set[str] = set()

    async def handle(self, request: web.Request) -> web.Response:
        req = ExportTraceServiceRequest.FromString(await request.read())
        names = [sp.name for rs in req.resource_spans for ss in rs.scope_spans
                 for sp in ss.spans]
        self.requests[names[0]] += 1
        if any(n.startswith("poison") for n in names):
            return web.json_response({"code": 3, "message": "poison span"}, status=400)
        self.accepted.update(names)
        return web.Response(body=b"", content_type="application/x-protobuf")


async def test_backend_400_dropped_counted_rest_delivered_no_retry_loop(tmp_path: Path) -> None:
    backend = PickyBackend()
    app = web.Application()
    app.router.add_post("/v1/traces", backend.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    backend_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", backend_port).start()
    port, health = free_port(), free_port()
    exporter = "otlphttp/picky"
    cfg: dict[str, Any] = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{port}"}}}},
        "exporters": {exporter: {
            "endpoint": f"http://127.0.0.1:{backend_port}",
            "retry_on_failure": {"initial_interval": "50ms", "max_elapsed_time": 0},
            "sending_queue": {"storage": "disk", "directory": str(tmp_path / "q")}}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"extensions": ["health"],
                    "pipelines": {"traces": {"receivers": ["otlp"], "exporters": [exporter]}}},
    }
    good = [request(10, 100 * i, "ok").SerializeToString() for i in range(15)]
    bad = [request(10, 100 * i + 5000, "poison").SerializeToString() for i in range(5)]
    proc = OtelpipeProcess(cfg, tmp_path, wait_ports=(port, health)).start()
    try:
        await send_all(port, good[:5] + bad + good[5:])
        await aeventually(lambda: len(backend.accepted) >= 150, timeout=30,
                          what="150 accepted items", interval=0.1)
        await asyncio.sleep(1.5)  # 30 backoff intervals: a retry loop would show by now
        failed = metric(health, "otelpipe_exporter_send_failed_items_total", exporter)
        sent = metric(health, "otelpipe_exporter_sent_items_total", exporter)
        _, detail = http_get(f"http://127.0.0.1:{health}/health/detailed")
    finally:
        proc.stop()
        await runner.cleanup()
    poison_times = sorted({c for n, c in backend.requests.items() if n.startswith("poison")})
    print(f"\n400s: {len(backend.accepted)} spans delivered, {failed:.0f} dropped and counted; "
          f"poison requests received {poison_times} time(s) each")
    assert len(backend.accepted) == 150
    assert failed == 50.0
    assert sent == 150.0
    poison = {n: c for n, c in backend.requests.items() if n.startswith("poison")}
    assert len(poison) == 5
    assert set(poison.values()) == {1}
    assert all(c == 1 for c in backend.requests.values())
    comp = next(c for c in orjson.loads(detail)["components"] if c["id"] == exporter)
    assert comp["healthy"] is True  # bad data is not a backend outage
    assert "HTTP 400: poison span" in (comp["last_error"] or "")


class SlowBackend:
    """An OTLP gRPC backend that takes `delay` seconds per request and counts span ids."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.counts: Counter[bytes] = Counter()

    async def handle(self, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await asyncio.sleep(self.delay)
        req = ExportTraceServiceRequest.FromString(body)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    self.counts[sp.span_id] += 1
        return b""

    async def start(self, port: int) -> grpc.aio.Server:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {"Export": grpc.unary_unary_rpc_method_handler(self.handle)}),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        return server


@pytest.mark.parametrize("engine", ["segment", "sqlite"])
async def test_sigkill_during_delivery_duplicates_counted_nothing_lost(tmp_path: Path,
                                                                       engine: str) -> None:
    backend_port, port, health = free_port(), free_port(), free_port()
    backend = SlowBackend(delay=0.1)
    server = await backend.start(backend_port)
    exporter = "otlp/slow"
    cfg = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{port}"}}}},
        "exporters": {exporter: {
            "endpoint": f"127.0.0.1:{backend_port}", "tls": {"insecure": True},
            "timeout": "10s",
            "retry_on_failure": {"initial_interval": "100ms", "max_elapsed_time": 0},
            "sending_queue": {"storage": "disk", "directory": str(tmp_path / "queue"),
                              "engine": engine, "sizer": "items", "queue_size": 50_000,
                              "num_consumers": 4}}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"extensions": ["health"],
                    "pipelines": {"traces": {"receivers": ["otlp"], "exporters": [exporter]}}},
    }
    requests = [request(PER_REQUEST, i).SerializeToString()
                for i in range(0, ITEMS, PER_REQUEST)]
    try:
        proc = OtelpipeProcess(cfg, tmp_path, wait_ports=(port, health)).start()
        try:
            await send_all(port, requests)
            await aeventually(lambda: len(backend.counts) >= ITEMS // 4, timeout=20,
                              what="a quarter of the items delivered", interval=0.02)
            proc.kill()  # in the middle of delivery: 4 requests in flight
        finally:
            if proc.proc is not None and proc.proc.poll() is None:
                proc.kill()
        await asyncio.sleep(0.5)  # requests the backend was handling at the kill finish
        at_kill = len(backend.counts)
        backend.delay = 0.0
        with OtelpipeProcess(cfg, tmp_path, wait_ports=(port, health)):
            await aeventually(
                lambda: len(backend.counts) >= ITEMS and not queue_size(health, exporter),
                timeout=60, what="every item delivered and the queue empty", interval=0.1)
            recovered = metric(health, "otelpipe_exporter_queue_recovered_items_total",
                               exporter, None)
    finally:
        await server.stop(0)
    duplicates = sum(c - 1 for c in backend.counts.values())
    print(f"\n{engine}: killed with {at_kill} of {ITEMS} spans at the backend; "
          f"{recovered:.0f} items recovered from disk; after restart {len(backend.counts)} "
          f"distinct delivered, {duplicates} duplicates")
    assert len(backend.counts) == ITEMS
    assert at_kill < ITEMS
    assert duplicates == at_kill + recovered - ITEMS
