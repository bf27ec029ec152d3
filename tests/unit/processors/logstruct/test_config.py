from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from pipeline import cli
from pipeline.processors.logstruct.config import LogStructConfig
from tests.support import REPO


@pytest.mark.parametrize(("cfg", "message"), [
    ({}, "set auto: true, list parsers, or enable templates"),
    ({"auto": True, "bogus": 1}, "Extra inputs are not permitted"),
    ({"parsers": [{"type": "nope"}]}, "does not match any of the expected tags"),
    ({"parsers": [{"type": "regex", "pattern": "(unclosed"}]}, "invalid regex"),
    ({"parsers": [{"type": "regex", "pattern": "no groups"}]}, "no named groups"),
    ({"parsers": [{"type": "grok", "pattern": "%{NOPE:x}"}]}, "unknown grok pattern"),
    ({"auto": True, "timezone": "Mars/Olympus"}, "unknown time zone"),
    ({"auto": True, "source": "attributes[x]"}, "source must be"),
    ({"parsers": [{"type": "json", "when": {"matches": "("}}]}, "invalid regex"),
])
def test_config_errors(cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LogStructConfig.model_validate(cfg)


def test_example_config_validates(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["validate", "-c", str(REPO / "configs" / "logstruct.yaml")])
    assert code == 0, capsys.readouterr().err
