"""The native (compact) form."""

from __future__ import annotations

import pytest

from pipeline.slo.loader import parse_yaml_text
from pipeline.slo.model import SLODefinitionError


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
])
def test_bad_definitions_give_clear_errors(text: str, message: str) -> None:
    with pytest.raises(SLODefinitionError) as err:
        parse_yaml_text(text, "slos.yaml")
    assert message in str(err.value), err.value.problems
