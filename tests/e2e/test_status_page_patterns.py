"""Headless Chromium loads `/status` of a real `otelpipe run` with a `logpatterns`
connector fed through jsonlogs -> logstruct (templates): the DOM has the top patterns per
service, the pattern that appeared after the warm-up with its first line, and a rate
change (1 record a second, then 60 in one second); a screenshot is saved."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from tests.e2e.test_status_page_chromium import chromium, chromium_args
from tests.support import OtelpipeProcess, eventually, free_port, http_get, with_logs

__all__ = ["chromium"]  # the session fixture

WARMUP = 3.0
TICK = "heartbeat from worker <*> ok"
NEW = "payment gateway timeout for order <*>"


def post(port: int, records: list[dict[str, Any]]) -> None:
    body = b"\n".join(orjson.dumps(r) for r in records)
    req = urllib.request.Request(f"http://127.0.0.1:{port}/logs", data=body,
                                 headers={"Content-Type": "application/x-ndjson"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def tick(n: int) -> dict[str, Any]:
    return {"service": "worker", "level": "info", "message": f"heartbeat from worker {n} ok"}


def test_patterns_on_the_status_page_in_headless_chromium(chromium: str,
                                                          tmp_path: Path) -> None:
    jl, health = free_port(), free_port()
    cfg = {
        "receivers": {"jsonlogs": {"endpoint": f"127.0.0.1:{jl}"}},
        "processors": {"logstruct": {"auto": True, "templates": {"enabled": True}}},
        "connectors": {"logpatterns": {
            "warmup": f"{WARMUP}s", "metrics_flush_interval": "300ms",
            "rate_change": {"factor": 10, "window": "1s", "baseline": "3s", "min_count": 5}}},
        "exporters": {"nop": {}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"extensions": ["health"], "pipelines": {
            "logs": {"receivers": ["jsonlogs"], "processors": ["logstruct"],
                     "exporters": ["logpatterns"]},
            "metrics": {"receivers": ["logpatterns"], "exporters": ["nop"]},
            "logs/events": {"receivers": ["logpatterns"], "exporters": ["nop"]}}},
    }
    base = f"http://127.0.0.1:{health}"
    with OtelpipeProcess(cfg, tmp_path, wait_ports=(jl, health)) as proc:
        listening = time.monotonic()
        post(jl, [{"service": "checkout", "level": "info",
                   "message": f"user u{i} logged in"} for i in range(25)]
             + [tick(0), tick(1)])
        # One heartbeat a second (the baseline), then 60 in one second (a rate change).
        for n in range(6):
            time.sleep(1.0)
            post(jl, [tick(n)])
        time.sleep(max(0.0, listening + WARMUP + 0.3 - time.monotonic()))
        post(jl, [tick(n) for n in range(60)]
             + [{"service": "checkout", "level": "error",
                 "message": "payment gateway timeout for order 1234"}])
        time.sleep(1.2)  # the burst's window closes; the next flush judges it

        def ready() -> dict[str, Any]:
            data = json.loads(http_get(base + "/status.json")[1])
            [p] = data["patterns"]
            return p if p["new"] and p["rate_changes"] else {}

        p = eventually(ready, what=with_logs("a new pattern and a rate change", proc))
        assert [ev["template"] for ev in p["new"]] == [NEW]
        assert p["new"][0]["first_line"] == "payment gateway timeout for order 1234"
        assert [(ev["template"], ev["direction"]) for ev in p["rate_changes"]] == [
            (TICK, "up")]

        profile = tmp_path / "chromium-profile"
        dom = subprocess.run([*chromium_args(chromium, profile), "--dump-dom",
                              base + "/status"],
                             capture_output=True, text=True, timeout=120, check=False)
        assert dom.returncode == 0, dom.stderr[-3000:]
        html = dom.stdout
        (tmp_path / "status.html").write_text(html)
        shot = tmp_path / "status-patterns.png"
        run = subprocess.run([*chromium_args(chromium, profile), f"--screenshot={shot}",
                              "--window-size=1280,1800", base + "/status"],
                             capture_output=True, text=True, timeout=120, check=False)
        assert run.returncode == 0, run.stderr[-3000:]

    assert '<section class="card patterns" data-connector="logpatterns">' in html
    assert '<table class="top" data-service="checkout">' in html
    assert '<table class="top" data-service="worker">' in html
    assert "user &lt;*&gt; logged in" in html
    new_rows = html.split('<table class="new-patterns">')[1].split("</table>")[0]
    assert new_rows.count('<tr class="new-pattern"') == 1
    assert "payment gateway timeout for order &lt;*&gt;" in new_rows
    assert "payment gateway timeout for order 1234" in new_rows
    rate_rows = html.split('<table class="rate-changes">')[1].split("</table>")[0]
    assert 'data-direction="up"' in rate_rows
    assert "heartbeat from worker &lt;*&gt; ok" in rate_rows
    assert shot.stat().st_size > 20_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
