"""filelog config: validation, aliases, byte sizes and durations."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.config.types import parse_byte_size
from pipeline.receivers.filelog.config import FileLogConfig


def test_config_validation() -> None:
    assert parse_byte_size("1kb") == 1000
    assert parse_byte_size("64KiB") == 65536
    assert parse_byte_size("1MiB") == 1048576
    assert parse_byte_size(500) == 500
    with pytest.raises(ValidationError, match="exactly one"):
        FileLogConfig(include=["x"], multiline={"line_start_pattern": "a",
                                                "line_end_pattern": "b"})
    with pytest.raises(ValidationError, match="invalid regex"):
        FileLogConfig(include=["x"], multiline={"line_start_pattern": "("})
    with pytest.raises(ValidationError, match="not both"):
        FileLogConfig(include=["x"], storage_dir="/a", checkpoint_path="/b")
    with pytest.raises(ValidationError, match="unknown encoding"):
        FileLogConfig(include=["x"], encoding="klingon")
    with pytest.raises(ValidationError):
        FileLogConfig(include=[])
    with pytest.raises(ValidationError):
        FileLogConfig(include=["x"], bogus=1)  # type: ignore[call-arg]
    c = FileLogConfig(include=["x"], multiline={"indented": True, "timeout": "2s"},
                      max_log_size="64KiB", poll_interval="1s")
    assert c.multiline is not None
    assert c.multiline.flush_period == 2.0
    assert c.max_log_size == 65536
    assert c.poll_interval == 1.0
    assert c.start_at == "end"
