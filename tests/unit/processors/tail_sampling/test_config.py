"""A Collector user's tail_sampling block validates and builds; errors point at the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.component import Signal
from pipeline.processors.tail_sampling.config import TailSamplingConfig
from pipeline.processors.tail_sampling.policies import Composite, Drop
from pipeline.processors.tail_sampling.processor import TailSamplingProcessor
from tests.support import Sink, processor_settings
from tests.unit.processors.tail_sampling.spans import S, batch, sampled

README = Path(__file__).with_name("collector_readme.yaml")


def readme_block() -> dict[str, object]:
    block = yaml.safe_load(README.read_text())["processors"]["tail_sampling"]
    assert isinstance(block, dict)
    return block


def test_the_collector_readme_example_validates(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-c", str(README)]) == 0, capsys.readouterr().err
    assert "configuration is valid" in capsys.readouterr().out
    cfg = TailSamplingConfig.model_validate(readme_block())
    assert cfg.decision_wait == 10.0
    assert cfg.num_traces == 100
    assert cfg.decision_cache.sampled_cache_size == 100_000
    assert [p.type for p in cfg.policies][:4] == ["always_sample", "latency",
                                                  "numeric_attribute", "probabilistic"]


async def test_the_collector_readme_example_behaves_as_the_collector() -> None:
    sink = Sink()
    cfg = TailSamplingConfig.model_validate(readme_block())
    proc = TailSamplingProcessor(processor_settings("tail_sampling", next_consumer=sink,
                                                    signal=Signal.TRACES), cfg)
    assert [type(e) for e in proc.drops] == [Drop]
    assert isinstance(proc.policies[-1], Composite)
    # always_sample keeps everything but what drop-policy-1 drops (/health, /metrics).
    await proc.consume(batch([S(1), S(2, attrs={"url.path": "/health"}),
                              S(3, attrs={"url.path": "/metrics/x"}),
                              S(4, attrs={"url.path": "/api"})]))
    await proc.decide_due(float("inf"))
    assert sampled(sink.batches) == {1, 4}


@pytest.mark.parametrize(("policy", "message"), [
    ({"name": "o", "type": "ottl_condition", "ottl_condition": {"span": ["true"]}},
     "policies.0.type"),
    ({"name": "l", "type": "latency"}, "needs a latency: section"),
    ({"name": "s", "type": "string_attribute",
      "string_attribute": {"key": "k", "values": ["("], "enabled_regex_matching": True}},
     "invalid regular expression"),
    ({"name": "n", "type": "numeric_attribute", "numeric_attribute": {"key": "k"}},
     "give min_value, max_value or both"),
    ({"name": "c", "type": "composite", "composite": {
        "max_total_spans_per_second": 10, "composite_sub_policy": [
            {"name": "a", "type": "always_sample"}],
        "rate_allocation": [{"policy": "b", "percent": 10}]}}, "no composite_sub_policy"),
    ({"name": "a", "type": "and", "and": {"and_sub_policy": [
        {"name": "x", "type": "composite"}]}}, "and_sub_policy.0.type"),
    ({"name": "b", "type": "boolean_attribute",
      "string_attribute": {"key": "app.do_not_sample", "value": True}},
     "string_attribute.values"),
])
def test_bad_policies_are_refused_with_the_key(policy: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        TailSamplingConfig.model_validate({"policies": [policy]})


def test_storage_disk_needs_a_directory() -> None:
    with pytest.raises(ValueError, match="directory is required"):
        TailSamplingConfig.model_validate({"storage": "disk", "policies": [
            {"name": "a", "type": "always_sample"}]})
