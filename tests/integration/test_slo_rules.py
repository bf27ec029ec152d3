"""`otelpipe slo rules` against the real `promtool` (Debian package `prometheus`).

1. `promtool check rules` accepts the rules generated from configs/slo.yaml and
   configs/slo-definitions.yaml.
2. `promtool test rules`: a synthetic outage -- /health failing for 30 minutes
   (httpcheck, a sample every 10 s) and requests slowing to 300 ms for 40 minutes
   (redmetrics histogram) -- is fed both to the `slo` connector (simulated clock)
   and, as Prometheus series, to promtool. At every minute where the connector's
   alert state has been stable for 3 minutes on each side, promtool must see
   exactly the same alerts firing (slo, service, severity). The page fires for
   both the availability and the P95 latency SLO, not for P99.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config.loader import load_config
from pipeline.connectors.slo.config import SLOConnectorConfig
from pipeline.connectors.slo.connector import SLOConnector
from pipeline.slo.rules import ALERT_NAME, rules_document
from tests.support import REPO, connector_settings
from tests.unit.slo.sim import Clock, RedTraffic, gauge_batch

pytestmark = pytest.mark.integration

URL = "http://127.0.0.1:8000/health"
MINUTES = 240
HEALTH_DOWN = range(60, 90)  # minutes where /health fails
SLOW = range(70, 110)  # minutes where every request takes 0.3 s
RPM = 600


def _cli_rules(path: Path, out: Path) -> None:
    proc = subprocess.run(["python", "-m", "pipeline", "slo", "rules", "-f", str(path),
                           "-o", str(out)], cwd=REPO, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("source", ["slo.yaml", "slo-definitions.yaml"])
def test_promtool_check_rules_accepts_the_generated_rules(promtool: str, tmp_path: Path,
                                                          source: str) -> None:
    out = tmp_path / "rules.yml"
    _cli_rules(REPO / "configs" / source, out)
    proc = subprocess.run([promtool, "check", "rules", str(out)], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # 7 SLOs x (8 windows x 2 + objective + budget + page + ticket), and 3 gauge SLOs
    # x 2 sample series (good, total)
    assert "SUCCESS: 146 rules found" in proc.stdout
    doc = yaml.safe_load(out.read_text())
    alerts = [r for g in doc["groups"] for r in g["rules"] if "alert" in r]
    assert len(alerts) == 14  # 7 SLOs x (page, ticket)
    assert {a["annotations"]["runbook_url"] for a in alerts} == {
        "docs/runbook.md#slo-burn-rate-page", "docs/runbook.md#slo-burn-rate-ticket"}


def _engine_timeline(config: SLOConnectorConfig) -> dict[int, set[tuple[str, str, str]]]:
    """Firing alerts (slo, service, severity) per minute, from the connector."""
    clock = Clock()
    conn = SLOConnector(connector_settings("slo", consumers={}), config, clock=clock)
    traffic = RedTraffic(clock)
    out: dict[int, set[tuple[str, str, str]]] = {}
    for minute in range(1, MINUTES + 1):
        for _ in range(6):  # httpcheck every 10 s
            clock.advance(10)
            ok = 0 if minute in HEALTH_DOWN else 1
            conn.ingest(gauge_batch(clock, "httpcheck.success",
                                    [({"http.url": URL, "http.method": "GET"}, ok)],
                                    unit="1").message)
        traffic.requests(RPM, slow=RPM if minute in SLOW else 0)
        conn.ingest(traffic.batch().message)
        conn.engine.evaluate()
        out[minute] = {(s.name, s.service, sev) for s in conn.status() for sev in s.firing}
    return out


def _series(traffic_minutes: int) -> list[dict[str, str]]:
    """The same data as Prometheus series: a 10 s interval, minute m ends at m*60 s."""
    health = []
    for minute in range(1, traffic_minutes + 1):
        health += ["0" if minute in HEALTH_DOWN else "1"] * 6
    fast = slow = 0
    le02, le05, count = ["0"], ["0"], ["0"]
    for minute in range(1, traffic_minutes + 1):
        if minute in SLOW:
            slow += RPM
        else:
            fast += RPM
        for _ in range(6):  # the counters change once a minute, scraped every 10 s
            le02.append(str(fast))
            le05.append(str(fast + slow))
            count.append(str(fast + slow))
    le02, le05, count = le02[1:], le05[1:], count[1:]
    base = 'service_name="api",span_kind="SPAN_KIND_SERVER",span_name="GET /items",' \
           'status_code="STATUS_CODE_UNSET"'
    hist = "traces_span_metrics_duration_seconds"
    return [
        {"series": f'httpcheck_success_ratio{{http_url="{URL}",http_method="GET"}}',
         "values": " ".join(health)},
        {"series": f'{hist}_bucket{{{base},le="0.2"}}', "values": " ".join(le02)},
        {"series": f'{hist}_bucket{{{base},le="0.5"}}', "values": " ".join(le05)},
        {"series": f'{hist}_bucket{{{base},le="+Inf"}}', "values": " ".join(count)},
        {"series": f"{hist}_count{{{base}}}", "values": " ".join(count)},
    ]


def test_promtool_rule_tests_agree_with_the_connector(promtool: str, tmp_path: Path) -> None:
    raw = load_config([REPO / "configs" / "slo.yaml"])
    slo_raw: dict[str, Any] = raw["connectors"]["slo"]
    slo_raw.pop("state_file")
    slo_raw["slos"] = [s for s in slo_raw["slos"] if s["name"] != "data-consistency"]
    config = SLOConnectorConfig.model_validate(slo_raw)
    assert config.definitions[0].indicator.total.match == {"http.url": URL}

    timeline = _engine_timeline(config)
    firing_minutes = {k: [m for m, f in timeline.items() if k in f]
                      for k in {k for f in timeline.values() for k in f}}
    # What the connector does with this outage (the figures the report quotes):
    page_avail = ("api-availability", "api", "page")
    page_p95 = ("api-latency-p95", "api", "page")
    # /health down: burn 1000x, the 1h/5m rule holds at the first bad minute and fires
    # after `for: 2m`.
    assert firing_minutes[page_avail][0] == HEALTH_DOWN.start + 2
    # All requests slow: burn 20x against the 5% budget of P95. 1h/5m needs 43.2 slow
    # minutes; 6h/30m (6x) sooner: the 6h window holds 69 + x minutes of data,
    # 20x / (69 + x) >= 6 from x = 30 (minute 99), firing at 101.
    assert firing_minutes[page_p95][0] == SLOW.start + 31
    assert ("api-latency-p99", "api", "page") not in firing_minutes

    rules_path = tmp_path / "rules.yml"
    rules_path.write_text(yaml.safe_dump(rules_document(config.definitions, config.alerting,
                                                        config.runbook_url)))
    stable = [m for m in range(5, MINUTES - 3)
              if all(timeline[m + d] == timeline[m] for d in range(-3, 4))]
    checks = stable[::3]
    assert any(page_avail in timeline[m] for m in checks)
    assert any(page_p95 in timeline[m] for m in checks)
    assert any(not timeline[m] for m in checks)

    groups = {g["name"]: g for g in rules_document(config.definitions, config.alerting,
                                                   config.runbook_url)["groups"]}

    def annotations(slo: str, severity: str) -> dict[str, str]:
        rule = next(r for r in groups[f"otelpipe-slo-{slo}"]["rules"]
                    if r.get("alert") and r["labels"]["severity"] == severity)
        return dict(rule["annotations"])

    alert_tests = []
    for m in checks:
        alert_tests.append({
            "eval_time": f"{m}m", "alertname": ALERT_NAME,
            "exp_alerts": [{"exp_labels": {"severity": sev, "slo": slo, "service": svc},
                            "exp_annotations": annotations(slo, sev)}
                           for slo, svc, sev in sorted(timeline[m])]})
    test_file = tmp_path / "rules_test.yml"
    test_file.write_text(yaml.safe_dump({
        "rule_files": [str(rules_path)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "10s", "input_series": _series(MINUTES),
                   "alert_rule_test": alert_tests}],
    }, width=1 << 20))
    proc = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True,
                          text=True, check=False, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert "SUCCESS" in proc.stdout
