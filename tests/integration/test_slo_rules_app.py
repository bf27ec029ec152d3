"""The SLOs on the app's own metrics (configs/slo.yaml: `db-pool-headroom`,
`cache-hit-ratio`, `rate-limiting`) against the real `promtool`.

1. `promtool check rules` accepts their generated rules (with configs/slo.yaml's and
   configs/slo-definitions.yaml's other SLOs: tests/integration/test_slo_rules.py).
2. `promtool test rules`: one synthetic day of the app, scraped every 15 s -- the pool
   at 95% for 30 minutes, Redis down (every lookup misses) for 70 minutes, the rate
   limiter rejecting half the requests for 40 minutes -- fed both to the `slo` connector
   (simulated clock, series shaped as the `prometheus` receiver hands them over:
   tests/unit/slo/scraped.py) and, as the app's Prometheus series, to promtool. At
   every minute where the connector's alert state has been stable for 3 minutes on
   each side, promtool must see exactly the same alerts (slo, service, severity). The
   pool and the rate limiter page; the cache raises a ticket (a 90% objective leaves
   a 10% budget: at most a 10x burn, never the page's 14.4x over 1h).
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
from tests.unit.slo.scraped import App
from tests.unit.slo.sim import Clock

pytestmark = pytest.mark.integration

APP_SLOS = ("db-pool-headroom", "cache-hit-ratio", "rate-limiting")
MINUTES = 300
STEPS = 4  # scrapes per minute (every 15 s)
POOL_HIGH = range(40, 70)  # checked out 19 of 20
REDIS_DOWN = range(100, 170)  # every lookup misses: 0 hits, 600 misses (else 570 / 30)
LIMITING = range(200, 240)  # 300 of 600 requests rejected a minute (else 0)


def minute_values(minute: int) -> dict[str, float]:
    return {"checked_out": 19 if minute in POOL_HIGH else 5, "size": 20,
            "hits": 0 if minute in REDIS_DOWN else 570,
            "misses": 600 if minute in REDIS_DOWN else 30,
            "requests": 600, "rejected": 300 if minute in LIMITING else 0}


def app_config() -> SLOConnectorConfig:
    raw = load_config([REPO / "configs" / "slo.yaml"])
    slo_raw: dict[str, Any] = raw["connectors"]["slo"]
    slo_raw.pop("state_file")
    slo_raw["slos"] = [s for s in slo_raw["slos"] if s["name"] in APP_SLOS]
    return SLOConnectorConfig.model_validate(slo_raw)


def connector_timeline(config: SLOConnectorConfig) -> dict[int, set[tuple[str, str, str]]]:
    """Firing alerts (slo, service, severity) at each minute, from the connector: sample
    i arrives at i * 15 s; at each minute boundary the connector flushes (samples the
    pool, evaluates) right after that minute's first scrape."""
    clock = Clock()
    conn = SLOConnector(connector_settings("slo", consumers={}), config, clock=clock)
    app = App(clock)
    out: dict[int, set[tuple[str, str, str]]] = {}
    for i in range(MINUTES * STEPS + 1):
        if i:
            clock.advance(15)
        minute, step = divmod(i, STEPS)
        v = minute_values(minute)
        app.pool(v["checked_out"], v["size"])
        if step == 0:  # the counters move once a minute
            app.inc("cache_hits_total", "cache", "redis", v["hits"])
            app.inc("cache_misses_total", "cache", "redis", v["misses"])
            app.inc("http_requests_total", "route", "/api", v["requests"])
            app.inc("rate_limit_rejections_total", "route", "/api", v["rejected"])
        conn.ingest(app.request())
        if step == 0:
            conn.counter.sample()
            conn.engine.evaluate()
            out[minute] = {(s.name, s.service, sev) for s in conn.status() for sev in s.firing}
    return out


def prometheus_series() -> list[dict[str, str]]:
    """The app's series as Prometheus scrapes them: sample i at i * 15 s."""
    cols: dict[str, list[str]] = {k: [] for k in ("out", "size", "hits", "misses",
                                                   "requests", "rejected")}
    totals = dict.fromkeys(("hits", "misses", "requests", "rejected"), 0.0)
    for i in range(MINUTES * STEPS + 1):
        minute, step = divmod(i, STEPS)
        v = minute_values(minute)
        if step == 0:
            for k in totals:
                totals[k] += v[k]
        cols["out"].append(f"{v['checked_out']:g}")
        cols["size"].append(f"{v['size']:g}")
        for k, total in totals.items():
            cols[k].append(f"{total:g}")
    job = 'job="api",instance="127.0.0.1:8000"'
    return [
        {"series": f'db_pool_checked_out{{{job},pool="main"}}', "values": " ".join(cols["out"])},
        {"series": f'db_pool_size{{{job},pool="main"}}', "values": " ".join(cols["size"])},
        {"series": f'cache_hits_total{{{job},cache="redis"}}', "values": " ".join(cols["hits"])},
        {"series": f'cache_misses_total{{{job},cache="redis"}}',
         "values": " ".join(cols["misses"])},
        {"series": f'http_requests_total{{{job},route="/api"}}',
         "values": " ".join(cols["requests"])},
        {"series": f'rate_limit_rejections_total{{{job},route="/api"}}',
         "values": " ".join(cols["rejected"])},
    ]


