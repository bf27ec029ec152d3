"""The status page (`/status`, `/status.json`) of the health extension: throughput from
sampled counters, pipelines and components, SLO cards with burn-down charts, escaping
and secrets — over real HTTP against a real Service with test-only components."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest

from pipeline.component import (
    Component,
    ComponentConfig,
    ComponentID,
    Consumer,
    CreateSettings,
    Factory,
    Kind,
    Signal,
)
from pipeline.config.model import validate_config
from pipeline.config.retry import ExporterSettings
from pipeline.errors import RetryableError
from pipeline.exporterhelper import Exporter
from pipeline.extensions import health
from pipeline.extensions.statuspage import (
    ThroughputSampler,
    render_burndown,
    render_html,
    slo_view,
)
from pipeline.pdata.batch import Batch
from pipeline.registry import Registry
from pipeline.service import Service
from pipeline.telemetry.metrics import Telemetry
from tests.support import free_port
from tests.unit.builders import logs_request

SECRET = "hunter2"
DAY = 86400.0
NOW = 1_700_000_000.0


class Empty(ComponentConfig):
    pass


class Recv(Component):
    def __init__(self, settings: CreateSettings):
        self.consumers = settings.consumers


class SinkConfig(ComponentConfig):
    password: str = ""
    fail: bool = False


class SinkExporter(Exporter):
    def __init__(self, settings: CreateSettings, config: SinkConfig):
        super().__init__(settings, ExporterSettings.model_validate(
            {"retry_on_failure": {"enabled": False}, "sending_queue": {"queue_size": 50}}))
        self.fail = config.fail
        self.password = config.password

    async def send(self, batch: Batch) -> None:
        if self.fail:
            raise RetryableError(f"POST https://u:{self.password}@backend/ failed: "
                                 f"password={self.password}")


class FakeSLOConfig(ComponentConfig):
    names: list[str] = ["api-availability"]


class FakeSLOConnector(Component, Consumer):
    """Stands in for the slo connector's read API (`slo_states`)."""

    def __init__(self, settings: CreateSettings, config: FakeSLOConfig):
        self.names = config.names
        self.broken = False

    async def consume(self, batch: Batch) -> None:
        return None

    def slo_states(self) -> Sequence[dict[str, Any]]:
        if self.broken:
            raise RuntimeError(f"boom {SECRET}")
        now = NOW
        out = []
        for i, name in enumerate(self.names):
            out.append({
                "name": name, "service": "api", "objective": 0.999, "period": 30 * DAY,
                "sli": {"5m": 0.98, "1h": 0.995, "30d": 0.9995},
                "budget_remaining": 0.5 - i, "burn_rates": {"5m": 20.0, "1h": 5.0},
                "alerts": [{"severity": "page", "windows": ["1h", "5m"], "since": now - 300}]
                if i == 0 else [],
                "budget_series": [(now - 30 * DAY + d * DAY, 1 - d / 30 * (1 + i))
                                  for d in range(31)]})
        return out


SIGNALS = frozenset(Signal)
FACTORIES = [
    health.factory,
    Factory("recv", Kind.RECEIVER, Empty, lambda s, c: Recv(s), SIGNALS),
    Factory("sink", Kind.EXPORTER, SinkConfig, SinkExporter, SIGNALS),
    Factory("slo", Kind.CONNECTOR, FakeSLOConfig, FakeSLOConnector,
            connector_pairs=frozenset({(Signal.METRICS, Signal.LOGS)})),
]


def config(port: int, **status: Any) -> dict[str, Any]:
    return {
        "receivers": {"recv": {}},
        "exporters": {"sink/ok": {"password": SECRET},
                      "sink/down": {"password": SECRET, "fail": True}},
        "connectors": {"slo": {"names": ["api-availability", "<script>alert(1)</script>"]}},
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
        await service.shutdown(timeout=5)


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str, aiohttp.ClientResponse]:
    async with http.get(url) as resp:
        return resp.status, await resp.text(), resp


async def test_status_json_has_pipelines_components_and_slos() -> None:
    async with running() as (service, url, http):
        recv = service.components()[(Kind.RECEIVER, ComponentID("recv"))]
        assert isinstance(recv, Recv)
        await recv.consumers[Signal.LOGS].consume(Batch(Signal.LOGS, message=logs_request(5)))
        status, text, resp = await get(http, url + "/status.json")
    assert status == 200
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
    assert set(slos) == {"api-availability", "<script>alert(1)</script>"}
    a = slos["api-availability"]
    assert a["objective"] == 0.999
    assert a["budget_remaining"] == 0.5
    assert a["sli"] == {"5m": 0.98, "1h": 0.995, "30d": 0.9995}
    assert a["alerts"] == [{"severity": "page", "windows": "1h/5m", "since": NOW - 300}]
    assert len(a["budget_series"]) == 31
    assert a["connector"] == "slo"
    assert SECRET not in text


async def test_status_html_renders_escaped_charts_and_refreshes() -> None:
    async with running() as (_, url, http):
        status, page, resp = await get(http, url + "/status")
    assert status == 200
    assert resp.content_type == "text/html"
    assert '<meta http-equiv="refresh" content="5">' in page
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    # one chart per SLO, with a stable class and the SLO's name (escaped)
    charts = re.findall(r'<svg class="burndown" id="[^"]+" data-slo="([^"]*)"', page)
    assert charts == ["api-availability", "&lt;script&gt;alert(1)&lt;/script&gt;"]
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
        for _ in range(100):  # the queue worker tries once (retry disabled)
            if not down.health().healthy:
                break
            await asyncio.sleep(0.01)
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


