"""docs/components.md is the generated reference: it must match the code."""

from __future__ import annotations

from pathlib import Path

from pipeline.config.reference import render
from pipeline.registry import default_registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "components.md"


def test_component_reference_is_up_to_date() -> None:
    assert DOC.read_text() == render(default_registry()), (
        "docs/components.md is stale: run `otelpipe components --markdown > docs/components.md`")


def test_reference_lists_every_component_and_key() -> None:
    text = render(default_registry())
    for f in default_registry().factories():
        assert f"### `{f.type}`" in text
        for name in f.config_model.model_fields:
            assert f"| `{name}` |" in text or f".{name}` |" in text
