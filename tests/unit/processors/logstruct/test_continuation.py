"""A multi-line record (a log line and its stack trace, joined by filelog multiline)
through a `regex` or `grok` parser: the lines after the first stay in the field the
match ended with (`%{GREEDYDATA:message}` -> the body), else in the message; and a
record longer than `max_parse_bytes` is parsed from its first lines (the window) with
the rest kept, in bounded time."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pipeline.processors.logstruct.processor import TOO_LONG
from tests.unit.processors.logstruct.bounds import BOUND_S, SHAPES, best_of
from tests.unit.processors.logstruct.helpers import Mode, run

GROK = ("%{TIMESTAMP_ISO8601:timestamp} +%{LOGLEVEL:level} +\\[%{DATA:thread}\\] "
        "%{JAVACLASS:logger}: %{GREEDYDATA:message}")
HEAD = "2024-03-01 12:00:00.123 ERROR [main] com.example.Shop: checkout failed"
STACK = ("java.lang.IllegalStateException: boom\n\tat com.example.Shop.order(Shop.java:32)\n"
         "Caused by: java.io.IOException: disk\n\t... 8 more")
RECORD = HEAD + "\n" + STACK
T = 1709294400123000000  # 2024-03-01T12:00:00.123Z


def _one(mode: Mode, parser: dict[str, Any], text: str, **cfg: Any) -> dict[str, Any]:
    (rec,) = run(mode, {"parsers": [parser], **cfg}, [text])
    return rec


@pytest.mark.parametrize("parser", [
    {"type": "grok", "pattern": GROK},
    {"type": "regex", "pattern": r"(?P<timestamp>\S+ \S+) +(?P<level>[A-Z]+) +"
                                 r"\[(?P<thread>[^\]]*)\] (?P<logger>[\w.$]+): "
                                 r"(?P<message>[^\n]*)"},
    {"type": "regex", "pattern": r"(?P<timestamp>\S+ \S+) +(?P<level>[A-Z]+) +"
                                 r"\[(?P<thread>[^\]]*)\] (?P<logger>[\w.$]+): "
                                 r"(?P<message>.*)"},  # DOTALL: takes the lines itself
])
def test_message_keeps_the_continuation_lines(mode: Mode, parser: dict[str, Any]) -> None:
    rec = _one(mode, parser, RECORD)
    assert rec["body"] == "checkout failed\n" + STACK
    assert rec["time_unix_nano"] == T
    assert rec["severity_text"] == "ERROR"
    a = rec["attributes"]
    assert a["thread.name"] == "main"
    assert a["log.logger"] == "com.example.Shop"
    assert a["exception.type"] == "java.lang.IllegalStateException"
    assert a["exception.message"] == "boom"
    assert a["exception.stacktrace"] == STACK


def test_single_lines_unchanged(mode: Mode) -> None:
    rec = _one(mode, {"type": "grok", "pattern": GROK}, HEAD)
    assert rec["body"] == "checkout failed"
    assert not any(k.startswith("exception.") for k in rec["attributes"])


def test_continuation_goes_to_the_last_field_or_the_message(mode: Mode) -> None:
    # The match ends with `detail`: it gets the lines; the body stays the whole text.
    rec = _one(mode, {"type": "grok", "pattern": "%{LOGLEVEL:level} %{GREEDYDATA:detail}"},
               "ERROR first\nsecond\nthird")
    assert rec["attributes"]["detail"] == "first\nsecond\nthird"
    assert rec["body"] == "ERROR first\nsecond\nthird"
    # The match ends with a literal: the message field gets them.
    rec = _one(mode, {"type": "grok", "pattern": r"%{LOGLEVEL:level} %{DATA:message} \(x\)"},
               "ERROR first (x)\nsecond")
    assert rec["body"] == "first\nsecond"
    # No message field and no field at the end: the body is the text as it was.
    rec = _one(mode, {"type": "regex", "pattern": r"(?P<level>[A-Z]+) x"}, "ERROR x\ny")
    assert rec["body"] == "ERROR x\ny"
    assert rec["severity_text"] == "ERROR"


def test_over_the_window_a_multi_line_record_is_parsed_from_its_first_lines(
        mode: Mode) -> None:
    frames = "".join(f"\tat com.example.F{i}.m(F.java:{i})\n" for i in range(4000))
    stack = "java.lang.IllegalStateException: boom\n" + frames.rstrip("\n")
    text = HEAD + "\n" + stack
    assert len(text) > 16 * 1024 * 8
    rec = _one(mode, {"type": "grok", "pattern": GROK}, text)
    assert rec["time_unix_nano"] == T
    assert rec["severity_text"] == "ERROR"
    assert rec["body"] == "checkout failed\n" + stack
    assert rec["attributes"]["exception.stacktrace"] == stack
    assert "log.parse_skipped" not in rec["attributes"]
    # The first line may take most of the window (bytes, not a quarter of them).
    head = HEAD + " " + "x" * 12000
    rec = _one(mode, {"type": "grok", "pattern": GROK, "when": {"matches": "^2024-"}},
               head + "\n" + stack)
    assert rec["body"] == "checkout failed " + "x" * 12000 + "\n" + stack
    # Multi-byte characters: a head over max_parse_bytes bytes is cut sooner.
    wide = HEAD + " " + "é" * 7000 + "\n" + "é" * 4000 + "\n" + stack
    rec = _one(mode, {"type": "grok", "pattern": GROK}, wide)
    assert rec["body"] == wide[wide.index("checkout"):]
    assert rec["time_unix_nano"] == T
    # One line over the window is still not parsed.
    rec = _one(mode, {"type": "grok", "pattern": GROK}, HEAD + "x" * 20000)
    assert rec["attributes"]["log.parse_skipped"] == TOO_LONG


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_hostile_multi_line_mib_within_bound(mode: Mode, shape: str) -> None:
    """A MiB record of hostile lines (each shape, 4 KB lines) after a log line: the
    regex reads the window only, the exception scan is linear."""
    line = SHAPES[shape](4096)
    text = HEAD + "\n" + "\n".join([line] * 256)
    cfg = {"parsers": [{"type": "grok", "pattern": [GROK, "%{COMBINEDAPACHELOG}"]}],
           "templates": {"enabled": True}}
    took = best_of(lambda: run(mode, cfg, [text]), clock=time.perf_counter)
    assert took < BOUND_S * 2  # building the batch and reading it back included
    (rec,) = run(mode, cfg, [text])
    assert rec["severity_text"] == "ERROR"
