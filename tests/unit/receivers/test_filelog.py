"""filelog receiver: real files in tmp_path, a real event loop, no mocks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from pydantic import ValidationError

from pipeline.component import Signal
from pipeline.config.types import parse_byte_size
from pipeline.errors import PermanentError, RetryableError
from pipeline.pdata.otlpjson import attributes
from pipeline.receivers.filelog import (
    FileLogConfig,
    FileLogReceiver,
    encode_attribute,
    encode_records,
    split_lines,
    wrap_request,
)
from pipeline.telemetry.metrics import Telemetry
from tests.support import Sink, create_settings

FAST = {"poll_interval": 0.02, "force_flush_period": 0.1}


# ---------------------------------------------------------------------------------------
# helpers


@contextlib.asynccontextmanager
async def running(sink: Sink, *, telemetry: Telemetry | None = None,
                  **config: Any) -> AsyncIterator[FileLogReceiver]:
    cfg = FileLogConfig(**{**FAST, **config})
    settings = create_settings("receiver", "filelog", telemetry=telemetry,
                               consumers={Signal.LOGS: sink})
    r = FileLogReceiver(settings, cfg)
    await r.start(None)  # type: ignore[arg-type]
    try:
        yield r
    finally:
        await r.shutdown()


def records(sink: Sink) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for b in sink.batches:
        for rl in b.message.resource_logs:
            for sl in rl.scope_logs:
                for lr in sl.log_records:
                    out.append((lr.body.string_value, attributes(lr.attributes)))
    return out


def bodies(sink: Sink) -> list[str]:
    return [b for b, _ in records(sink)]


async def wait_until(cond: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def polls(r: FileLogReceiver, n: int = 3) -> None:
    """Let the receiver run `n` more full polls (to see that nothing else arrives)."""
    target = r.polls + n
    await wait_until(lambda: r.polls >= target)


def write(path: Path, text: str | bytes, mode: str = "a") -> None:
    data = text.encode() if isinstance(text, str) else text
    with open(path, mode + "b") as f:
        f.write(data)


def seq_of(body: str) -> tuple[int, int]:
    """(generation, sequence) of a line written by `Writer`."""
    seq, gen, _ = body.split(" ", 2)
    return int(gen[4:]), int(seq)


def check_exactly_once(got: list[str], total: int) -> None:
    pairs = [seq_of(b) for b in got]
    seqs = sorted(s for _, s in pairs)
    dups = len(seqs) - len(set(seqs))
    missing = sorted(set(range(total)) - set(seqs))
    assert dups == 0 and not missing, f"duplicates {dups}, missing {missing[:20]}"
    by_gen: dict[int, list[int]] = {}
    for g, s in pairs:
        by_gen.setdefault(g, []).append(s)
    for g, ss in by_gen.items():
        assert ss == sorted(ss), f"generation {g} out of order"


class Writer(threading.Thread):
    """Appends numbered lines continuously and rotates the file every `every` lines.

    Each line is `<seq> gen=<n> <padding>`, where `gen` counts the file generations
    (rotations), so order can be checked per file.
    """

    def __init__(self, path: Path, total: int, every: int, mode: str | None,
                 late: int = 5, pause: float = 0.0005):
        super().__init__(daemon=True)
        self.path = path
        self.total = total
        self.every = every
        self.mode = mode
        self.late = late
        self.pause = pause
        self.rotations = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def _line(self, seq: int, gen: int) -> str:
        return f"{seq:08d} gen={gen} " + "x" * (seq % 50) + "\n"

    def _run(self) -> None:
        gen = 0
        f = open(self.path, "a")  # noqa: SIM115 - rotated below
        seq = 0
        while seq < self.total:
            n = min(7, self.total - seq)
            f.write("".join(self._line(s, gen) for s in range(seq, seq + n)))
            f.flush()
            seq += n
            if self.mode and seq < self.total and seq // self.every != (seq - n) // self.every:
                rotated = self.path.with_name(self.path.name + ".1")
                older = self.path.with_name(self.path.name + ".2")
                if rotated.exists():
                    os.replace(rotated, older)
                if self.mode == "rename":
                    os.rename(self.path, rotated)
                    # The application writes a few more lines before it reopens its file.
                    n = min(self.late, self.total - seq)
                    f.write("".join(self._line(s, gen) for s in range(seq, seq + n)))
                    f.flush()
                    seq += n
                    f.close()
                    gen += 1
                    f = open(self.path, "a")  # noqa: SIM115
                else:  # copytruncate, as logrotate does it
                    shutil.copyfile(self.path, rotated)
                    os.truncate(self.path, 0)
                    gen += 1
                self.rotations += 1
            time.sleep(self.pause)
        f.close()


# ---------------------------------------------------------------------------------------
# encoding


def test_hand_encoded_records_parse_as_otlp() -> None:
    attrs = encode_attribute("log.file.name", "a.log") + encode_attribute("n", 3)
    bodies_ = [b"hello", "é".encode() * 100, b"x" * 20000, b""]
    raw = wrap_request(encode_records(bodies_, [b"", encode_attribute("f", True), b"", b""],
                                      attrs, 123456789), b"")
    req = ExportLogsServiceRequest.FromString(raw)
    recs = req.resource_logs[0].scope_logs[0].log_records
    assert [r.body.string_value.encode() for r in recs] == bodies_
    assert all(r.observed_time_unix_nano == 123456789 for r in recs)
    assert attributes(recs[1].attributes) == {"log.file.name": "a.log", "n": 3, "f": True}
    expected = LogRecord(
        observed_time_unix_nano=123456789, body=AnyValue(string_value="hello"),
        attributes=[KeyValue(key="log.file.name", value=AnyValue(string_value="a.log")),
                    KeyValue(key="n", value=AnyValue(int_value=3))])
    assert recs[0] == expected


def test_split_lines_utf16_alignment() -> None:
    nl = "\n".encode("utf-16-le")
    # U+0A00 is b"\x00\x0a" in UTF-16LE: "\u0a00" followed by "\u0041" has the bytes
    # 00 0a 41 00, holding b"\n\x00" at an odd offset: no newline there.
    text = "a\u0a00A\nb\n"
    lines, _, rest = split_lines(text.encode("utf-16-le"), nl)
    assert [x.decode("utf-16-le") for x in lines] == ["a\u0a00A", "b"]
    assert rest == b""


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


# ---------------------------------------------------------------------------------------
# reading


async def test_start_at_beginning(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, "one\ntwo\r\n\nthree\n")
    sink = Sink()
    async with running(sink, include=[str(tmp_path / "*.log")], start_at="beginning",
                       include_file_path=True, resource={"host.name": "h1"},
                       attributes={"env": "test"}) as r:
        await wait_until(lambda: sink.items == 3)
        await polls(r)
    assert records(sink) == [
        (b, {"log.file.name": "app.log", "log.file.path": str(log), "env": "test"})
        for b in ("one", "two", "three")]
    res = sink.batches[0].message.resource_logs[0].resource
    assert attributes(res.attributes) == {"host.name": "h1"}
    assert sink.batches[0].message.resource_logs[0].scope_logs[0].log_records[0] \
        .observed_time_unix_nano > 0


async def test_start_at_end_reads_only_new_lines(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, "old 1\nold 2\npartial")  # a line being written when we start: read whole
    sink = Sink()
    async with running(sink, include=[str(log)]) as r:
        await polls(r)
        assert sink.items == 0
        write(log, " line\nnew 1\nnew 2\n")
        await wait_until(lambda: sink.items == 3)
        await polls(r)
    assert bodies(sink) == ["partial line", "new 1", "new 2"]


async def test_unterminated_last_line_is_flushed(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, "a\nb")
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning") as r:
        await wait_until(lambda: sink.items == 2)
        write(log, "\nc\n")
        await wait_until(lambda: sink.items == 3)
        await polls(r)
    assert bodies(sink) == ["a", "b", "c"]  # the late newline adds no empty record


async def test_unterminated_line_waits_when_force_flush_disabled(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, "a\nb")
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning",
                       force_flush_period=0) as r:
        await wait_until(lambda: sink.items == 1)
        await polls(r, 5)
        assert bodies(sink) == ["a"]
        write(log, "cd\n")
        await wait_until(lambda: sink.items == 2)
    assert bodies(sink) == ["a", "bcd"]


async def test_glob_include_exclude_and_new_files(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deep").mkdir(parents=True)
    for name in ("a.log", "b.log", "c.txt", "sub/d.log", "sub/deep/e.log", "sub/skip.log"):
        write(tmp_path / name, f"{name}\n")
    sink = Sink()
    async with running(sink, include=[str(tmp_path / "*.log"), str(tmp_path / "**/*.log")],
                       exclude=[str(tmp_path / "b.log"), "*/skip*"],
                       start_at="beginning") as r:
        await wait_until(lambda: sink.items == 3)
        # A file created while running is read from its start, although start_at is end.
        write(tmp_path / "sub" / "new.log", "new 1\nnew 2\n")
        write(tmp_path / "new.txt", "not matched\n")
        await wait_until(lambda: sink.items == 5)
        await polls(r)
    assert sorted(bodies(sink)) == ["a.log", "new 1", "new 2", "sub/d.log", "sub/deep/e.log"]


async def test_new_file_found_later_is_read_from_start_even_with_start_at_end(
        tmp_path: Path) -> None:
    sink = Sink()
    async with running(sink, include=[str(tmp_path / "*.log")]) as r:
        await polls(r)
        write(tmp_path / "late.log", "first\nsecond\n")
        await wait_until(lambda: sink.items == 2)
    assert bodies(sink) == ["first", "second"]


async def test_batches_respect_max_batch_lines(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, "".join(f"line {i}\n" for i in range(2500)))
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning", max_batch_lines=1000):
        await wait_until(lambda: sink.items == 2500)
    assert [b.items for b in sink.batches] == [1000, 1000, 500]
    assert bodies(sink) == [f"line {i}" for i in range(2500)]


async def test_large_file_exact(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    n = 60000
    write(log, "".join(f"{i:08d} gen=0 {'y' * (i % 200)}\n" for i in range(n)))
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning"):
        await wait_until(lambda: sink.items == n)
    check_exactly_once(bodies(sink), n)


# ---------------------------------------------------------------------------------------
# multiline

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
        await wait_until(lambda: sink.items == 3)
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
        await wait_until(lambda: sink.items == 1)
        await polls(r)
    assert bodies(sink) == [lines[0].rstrip("\n")]
    write(log, "".join(lines[4:]))
    sink2 = Sink()
    async with running(sink2, **cfg):
        await wait_until(lambda: sink2.items == 1)
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
        await wait_until(lambda: sink.items == 4)
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
        await wait_until(lambda: sink.items == 4)
    got = records(sink)
    assert [b for b, _ in got] == ["a\nb;", "c;", "l0\nl1\nl2", "l3\nl4\nend;"]
    assert [a.get("log.split") for _, a in got] == [None, None, True, None]  # max_lines cut


# ---------------------------------------------------------------------------------------
# limits and encodings


async def test_long_line_is_split_and_flagged(tmp_path: Path, telemetry: Telemetry) -> None:
    log = tmp_path / "app.log"
    long = "é" * 700  # 1400 bytes
    write(log, f"short\n{long}\nafter\n")
    sink = Sink()
    async with running(sink, telemetry=telemetry, include=[str(log)], start_at="beginning",
                       max_log_size=512):
        await wait_until(lambda: sink.items == 5)
    got = records(sink)
    assert got[0] == ("short", {"log.file.name": "app.log"})
    pieces = got[1:4]
    assert "".join(b for b, _ in pieces) == long  # cut at character boundaries
    assert all(len(b.encode()) <= 512 and a["log.split"] is True for b, a in pieces)
    assert got[4] == ("after", {"log.file.name": "app.log"})
    flagged = telemetry.registry.get_sample_value(
        "otelpipe_filelog_flagged_records_total", {"receiver": "filelog", "flag": "split"})
    assert flagged == 3


async def test_long_line_written_in_parts_is_split_while_reading(tmp_path: Path) -> None:
    """A line over max_log_size that has no newline yet is not held in memory whole."""
    log = tmp_path / "app.log"
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning", max_log_size=100,
                       force_flush_period=0) as r:
        write(log, "a" * 250)
        await wait_until(lambda: sink.items == 2)
        await polls(r)
        write(log, "b" * 10 + "\nnext\n")
        await wait_until(lambda: sink.items == 4)
    got = records(sink)
    assert [b for b, _ in got] == ["a" * 100, "a" * 100, "a" * 50 + "b" * 10, "next"]
    assert [a.get("log.split") for _, a in got] == [True, True, True, None]


async def test_latin1_file(tmp_path: Path) -> None:
    log = tmp_path / "latin1.log"
    write(log, "café crème\nGrüße\n".encode("latin-1"))
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning", encoding="latin-1"):
        await wait_until(lambda: sink.items == 2)
    assert records(sink) == [("café crème", {"log.file.name": "latin1.log"}),
                             ("Grüße", {"log.file.name": "latin1.log"})]


async def test_invalid_utf8_is_replaced_and_flagged(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, b"good\ncaf\xe9 latin-1 in utf-8\n\xff\xfe\nalso good\n")
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning"):
        await wait_until(lambda: sink.items == 4)
    got = records(sink)
    assert got[0] == ("good", {"log.file.name": "app.log"})
    assert got[1] == ("caf\ufffd latin-1 in utf-8",
                      {"log.file.name": "app.log", "log.invalid_encoding": True})
    assert got[2][0] == "\ufffd\ufffd"
    assert got[2][1]["log.invalid_encoding"] is True
    assert got[3] == ("also good", {"log.file.name": "app.log"})


async def test_ascii_file_with_invalid_bytes(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, b"plain\nna\xefve\n")
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning", encoding="ascii"):
        await wait_until(lambda: sink.items == 2)
    assert records(sink)[1] == ("na\ufffdve",
                                {"log.file.name": "app.log", "log.invalid_encoding": True})


@pytest.mark.parametrize(("encoding", "data"), [
    ("utf-16le", "\ufeffhello\r\nwörld 🎉\r\n".encode("utf-16-le")),
    ("utf-16be", "hello\nwörld 🎉\n".encode("utf-16-be")),
    ("utf-16", "\ufeffhello\nwörld 🎉\n".encode("utf-16-be")),  # BOM says big endian
    ("utf-8", "\ufeffhello\nwörld 🎉\n".encode()),  # a UTF-8 BOM is skipped
])
async def test_utf16_and_bom(tmp_path: Path, encoding: str, data: bytes) -> None:
    log = tmp_path / "app.log"
    write(log, data)
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning", encoding=encoding):
        await wait_until(lambda: sink.items == 2)
    assert bodies(sink) == ["hello", "wörld 🎉"]


# ---------------------------------------------------------------------------------------
# rotation and truncation


async def test_truncation_rereads_from_start(tmp_path: Path, telemetry: Telemetry) -> None:
    log = tmp_path / "app.log"
    write(log, "".join(f"before {i}\n" for i in range(10)))
    sink = Sink()
    async with running(sink, telemetry=telemetry, include=[str(log)], start_at="beginning") as r:
        await wait_until(lambda: sink.items == 10)
        os.truncate(log, 0)
        await polls(r)
        write(log, "after 0\nafter 1\n")
        await wait_until(lambda: sink.items == 12)
        # Truncated and rewritten past the old size before the next poll: the first bytes
        # changed, so it is still seen as new content.
        with open(log, "r+b") as f:
            f.truncate(0)
            f.write("".join(f"AGAIN {i:04d} and a longer line\n" for i in range(20)).encode())
        await wait_until(lambda: sink.items == 32)
        await polls(r)
    got = bodies(sink)
    assert got[:12] == [f"before {i}" for i in range(10)] + ["after 0", "after 1"]
    assert got[12:] == [f"AGAIN {i:04d} and a longer line" for i in range(20)]
    assert telemetry.registry.get_sample_value(
        "otelpipe_filelog_rotations_total", {"receiver": "filelog", "kind": "truncate"}) == 2


@pytest.mark.parametrize("pattern", ["app.log", "app.log*"])
async def test_rename_rotation_while_writing(tmp_path: Path, pattern: str) -> None:
    log = tmp_path / "app.log"
    total = 12000
    sink = Sink()
    async with running(sink, include=[str(tmp_path / pattern)], start_at="beginning",
                       max_batch_lines=300) as r:
        w = Writer(log, total, every=2000, mode="rename")
        w.start()
        await wait_until(lambda: not w.is_alive(), timeout=60)
        assert w.error is None, w.error
        await wait_until(lambda: sink.items >= total, timeout=30)
        await polls(r, 5)
    assert w.rotations == 5
    check_exactly_once(bodies(sink), total)


async def test_copytruncate_rotation_while_writing(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    total = 12000
    sink = Sink()
    async with running(sink, include=[str(tmp_path / "app.log*")], start_at="beginning",
                       max_batch_lines=300) as r:
        w = Writer(log, total, every=2000, mode="copytruncate")
        w.start()
        await wait_until(lambda: not w.is_alive(), timeout=60)
        assert w.error is None, w.error
        await wait_until(lambda: sink.items >= total, timeout=30)
        await polls(r, 5)
    assert w.rotations == 5
    check_exactly_once(bodies(sink), total)


async def test_deleted_file_is_read_to_end_and_closed(tmp_path: Path,
                                                      telemetry: Telemetry) -> None:
    log = tmp_path / "app.log"
    write(log, "a\nb\n")
    sink = Sink()

    def watched() -> float | None:
        return telemetry.registry.get_sample_value("otelpipe_filelog_files_watched",
                                                   {"receiver": "filelog"})

    async with running(sink, telemetry=telemetry, include=[str(log)], start_at="beginning") as r:
        await wait_until(lambda: sink.items == 2)
        assert watched() == 1
        with open(log, "ab") as f:
            log.unlink()
            f.write(b"written after the unlink\n")
        await wait_until(lambda: watched() == 0)
        await polls(r)
    assert bodies(sink) == ["a", "b", "written after the unlink"]


# ---------------------------------------------------------------------------------------
# delivery: backpressure, rejections, checkpoints


async def test_retryable_refusal_loses_and_repeats_nothing(tmp_path: Path,
                                                           telemetry: Telemetry) -> None:
    log = tmp_path / "app.log"
    total = 5000
    sink = Sink()
    sink.refuse = RetryableError("memory limit", retry_after=0.01)
    async with running(sink, telemetry=telemetry, include=[str(log)], start_at="beginning",
                       max_batch_lines=400,
                       retry_on_failure={"initial_interval": "10ms", "max_interval": "50ms"}):
        w = Writer(log, total, every=10**9, mode=None)
        w.start()
        refused = {"receiver": "filelog", "transport": "file", "signal": "logs"}
        await wait_until(lambda: (telemetry.registry.get_sample_value(
            "otelpipe_receiver_refused_items_total", refused) or 0) >= 1000)
        assert sink.items == 0
        sink.refuse = None
        await wait_until(lambda: not w.is_alive(), timeout=60)
        await wait_until(lambda: sink.items >= total, timeout=30)
    check_exactly_once(bodies(sink), total)
    assert telemetry.registry.get_sample_value("otelpipe_receiver_accepted_items_total",
                                               refused) == total


async def test_permanent_error_skips_the_batch(tmp_path: Path, telemetry: Telemetry) -> None:
    log = tmp_path / "app.log"
    state = tmp_path / "state"
    write(log, "bad 1\nbad 2\n")
    sink = Sink()
    sink.refuse = PermanentError("bad data")
    async with running(sink, telemetry=telemetry, include=[str(log)], start_at="beginning",
                       storage_dir=str(state)) as r:
        labels = {"receiver": "filelog", "transport": "file", "signal": "logs"}
        await wait_until(lambda: telemetry.registry.get_sample_value(
            "otelpipe_receiver_rejected_items_total", labels) == 2)
        sink.refuse = None
        write(log, "good\n")
        await wait_until(lambda: sink.items == 1)
        await polls(r)
    assert bodies(sink) == ["good"]
    ckpt = orjson.loads((state / "filelog-filelog.json").read_bytes())
    assert ckpt["files"][0]["offset"] == log.stat().st_size


async def test_shutdown_while_refused_keeps_the_offset(tmp_path: Path,
                                                      telemetry: Telemetry) -> None:
    log = tmp_path / "app.log"
    state = tmp_path / "state"
    write(log, "".join(f"{i:08d} gen=0 x\n" for i in range(100)))
    sink = Sink()
    sink.refuse = RetryableError("full")
    cfg: dict[str, Any] = {
        "include": [str(log)], "start_at": "beginning", "storage_dir": str(state),
        "retry_on_failure": {"initial_interval": "10ms"}}
    labels = {"receiver": "filelog", "transport": "file", "signal": "logs"}
    async with running(sink, telemetry=telemetry, **cfg):
        await wait_until(lambda: (telemetry.registry.get_sample_value(
            "otelpipe_receiver_refused_items_total", labels) or 0) >= 300)
    ckpt = orjson.loads((state / "filelog-filelog.json").read_bytes())
    assert ckpt["files"][0]["offset"] == 0
    sink2 = Sink()
    async with running(sink2, **cfg):
        await wait_until(lambda: sink2.items == 100)
    check_exactly_once(bodies(sink2), 100)


async def test_restart_resumes_exactly_while_writing(tmp_path: Path) -> None:
    """Stop and start the receiver three times while a writer appends and rotates:
    every line exactly once."""
    log = tmp_path / "app.log"
    state = tmp_path / "state"
    total = 20000
    cfg: dict[str, Any] = {"include": [str(tmp_path / "app.log*")], "storage_dir": str(state),
           "max_batch_lines": 250, "start_at": "beginning"}
    w = Writer(log, total, every=6000, mode="rename", pause=0.001)
    write(log, "")
    sinks = []
    w.start()
    for _ in range(4):
        sink = Sink()
        sinks.append(sink)
        async with running(sink, **cfg):
            # Reading runs while the writer goes on; stop mid-stream.
            await wait_until(lambda: sink.items >= 1500 or not w.is_alive(), timeout=30)  # noqa: B023
    await wait_until(lambda: not w.is_alive(), timeout=60)
    assert w.error is None
    sink = Sink()
    sinks.append(sink)
    async with running(sink, **cfg) as r:
        await wait_until(lambda: sum(s.items for s in sinks) >= total, timeout=30)
        await polls(r, 5)
    check_exactly_once([b for s in sinks for b in bodies(s)], total)


async def test_checkpoint_is_valid_json_and_atomic(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    ckpt = tmp_path / "ck" / "offsets.json"
    write(log, "a\nb\n")
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning",
                       checkpoint_path=str(ckpt)):
        await wait_until(lambda: sink.items == 2)
        doc = orjson.loads(ckpt.read_bytes())
    st = log.stat()
    assert doc["version"] == 1
    (entry,) = doc["files"]
    assert (entry["dev"], entry["ino"], entry["offset"]) == (st.st_dev, st.st_ino, 4)
    assert not (tmp_path / "ck" / "offsets.json.tmp").exists()


async def test_start_at_end_does_not_skip_lines_written_while_stopped(tmp_path: Path) -> None:
    """With a checkpoint, lines appended (and files created) while otelpipe was down are
    read on restart, although start_at is end."""
    log = tmp_path / "app.log"
    state = tmp_path / "state"
    write(log, "before start\n")
    cfg: dict[str, Any] = {"include": [str(tmp_path / "*.log")], "storage_dir": str(state)}
    sink = Sink()
    async with running(sink, **cfg) as r:
        write(log, "one\n")
        await wait_until(lambda: sink.items == 1)
        await polls(r)
    write(log, "two\n")
    write(tmp_path / "other.log", "created while down\n")
    sink2 = Sink()
    async with running(sink2, **cfg):
        await wait_until(lambda: sink2.items == 2)
    assert sorted(bodies(sink2)) == ["created while down", "two"]


async def test_corrupt_checkpoint_is_set_aside(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    state = tmp_path / "state"
    state.mkdir()
    (state / "filelog-filelog.json").write_bytes(b"{not json")
    write(log, "x\n")
    sink = Sink()
    async with running(sink, include=[str(log)], start_at="beginning",
                       storage_dir=str(state)):
        await wait_until(lambda: sink.items == 1)
    assert (state / "filelog-filelog.json.corrupt").exists()
    assert orjson.loads((state / "filelog-filelog.json").read_bytes())["files"]
