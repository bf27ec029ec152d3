"""OpenSLO v1 documents."""

from __future__ import annotations

import pytest

from pipeline.slo.loader import parse_yaml_text
from pipeline.slo.model import SLODefinitionError

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
    ("apiVersion: openslo/v1alpha\nkind: SLO\nmetadata: {name: a}\nspec: {}",
     "apiVersion must be openslo/v1, got 'openslo/v1alpha' (v1alpha documents"),
    ("apiVersion: openslo/v1\nkind: Thing\nmetadata: {name: a}\nspec: {}",
     "unsupported kind 'Thing'"),
    (OPENSLO_AVAILABILITY.replace("Occurrences", "Timeslices"),
     "objectives.0: budgetingMethod Timeslices needs timeSliceWindow"),
    (OPENSLO_AVAILABILITY.replace("Occurrences", "RatioTimeslices"),
     "budgetingMethod: input should be 'Occurrences' or 'Timeslices'"),
    (OPENSLO_AVAILABILITY.replace("Occurrences", "Timeslices").replace(
        "{target: 0.999}", "{target: 0.999, timeSliceWindow: 1m}"),
     "Timeslices is supported with a thresholdMetric indicator"),
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
])
def test_bad_definitions_give_clear_errors(text: str, message: str) -> None:
    with pytest.raises(SLODefinitionError) as err:
        parse_yaml_text(text, "slos.yaml")
    assert message in str(err.value), err.value.problems
