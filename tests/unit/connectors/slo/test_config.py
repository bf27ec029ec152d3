"""The connector's config and registration: SLOs inline and from files."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.component import Signal
from pipeline.config.loader import load_config
from pipeline.config.model import validate_config
from pipeline.connectors.slo import factory
from pipeline.connectors.slo.config import SLOConnectorConfig
from pipeline.errors import ConfigError
from pipeline.registry import default_registry
from tests.support import REPO


def test_factory_pairs_and_registry() -> None:
    assert factory.connector_pairs == {(Signal.METRICS, Signal.METRICS),
                                       (Signal.METRICS, Signal.LOGS)}
    from pipeline.component import Kind

    assert default_registry().get(Kind.CONNECTOR, "slo") is factory


def test_configs_slo_yaml_is_valid_and_matches_the_openslo_file(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    config = validate_config(load_config([REPO / "configs" / "slo.yaml"]), default_registry())
    from pipeline.component import ComponentID, Kind
    from pipeline.slo.loader import load_slo_file

    slo_cfg = config.components[Kind.CONNECTOR][ComponentID("slo")]
    assert isinstance(slo_cfg, SLOConnectorConfig)
    assert slo_cfg.definitions == load_slo_file(REPO / "configs" / "slo-definitions.yaml")
    via_files = SLOConnectorConfig.model_validate(
        {"slo_files": [str(REPO / "configs" / "slo-definitions.yaml")]})
    assert via_files.definitions == slo_cfg.definitions


def test_config_errors_point_at_the_slo() -> None:
    raw = load_config([REPO / "configs" / "slo.yaml"])
    raw["connectors"]["slo"]["slos"][2]["objective"] = 100
    raw["connectors"]["slo"]["slos"][3]["sli"]["op"] = "below"
    with pytest.raises(ConfigError) as err:
        validate_config(raw, default_registry())
    text = "\n".join(err.value.problems)
    assert "connectors.slo.slos.2.objective: input should be less than 100" in text
    assert "connectors.slo.slos.3.sli.threshold.op" in text


def test_missing_slo_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        SLOConnectorConfig.model_validate({"slo_files": [str(tmp_path / "none.yaml")]})
    with pytest.raises(ValueError, match="no SLOs"):
        SLOConnectorConfig.model_validate({})
