"""The status page (`/status`, `/status.json`) of the health extension over real HTTP
against a real Service: pipelines and components, a real `slo` connector fed with
OTLP metrics (its SLO cards with burn-down charts), escaping and secrets, and the
sampler's failures on `/health/detailed`."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest

from pipeline.component import (
    Component,
    ComponentConfig,
    ComponentID,
    ConnectorCreateSettings,
    ExporterCreateSettings,
    Factory,
    Kind,
    ReceiverCreateSettings,
    Signal,
)
from pipeline.config.model import validate_config
from pipeline.config.retry import ExporterSettings
from pipeline.connectors.slo.config import SLOConnectorConfig
from pipeline.connectors.slo.connector import SLOConnector
from pipeline.errors import RetryableError
from pipeline.exporterhelper import Exporter
from pipeline.extensions import health
from pipeline.extensions._statuspage import sampler
from pipeline.pdata.batch import Batch
from pipeline.registry import Registry
from pipeline.service import Service
from pipeline.telemetry.metrics import Telemetry
from tests.builders import logs_request
from tests.support import aeventually, free_port
from tests.unit.slo.sim import MINUTE, Clock, RedTraffic

SECRET = "hunter2"
SCRIPT = "<script>alert(1)</script>"


class Empty(ComponentConfig):
    pass


class Recv(Component):
    def __init__(self, settings: ReceiverCreateSettings):
        self.consumers = settings.consumers


class SinkConfig(ComponentConfig):
    password: str = ""
    fail: bool = False


class SinkExporter(Exporter):
    def __init__(self, settings: ExporterCreateSettings, config: SinkConfig):
        super().__init__(settings, ExporterSettings.model_validate(
            {"retry_on_failure": {"enabled": False}, "sending_queue": {"queue_size": 50,
                                                          "sizer": "requests"}}))
        self.fail = config.fail
        self.password = config.password

    async def send(self, batch: Batch) -> None:
        if self.fail:
            raise RetryableError(f"POST https://u:{self.password}@backend/ failed: "
                                 f"password={self.password}")


CLOCK = Clock()


def real_slo_connector(settings: ConnectorCreateSettings,
                       config: SLOConnectorConfig) -> SLOConnector:
    """The real connector, on a simulated clock."""
    return SLOConnector(settings, config, clock=CLOCK)


SIGNALS = frozenset(Signal)
FACTORIES: list[Factory] = [
    health.factory,
    Factory("recv", Kind.RECEIVER, Empty, lambda s, c: Recv(s), SIGNALS),
    Factory("sink", Kind.EXPORTER, SinkConfig, SinkExporter, SIGNALS),
    Factory("slo", Kind.CONNECTOR, SLOConnectorConfig, real_slo_connector,
            connector_pairs=frozenset({(Signal.METRICS, Signal.LOGS)})),
]
SLOS = [
    {"name": "api-availability", "service": "api", "objective": 99.9,
     "sli": {"type": "availability", "match": {"service.name": "api"}}},
    {"name": "api-latency-p95", "service": "api", "objective": 95, "description": SCRIPT,
     "sli": {"type": "latency", "threshold": "200ms", "match": {"service.name": "api"}}},
]


def config(port: int, **status: Any) -> dict[str, Any]:
    return {
        "receivers": {"recv": {}},
        "exporters": {"sink/ok": {"password": SECRET},
                      "sink/down": {"password": SECRET, "fail": True}},
        "connectors": {"slo": {"slos": SLOS, "flush_interval": "1h"}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{port}",
                                  "status_page": {"refresh": "5s", **status}}},
        "service": {"extensions": ["health"], "pipelines": {
            "logs": {"receivers": ["recv"], "exporters": ["sink/ok", "sink/down"]},
            "metrics": {"receivers": ["recv"], "exporters": ["slo"]},
            "logs/alerts": {"receivers": ["slo"], "exporters": ["sink/ok"]}}},
    }


@asynccontextmanager
async def running(**status: Any) -> AsyncIterator[tuple[Service, str, aiohttp.ClientSession]]:
    port = free_port()
    service = Service(validate_config(config(port, **status), Registry(FACTORIES)))
    await service.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield service, f"http://127.0.0.1:{port}", http
    finally:
        await service.shutdown(drain_seconds=5)


def slo_connector(service: Service) -> SLOConnector:
    conn = service.components()[(Kind.CONNECTOR, ComponentID("slo"))]
    assert isinstance(conn, SLOConnector)
    return conn


async def outage(service: Service) -> None:
    """Two hours of 1000 requests a minute through the metrics pipeline; in the last 10
    minutes 10% are errors (the page alert fires, the budget is overspent)."""
    recv = service.components()[(Kind.RECEIVER, ComponentID("recv"))]
    assert isinstance(recv, Recv)
    conn = slo_connector(service)
    traffic = RedTraffic(CLOCK)
    for minute in range(120):
        traffic.requests(1000, errors=100 if minute >= 110 else 0, slow=20)
        CLOCK.advance(MINUTE)
        await recv.consumers[Signal.METRICS].consume(traffic.batch())
        await conn.flush()


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str, aiohttp.ClientResponse]:
    async with http.get(url) as resp:
        return resp.status, await resp.text(), resp


async def test_status_json_has_pipelines_components_and_slos() -> None:
    async with running() as (service, url, http):
        recv = service.components()[(Kind.RECEIVER, ComponentID("recv"))]
        assert isinstance(recv, Recv)
        await recv.consumers[Signal.LOGS].consume(Batch(Signal.LOGS, message=logs_request(5)))
        await outage(service)
        [status, _] = slo_connector(service).status()
        code, text, resp = await get(http, url + "/status.json")
    assert code == 200
    assert resp.content_type == "application/json"
    assert resp.headers["Cache-Control"] == "no-store"
    data = orjson.loads(text)
    assert data["status"] in ("healthy", "degraded")  # sink/down fails once it tried
    assert {p["id"] for p in data["pipelines"]} == {"logs", "metrics", "logs/alerts"}
    logs = next(p for p in data["pipelines"] if p["id"] == "logs")
    assert logs["exporters"] == ["sink/ok", "sink/down"]
    comps = {(c["kind"], c["id"]): c for c in data["components"]}
    assert comps[("exporter", "sink/ok")]["queue_capacity"] == 50
    assert comps[("connector", "slo")]["healthy"] is True
    slos = {s["name"]: s for s in data["slos"]}
    assert set(slos) == {"api-availability", "api-latency-p95"}
    a = slos["api-availability"]
    assert a["objective"] == 0.999
    assert a["budget_remaining"] == pytest.approx(status.error_budget_remaining, abs=1e-6)
    assert a["budget_remaining"] == pytest.approx(1 - (1000 / 120000) / 0.001, abs=1e-6)
    assert a["sli"]["5m"] == pytest.approx(0.9)
    assert a["sli"]["30d"] == pytest.approx(1 - 1000 / 120000)
    assert a["events"] == {"good": 119000.0, "bad": 1000.0, "total": 120000.0}
    [alert] = a["alerts"]
    assert alert["severity"] == "page"
    assert alert["windows"] in ("1h/5m", "6h/30m")
    assert CLOCK.s - 10 * MINUTE < alert["since"] <= CLOCK.s
    assert len(a["budget_series"]) >= 2
    assert a["budget_series"][-1][1] == pytest.approx(a["budget_remaining"], abs=1e-6)
    assert a["connector"] == "slo"
    assert slos["api-latency-p95"]["description"] == SCRIPT
    assert SECRET not in text


async def test_status_html_renders_escaped_charts_and_refreshes() -> None:
    async with running() as (service, url, http):
        await outage(service)
        status, page, resp = await get(http, url + "/status")
    assert status == 200
    assert resp.content_type == "text/html"
    assert '<meta http-equiv="refresh" content="5">' in page
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    # one chart per SLO, with a stable class and the SLO's name
    charts = re.findall(r'<svg class="burndown" id="[^"]+" data-slo="([^"]*)"', page)
    assert charts == ["api-availability", "api-latency-p95"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>" not in page  # nothing unescaped, and no scripts at all
    assert page.count('<polyline class="budget"') == 2
    assert "sink/down" in page
    assert "firing" in page
    assert SECRET not in page
    assert "src=" not in page
    assert "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")


async def test_unhealthy_exporter_error_is_scrubbed() -> None:
    async with running() as (service, url, http):
        recv = service.components()[(Kind.RECEIVER, ComponentID("recv"))]
        assert isinstance(recv, Recv)
        await recv.consumers[Signal.LOGS].consume(Batch(Signal.LOGS, message=logs_request(1)))
        down = service.components()[(Kind.EXPORTER, ComponentID("sink", "down"))]
        # the queue worker tries once (retry disabled)
        await aeventually(lambda: not down.health().healthy, what="sink/down unhealthy")
        _, page, _ = await get(http, url + "/status")
        _, text, _ = await get(http, url + "/status.json")
    data = orjson.loads(text)
    err = next(c for c in data["components"] if c["id"] == "sink/down")["last_error"]
    assert err is not None
    assert "***" in err
    assert SECRET not in err
    assert SECRET not in page
    assert "***" in page
    assert data["status"] == "degraded"


async def test_broken_slo_read_api_keeps_the_page_up(monkeypatch: pytest.MonkeyPatch) -> None:
    async with running() as (service, url, http):
        def broken() -> list[Any]:
            raise RuntimeError(f"boom {SECRET}")

        monkeypatch.setattr(slo_connector(service), "status", broken)
        status, page, _ = await get(http, url + "/status")
        _, text, _ = await get(http, url + "/status.json")
    assert status == 200
    assert "SLO state unavailable: RuntimeError" in page
    assert orjson.loads(text)["slos"] == []
    assert SECRET not in page


async def test_disabled_status_page_is_404() -> None:
    async with running(enabled=False) as (_, url, http):
        status, _, _ = await get(http, url + "/status")
        _, text, _ = await get(http, url + "/health/detailed")
    assert status == 404
    assert "status_page" not in orjson.loads(text)


def broken_counters(telemetry: Telemetry) -> Any:
    raise OSError(f"cannot read /proc: password={SECRET}")


async def test_sampler_failures_are_logged_once_and_shown_on_detailed(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.ERROR)
    async with running(sample_interval="10ms") as (_, url, http):
        _, text, _ = await get(http, url + "/health/detailed")
        assert orjson.loads(text)["status_page"] == {
            "sampler_failures": 0, "sampler_last_error": None, "sampler_last_error_time": None}
        monkeypatch.setattr(sampler, "counter_totals", broken_counters)

        async def after_3_failures() -> dict[str, Any]:
            _, text, _ = await get(http, url + "/health/detailed")
            state: dict[str, Any] = orjson.loads(text)["status_page"]
            return state if state["sampler_failures"] >= 3 else {}

        state = await aeventually(after_3_failures, what="3 sampler failures")
    assert state["sampler_failures"] >= 3  # sampling goes on
    assert state["sampler_last_error"] == "OSError: cannot read /proc: password=***"
    assert state["sampler_last_error_time"].endswith("Z")
    logged = [r for r in caplog.records if r.getMessage().startswith("status page throughput")]
    assert len(logged) == 1  # rate-limited
    assert SECRET not in caplog.text
