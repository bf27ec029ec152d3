from __future__ import annotations

import pytest

from pipeline.processors.logstruct.severity import level_of, syslog_severity_name


@pytest.mark.parametrize(("value", "want"), [
    ("info", (9, "info")), ("WARNING", (13, "WARNING")), ("err", (17, "err")),
    ("Fatal", (21, "Fatal")), ("trace3", (2, "trace3")), ("notice", (10, "notice")),
    (30, (9, "INFO")), (3, (17, "ERROR")), ("chatty", (0, "chatty")),
])
def test_levels(value: object, want: tuple[int, str]) -> None:
    assert level_of(value) == want


def test_syslog_severity_names() -> None:
    assert [syslog_severity_name(p) for p in (8, 11, 12, 15, 191)] == [
        "emerg", "err", "warning", "debug", "debug"]
