from __future__ import annotations

from tests.unit.processors.logstruct.helpers import Mode, run


def test_regex_parser_named_groups(mode: Mode) -> None:
    cfg = {"parsers": [{"type": "regex", "pattern":
                        r"^(?P<timestamp>\S+) (?P<level>\w+) \[(?P<thread>[^\]]+)\] "
                        r"(?P<logger>\S+): (?P<message>.*)$"}]}
    (rec,) = run(mode, cfg, ["2024-03-01T12:00:00Z WARN [main] com.example.App: started in 3 s"])
    assert rec == {"time_unix_nano": 1709294400000000000, "severity_number": 13,
                   "severity_text": "WARN", "body": "started in 3 s",
                   "attributes": {"thread.name": "main", "log.logger": "com.example.App"}}