async def test_broken_slo_read_api_keeps_the_page_up() -> None:
    async with running() as (service, url, http):
        conn = service.components()[(Kind.CONNECTOR, ComponentID("slo"))]
        assert isinstance(conn, FakeSLOConnector)
        conn.broken = True
        status, page, _ = await get(http, url + "/status")
        _, text, _ = await get(http, url + "/status.json")
    assert status == 200
    assert "SLO state unavailable: RuntimeError" in page
    assert orjson.loads(text)["slos"] == []
    assert SECRET not in page


async def test_disabled_status_page_is_404() -> None:
    async with running(enabled=False) as (_, url, http):
        status, _, _ = await get(http, url + "/status")
    assert status == 404


def test_throughput_from_sampled_counters() -> None:
    t = Telemetry()
    now = [0.0]
    s = ThroughputSampler(t, window=60, clock=lambda: now[0])
    s.sample()
    for step in range(1, 25):  # 2 minutes, a sample every 5 s
        now[0] = step * 5.0
        t.receiver_accepted.labels("otlp", "grpc", "traces").inc(500)  # 100/s
        t.receiver_accepted.labels("otlp", "http", "logs").inc(50)  # +10/s
        t.exporter_sent.labels("kafka", "traces").inc(250)
        t.exporter_send_failed.labels("kafka", "traces").inc(5)
        t.batch_send_size.labels("batch", "traces").observe(500)
        t.connector_emitted_points.labels("redmetrics").inc(20)
        s.sample()
    rates, failed = s.rates()
    assert rates[("receiver", "otlp", "")] == pytest.approx(110.0)
    assert rates[("exporter", "kafka", "")] == pytest.approx(50.0)
    assert failed[("exporter", "kafka", "")] == pytest.approx(1.0)
    assert rates[("processor", "batch", "traces")] == pytest.approx(100.0)
    assert rates[("connector", "redmetrics", "")] == pytest.approx(4.0)
    assert len(s.samples) <= 14  # old samples dropped (one before the window kept)
    # traffic stops: a minute later the rate is 0
    now[0] += 65
    s.sample()
    assert s.rates()[0][("receiver", "otlp", "")] == 0.0


def test_slo_view_normalises_read_api_shapes() -> None:
    class State:
        name = "db-consistency"
        service = "postgres"
        objective = 99.99
        period = "7d"
        sli = [{"window": "5m", "value": 1.0}]
        budget_remaining = 0.25
        burn_rates = {"5m": 0.0}
        alerts = ["ticket"]
        budget_series = [{"t": int(NOW * 1e9), "remaining": 0.25}]

    v = slo_view(State(), "slo/db")
    assert (v.name, v.service, v.objective, v.period) == ("db-consistency", "postgres",
                                                          pytest.approx(0.9999), 7 * DAY)
    assert v.sli == {"5m": 1.0}
    assert v.alerts == [{"severity": "ticket"}]
    assert v.series == [(NOW, 0.25)]
    assert v.connector == "slo/db"


def test_burndown_chart_axes_and_overspent_budget() -> None:
    slo = {"name": "api", "period_seconds": 30 * DAY,
           "budget_series": [(NOW - 20 * DAY, 1.0), (NOW - DAY, 0.1), (NOW, -0.3)]}
    svg = render_burndown(slo, NOW)
    assert svg.startswith('<svg class="burndown" id="burndown-api" data-slo="api"')
    assert svg.count('class="grid"') == 7  # -50 % … 100 % in 25 % steps
    assert ">-50%</text>" in svg
    assert ">100%</text>" in svg
    assert ">now</text>" in svg
    assert ">−30d</text>" in svg
    assert "#dc2626" in svg
    assert ">-30.0%</text>" in svg
    empty = render_burndown({"name": "x", "budget_series": []}, NOW)
    assert "no data yet" in empty
    assert "<polyline" not in empty


def test_render_html_without_slos_or_refresh() -> None:
    page = render_html({"status": "unhealthy", "refresh_seconds": 0, "components": [],
                        "pipelines": [], "slos": []}, NOW)
    assert "http-equiv" not in page
    assert "No SLOs" in page
    assert 'data-status="unhealthy"' in page


def test_slo_view_of_the_real_engine_status() -> None:
    """The slo engine's SLOStatus (the connector's read API) maps field by field."""
    from pipeline.slo.engine import Engine
    from pipeline.slo.model import parse_native

    slos = parse_native([{"name": "api-availability", "service": "api", "objective": 99.9,
                          "sli": {"type": "availability"}}])
    now = [int(NOW * 1e9)]
    engine = Engine(slos, clock=lambda: now[0])
    for minute in range(120):  # 2 hours of 1000 events/min, an outage in the last 10 min
        now[0] = int((NOW + minute * 60) * 1e9)
        engine.record("api-availability", bad=100 if minute >= 110 else 0, total=1000)
        engine.evaluate()
    [status] = engine.status()
    v = slo_view(status, "slo")
    assert (v.name, v.service, v.objective, v.period) == ("api-availability", "api", 0.999,
                                                          30 * DAY)
    assert v.budget_remaining == pytest.approx(status.error_budget_remaining)
    assert v.budget_remaining == pytest.approx(1 - (1000 / 120000) / 0.001)  # overspent
    assert v.sli["5m"] == pytest.approx(0.9)
    assert v.burn_rates["5m"] == pytest.approx(100)
    assert v.alerts
    assert v.alerts[0]["severity"] == "page"
    assert v.alerts[0]["windows"] in ("1h/5m", "6h/30m")
    assert v.series
    assert v.series[-1][1] == pytest.approx(v.budget_remaining)
    assert v.events == {"good": 119000.0, "bad": 1000.0, "total": 120000.0}
    svg = render_burndown({"name": v.name, "period_seconds": v.period,
                           "budget_series": v.series}, NOW + 7200)
    assert '<polyline class="budget"' in svg
