"""Extension `health` over real HTTP, against a real Service built from a config dict.

The registry is built here (health plus tiny test-only components) rather than
`default_registry()`, so these tests do not depend on other built-ins.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline import __version__
from pipeline.component import (
    Component,
    ComponentConfig,
    ComponentHealth,
    ComponentID,
    Consumer,
    ExporterCreateSettings,
    Factory,
    Host,
    Kind,
    PipelineInfo,
    ProcessorCreateSettings,
    ReceiverCreateSettings,
    Signal,
)
from pipeline.config.model import validate_config
from pipeline.config.retry import ExporterSettings
from pipeline.errors import ConfigError, RetryableError
from pipeline.exporterhelper import Exporter
from pipeline.extensions import health
from pipeline.extensions.health import HealthConfig, HealthExtension, scrub
from pipeline.pdata.batch import Batch
from pipeline.receiverhelper import pressure
from pipeline.registry import Registry, builtin_modules
from pipeline.service import Service
from tests.support import extension_settings, free_port

SECRET = "s3cr3t"
SIGNALS = frozenset(Signal)


# Test-only components ---------------------------------------------------------------
class GateReceiver(Component):
    """Does nothing; `start`/`shutdown` can be held open to observe the service mid-way."""

    def __init__(self, settings: ReceiverCreateSettings):
        self.consumers = settings.consumers
        self.in_start = asyncio.Event()
        self.in_shutdown = asyncio.Event()
        self.start_gate: asyncio.Event | None = None
        self.shutdown_gate: asyncio.Event | None = None

    async def start(self, host: Host) -> None:
        self.in_start.set()
        if self.start_gate is not None:
            await self.start_gate.wait()

    async def shutdown(self) -> None:
        self.in_shutdown.set()
        if self.shutdown_gate is not None:
            await self.shutdown_gate.wait()


class PassProcessor(Component, Consumer):
    def __init__(self, settings: ProcessorCreateSettings):
        self.next = settings.next_consumer

    async def consume(self, batch: Batch) -> None:
        await self.next.consume(batch)


class FlakyConfig(ComponentConfig):
    endpoint: str = "https://backend.example/v1/traces"
    password: str = ""
    queue_size: int = 0  # 0: no sending queue


class FlakyExporter(Exporter):
    """Fails every send while `fail` is set; `gate` holds sends open."""

    def __init__(self, settings: ExporterCreateSettings, config: FlakyConfig):
        queue = ({"queue_size": config.queue_size, "sizer": "requests", "num_consumers": 1}
                 if config.queue_size else {"enabled": False})
        super().__init__(settings, ExporterSettings.model_validate(
            {"retry_on_failure": {"enabled": False}, "sending_queue": queue}))
        self.fail: str | None = None
        self.gate: asyncio.Event | None = None

    async def send(self, batch: Batch) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise RetryableError(self.fail)


class BrokenHealth(Component, Consumer):
    async def consume(self, batch: Batch) -> None:
        return None

    def health(self) -> ComponentHealth:
        raise RuntimeError(f"bug with {SECRET}")


class Empty(ComponentConfig):
    pass


TEST_FACTORIES: list[Factory] = [
    health.factory,
    Factory("gate", Kind.RECEIVER, Empty, lambda s, c: GateReceiver(s), SIGNALS),
    Factory("pass", Kind.PROCESSOR, Empty, lambda s, c: PassProcessor(s), SIGNALS),
    Factory("flaky", Kind.EXPORTER, FlakyConfig, FlakyExporter, SIGNALS),
    Factory("broken", Kind.EXPORTER, Empty, lambda s, c: BrokenHealth(), SIGNALS),
]


def registry() -> Registry:
    return Registry(TEST_FACTORIES)


def raw_config(port: int, **extra_exporters: dict[str, Any]) -> dict[str, Any]:
    exporters: dict[str, Any] = {
        "flaky/a": {"password": SECRET, "endpoint": f"https://otel:{SECRET}@backend.example/"},
        "flaky/q": {"password": SECRET, "queue_size": 5},
        **extra_exporters,
    }
    return {
        "receivers": {"gate": {}},
        "processors": {"pass": {}},
        "exporters": exporters,
        "extensions": {"health": {"endpoint": f"127.0.0.1:{port}"}},
        "service": {
            "extensions": ["health"],
            "pipelines": {"traces": {"receivers": ["gate"], "processors": ["pass"],
                                     "exporters": list(exporters)}},
        },
    }


def spans(n: int) -> Batch:
    req = ExportTraceServiceRequest()
    scope = req.resource_spans.add().scope_spans.add()
    for i in range(n):
        scope.spans.add(name=f"span-{i}")
    return Batch(Signal.TRACES, message=req)


@dataclass
class Running:
    service: Service
    url: str
    http: aiohttp.ClientSession

    def component(self, kind: Kind, cid: str) -> Any:
        return self.service.components()[(kind, ComponentID.parse(cid))]

    @property
    def receiver(self) -> GateReceiver:
        r: GateReceiver = self.component(Kind.RECEIVER, "gate")
        return r

    def exporter(self, cid: str) -> FlakyExporter:
        e: FlakyExporter = self.component(Kind.EXPORTER, cid)
        return e

    async def send(self, batch: Batch) -> None:
        await self.receiver.consumers[Signal.TRACES].consume(batch)

    async def get(self, path: str) -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.http.get(self.url + path) as resp:
            body = await resp.read()
            data = orjson.loads(body) if resp.content_type == "application/json" else body
            return resp.status, data, resp

    async def raw(self, path: str) -> bytes:
        async with self.http.get(self.url + path) as resp:
            return await resp.read()


def build(raw: dict[str, Any]) -> Service:
    return Service(validate_config(raw, registry()))


@asynccontextmanager
async def running(raw: dict[str, Any] | None = None, *, start: bool = True
                  ) -> AsyncIterator[Running]:
    port = free_port()
    service = build(raw or raw_config(port))
    if raw is not None:
        port = int(service.config.components[Kind.EXTENSION][ComponentID("health")]
                   .endpoint.rpartition(":")[2])  # type: ignore[attr-defined]
    async with aiohttp.ClientSession() as http:
        r = Running(service, f"http://127.0.0.1:{port}", http)
        if start:
            await service.start()
        try:
            yield r
        finally:
            for cid in ("flaky/a", "flaky/q"):
                if (Kind.EXPORTER, ComponentID.parse(cid)) in service.components():
                    gate = r.exporter(cid).gate
                    if gate is not None:
                        gate.set()
            await service.shutdown(drain_seconds=5)


# Tests ------------------------------------------------------------------------------
async def test_health_reports_status_timestamp_and_version() -> None:
    async with running() as r:
        status, body, resp = await r.get("/health")
        assert status == 200
        assert resp.content_type == "application/json"
        assert resp.headers["Cache-Control"] == "no-store"
        assert set(body) == {"status", "timestamp", "version"}
        assert body["status"] == "healthy"
        assert body["version"] == __version__
        assert body["timestamp"].endswith("Z")
        ts = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
        assert ts.utcoffset() == timedelta(0)


async def test_liveness() -> None:
    async with running() as r:
        status, body, _ = await r.get("/health/liveness")
        assert status == 200
        assert body["status"] == "alive"
        assert body["timestamp"].endswith("Z")


async def test_readiness_follows_exporter_health() -> None:
    async with running() as r:
        status, body, _ = await r.get("/health/readiness")
        assert (status, body["status"]) == (200, "ready")

        exp = r.exporter("flaky/a")
        exp.fail = f"POST https://otel:{SECRET}@backend.example/v1/traces: connection refused"
        with pytest.raises(RetryableError):
            await r.send(spans(2))
        status, body, _ = await r.get("/health/readiness")
        assert status == 503
        assert body["status"] == "not_ready"
        assert "reason" not in body  # the service runs; a component fails
        assert body["failing"] == [{
            "component": "exporter flaky/a",
            "error": "POST https://***@backend.example/v1/traces: connection refused"}]
        # /health is about the process running, not about backends.
        assert (await r.get("/health"))[0] == 200

        exp.fail = None
        await r.send(spans(1))
        status, body, _ = await r.get("/health/readiness")
        assert (status, body["status"]) == (200, "ready")


async def test_readiness_says_why_while_the_memory_limiter_refuses() -> None:
    async with running() as r:
        pressure.MEMORY.refuse("processor memory_limiter in traces",
                               "process uses more than the soft limit of 100 MiB", 2.0)
        try:
            status, body, resp = await r.get("/health/readiness")
            detailed = (await r.get("/health/detailed"))[1]
        finally:
            pressure.MEMORY.accept("processor memory_limiter in traces")
        assert status == 503
        assert resp.headers["Retry-After"] == "2"
        assert body["status"] == "not_ready"
        assert body["reason"] == ("memory_limiter refusing data: processor memory_limiter in "
                                  "traces: process uses more than the soft limit of 100 MiB")
        assert body["failing"] == []
        assert detailed["memory_limiter_refusing"].startswith("processor memory_limiter")
        assert (await r.get("/health/readiness"))[0] == 200
        assert (await r.get("/health/detailed"))[1]["memory_limiter_refusing"] is None


async def test_detailed_shows_the_event_loop_lag() -> None:
    async with running() as r:
        await asyncio.sleep(0.25)  # the service's monitor samples every 100 ms
        body = (await r.get("/health/detailed"))[1]
        assert 0.0 <= body["event_loop_lag_seconds"] < 1.0
        assert body["event_loop_lag_max_seconds"] >= body["event_loop_lag_seconds"]
        metrics = await r.raw("/metrics")
        assert b"otelpipe_event_loop_lag_seconds_bucket{le=\"0.1\"}" in metrics


async def test_detailed_lists_pipelines_components_and_queues() -> None:
    async with running() as r:
        q = r.exporter("flaky/q")
        q.gate = asyncio.Event()  # hold deliveries so the queue fills
        await r.send(spans(3))
        await r.send(spans(4))
        status, body, _ = await r.get("/health/detailed")
        assert status == 200
        assert body["status"] == "healthy"
        assert body["ready"] is True
        assert body["version"] == __version__
        assert body["uptime_seconds"] >= 0
        assert body["start_time"].endswith("Z")
        assert body["pipelines"] == [{
            "id": "traces", "signal": "traces", "receivers": ["gate"], "processors": ["pass"],
            "exporters": ["flaky/a", "flaky/q"]}]
        by_name = {(c["kind"], c["id"], c["pipeline"]): c for c in body["components"]}
        assert set(by_name) == {("extension", "health", None), ("exporter", "flaky/a", None),
                                ("exporter", "flaky/q", None), ("processor", "pass", "traces"),
                                ("receiver", "gate", None)}
        queued = by_name[("exporter", "flaky/q", None)]
        assert queued == {"kind": "exporter", "id": "flaky/q", "pipeline": None,
                          "healthy": True, "last_error": None,
                          "queue_size": 2, "queue_capacity": 5}
        unqueued = by_name[("exporter", "flaky/a", None)]
        assert unqueued["queue_size"] is None
        assert unqueued["queue_capacity"] is None

        q.gate.set()
        await q._queue.join()  # type: ignore[union-attr]
        body = (await r.get("/health/detailed"))[1]
        by_id = {c["id"]: c for c in body["components"]}
        assert by_id["flaky/q"]["queue_size"] == 0

        r.exporter("flaky/a").fail = "backend answered 502"
        with pytest.raises(RetryableError):
            await r.send(spans(1))
        body = (await r.get("/health/detailed"))[1]
        assert body["status"] == "degraded"
        assert body["ready"] is False
        by_id = {c["id"]: c for c in body["components"]}
        assert by_id["flaky/a"]["healthy"] is False
        assert by_id["flaky/a"]["last_error"] == "backend answered 502"


async def test_no_secret_in_any_response() -> None:
    async with running() as r:
        exp = r.exporter("flaky/a")
        exp.fail = f"POST https://otel:{SECRET}@backend.example/ failed (password={SECRET})"
        with pytest.raises(RetryableError):
            await r.send(spans(1))
        bodies = [await r.raw(p) for p in health.PATHS]
        bodies.append(await r.raw("/nope"))
        assert all(bodies)
        for body in bodies:
            assert SECRET.encode() not in body
        failing = orjson.loads(await r.raw("/health/readiness"))["failing"]
        # An unquoted value is masked up to whitespace, `&`, `,` or `;`: over-masking
        # a closing parenthesis beats leaking the tail of a password containing one.
        assert failing[0]["error"] == ("POST https://***@backend.example/ failed "
                                       "(password=***")


async def test_metrics_in_prometheus_format() -> None:
    async with running() as r:
        await r.send(spans(3))
        for path in ("/metrics", "/health/metrics"):
            async with r.http.get(r.url + path) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == r.service.telemetry.content_type
                assert resp.headers["Content-Type"].startswith("text/plain; version=")
                text = (await resp.read()).decode()
            assert "otelpipe_process_resident_memory_bytes " in text
            assert "otelpipe_process_cpu_seconds_total " in text
            assert 'otelpipe_exporter_sent_items_total{exporter="flaky/a",signal="traces"} 3.0' \
                in text
            assert 'otelpipe_exporter_queue_capacity{exporter="flaky/q"} 5.0' in text
            assert 'otelpipe_build_info{version="' + __version__ + '"} 1.0' in text


async def test_unknown_path_and_method() -> None:
    async with running() as r:
        for path in ("/", "/nope", "/health/", "/health/readiness/x"):
            status, body, resp = await r.get(path)
            assert status == 404, path
            assert resp.content_type == "application/json"
            assert body["status"] == "not_found"
            assert "/health/readiness" in body["endpoints"]
        async with r.http.post(r.url + "/health") as resp:
            assert resp.status == 405
            assert resp.content_type == "application/json"
            assert "GET" in resp.headers["Allow"]
        async with r.http.head(r.url + "/health/readiness") as resp:
            assert resp.status == 200


async def test_not_ready_while_starting_and_shutting_down() -> None:
    port = free_port()
    service = build(raw_config(port))
    receiver: GateReceiver = service.components()[(Kind.RECEIVER, ComponentID("gate"))]  # type: ignore[assignment]
    receiver.start_gate = asyncio.Event()
    receiver.shutdown_gate = asyncio.Event()
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:

        async def get(path: str) -> tuple[int, Any]:
            async with http.get(url + path) as resp:
                return resp.status, orjson.loads(await resp.read())

        starting = asyncio.create_task(service.start())
        await receiver.in_start.wait()  # extensions start first: the server listens
        status, body = await get("/health/readiness")
        assert status == 503
        assert body["status"] == "not_ready"
        assert "starting" in body["reason"]
        assert body["failing"] == []
        assert (await get("/health"))[1]["status"] == "unhealthy"
        assert (await get("/health"))[0] == 503
        assert (await get("/health/liveness"))[0] == 200
        detailed = (await get("/health/detailed"))[1]
        assert detailed["status"] == "unhealthy"
        assert detailed["ready"] is False

        receiver.start_gate.set()
        await starting
        assert (await get("/health/readiness"))[0] == 200

        stopping = asyncio.create_task(service.shutdown(drain_seconds=5))
        await receiver.in_shutdown.wait()  # receivers stop first; the extension last
        status, body = await get("/health/readiness")
        assert status == 503
        assert "shutting down" in body["reason"]
        assert (await get("/health"))[0] == 503
        assert (await get("/health/liveness"))[0] == 200

        receiver.shutdown_gate.set()
        assert await stopping is True
        with pytest.raises(aiohttp.ClientConnectionError):
            await get("/health/liveness")  # the server is gone after shutdown


async def test_health_method_that_raises_marks_component_failing() -> None:
    port = free_port()
    raw = raw_config(port, broken={})
    async with running(raw) as r:
        status, body, _ = await r.get("/health/readiness")
        assert status == 503
        assert body["failing"] == [{"component": "exporter broken",
                                    "error": "health check failed: RuntimeError"}]
        assert SECRET.encode() not in await r.raw("/health/detailed")


class MiniHost(Host):
    """Any Host works: without component_entries(), components() is used."""

    def __init__(self, components: Mapping[tuple[Kind, ComponentID], Component]):
        self._components = components
        self.running = True

    def components(self) -> Mapping[tuple[Kind, ComponentID], Component]:
        return self._components

    def pipelines(self) -> Mapping[str, PipelineInfo]:
        return {}

    def started(self) -> bool:
        return self.running


async def test_works_with_any_host() -> None:
    port = free_port()
    ext = HealthExtension(extension_settings("health"),
                          HealthConfig(endpoint=f"127.0.0.1:{port}"))
    host = MiniHost({(Kind.EXPORTER, ComponentID("broken")): BrokenHealth()})
    await ext.start(host)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/health/readiness") as resp:
                assert resp.status == 503
                body = orjson.loads(await resp.read())
            assert body["failing"][0]["component"] == "exporter broken"
            async with http.get(f"http://127.0.0.1:{port}/health/detailed") as resp:
                assert orjson.loads(await resp.read())["pipelines"] == []
    finally:
        await ext.shutdown()


async def test_port_in_use_fails_start() -> None:
    port = free_port()
    async with running(raw_config(port)):
        other = build(raw_config(port))
        with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
            await other.start()


# Config and registration ------------------------------------------------------------
def test_config_defaults_and_validation() -> None:
    assert HealthConfig().endpoint == "localhost:13133"
    assert "pipeline.extensions.health" in builtin_modules()
    assert registry().get(Kind.EXTENSION, "health_check") is health.factory
    raw = raw_config(13133)
    raw["extensions"] = {"health": {"endpoint": "localhost", "path": "/x"}}
    with pytest.raises(ConfigError) as exc:
        validate_config(raw, registry())
    text = str(exc.value)
    assert "extensions.health.endpoint: " in text
    assert "extensions.health.path: unknown key" in text


@pytest.mark.parametrize(("text", "expected"), [
    ("dial tcp 10.0.0.1:9092: connection refused", "dial tcp 10.0.0.1:9092: connection refused"),
    ("GET http://u:p@h:9200/_bulk: 401", "GET http://***@h:9200/_bulk: 401"),
    ("header Authorization: Bearer abc.def", "header Authorization: ***"),
    ("sent Bearer abc.def-ghi", "sent Bearer ***"),
    ("https://h/x?api_key=XYZ&q=1 failed", "https://h/x?api_key=***&q=1 failed"),
    ("auth failed: password='x y'", "auth failed: password=***"),
    ("token: abc", "token: ***"),
])
def test_scrub(text: str, expected: str) -> None:
    assert scrub(text) == expected


def test_scrub_bounds_length() -> None:
    assert len(scrub("x" * 5000)) == health.MAX_ERROR_CHARS + 1


class FakeSupervision:
    """The supervisor of `service.workers` > 1 as the service shows it to health."""

    def __init__(self) -> None:
        self.workers = [{"index": 0, "pid": 10, "state": "running", "restarts": 0,
                         "last_exit": None, "last_exit_time": None, "primary": True},
                        {"index": 1, "pid": 11, "state": "running", "restarts": 2,
                         "last_exit": "killed by SIGKILL", "last_exit_time": 1.0}]
        self.own: bytes | None = None

    def states(self) -> list[dict[str, Any]]:
        return self.workers

    async def merged_metrics(self, own: bytes) -> bytes:
        self.own = own
        return b"# TYPE merged counter\nmerged_total 3.0\n"


async def test_detailed_lists_the_workers_and_metrics_sum_them() -> None:
    async with running() as r:
        _, body, _ = await r.get("/health/detailed")
        assert "workers" not in body  # one process
        sup = FakeSupervision()
        r.service.supervisor = sup
        _, body, _ = await r.get("/health/detailed")
        assert body["workers"] == sup.workers
        assert body["status"] == "healthy"
        sup.workers[1]["state"] = "restarting"
        _, body, _ = await r.get("/health/detailed")
        assert body["status"] == "degraded"
        assert (await r.get("/health/readiness"))[0] == 200  # the others serve
        assert await r.raw("/metrics") == b"# TYPE merged counter\nmerged_total 3.0\n"
        assert sup.own is not None
        assert b"otelpipe_process_resident_memory_bytes" in sup.own  # its own registry



async def test_a_workers_unhealthy_component_makes_the_service_not_ready() -> None:
    async with running() as r:
        sup = FakeSupervision()
        r.service.supervisor = sup
        assert (await r.get("/health/readiness"))[0] == 200
        sup.workers[1]["failing"] = [{"component": "exporter otlp",
                                      "error": "connect to http://u:secret@h:1 refused"}]
        status, body, _ = await r.get("/health/readiness")
        assert status == 503
        assert body["status"] == "not_ready"
        assert body["failing"] == [{"component": "worker 1: exporter otlp",
                                    "error": scrub("connect to http://u:secret@h:1 refused")}]
        assert "secret" not in str(body)
        _, body, _ = await r.get("/health/detailed")
        assert body["status"] == "degraded"
        assert body["ready"] is False
        assert body["workers"][1]["failing"][0]["component"] == "exporter otlp"
        sup.workers[1]["failing"] = []
        assert (await r.get("/health/readiness"))[0] == 200
