from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.slo.model import (
    AlertingConfig,
    BurnRateRule,
    Indicator,
    Selector,
    SLODefinitionError,
    load_slo_file,
    parse_documents,
    parse_native,
    parse_yaml_text,
)
from tests.support import REPO

OPENSLO_AVAILABILITY = """
apiVersion: openslo/v1
kind: SLO
metadata: {name: api-errors, displayName: API errors}
spec:
  service: api
  indicator:
    metadata: {name: api-errors}
    spec:
      ratioMetric:
        counter: true
        bad:
          metricSource:
            type: otelpipe
            spec: {metric: traces.span.metrics.calls,
                   match: {service.name: api, status.code: STATUS_CODE_ERROR}}
        total:
          metricSource:
            type: otelpipe
            spec: {metric: traces.span.metrics.calls, match: {service.name: api}}
  timeWindow: [{duration: 4w, isRolling: true}]
  budgetingMethod: Occurrences
  objectives: [{target: 0.999}]
"""

NATIVE_AVAILABILITY = """
slos:
  - name: api-errors
    service: api
    display_name: API errors
    objective: 99.9
    window: 28d
    sli: {type: availability, match: {service.name: api}}
"""


def test_openslo_and_native_forms_parse_to_the_same_model() -> None:
    a = parse_yaml_text(OPENSLO_AVAILABILITY)
    b = parse_yaml_text(NATIVE_AVAILABILITY)
    assert a == b
    [slo] = a
    assert slo.objective == 0.999
    assert slo.error_budget == 0.001
    assert slo.period == 28 * 86400
    assert slo.indicator == Indicator(
        total=Selector(metric="traces.span.metrics.calls", match={"service.name": "api"}),
        bad=Selector(metric="traces.span.metrics.calls",
                     match={"service.name": "api", "status.code": "STATUS_CODE_ERROR"}))


def test_the_shipped_definitions_match_the_shipped_config() -> None:
    openslo = load_slo_file(REPO / "configs" / "slo-definitions.yaml")
    raw = yaml.safe_load((REPO / "configs" / "slo.yaml").read_text())
    native_items = raw["connectors"]["slo"]["slos"]
    for item in native_items:  # the config's env default, as the loader substitutes it
        url = item["sli"].get("match", {}).get("http.url")
        if url:
            item["sli"]["match"]["http.url"] = url.split(":-", 1)[1].rstrip("}")
    native = parse_native(native_items)
    assert [s.name for s in openslo] == ["api-availability", "api-latency-p95",
                                         "api-latency-p99", "data-consistency"]
    assert openslo == native
    by_name = {s.name: s for s in openslo}
    assert by_name["api-latency-p95"].indicator.good == Selector(
        metric="traces.span.metrics.duration",
        match={"service.name": "api", "span.kind": "SPAN_KIND_SERVER"}, op="lte", value=0.2)
    assert by_name["data-consistency"].objective == 0.9999
    assert by_name["data-consistency"].indicator.good.value == 0.1  # type: ignore[union-attr]


def test_threshold_metric_with_several_objectives() -> None:
    text = """
apiVersion: openslo/v1
kind: SLO
metadata: {name: latency}
spec:
  service: api
  indicator:
    spec:
      thresholdMetric:
        metricSource: {type: otelpipe, spec: {metric: traces.span.metrics.duration}}
  timeWindow: [{duration: 30d, isRolling: true}]
  budgetingMethod: Occurrences
  objectives:
    - {displayName: P95 under 200 ms, op: lte, value: 200ms, target: 0.95}
    - {name: p99, op: lte, value: 0.5, targetPercent: 99}
"""
    a, b = parse_yaml_text(text)
    assert (a.name, b.name) == ("latency-p95-under-200-ms", "latency-p99")
    assert a.indicator.good is not None
    assert a.indicator.good.value == 0.2
    assert b.objective == 0.99


