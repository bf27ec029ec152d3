"""The alertmanager exporter against a REAL Alertmanager (scripts/alertmanager.sh).

- the exporter fed the slo connector's own alert log records: the firing alert
  shows in `GET /api/v2/alerts?active=true` with its labels and annotations, and is
  gone after the resolved record;
- re-sending keeps an alert alive past its endsAt; without re-sends Alertmanager
  resolves it on its own;
- end to end through `otelpipe run`: OTLP spans with errors → redmetrics → slo →
  alertmanager; the page alert fires in Alertmanager, and resolves once the errors stop.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from pipeline.component import Signal
from pipeline.connectors.slo import factory as slo_factory
from pipeline.connectors.slo.config import SLOConnectorConfig
from pipeline.exporters.alertmanager.config import AlertmanagerExporterConfig
from pipeline.exporters.alertmanager.exporter import AlertmanagerExporter
from pipeline.pdata.batch import Batch
from pipeline.slo.engine import AlertTransition
from tests.support import (
    OtelpipeProcess,
    connector_settings,
    eventually,
    exporter_settings,
    free_port,
    http_get,
)

pytestmark = pytest.mark.integration

RUNBOOK = "https://runbooks.example/otelpipe/runbook.md"


def am_alerts(url: str, slo: str, active_only: bool = True) -> list[dict[str, Any]]:
    q = urllib.parse.urlencode([("filter", f'slo="{slo}"'),
                                ("active", "true" if active_only else "false")])
    with urllib.request.urlopen(f"{url}/api/v2/alerts?{q}", timeout=5) as resp:
        return list(json.load(resp))


def connector() -> Any:
    return slo_factory.create(connector_settings("slo"), SLOConnectorConfig(
        slos=[{"name": "x", "service": "api", "objective": 99.9,
               "sli": {"type": "availability"}}]))


def transition(slo: str, state: str, at: float, started_at: float) -> AlertTransition:
    return AlertTransition(
        slo=slo, service="api", severity="page", state=state, at=at, started_at=started_at,
        windows=("1h", "5m"), burn_rates={"1h": 15.2, "5m": 30.0}, threshold=14.4,
        objective=0.999, error_budget_remaining=0.97,
        summary=f"SLO {slo} (api): error budget burning at 15.2x over 1h and 30.0x over 5m")


async def exporter(url: str, **cfg: Any) -> AlertmanagerExporter:
    exp = AlertmanagerExporter(
        exporter_settings("alertmanager"),
        AlertmanagerExporterConfig.model_validate({
            "endpoint": url, "runbook_url": RUNBOOK, "sending_queue": {"enabled": False},
            "retry_on_failure": {"initial_interval": "100ms", "max_elapsed_time": "10s"},
            **cfg}))
    await exp.start(None)  # type: ignore[arg-type]
    return exp


async def test_connector_alert_records_fire_and_resolve(alertmanager: str) -> None:
    slo = f"api-availability-{uuid.uuid4().hex[:8]}"
    conn = connector()
    exp = await exporter(alertmanager)
    t0 = time.time() - 120
    try:
        await exp.consume(Batch(Signal.LOGS, message=conn.logs_request(
            [transition(slo, "firing", t0, t0)], time.time_ns())))
        [alert] = await asyncio.to_thread(
            eventually, lambda: am_alerts(alertmanager, slo), timeout=10,
            what="the firing alert")
        assert alert["labels"] == {"alertname": "SLOBurnRatePage", "slo": slo,
                                   "service": "api", "severity": "page", "window": "1h/5m"}
        ann = alert["annotations"]
        assert ann["summary"].startswith(f"SLO {slo} (api): error budget burning at 15.2x")
        assert ann["runbook_url"] == f"{RUNBOOK}#slo-availability-page"
        assert "burn rates 1h: 15.2×, 5m: 30×" in ann["description"]
        assert alert["status"]["state"] == "active"
        # startsAt is when the alert fired (the event's alert.starts_at)
        assert alert["startsAt"].startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(t0)))

        now = time.time()
        await exp.consume(Batch(Signal.LOGS, message=conn.logs_request(
            [transition(slo, "resolved", now, t0)], time.time_ns())))
        await asyncio.to_thread(
            eventually, lambda: not am_alerts(alertmanager, slo), timeout=10,
            what="the alert to leave the active alerts")
        # Alertmanager does not list resolved alerts at all (active or not)
        assert am_alerts(alertmanager, slo, active_only=False) == []
    finally:
        await exp.shutdown()


async def test_resend_keeps_the_alert_alive_and_silence_resolves_it(alertmanager: str) -> None:
    slo = f"api-latency-p95-{uuid.uuid4().hex[:8]}"
    conn = connector()
    exp = await exporter(alertmanager, resend_interval="500ms", alert_ttl="3s")
    t0 = time.time()
    try:
        await exp.consume(Batch(Signal.LOGS, message=conn.logs_request(
            [transition(slo, "firing", t0, t0)], time.time_ns())))
        [alert] = await asyncio.to_thread(
            eventually, lambda: am_alerts(alertmanager, slo), timeout=10,
            what="the alert")
        assert alert["annotations"]["runbook_url"].endswith("#slo-latency-page")
        await asyncio.sleep(4.5)  # past the first endsAt: re-sends moved it on
        assert len(am_alerts(alertmanager, slo)) == 1
    finally:
        await exp.shutdown()
    # otelpipe gone: no more re-sends, Alertmanager resolves it once endsAt passes
    await asyncio.to_thread(
        eventually, lambda: not am_alerts(alertmanager, slo), timeout=10,
        what="Alertmanager to time the alert out")


# --- end to end through `otelpipe run` ----------------------------------------------


def spans_json(n: int, errors: int, service: str) -> bytes:
    now = time.time_ns()
    spans = []
    for i in range(n):
        spans.append({
            "traceId": uuid.uuid4().hex, "spanId": uuid.uuid4().hex[:16],
            "name": "GET /orders", "kind": 2,
            "startTimeUnixNano": str(now - 20_000_000), "endTimeUnixNano": str(now),
            "status": {"code": 2 if i < errors else 1}})
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name",
                                     "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}]}]}).encode()


def post(url: str, body: bytes) -> None:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def pipeline_config(tmp_path: Path, am_url: str, slo: str, service: str, otlp: int,
                    health: int) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{otlp}"}}}},
        "connectors": {
            "redmetrics": {"metrics_flush_interval": "500ms"},
            "slo": {
                "flush_interval": "500ms",
                "state_file": str(tmp_path / "slo-state.json"),
                "slos": [{"name": slo, "service": service, "objective": 99.9,
                          "sli": {"type": "availability",
                                  "match": {"service.name": service}}}],
                # short windows so the test sees the alert fire and resolve in a minute
                "alerting": {"min_events": 5, "rules": [
                    {"severity": "page", "long_window": "2m", "short_window": "1m",
                     "burn_rate": 14.4, "for": "0s"}]}}},
        "exporters": {"alertmanager": {
            "endpoint": am_url, "resend_interval": "2s", "runbook_url": RUNBOOK,
            "generator_url": f"http://127.0.0.1:{health}/status",
            "retry_on_failure": {"initial_interval": "200ms"}}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"extensions": ["health"], "pipelines": {
            "traces": {"receivers": ["otlp"], "exporters": ["redmetrics"]},
            "metrics/red": {"receivers": ["redmetrics"], "exporters": ["slo"]},
            "logs/alerts": {"receivers": ["slo"], "exporters": ["alertmanager"]}}},
    }


async def test_otelpipe_run_slo_burn_reaches_alertmanager_and_resolves(
        alertmanager: str, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    slo, service = f"checkout-availability-{suffix}", f"checkout-{suffix}"
    otlp, health = free_port(), free_port()
    cfg = pipeline_config(tmp_path, alertmanager, slo, service, otlp, health)
    traces_url = f"http://127.0.0.1:{otlp}/v1/traces"
    with OtelpipeProcess(cfg, tmp_path, wait_ports=(otlp, health)) as proc:
        # an outage: half the requests fail (burn rate 500x)
        post(traces_url, spans_json(40, errors=20, service=service))
        try:
            [alert] = await asyncio.to_thread(
                eventually, lambda: am_alerts(alertmanager, slo), timeout=30,
                what="the page alert in Alertmanager")
        except AssertionError:
            raise AssertionError(f"no alert; otelpipe logs:\n{proc.logs()}") from None
        assert alert["labels"] == {"alertname": "SLOBurnRatePage", "slo": slo,
                                   "service": service, "severity": "page", "window": "2m/1m"}
        assert alert["annotations"]["runbook_url"] == f"{RUNBOOK}#slo-availability-page"
        assert alert["generatorURL"] == f"http://127.0.0.1:{health}/status"
        assert f"SLO {slo} ({service}): error budget burning" in alert["annotations"]["summary"]

        # the status page shows the firing SLO too
        status, body = http_get(f"http://127.0.0.1:{health}/status.json")
        assert status == 200
        [card] = [s for s in json.loads(body)["slos"] if s["name"] == slo]
        assert card["alerts"]
        assert card["alerts"][0]["severity"] == "page"
        assert card["budget_remaining"] < 0

        # recovery: only good requests; the 1m window rolls over and the alert resolves
        async def good_traffic() -> None:
            while True:
                await asyncio.to_thread(post, traces_url, spans_json(10, 0, service))
                await asyncio.sleep(1)

        feeder = asyncio.create_task(good_traffic())
        try:
            await asyncio.to_thread(
                eventually, lambda: not am_alerts(alertmanager, slo), timeout=100,
                what="the alert to resolve in Alertmanager")
        except AssertionError:
            raise AssertionError(f"not resolved; otelpipe logs:\n{proc.logs()}") from None
        finally:
            feeder.cancel()
