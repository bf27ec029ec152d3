"""The prometheus receiver's config: Prometheus keys typed, unsupported ones named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.receivers.prometheus.config import PrometheusReceiverConfig
from pipeline.receivers.prometheus.discovery import FileSD, build_targets, parse_groups
from pipeline.receivers.prometheus.relabel import compile_rules
from pipeline.telemetry.logs import component_logger


def cfg(**job: Any) -> PrometheusReceiverConfig:
    return PrometheusReceiverConfig.model_validate(
        {"config": {"scrape_configs": [{"job_name": "app", **job}]}})


def error(**job: Any) -> str:
    with pytest.raises(ValidationError) as exc:
        cfg(**job)
    return str(exc.value)


def test_defaults_and_globals() -> None:
    c = PrometheusReceiverConfig.model_validate({"config": {
        "global": {"scrape_interval": "30s", "scrape_timeout": "5s"},
        "scrape_configs": [{"job_name": "a"}, {"job_name": "b", "scrape_interval": "2s"}]}})
    a, b = c.config.scrape_configs
    assert (c.config.interval(a), c.config.timeout(a)) == (30.0, 5.0)
    assert (c.config.interval(b), c.config.timeout(b)) == (2.0, 2.0)  # capped by interval
    assert a.metrics_path == "/metrics"
    assert a.scheme == "http"
    assert a.honor_timestamps


@pytest.mark.parametrize("key", ["kubernetes_sd_configs", "oauth2", "proxy_url",
                                 "scrape_protocols", "bearer_token_file", "label_limit"])
def test_unsupported_prometheus_key_is_named(key: str) -> None:
    msg = error(**{key: {}})
    assert key in msg
    assert "does not support" in msg
    assert "docs/prometheus-receiver.md" in msg


def test_unknown_key_and_unsupported_top_level_keys() -> None:
    assert "scrape_intervall" in error(scrape_intervall="1s")
    with pytest.raises(ValidationError, match="rule_files"):
        PrometheusReceiverConfig.model_validate(
            {"config": {"rule_files": ["x"], "scrape_configs": [{"job_name": "a"}]}})
    with pytest.raises(ValidationError, match="external_labels"):
        PrometheusReceiverConfig.model_validate(
            {"config": {"global": {"external_labels": {"a": "b"}},
                        "scrape_configs": [{"job_name": "a"}]}})
    with pytest.raises(ValidationError, match="target_allocator"):
        PrometheusReceiverConfig.model_validate(
            {"target_allocator": {}, "config": {"scrape_configs": [{"job_name": "a"}]}})


def test_invalid_values() -> None:
    assert "greater than scrape_interval" in error(scrape_interval="5s", scrape_timeout="10s")
    assert "invalid regex" in error(relabel_configs=[{"regex": "(", "action": "keep"}])
    assert "needs modulus" in error(relabel_configs=[{"action": "hashmod", "target_label": "x"}])
    assert "needs target_label" in error(relabel_configs=[{"action": "replace"}])
    assert "action" in error(metric_relabel_configs=[{"action": "explode"}])
    assert "mutually exclusive" in error(basic_auth={"username": "u"},
                                         authorization={"credentials": "t"})
    assert "invalid label name" in error(static_configs=[{"targets": ["a:1"],
                                                          "labels": {"1x": "y"}}])
    with pytest.raises(ValidationError, match="duplicate job_name"):
        PrometheusReceiverConfig.model_validate(
            {"config": {"scrape_configs": [{"job_name": "a"}, {"job_name": "a"}]}})


def test_secrets_never_printed() -> None:
    c = cfg(basic_auth={"username": "u", "password": "hunter2"},
            static_configs=[{"targets": ["a:1"]}])
    assert "hunter2" not in repr(c)
    assert c.config.scrape_configs[0].basic_auth is not None
    assert c.config.scrape_configs[0].basic_auth.header() == "Basic dTpodW50ZXIy"


def test_targets_from_static_configs_and_relabel_configs() -> None:
    c = cfg(static_configs=[{"targets": ["a:9100", "b:9100"], "labels": {"env": "prod"}}],
            params={"module": ["http_2xx"]},
            relabel_configs=[
                {"source_labels": ["__address__"], "regex": "b:.*", "action": "drop"},
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__address__"], "regex": "([^:]+):.*",
                 "target_label": "instance", "replacement": "$1"},
                {"target_label": "__address__", "replacement": "exporter:9115"},
            ])
    job = c.config.scrape_configs[0]
    from pipeline.receivers.prometheus.discovery import Group

    (t,) = build_targets(job, c.config, [Group(("a:9100", "b:9100"), (("env", "prod"),))],
                         compile_rules(job.relabel_configs))
    assert t.url == "http://exporter:9115/metrics?module=http_2xx&target=a%3A9100"
    assert t.public_labels == {"job": "app", "env": "prod", "instance": "a"}


def test_file_sd_groups_rereads_on_change(tmp_path: Path) -> None:
    f = tmp_path / "targets.json"
    f.write_text('[{"targets": ["a:1"], "labels": {"env": "x"}}]')
    sd = FileSD(cfg(file_sd_configs=[{"files": [str(tmp_path / "*.json")]}])
                .config.scrape_configs[0].file_sd_configs[0],
                component_logger("receiver", "prometheus"))
    assert sd.poll(0.0) is True
    assert [g.targets for g in sd.groups] == [("a:1",)]
    assert sd.poll(0.5) is False  # nothing changed
    f.write_text('[{"targets": ["b:2", "c:3"]}]')
    assert sd.poll(1.0) is True
    assert [g.targets for g in sd.groups] == [("b:2", "c:3")]
    f.write_text("[{broken")  # a broken file keeps its previous groups
    assert sd.poll(2.0) is False
    assert [g.targets for g in sd.groups] == [("b:2", "c:3")]
    (tmp_path / "more.json").write_text('[{"targets": ["d:4"]}]')
    assert sd.poll(3.0) is True
    assert sorted(t for g in sd.groups for t in g.targets) == ["b:2", "c:3", "d:4"]


@pytest.mark.parametrize(("data", "message"), [
    ({"targets": []}, "list of"),
    ([{"targets": "a:1"}], "list of strings"),
    ([{"targets": ["a:1"], "labels": {"a-b": "x"}}], "invalid label name"),
    ([{"targets": ["a:1"], "bogus": 1}], "unknown keys"),
])
def test_file_sd_bad_groups(data: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_groups(data, "f")


def test_targets_spread_over_the_interval_by_hash() -> None:
    from pipeline.receivers.prometheus.discovery import Group

    c = cfg(static_configs=[{"targets": [f"10.0.0.{i}:9100" for i in range(50)]}])
    job = c.config.scrape_configs[0]
    targets = build_targets(job, c.config, [Group(tuple(f"10.0.0.{i}:9100" for i in range(50)))],
                            [])
    offsets = [t.offset(15.0) for t in targets]
    assert all(0 <= o < 15.0 for o in offsets)
    assert offsets == [t.offset(15.0) for t in targets]  # stable across restarts
    # spread: every third of the interval gets some of the 50 targets
    assert all(any(k * 5 <= o < (k + 1) * 5 for o in offsets) for k in range(3))
    assert len({round(o, 3) for o in offsets}) == 50
