"""The alertmanager exporter's config: validation errors, defaults."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.component import Signal
from pipeline.exporters.alertmanager import factory
from pipeline.exporters.alertmanager.config import AlertmanagerExporterConfig


def test_config_validation() -> None:
    with pytest.raises(ValidationError, match="http"):
        AlertmanagerExporterConfig.model_validate({"endpoint": "alertmanager:9093"})
    with pytest.raises(ValidationError, match="label name"):
        AlertmanagerExporterConfig.model_validate({"labels": {"bad-name": "x"}})
    with pytest.raises(ValidationError, match="bad template"):
        AlertmanagerExporterConfig.model_validate({"alertname": "{nope}"})
    cfg = AlertmanagerExporterConfig.model_validate({"resend_interval": "30s"})
    assert cfg.ttl == 120
    assert cfg.endpoint == "http://localhost:9093"
    assert factory.signals == frozenset({Signal.LOGS})