@pytest.mark.parametrize(("text", "message"), [
    ("slos: [{name: Bad_Name, service: api, objective: 99, sli: {type: availability}}]",
     "invalid SLO name 'Bad_Name'"),
    ("slos: [{name: a, service: api, objective: 100, sli: {type: availability}}]",
     "slos[0].objective: input should be less than 100"),
    ("slos: [{name: a, service: api, objective: 99, sli: {type: latency}}]",
     "slos[0].sli.latency.threshold: field required"),
    ("slos: [{name: a, service: api, objective: 99, sli: {type: avail}}]",
     "slos[0].sli: input tag 'avail' found using 'type' does not match any of the expected "
     "tags"),
    ("slos: [{name: a, service: api, objective: 99, window: 1M, sli: {type: availability}}]",
     "calendar units (M, Q, Y) are not supported"),
    ("slos: [{name: a, service: api, objective: 99, sli: {type: threshold, "
     "metric: traces.span.metrics.calls, op: lt, threshold: 1}}]",
     "traces.span.metrics.calls is a counter: a threshold (op/value) applies to histograms"),
    ("slos: [{name: a, service: api, objective: 99, sli: {type: ratio, "
     "total: {metric: x}}}]", "exactly one of good and bad"),
    ("slos: [{name: a, service: api, objective: 99, sli: {type: availability}},"
     " {name: a, service: api, objective: 99, sli: {type: availability}}]",
     "SLO 'a' is defined twice"),
    ("apiVersion: openslo/v1alpha\nkind: SLO\nmetadata: {name: a}\nspec: {}",
     "apiVersion must be openslo/v1, got 'openslo/v1alpha' (v1alpha documents"),
    ("apiVersion: openslo/v1\nkind: Thing\nmetadata: {name: a}\nspec: {}",
     "unsupported kind 'Thing'"),
    (OPENSLO_AVAILABILITY.replace("Occurrences", "Timeslices"),
     "budgetingMethod: input should be 'Occurrences'"),
    (OPENSLO_AVAILABILITY.replace("type: otelpipe", "type: Prometheus", 1),
     "metricSource.type must be otelpipe"),
    (OPENSLO_AVAILABILITY.replace("isRolling: true", "isRolling: false"),
     "only rolling time windows"),
    (OPENSLO_AVAILABILITY.replace("indicator:\n", "indicatorRef: nope\n  x:\n"),
     "unknown key"),
    ("apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: a}\nspec:\n  service: api\n"
     "  indicatorRef: missing\n  timeWindow: [{duration: 30d}]\n"
     "  budgetingMethod: Occurrences\n  objectives: [{target: 0.9}]\n",
     "spec.indicatorRef: no kind: SLI document named 'missing'"),
    ("slos: [{name: a,", "invalid YAML at line"),
])
def test_bad_definitions_give_clear_errors(text: str, message: str) -> None:
    with pytest.raises(SLODefinitionError) as err:
        parse_yaml_text(text, "slos.yaml")
    assert message in str(err.value), err.value.problems


def test_errors_name_the_file_and_document(tmp_path: Path) -> None:
    path = tmp_path / "defs.yaml"
    path.write_text("apiVersion: openslo/v1\nkind: Service\nmetadata: {name: api}\nspec: {}\n"
                    "---\n" + OPENSLO_AVAILABILITY.replace("target: 0.999", "target: 2"))
    with pytest.raises(SLODefinitionError) as err:
        load_slo_file(path)
    assert err.value.problems == [
        f"{path}: document 2 (SLO api-errors): spec.objectives.0.target: "
        "input should be less than 1"]


def test_histogram_thresholds_are_lte_only() -> None:
    with pytest.raises(ValueError, match="only `op: lte`"):
        Selector(metric="traces.span.metrics.duration", op="lt", value=0.2)
    assert Selector.model_validate({"metric": "m", "le": "200ms"}) == Selector(
        metric="m", op="lte", value=0.2)


def test_burn_rate_thresholds_scale_with_the_period() -> None:
    page = BurnRateRule.model_validate({"severity": "page", "long_window": "1h",
                                        "short_window": "5m", "burn_rate": 14.4})
    month = 30 * 86400
    assert page.threshold(month, month) == pytest.approx(14.4)
    # 7 days: the same 2% of the budget in an hour is a burn rate of 14.4 * 7/30.
    assert page.threshold(7 * 86400, month) == pytest.approx(3.36)
    by_budget = BurnRateRule.model_validate({"severity": "page", "long_window": "1h",
                                             "short_window": "5m", "budget_consumed": "2%"})
    assert by_budget.threshold(month, month) == pytest.approx(14.4)
    assert by_budget.threshold(7 * 86400, month) == pytest.approx(3.36)
    with pytest.raises(ValueError, match="exactly one of burn_rate and budget_consumed"):
        BurnRateRule.model_validate({"severity": "page", "long_window": "1h",
                                     "short_window": "5m"})
    with pytest.raises(ValueError, match="short_window must be shorter"):
        BurnRateRule.model_validate({"severity": "page", "long_window": "5m",
                                     "short_window": "1h", "burn_rate": 1})


def test_default_alerting_is_the_workbook() -> None:
    cfg = AlertingConfig()
    got = [(r.severity, r.long_window, r.short_window, r.burn_rate) for r in cfg.rules]
    assert got == [("page", 3600, 300, 14.4), ("page", 21600, 1800, 6),
                   ("ticket", 86400, 7200, 3), ("ticket", 259200, 21600, 1)]
    assert cfg.min_events_for(300) == 10
    per = AlertingConfig.model_validate({"min_events": {"5m": 50, "default": 5}})
    assert (per.min_events_for(300), per.min_events_for(3600)) == (50, 5)


def test_documents_without_slos() -> None:
    with pytest.raises(SLODefinitionError, match="no SLO definitions"):
        parse_yaml_text("")
    assert parse_documents([{"apiVersion": "openslo/v1", "kind": "Service",
                             "metadata": {"name": "api"}, "spec": {}}]) == []
