"""Headless Chromium (Debian `chromium`) loads `/status` of a real `otelpipe run` with
three SLOs (the ops seed's availability, latency and consistency objectives) and live
OTLP traffic: the DOM has every SLO's name and its burn-down chart, and a screenshot is
saved under the test's tmp dir.

The SLO connector's state file is seeded with 30 simulated days (the engine with a fake
clock), so the burn-down charts have a history to draw: the page shows what a restart
with a persisted budget looks like.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.connectors.slo.config import SLOConnectorConfig
from pipeline.slo.engine import Engine
from tests.support import REPO, OtelpipeProcess, free_port, http_get

HOUR = 3600.0
DAYS = 30

SLOS: list[dict[str, Any]] = [
    {"name": "api-availability", "service": "api", "objective": 99.9,
     "description": "GET requests to the API succeed",
     "sli": {"type": "availability", "match": {"service.name": "api"}}},
    {"name": "api-latency-p95", "service": "api", "objective": 95,
     "description": "95% of requests are faster than 200 ms",
     "sli": {"type": "latency", "threshold": "200ms", "match": {"service.name": "api"}}},
    {"name": "db-consistency", "service": "postgres", "objective": 99.99,
     "description": "replication lag under 100 ms",
     "sli": {"type": "threshold", "metric": "db.replication.lag", "op": "lt",
             "threshold": "100ms", "match": {"method": "heartbeat"}}},
]


def seed_state(path: Path, now: float) -> None:
    """30 days of hourly traffic ending now: an outage 12 days ago (availability), a
    slowly degrading latency, a replication incident 5 days ago (consistency)."""
    cfg = SLOConnectorConfig(slos=SLOS)
    clock = [int((now - DAYS * 86400) * 1e9)]
    engine = Engine(cfg.definitions, cfg.alerting, lambda: clock[0])
    hours = DAYS * 24
    for h in range(hours):
        t = now - (hours - h) * HOUR
        clock[0] = int(t * 1e9)
        reqs = 36_000.0
        bad = reqs * 0.0002 + (reqs * 0.10 if 12 * 24 >= hours - h > 12 * 24 - 2 else 0.0)
        engine.record("api-availability", bad=bad, total=reqs, at=t)
        slow = 0.01 + 0.03 * h / hours  # latency degrading slowly
        engine.record("api-latency-p95", bad=reqs * slow, total=reqs, at=t)
        samples = 36_000.0
        lag_bad = samples * 0.02 if 5 * 24 >= hours - h > 5 * 24 - 1 else 0.0
        engine.record("db-consistency", bad=lag_bad, total=samples, at=t)
        engine.evaluate()
    clock[0] = int(now * 1e9)
    engine.evaluate()
    path.write_bytes(orjson.dumps(engine.dump_state()))


def spans_json(n: int, errors: int, slow: int) -> bytes:
    now = time.time_ns()
    spans = []
    for i in range(n):
        ms = 350 if i < slow else 40
        spans.append({
            "traceId": uuid.uuid4().hex, "spanId": uuid.uuid4().hex[:16],
            "name": "GET /orders", "kind": 2,
            "startTimeUnixNano": str(now - ms * 1_000_000), "endTimeUnixNano": str(now),
            "status": {"code": 2 if i < errors else 1}})
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
        "scopeSpans": [{"scope": {"name": "e2e"}, "spans": spans}]}]}).encode()


@pytest.fixture(scope="session")
def chromium() -> str:
    """/usr/bin/chromium, installed by scripts/chromium.sh if missing; fails loudly."""
    proc = subprocess.run([str(REPO / "scripts" / "chromium.sh"), "install"],
                          capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0:
        pytest.fail(f"scripts/chromium.sh install failed ({proc.returncode}):\n"
                    f"{proc.stdout}\n{proc.stderr}", pytrace=False)
    return proc.stdout.strip().splitlines()[-1]


def chromium_args(binary: str, profile: Path) -> list[str]:
    return [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--hide-scrollbars",
            f"--user-data-dir={profile}"]


@pytest.fixture
def otelpipe_with_slos(tmp_path: Path) -> Iterator[tuple[str, OtelpipeProcess]]:
    otlp, health = free_port(), free_port()
    state = tmp_path / "slo-state.json"
    seed_state(state, time.time())
    cfg = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{otlp}"}}}},
        "processors": {"batch": {"timeout": "200ms"}},
        "connectors": {
            "redmetrics": {"metrics_flush_interval": "500ms"},
            "slo": {"flush_interval": "500ms", "state_file": str(state), "slos": SLOS}},
        "exporters": {"nop": {}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}",
                                  "status_page": {"sample_interval": "1s"}}},
        "service": {"extensions": ["health"], "pipelines": {
            "traces": {"receivers": ["otlp"], "processors": ["batch"],
                       "exporters": ["redmetrics"]},
            "metrics/red": {"receivers": ["redmetrics"], "exporters": ["slo"]},
            "metrics/slo": {"receivers": ["slo"], "exporters": ["nop"]},
            "logs/alerts": {"receivers": ["slo"], "exporters": ["nop"]}}},
    }
    with OtelpipeProcess(cfg, tmp_path, wait_ports=(otlp, health)) as proc:
        url = f"http://127.0.0.1:{otlp}/v1/traces"
        for _ in range(6):  # some live traffic: 2 % errors, 3 % slow
            req = urllib.request.Request(url, data=spans_json(100, errors=2, slow=3),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                assert resp.status == 200
            time.sleep(0.5)
        yield f"http://127.0.0.1:{health}", proc


def test_status_page_in_headless_chromium(chromium: str, otelpipe_with_slos: tuple[
        str, OtelpipeProcess], tmp_path: Path) -> None:
    base, proc = otelpipe_with_slos
    status, body = http_get(base + "/status.json")
    assert status == 200, body
    data = json.loads(body)
    assert {s["name"] for s in data["slos"]} == {s["name"] for s in SLOS}, proc.logs()
    for s in data["slos"]:  # the seeded 30-day history made it through the restart
        assert len(s["budget_series"]) >= 500, s["name"]  # hourly points (thinned to 600)
    avail = next(s for s in data["slos"] if s["name"] == "api-availability")
    assert 0 < avail["budget_remaining"] < 1
    assert avail["sli"]["5m"] is not None

    profile = tmp_path / "chromium-profile"
    dom = subprocess.run([*chromium_args(chromium, profile), "--dump-dom", base + "/status"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert dom.returncode == 0, dom.stderr[-3000:]
    html = dom.stdout
    (tmp_path / "status.html").write_text(html)
    for s in SLOS:
        assert f'data-slo="{s["name"]}"' in html
        assert re.search(rf'<svg[^>]*class="burndown"[^>]*data-slo="{s["name"]}"', html), \
            s["name"]
    assert html.count('<polyline class="budget"') == 3
    assert "redmetrics" in html
    assert "otlp" in html

    shot = tmp_path / "status.png"
    run = subprocess.run([*chromium_args(chromium, profile), f"--screenshot={shot}",
                          "--window-size=1280,1600", base + "/status"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert shot.exists()
    assert shot.stat().st_size > 20_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
