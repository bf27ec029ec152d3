"""A new log pattern alerts through a REAL Alertmanager (scripts/alertmanager.sh), end to
end through `otelpipe run`: jsonlogs -> logstruct (templates) -> logpatterns ->
alertmanager exporter. The alert fires with the pattern in its labels and summary, and is
resolved after `alerts.resolve_after`."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support import OtelpipeProcess, eventually, free_port, with_logs

pytestmark = pytest.mark.integration

WARMUP = 2.0


def am_alerts(url: str, service: str) -> list[dict[str, Any]]:
    q = urllib.parse.urlencode([("filter", f'service="{service}"'), ("active", "true")])
    with urllib.request.urlopen(f"{url}/api/v2/alerts?{q}", timeout=5) as resp:
        return list(json.load(resp))


def post(port: int, records: list[dict[str, Any]]) -> None:
    body = b"\n".join(orjson.dumps(r) for r in records)
    req = urllib.request.Request(f"http://127.0.0.1:{port}/logs", data=body,
                                 headers={"Content-Type": "application/x-ndjson"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def test_new_pattern_fires_and_resolves_in_alertmanager(alertmanager: str,
                                                        tmp_path: Path) -> None:
    service = f"lp-{uuid.uuid4().hex[:10]}"
    jl = free_port()
    cfg = {
        "receivers": {"jsonlogs": {"endpoint": f"127.0.0.1:{jl}"}},
        "processors": {"logstruct": {"auto": True, "templates": {"enabled": True}}},
        "connectors": {"logpatterns": {
            "warmup": f"{WARMUP}s", "metrics_flush_interval": "300ms",
            "alerts": {"enabled": True, "resolve_after": "4s", "kinds": ["new"]}}},
        "exporters": {"nop": {}, "alertmanager/patterns": {
            "endpoint": alertmanager, "alertname": "LogPattern{Severity}",
            "resend_interval": "1s", "runbook_url": "https://runbooks.example/logpatterns.md",
            "runbook_anchor": "what-to-do-about-an-event"}},
        "service": {"pipelines": {
            "logs": {"receivers": ["jsonlogs"], "processors": ["logstruct"],
                     "exporters": ["logpatterns"]},
            "metrics": {"receivers": ["logpatterns"], "exporters": ["nop"]},
            "logs/events": {"receivers": ["logpatterns"],
                            "exporters": ["alertmanager/patterns"]}}},
    }
    with OtelpipeProcess(cfg, tmp_path, wait_ports=(jl,)) as proc:
        listening = time.monotonic()
        post(jl, [{"service": service, "level": "info", "message": f"user u{i} logged in"}
                  for i in range(10)])
        time.sleep(max(0.0, listening + WARMUP + 0.5 - time.monotonic()))
        post(jl, [{"service": service, "level": "error",
                   "message": "payment gateway timeout for order 1234"}])
        alerts = eventually(lambda: am_alerts(alertmanager, service),
                            what=with_logs("the log pattern alert in Alertmanager", proc))
        assert len(alerts) == 1, alerts  # the baseline pattern did not alert
        a = alerts[0]
        labels = a["labels"]
        assert labels["alertname"] == "LogPatternTicket"
        assert labels["severity"] == "ticket"
        assert labels["service"] == service
        assert labels["slo"].startswith(f"logpattern:{service}:")
        assert "payment gateway timeout for order <*>" in a["annotations"]["summary"]
        assert "payment gateway timeout for order 1234" in a["annotations"]["summary"]
        assert a["annotations"]["runbook_url"] == \
            "https://runbooks.example/logpatterns.md#what-to-do-about-an-event"
        # Resolved after resolve_after (4 s) by the connector's resolved record.
        eventually(lambda: am_alerts(alertmanager, service) == [],
                   what=with_logs("the alert resolved", proc))