def test_promtool_check_rules_accepts_the_app_slo_rules(promtool: str, tmp_path: Path) -> None:
    config = app_config()
    out = tmp_path / "rules.yml"
    out.write_text(yaml.safe_dump(rules_document(config.definitions, config.alerting,
                                                 config.runbook_url)))
    proc = subprocess.run([promtool, "check", "rules", str(out)], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # 3 SLOs x (8 windows x 2 + objective + budget + page + ticket), the pool's 2 samples
    assert "SUCCESS: 62 rules found" in proc.stdout
    groups = yaml.safe_load(out.read_text())["groups"]
    assert [g.get("interval") for g in groups] == ["1m", None, None]


def test_promtool_rule_tests_agree_with_the_connector(promtool: str, tmp_path: Path) -> None:
    config = app_config()
    timeline = connector_timeline(config)
    firing = {k: [m for m, f in timeline.items() if k in f]
              for k in {k for f in timeline.values() for k in f}}
    pool, cache, rate = (("db-pool-headroom", "api", "page"),
                         ("cache-hit-ratio", "api", "ticket"), ("rate-limiting", "api", "page"))
    # What the connector does (the figures the report quotes): the pool's 5m window
    # holds 5 slices (< min_events 10), so the 6h/30m rule pages: 3 bad minutes reach
    # 6x (3 / 43 slices = 7% of a 1% budget), firing `for: 2m` later.
    assert firing[pool][0] == POOL_HIGH.start + 2 + 2
    # Every lookup missing burns 10x; the 3d/6h ticket (1x: 10% of the lookups missing)
    # holds from minute 105 -- (6 x 600 + 99 x 30 usual misses) / (105 x 600) = 10.4%
    # -- and fires `for: 15m` later.
    assert firing[cache][0] == REDIS_DOWN.start + 5 + 15
    # Half the requests rejected burns 50x: the 1h window reaches 14.4x with the 18th
    # bad minute (0.5 x 18 / 60 = 0.15 >= 0.144: minute 217), firing `for: 2m` later.
    assert firing[rate][0] == LIMITING.start + 17 + 2
    print("\nfirst firing, minutes after the incident starts: pool page",
          firing[pool][0] - POOL_HIGH.start, "| cache ticket",
          firing[cache][0] - REDIS_DOWN.start, "| rate-limiting page",
          firing[rate][0] - LIMITING.start, "| resolved at minute:",
          {f"{k[0]}/{k[2]}": max(v) + 1 for k, v in firing.items()})

    doc = rules_document(config.definitions, config.alerting, config.runbook_url)
    rules_path = tmp_path / "rules.yml"
    rules_path.write_text(yaml.safe_dump(doc))
    groups = {g["name"]: g for g in doc["groups"]}

    def annotations(slo: str, severity: str) -> dict[str, str]:
        rule = next(r for r in groups[f"otelpipe-slo-{slo}"]["rules"]
                    if r.get("alert") and r["labels"]["severity"] == severity)
        return dict(rule["annotations"])

    stable = [m for m in range(5, MINUTES - 3)
              if all(timeline[m + d] == timeline[m] for d in range(-3, 4))]
    checks = stable[::2]
    for key in (pool, cache, rate):
        assert any(key in timeline[m] for m in checks), key
    assert any(not timeline[m] for m in checks)
    tests = [{"eval_time": f"{m}m", "alertname": ALERT_NAME,
              "exp_alerts": [{"exp_labels": {"severity": sev, "slo": slo, "service": svc},
                              "exp_annotations": annotations(slo, sev)}
                             for slo, svc, sev in sorted(timeline[m])]} for m in checks]
    test_file = tmp_path / "rules_test.yml"
    test_file.write_text(yaml.safe_dump({
        "rule_files": [str(rules_path)], "evaluation_interval": "1m",
        "tests": [{"interval": "15s", "input_series": prometheus_series(),
                   "alert_rule_test": tests}]}, width=1 << 20))
    proc = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True,
                          text=True, check=False, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert "SUCCESS" in proc.stdout
