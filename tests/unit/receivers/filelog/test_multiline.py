"""filelog multiline records: start pattern, indentation, end pattern, max_lines;
an open record across reads and restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support import Sink, aeventually
from tests.unit.receivers.filelog.helpers import (
    bodies,
    polls,
    records,
    running,
    write,
)

JAVA = """\
2024-05-01 12:00:00 INFO starting
2024-05-01 12:00:01 ERROR request failed
java.lang.IllegalStateException: boom
\tat com.example.Foo.bar(Foo.java:10)
\tat com.example.Foo.main(Foo.java:5)
Caused by: java.io.IOException: disk
\t... 2 more
2024-05-01 12:00:02 INFO recovered
"""


async def test_multiline_start_pattern_java_stack_trace(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, JAVA)
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning",
                       multiline={"line_start_pattern": r"\d{4}-\d{2}-\d{2} ",
                                  "flush_period": "100ms"}) as r:
        # The last record is complete only when the next starts, or after flush_period.
        await aeventually(lambda: sink.items == 3)
        await polls(r)
    lines = JAVA.splitlines()
    assert bodies(sink) == [lines[0], "\n".join(lines[1:7]), lines[7]]


async def test_multiline_record_across_reads_and_restart(tmp_path: Path) -> None:
    """An open record is not checkpointed: after a restart it is read again, whole."""
    log = tmp_path / "app.log"
    state = tmp_path / "state"
    lines = JAVA.splitlines(keepends=True)
    write(log, "".join(lines[:4]))
    sink = Sink()
    cfg: dict[str, Any] = {
        "include": [str(log)], "start_at": "beginning", "storage_dir": str(state),
        "multiline": {"line_start_pattern": r"\d{4}-", "flush_period": "1h"}}
    async with running(sink, **cfg) as r:
        await aeventually(lambda: sink.items == 1)
        await polls(r)
    assert bodies(sink) == [lines[0].rstrip("\n")]
    write(log, "".join(lines[4:]))
    sink2 = Sink()
    async with running(sink2, **cfg):
        await aeventually(lambda: sink2.items == 1)
    assert bodies(sink2) == ["".join(lines[1:7]).rstrip("\n")]


async def test_multiline_indented(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    text = ("Traceback (most recent call last):\n"
            "  File \"x.py\", line 1, in <module>\n"
            "    main()\n"
            "ValueError: bad\n"
            "next record\n"
            "  continued\n"
            "\n"
            "  after blank\n"
            "last\n")
    write(log, text)
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning",
                       multiline={"indented": True, "flush_period": "50ms"}):
        await aeventually(lambda: sink.items == 4)
    assert bodies(sink) == [
        "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
        "    main()",
        "ValueError: bad",
        "next record\n  continued\n\n  after blank",
        "last"]


async def test_multiline_end_pattern_and_max_lines(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, "a\nb;\nc;\n" + "".join(f"l{i}\n" for i in range(5)) + "end;\n")
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning",
                       multiline={"line_end_pattern": ";$", "max_lines": 3}):
        await aeventually(lambda: sink.items == 4)
    got = records(sink)
    assert [b for b, _ in got] == ["a\nb;", "c;", "l0\nl1\nl2", "l3\nl4\nend;"]
    assert [a.get("log.split") for _, a in got] == [None, None, True, None]  # max_lines cut
