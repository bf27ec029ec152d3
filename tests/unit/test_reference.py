"""docs/components.md is the generated reference: it must match the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config.reference import duration_text, render
from pipeline.config.types import parse_duration
from pipeline.registry import default_registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "components.md"


def test_component_reference_is_up_to_date() -> None:
    assert DOC.read_text() == render(default_registry()), (
        "docs/components.md is stale: run `otelpipe components --markdown > docs/components.md`")


def test_reference_lists_every_component_and_key() -> None:
    text = render(default_registry())
    for f in default_registry().factories():
        assert f"### `{f.type}`" in text
        for name, field in f.config_model.model_fields.items():
            key = field.alias or name
            assert f"| `{key}` |" in text or f".{key}` |" in text


def test_keys_as_written_in_yaml_and_durations_as_strings() -> None:
    """`for`, not the model's `for_`; `5m`, not `300.0` (nor `300s`)."""
    text = render(default_registry())
    assert "| `alerting.rules.for` | duration | `0s` |" in text
    assert "for_" not in text
    assert "in_`" not in text  # the filter's `in`
    assert "| `alerting.reference_period` | duration | `30d` |" in text
    assert ("`[{severity: page, long_window: 1h, short_window: 5m, burn_rate: 14.4, "
            "for: 2m}, ") in text
    assert "| `retry_on_failure.max_elapsed_time` | duration | `5m` |" in text
    # an optional duration is a duration too
    assert "| `alert_ttl` | duration \\| null |" in text
    assert "2592000" not in text
    assert "300.0" not in text
    # defaults are YAML: no Python reprs
    assert "`True`" not in text
    assert "`False`" not in text
    assert "`'" not in text


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (0.2, "200ms"), (1.5, "1.5s"), (90, "1m30s"), (300, "5m"), (3600, "1h"),
    (5400, "1h30m"), (2592000, "30d")])
def test_duration_text(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text
    assert parse_duration(text) == seconds
