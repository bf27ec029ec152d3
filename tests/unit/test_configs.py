"""Every example in configs/ is a valid configuration, as `otelpipe validate` sees it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_there_are_example_configs() -> None:
    assert {p.name for p in CONFIGS} >= {"default.yaml", "agent-kafka.yaml", "gateway-kafka.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_config_validates(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", "-c", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    # OpenSLO definition files (used by the slo connector's slo_files) validate as such.
    expected = "SLO definitions are valid" if "openslo/" in path.read_text() else \
        "configuration is valid"
    assert expected in out
    assert "error:" not in err


def test_invalid_slo_definitions_are_reported(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "slos.yaml"
    bad.write_text("apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: x}\nspec: {}\n")
    assert main(["validate", "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("invalid SLO definitions")
    assert "error:" in err


@pytest.mark.parametrize("path", [p for p in CONFIGS if "openslo/" not in p.read_text()],
                         ids=lambda p: p.name)
def test_example_config_matches_the_json_schema(path: Path) -> None:
    """What editors see: `otelpipe schema` accepts the raw file, `${env:…}` references
    included (they are substituted only at load time)."""
    import jsonschema

    from pipeline.config.loader import load_yaml_files
    from pipeline.config.model import build_json_schema
    from pipeline.registry import default_registry

    validator = jsonschema.Draft202012Validator(build_json_schema(default_registry()))
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}"
              for e in validator.iter_errors(load_yaml_files([path]))]
    assert errors == []
