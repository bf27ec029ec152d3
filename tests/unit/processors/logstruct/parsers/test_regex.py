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


def test_regex_matches_anchored_at_the_start(mode: Mode) -> None:
    cfg = {"parsers": [{"type": "regex", "pattern": r"(?P<n>\d+) items|(?P<m>\d+) things"}]}
    got = run(mode, cfg, ["12 items", "got 12 items", "got 3 things", "3 things"])
    assert got[0]["attributes"] == {"n": "12"}
    assert got[1]["attributes"] == {"log.parse_error": "regex did not match"}
    assert got[2]["attributes"] == {"log.parse_error": "regex did not match"}
    assert got[3]["attributes"] == {"m": "3"}
    (rec,) = run(mode, {"parsers": [{"type": "regex", "pattern": r".*?(?P<n>\d+) items"}]},
                 ["got 12 items"])
    assert rec["attributes"] == {"n": "12"}
