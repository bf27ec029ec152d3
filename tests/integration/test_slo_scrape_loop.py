"""The whole loop, real processes only: an app exposing its DB pool with
prometheus_client (tests/apps/promapp.py) -> `prometheus` receiver (scraping every
second) -> `slo` connector (pool use < 80%, one sample a second) -> `alertmanager`
exporter -> the real Alertmanager (scripts/alertmanager.sh). Driving the pool to 95%
fires the pool-exhaustion page there, linked to its incident in docs/runbook.md;
bringing it back to 10% resolves it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_alertmanager import am_alerts
from tests.support import REPO, OtelpipeProcess, eventually, free_port, http_get, port_open

pytestmark = pytest.mark.integration

RUNBOOK = "https://runbooks.example/otelpipe/runbook.md"


def control(port: int, **values: float) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/control",
                                 data=json.dumps(values).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 204


def loop_config(app: int, am_url: str, health: int, slo: str, job: str) -> dict[str, Any]:
    return {
        "receivers": {"prometheus": {"config": {"scrape_configs": [{
            "job_name": job, "scrape_interval": "1s", "scrape_timeout": "900ms",
            "static_configs": [{"targets": [f"127.0.0.1:{app}"]}]}]}}},
        "connectors": {"slo": {
            "flush_interval": "1s",
            "slos": [{"name": slo, "service": job, "objective": 99,
                      "sli": {"type": "threshold", "metric": "db_pool_checked_out",
                              "divide_by": "db_pool_size", "op": "lt", "threshold": 0.8,
                              "interval": "1s", "match": {"service.name": job}}}],
            # windows short enough to fire and resolve within a minute or two
            "alerting": {"min_events": 3, "rules": [
                {"severity": "page", "long_window": "5m", "short_window": "2m",
                 "burn_rate": 14.4, "for": "0s"}]}}},
        "exporters": {"alertmanager": {
            "endpoint": am_url, "resend_interval": "2s", "runbook_url": RUNBOOK,
            "runbook_anchors": {slo: "incident-db-pool-exhausted"},
            "retry_on_failure": {"initial_interval": "200ms"}}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"extensions": ["health"], "pipelines": {
            "metrics/app": {"receivers": ["prometheus"], "exporters": ["slo"]},
            "logs/alerts": {"receivers": ["slo"], "exporters": ["alertmanager"]}}},
    }


def slo_card(health: int, slo: str) -> dict[str, Any]:
    status, body = http_get(f"http://127.0.0.1:{health}/status.json")
    assert status == 200
    [card] = [s for s in json.loads(body)["slos"] if s["name"] == slo]
    return dict(card)


@pytest.fixture
def pool_app() -> Iterator[int]:
    """tests/apps/promapp.py on a free port, its pool at 2 of 20 connections (10%)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "apps" / "promapp.py"),
                             "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        eventually(lambda: port_open(port), timeout=30, what="the app to listen")
        control(port, pool_size=20, pool_checked_out=2)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


async def test_pool_at_95_percent_pages_in_alertmanager_and_resolves(
        alertmanager: str, pool_app: int, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    slo, job = f"db-pool-headroom-{suffix}", f"api-{suffix}"
    app, health = pool_app, free_port()
    with OtelpipeProcess(loop_config(app, alertmanager, health, slo, job), tmp_path,
                         wait_ports=(health,)) as proc:
        # Healthy: one good sample a second, nothing fires.
        await asyncio.to_thread(
            eventually, lambda: slo_card(health, slo)["events"]["total"] >= 5, timeout=30,
            what=lambda: f"pool samples counted\n{proc.logs()[-3000:]}")
        card = slo_card(health, slo)
        assert card["events"]["bad"] == 0
        assert am_alerts(alertmanager, slo) == []

        t0 = time.monotonic()
        control(app, pool_checked_out=19)  # 95%: the pool is nearly exhausted
        try:
            [alert] = await asyncio.to_thread(
                eventually, lambda: am_alerts(alertmanager, slo), timeout=60,
                what="the pool page in Alertmanager")
        except AssertionError:
            raise AssertionError(f"no alert; otelpipe logs:\n{proc.logs()}") from None
        fired = time.monotonic() - t0
        assert alert["labels"] == {"alertname": "SLOBurnRatePage", "slo": slo,
                                   "service": job, "severity": "page", "window": "5m/2m"}
        assert alert["annotations"]["runbook_url"] == f"{RUNBOOK}#incident-db-pool-exhausted"
        # It keeps firing while the pool stays at 95% (one bad sample a second).
        await asyncio.to_thread(
            eventually, lambda: slo_card(health, slo)["events"]["bad"] >= 10, timeout=60,
            what="10 bad pool samples")
        card = slo_card(health, slo)
        assert card["alerts"][0]["severity"] == "page"
        assert card["alerts"][0]["windows"] == "5m/2m"  # the firing alerts only
        assert [a["labels"]["slo"] for a in am_alerts(alertmanager, slo)] == [slo]

        t1 = time.monotonic()
        control(app, pool_checked_out=2)  # back to 10%
        try:
            await asyncio.to_thread(
                eventually, lambda: not am_alerts(alertmanager, slo), timeout=150,
                what="the pool page to resolve in Alertmanager")
        except AssertionError:
            raise AssertionError(f"not resolved; otelpipe logs:\n{proc.logs()}") from None
        resolved = time.monotonic() - t1
        card = slo_card(health, slo)
        print(f"\npool 95%: page in Alertmanager after {fired:.1f} s; pool 10%: resolved "
              f"after {resolved:.1f} s; events {card['events']}")
