"""SLO definitions from YAML text and files, in either form."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.slo.loader import load_slo_file, parse_documents, parse_yaml_text
from pipeline.slo.model import Indicator, Selector, SLODefinitionError
from pipeline.slo.native import parse_native
from tests.support import REPO
from tests.unit.slo.test_openslo import OPENSLO_AVAILABILITY

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
                                         "api-latency-p99", "data-consistency",
                                         "db-pool-headroom", "cache-hit-ratio",
                                         "rate-limiting"]
    assert openslo == native
    by_name = {s.name: s for s in openslo}
    assert by_name["api-latency-p95"].indicator.good == Selector(
        metric="traces.span.metrics.duration",
        match={"service.name": "api", "span.kind": "SPAN_KIND_SERVER"}, op="lte", value=0.2)
    assert by_name["data-consistency"].objective == 0.9999
    assert by_name["data-consistency"].indicator.good.value == 0.1  # type: ignore[union-attr]


def test_errors_name_the_file_and_document(tmp_path: Path) -> None:
    path = tmp_path / "defs.yaml"
    path.write_text("apiVersion: openslo/v1\nkind: Service\nmetadata: {name: api}\nspec: {}\n"
                    "---\n" + OPENSLO_AVAILABILITY.replace("target: 0.999", "target: 2"))
    with pytest.raises(SLODefinitionError) as err:
        load_slo_file(path)
    assert err.value.problems == [
        f"{path}: document 2 (SLO api-errors): spec.objectives.0.target: "
        "input should be less than 1"]


@pytest.mark.parametrize(("text", "message"), [
    ("slos: [{name: a,", "invalid YAML at line"),
])
def test_invalid_yaml_is_reported_with_its_position(text: str, message: str) -> None:
    with pytest.raises(SLODefinitionError) as err:
        parse_yaml_text(text, "slos.yaml")
    assert message in str(err.value), err.value.problems


def test_documents_without_slos() -> None:
    with pytest.raises(SLODefinitionError, match="no SLO definitions"):
        parse_yaml_text("")
    assert parse_documents([{"apiVersion": "openslo/v1", "kind": "Service",
                             "metadata": {"name": "api"}, "spec": {}}]) == []
