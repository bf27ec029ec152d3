"""Exception extraction (`exception.type`, `exception.message`, `exception.stacktrace`)
from stack traces printed by the real runtimes: the fixtures in `stacktraces/` were
captured from python3, java 17, go and node running the sources next to them
(`stacktraces/generate.sh`). Every record of every fixture is checked exactly."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.component import Signal
from pipeline.pdata.batch import Batch
from pipeline.pdata.logrecords import LogGroup
from pipeline.processors.logstruct.exceptions import FoundException, find_exception
from tests.unit.processors.logstruct.bounds import BOUND_S, assert_linear, best_of
from tests.unit.processors.logstruct.helpers import Mode, batch_of, make, records

TRACES = Path(__file__).parent / "stacktraces"
# A record starts at a line with a date (what `line_start_pattern` would join on).
_START = re.compile(r"\n(?=\d{4}[-/]\d\d[-/]\d\d[ T])")


def fixture(name: str) -> str:
    return (TRACES / name).read_text(encoding="utf-8")


def split_records(text: str) -> list[str]:
    return [r.rstrip("\n") for r in _START.split(text)]


def tail_from(text: str, marker: str) -> str:
    """`text` from the line holding `marker` (at its start) to the end, stripped."""
    return text[text.index(marker):].rstrip()


def exc(text: str) -> tuple[str, str, str]:
    found = find_exception(text)
    assert found is not None, text
    assert text[found.start:].startswith(found.stacktrace[:40])
    return found.type, found.message, found.stacktrace


# -- the runtimes' own text ------------------------------------------------------------

def test_python_logging_chained_exceptions() -> None:
    recs = split_records(fixture("python_logging.log"))
    assert len(recs) == 5
    assert [find_exception(r) for r in (recs[0], recs[2], recs[4])] == [None, None, None]
    # `raise ... from exc`: the exception raised last is printed last.
    t, m, st = exc(recs[1])
    assert (t, m) == ("PaymentError", "cannot charge cart 42")
    assert st == tail_from(recs[1], "Traceback (most recent call last):")
    assert "The above exception was the direct cause" in st
    assert st.count("Traceback (most recent call last):") == 2
    assert st.endswith("\nPaymentError: cannot charge cart 42")
    # An exception while handling another.
    t, m, st = exc(recs[3])
    assert (t, m) == ("KeyError", "'fallback'")
    assert st == tail_from(recs[3], "Traceback (most recent call last):")
    assert "During handling of the above exception, another exception occurred:" in st
    assert "ValueError: invalid literal for int() with base 10: 'x1'" in st


def test_python_uncaught_traceback_on_stderr() -> None:
    text = fixture("python_uncaught.txt")
    found = find_exception(text)
    assert found is not None
    assert found == FoundException("KeyError", "'fallback'", text.rstrip(), 0)


def test_python_exception_group() -> None:
    (rec,) = split_records(fixture("python_group.log"))
    t, m, st = exc(rec)
    assert (t, m) == ("ExceptionGroup", "2 lines failed (2 sub-exceptions)")
    assert st == tail_from(rec, "  + Exception Group Traceback")
    assert st.endswith("+------------------------------------")


def test_java_caused_by_and_more() -> None:
    recs = split_records(fixture("java_app.log"))
    assert len(recs) == 3
    assert find_exception(recs[0]) is None
    assert find_exception(recs[2]) is None
    t, m, st = exc(recs[1])
    # The exception thrown is the outermost; its causes stay in the stack trace.
    assert (t, m) == ("java.lang.IllegalStateException", "order failed: sku=A-1")
    assert st == tail_from(recs[1], "java.lang.IllegalStateException")
    assert "\nCaused by: java.io.UncheckedIOException: cannot reserve A-1\n" in st
    assert "\nCaused by: java.io.IOException: stock file missing for A-1\n" in st
    assert st.endswith("\t... 9 more")


def test_java_uncaught_exception_in_thread() -> None:
    text = fixture("java_uncaught.txt")
    t, m, st = exc(text)
    assert t == "java.lang.NullPointerException"
    assert m == 'Cannot invoke "Object.toString()" because "<local1>" is null'
    assert st == text[len('Exception in thread "main" '):].rstrip()


def test_go_runtime_error_panic() -> None:
    text = fixture("go_panic.txt")
    (log_line, panic) = text.split("\n", 1)
    assert log_line.endswith(" starting worker pid=" + log_line.rsplit("=", 1)[1])
    t, m, st = exc(text)
    assert (t, m) == ("runtime.Error", "runtime error: index out of range [5] with length 3")
    # From `panic:` to the last frame; `exit status 2` is `go run`'s, not the trace's.
    assert st == panic.rstrip().removesuffix("exit status 2").rstrip()
    assert "\ngoroutine 1 [running]:\nmain.pick(...)\n" in st


def test_go_panic_of_an_error_in_a_goroutine() -> None:
    text = fixture("go_panic_error.txt")
    t, m, st = exc(text)
    assert (t, m) == ("panic", "load order:42: connection refused")
    assert st.startswith("panic: load order:42: connection refused\n\ngoroutine ")
    assert "\ncreated by main.main in goroutine 1\n" in st
    assert not st.endswith("exit status 2")


def test_nodejs_logged_errors_with_cause() -> None:
    recs = split_records(fixture("node_logged.txt"))
    assert len(recs) == 4
    t, m, st = exc(recs[1])
    assert (t, m) == ("TypeError", "Cannot read properties of undefined (reading 'items')")
    assert st == tail_from(recs[1], "TypeError:")
    t, m, st = exc(recs[2])
    assert (t, m) == ("Error", "cannot price order 7")
    assert st == tail_from(recs[2], "Error: cannot price order 7")
    assert "  [cause]: TypeError: Cannot read properties of null" in st
    assert st.endswith("}")


def test_nodejs_crash() -> None:
    text = fixture("node_uncaught.txt")
    t, m, st = exc(text)
    assert (t, m) == ("TypeError", "Cannot read properties of null (reading 'items')")
    # The source excerpt before it is not the trace, nor the `Node.js v20` trailer.
    assert st == tail_from(text, "TypeError:").rsplit("\n\nNode.js v", 1)[0]


def test_runbook_example_dotted_type_and_message_on_several_lines() -> None:
    """docs/runbook.md (schema drift): a psycopg error logged with its traceback."""
    text = ('ERROR query failed\nTraceback (most recent call last):\n  File "db.py", line 9, '
            'in fetch\n    cur.execute(q)\npsycopg.errors.UndefinedColumn: column "x" does '
            'not exist\nLINE 1: select x from t\n               ^')
    t, m, st = exc(text)
    assert t == "psycopg.errors.UndefinedColumn"
    assert m == 'column "x" does not exist\nLINE 1: select x from t\n               ^'
    assert st == text[len("ERROR query failed\n"):]


# -- what is not an exception ----------------------------------------------------------

@pytest.mark.parametrize("text", [
    "",
    "GET /index.html 200",
    "2024-01-01 INFO started\nsecond line of a message",
    "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>",  # cut
    "summary:\n    at least 3 retries",  # an `at` line with no exception line before
    "note\n\tat the end of the day",
    "panic: no goroutine trace follows\nnext",
    'config: {"a": 1}\n    at x',
])
def test_not_exceptions(text: str) -> None:
    assert find_exception(text) is None


def test_multi_line_java_message_and_indented_at_frames() -> None:
    text = ("ERROR job failed\ncom.acme.JobException: step 3 failed:\nno space left\n"
            "    at com.acme.Job.run(Job.java:3)\n")
    assert exc(text) == ("com.acme.JobException", "step 3 failed:\nno space left",
                         "com.acme.JobException: step 3 failed:\nno space left\n"
                         "    at com.acme.Job.run(Job.java:3)")
    text = "boom\nError [ERR_INVALID_ARG_TYPE]: bad path\n    at f (a.js:1:2)"
    assert exc(text)[:2] == ("Error", "bad path")


# -- cost --------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [
    lambda n: "\n    at " * (n // 8),
    lambda n: "Traceback (most recent call last):\n" * (n // 35),
    lambda n: "x\n" + "a$" * (n // 2) + "\n\tat f",
    lambda n: "x\n" + "a." * (n // 2) + "\n\tat f",
    lambda n: "panic: x\n" + "\ngoroutine " * (n // 11),
    lambda n: "x\n" + "  + Exception Group Traceback (most recent call last):\n" * (n // 56),
    lambda n: "Traceback (most recent call last):\n" + "  File\n" * (n // 7),
])
def test_hostile_texts_are_linear_and_fast(shape: Any) -> None:
    def timed(n: int) -> float:
        text = shape(n)
        return best_of(lambda: find_exception(text), clock=time.process_time)

    assert_linear(timed, what="find_exception")
    big = shape(1024 * 1024)
    assert best_of(lambda: find_exception(big)) < BOUND_S


# -- in the processor --------------------------------------------------------------------

GROK = {"parsers": [{"type": "grok", "pattern":
                     "%{TIMESTAMP_ISO8601:timestamp} %{LOGLEVEL:level} \\[%{DATA:thread}\\] "
                     "%{NOTSPACE:logger}: %{GREEDYDATA:message}"}]}


def _lines_batch(bodies: list[str]) -> Batch:
    """A batch as the filelog receiver builds it (lines, records built on demand)."""
    return Batch(Signal.LOGS, logs=[LogGroup.from_lines(
        [b.encode() for b in bodies], {"log.file.name": "app.log"}, 1)])


@pytest.mark.parametrize("path", ["otlp", "records", "lines"])
def test_processor_grok_message_keeps_the_stack_and_exception_is_extracted(
        path: str) -> None:
    recs = split_records(fixture("python_logging.log"))
    proc = make({**GROK, "templates": {"enabled": True}})
    batch = _lines_batch(recs) if path == "lines" else batch_of(path, recs)  # type: ignore[arg-type]
    proc.process(batch)
    out = records(batch)
    assert len(out) == 5
    r = out[1]
    _first, rest = recs[1].split("\n", 1)
    message = "checkout failed for order 42\n" + rest
    assert r["body"] == message  # the continuation lines are kept
    assert r["severity_text"] == "ERROR"
    a = r["attributes"]
    assert a["exception.type"] == "PaymentError"
    assert a["exception.message"] == "cannot charge cart 42"
    assert a["exception.stacktrace"] == rest
    assert a["log.logger"] == "shop.checkout"
    assert a["thread.name"] == "MainThread"
    # The template is the log line's, not the stack's.
    assert a["log.template"] == "checkout failed for order <*>"
    assert out[3]["attributes"]["exception.type"] == "KeyError"
    for i in (0, 2, 4):
        assert not any(k.startswith("exception.") for k in out[i]["attributes"]), i
    assert out[2]["body"] == "retrying order 42"


def test_processor_exceptions_off_and_existing_type_kept(mode: Mode) -> None:
    rec = split_records(fixture("java_app.log"))[1]
    out = records(_run(mode, {"auto": True, "exceptions": False}, [rec]))
    assert not any(k.startswith("exception.") for k in out[0]["attributes"])
    # A record that has exception.type (an SDK set it) is left alone.
    out = records(_run(mode, {"auto": True}, [rec],
                       attributes=[{"exception.type": "Given"}]))
    assert out[0]["attributes"]["exception.type"] == "Given"
    assert "exception.message" not in out[0]["attributes"]


def test_processor_json_stack_trace_field(mode: Mode) -> None:
    """A JSON log with the trace in a field (logstash-logback-encoder's `stack_trace`):
    semconv names it exception.stacktrace; its type and message are found in it."""
    trace = ("java.lang.IllegalStateException: boom\n\tat a.B.c(B.java:1)\n"
             "Caused by: java.io.IOException: x\n\t... 1 more")
    import orjson
    line = orjson.dumps({"@timestamp": "2024-03-01T12:00:00Z", "level": "ERROR",
                         "message": "job failed", "stack_trace": trace}).decode()
    out = records(_run(mode, {"auto": True}, [line]))
    a = out[0]["attributes"]
    assert out[0]["body"] == "job failed"
    assert (a["exception.type"], a["exception.message"], a["exception.stacktrace"]) == (
        "java.lang.IllegalStateException", "boom", trace)


def _run(mode: Mode, cfg: dict[str, Any], bodies: list[str], **kw: Any) -> Batch:
    b = batch_of(mode, bodies, **kw)
    make(cfg).process(b)
    return b
