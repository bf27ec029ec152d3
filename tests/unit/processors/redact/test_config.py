"""The `redact` processor's config errors; the hash key never shows."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.processors.redact.config import RedactConfig


def test_config_errors() -> None:
    with pytest.raises(ValidationError, match="unknown built-in pattern"):
        RedactConfig.model_validate({"disable_patterns": ["nope"]})
    with pytest.raises(ValidationError, match="invalid regular expression"):
        RedactConfig.model_validate({"patterns": [{"name": "x", "regex": "("}]})
    with pytest.raises(ValidationError, match="backreferences"):
        RedactConfig.model_validate({"patterns": [{"name": "x", "regex": r"(a)\1"}]})
    with pytest.raises(ValidationError, match="hash_key needs hash"):
        RedactConfig.model_validate({"hash_key": "k"})
    # The hash key never shows in errors or reprs.
    cfg = RedactConfig.model_validate({"hash": "sha256", "hash_key": "topsecret"})
    assert "topsecret" not in repr(cfg)
    assert "topsecret" not in str(cfg.model_dump())
