from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.slo.model import Selector
from pipeline.slo.native import parse_native
from pipeline.slo.rules import events_expr, prometheus_name, rules_document
from tests.support import REPO


def test_prometheus_names_follow_the_exporter() -> None:
    names = {m: prometheus_name(Selector(metric=m)) for m in (
        "traces.span.metrics.calls", "traces.span.metrics.duration", "httpcheck.success",
        "httpcheck.status", "db.replication.lag")}
    assert names == {
        "traces.span.metrics.calls": "traces_span_metrics_calls_total",
        "traces.span.metrics.duration": "traces_span_metrics_duration_seconds",
        "httpcheck.success": "httpcheck_success_ratio",
        "httpcheck.status": "httpcheck_status",
        "db.replication.lag": "db_replication_lag_seconds"}
    bucket = Selector(metric="traces.span.metrics.duration", match={"service.name": "api"},
                      op="lte", value=0.2)
    assert events_expr(bucket, "5m") == (
        'sum(increase(traces_span_metrics_duration_seconds_bucket{service_name="api",'
        'le="0.2"}[5m]))')


def test_availability_rules() -> None:
    [slo] = parse_native([{"name": "a", "service": "api", "objective": 99.9,
                           "sli": {"type": "availability", "match": {"service.name": "api"}}}])
    rules = rules_document([slo])["groups"][0]["rules"]
    by = {r.get("record") or f"alert:{r['labels']['severity']}": r for r in rules}
    assert by["slo:sli_error:ratio_rate5m"]["expr"] == (
        '(sum(increase(traces_span_metrics_calls_total{service_name="api",'
        'status_code="STATUS_CODE_ERROR"}[5m])) or vector(0)) / '
        'sum(increase(traces_span_metrics_calls_total{service_name="api"}[5m]))')
    page = by["alert:page"]
    assert page["for"] == "2m"
    assert page["labels"] == {"severity": "page", "slo": "a", "service": "api"}
    assert 'slo:sli_error:ratio_rate1h{slo="a"} >= 0.0144' in page["expr"]
    assert 'slo:sli_events:total5m{slo="a"} >= 10' in page["expr"]
    assert page["annotations"]["runbook_url"] == "docs/runbook.md#slo-burn-rate-page"


def test_cli_slo_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slo", "rules", "-f", str(REPO / "configs" / "slo-definitions.yaml"),
                 "--runbook-url", "https://runbooks.example/otelpipe.md"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert [g["name"] for g in doc["groups"]] == [
        "otelpipe-slo-api-availability", "otelpipe-slo-api-latency-p95",
        "otelpipe-slo-api-latency-p99", "otelpipe-slo-data-consistency",
        "otelpipe-slo-db-pool-headroom", "otelpipe-slo-cache-hit-ratio",
        "otelpipe-slo-rate-limiting"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("slos: [{name: x, service: api, objective: 120, sli: {type: availability}}]")
    assert main(["slo", "rules", "-f", str(bad)]) == 2
    assert "objective: input should be less than 100" in capsys.readouterr().err
