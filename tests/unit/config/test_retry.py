"""The exporter settings models (timeout, retry_on_failure, sending_queue)."""

from __future__ import annotations

import pytest

from pipeline.config.retry import ExporterSettings, QueueSettings, RetrySettings


def test_disk_storage_needs_a_directory() -> None:
    with pytest.raises(ValueError, match="directory is required"):
        ExporterSettings.model_validate({"sending_queue": {"storage": "disk"}})


def test_defaults_and_keys() -> None:
    s = ExporterSettings()
    assert s.timeout == 5.0
    assert s.retry_on_failure == RetrySettings()
    assert s.sending_queue == QueueSettings()
    assert set(ExporterSettings.model_fields) == {"timeout", "retry_on_failure", "sending_queue"}
