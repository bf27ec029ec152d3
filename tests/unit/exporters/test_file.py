from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import signal
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from pipeline.component import ComponentHealth, Signal
from pipeline.errors import RetryableError
from pipeline.exporters.file import FileConfig, FileExporter, factory
from pipeline.pdata.batch import Batch
from pipeline.pdata.logrecords import LogGroup, LogRecord
from pipeline.pdata.otlpjson import decode_request, flat_records
from pipeline.telemetry.metrics import Telemetry
from tests.builders import logs_request, metrics_request, traces_request
from tests.support import exporter_settings


async def started(tmp_path: Path, telemetry: Telemetry | None = None, **cfg: object
                  ) -> FileExporter:
    cfg.setdefault("path", str(tmp_path / "out.jsonl"))
    exp = factory.create(exporter_settings("file", telemetry=telemetry),
                         FileConfig.model_validate(cfg))
    assert isinstance(exp, FileExporter)
    await exp.start(None)  # type: ignore[arg-type]
    return exp


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


async def test_otlp_json_lines_round_trip(tmp_path: Path) -> None:
    exp = await started(tmp_path)
    treq = traces_request(3, resources=2)
    treq.resource_spans[0].scope_spans[0].spans[1].parent_span_id = b"\xab" * 8
    lreq = logs_request(2)
    lreq.resource_logs[0].scope_logs[0].log_records[0].trace_id = b"\x0f" * 16
    mreq = metrics_request([2, 1, 3])
    await exp.consume(Batch(Signal.TRACES, raw=treq.SerializeToString()))
    await exp.consume(Batch(Signal.LOGS, message=lreq))
    await exp.consume(Batch(Signal.METRICS, raw=mreq.SerializeToString()))
    await exp.shutdown()
    out = lines(tmp_path / "out.jsonl")
    assert len(out) == 3
    assert decode_request(Signal.TRACES, out[0]) == treq
    assert decode_request(Signal.LOGS, out[1]) == lreq
    assert decode_request(Signal.METRICS, out[2]) == mreq
    span = orjson.loads(out[0])["resourceSpans"][0]["scopeSpans"][0]["spans"][1]
    assert span["traceId"] == "02" * 16
    assert span["spanId"] == "02" * 8
    assert span["parentSpanId"] == "ab" * 8
    assert span["kind"] == 2
    assert span["status"]["code"] == 2
    rec = orjson.loads(out[1])["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    assert rec["traceId"] == "0f" * 16
    assert rec["severityNumber"] == 9


async def test_appends_to_existing_file(tmp_path: Path) -> None:
    (tmp_path / "out.jsonl").write_bytes(b"old\n")
    exp = await started(tmp_path)
    await exp.consume(Batch(Signal.LOGS, message=logs_request(1)))
    await exp.shutdown()
    out = lines(tmp_path / "out.jsonl")
    assert out[0] == b"old"
    assert decode_request(Signal.LOGS, out[1]) == logs_request(1)


async def test_creates_parent_directories(tmp_path: Path) -> None:
    exp = await started(tmp_path, path=str(tmp_path / "a" / "b" / "x.jsonl"))
    await exp.consume(Batch(Signal.LOGS, message=logs_request(1)))
    await exp.shutdown()
    assert len(lines(tmp_path / "a" / "b" / "x.jsonl")) == 1


async def test_json_format_flat_records(tmp_path: Path) -> None:
    exp = await started(tmp_path, format="json")
    await exp.consume(Batch(Signal.LOGS, message=logs_request(2)))
    await exp.consume(Batch(Signal.TRACES, message=traces_request(1)))
    await exp.consume(Batch(Signal.METRICS, message=metrics_request([1])))
    await exp.shutdown()
    out = [orjson.loads(line) for line in lines(tmp_path / "out.jsonl")]
    assert out[0] == {"time": "2023-11-14T22:13:20.000000000Z", "severity_text": "INFO",
                      "severity_number": 9, "body": "message 0", "service.name": "api", "n": 0}
    assert out[1]["body"] == "message 1"
    assert out[1]["time"] == "2023-11-14T22:13:20.000000001Z"
    assert out[2] == {"trace_id": "01" * 16, "span_id": "01" * 8, "name": "span-0",
                      "kind": "server", "start_time": "2023-11-14T22:13:20.000000000Z",
                      "end_time": "2023-11-14T22:13:20.001500000Z", "duration_ms": 1.5,
                      "status_code": "error", "scope.name": "test-scope",
                      "service.name": "checkout", "http.route": "/r/0"}
    # metrics have no flat form: OTLP JSON
    assert decode_request(Signal.METRICS, lines(tmp_path / "out.jsonl")[3]) == metrics_request(
        [1])
    assert len(out) == 4


async def test_rotation_by_size_keeps_max_backups(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    per_line = len(lines_of(logs_request(1, start=7)))
    assert per_line == 300  # every line below is this long: 3 lines pass 700 bytes
    exp = await started(tmp_path, rotation={"max_megabytes": 700 / (1024 * 1024),
                                            "max_backups": 2})
    for i in range(10):
        await exp.consume(Batch(Signal.LOGS, message=logs_request(1, start=i)))
    await exp.shutdown()
    assert sorted(os.listdir(tmp_path)) == [
        "out.jsonl", "out.jsonl.1", "out.jsonl.2"]

    def bodies(p: Path) -> list[str]:
        return [decode_request(Signal.LOGS, line).resource_logs[0].scope_logs[0]
                .log_records[0].body.string_value for line in lines(p)]

    # 0-2 were rotated out and deleted; the newest data is in the current file
    assert bodies(path.with_name("out.jsonl.2")) == ["message 3", "message 4", "message 5"]
    assert bodies(path.with_name("out.jsonl.1")) == ["message 6", "message 7", "message 8"]
    assert bodies(path) == ["message 9"]
    assert path.with_name("out.jsonl.1").stat().st_size == 900


def lines_of(request: object) -> bytes:
    from pipeline.pdata.otlpjson import encode_request
    return encode_request(request) + b"\n"


async def test_rotation_without_backups_truncates(tmp_path: Path) -> None:
    exp = await started(tmp_path, rotation={"max_megabytes": 100 / (1024 * 1024),
                                            "max_backups": 0})
    for i in range(3):
        await exp.consume(Batch(Signal.LOGS, message=logs_request(1, start=i)))
    await exp.shutdown()
    assert sorted(os.listdir(tmp_path)) == []


async def test_write_failure_is_retryable_and_unhealthy_then_recovers(tmp_path: Path) -> None:
    real = tmp_path / "real.jsonl"
    link = tmp_path / "out.jsonl"
    os.symlink("/dev/full", link)
    tel = Telemetry()
    exp = await started(tmp_path, telemetry=tel, path=str(link))
    with pytest.raises(RetryableError) as exc:
        await exp.consume(Batch(Signal.LOGS, message=logs_request(2)))
    assert str(exc.value) == (f"exporter file cannot deliver: cannot write {link}: "
                              "No space left on device")
    assert exc.value.retry_after == 1.0
    assert exp.health() == ComponentHealth(
        healthy=False, last_error=f"cannot write {link}: No space left on device")
    link.unlink()
    os.symlink(real, link)
    await exp.consume(Batch(Signal.LOGS, message=logs_request(1)))
    assert exp.health().healthy is True
    await exp.shutdown()
    assert [decode_request(Signal.LOGS, line) for line in lines(real)] == [logs_request(1)]
    assert tel.registry.get_sample_value("otelpipe_exporter_sent_items_total",
                                         {"exporter": "file", "signal": "logs"}) == 1.0


async def test_fsync(tmp_path: Path) -> None:
    exp = await started(tmp_path, fsync=True)
    await exp.consume(Batch(Signal.LOGS, message=logs_request(1)))
    assert len(lines(tmp_path / "out.jsonl")) == 1
    await exp.shutdown()


def test_config_requires_path() -> None:
    with pytest.raises(ValueError, match="path"):
        FileConfig.model_validate({})


def record_groups() -> list[LogGroup]:
    return [
        LogGroup([LogRecord("parsed", {"http.response.status_code": 200, "ratio": 0.5,
                                       "ok": True, "raw": b"\x00\x01", "tags": ["a", None, 2],
                                       "obj": {"k": {"n": None, "m": 1}}, "big": 2**70},
                            1_700_000_000_000_000_001, time_unix_nano=1_700_000_000_123_456_789,
                            severity_number=17, severity_text="ERROR",
                            trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9))),
                  LogRecord({"structured": "body"}, {}, 1_700_000_000_000_000_000)],
                 resource={"service.name": "api"}, scope_name="scope"),
        LogGroup.from_lines([b"raw line", "ünïcode".encode()], {"log.file.name": "a.log"},
                            1_700_000_000_500_000_000),
    ]


@pytest.mark.parametrize("fmt", ["json", "otlp_json"])
async def test_record_batches_write_what_their_otlp_writes(tmp_path: Path, fmt: str) -> None:
    """A batch of Python log records (filelog, jsonlogs) writes exactly the lines its
    OTLP encoding writes: `json` straight from the records, `otlp_json` via OTLP."""
    exp = await started(tmp_path, format=fmt, path=str(tmp_path / "rec.jsonl"))
    records = Batch(Signal.LOGS, logs=record_groups())
    otlp = Batch(Signal.LOGS, raw=Batch(Signal.LOGS, logs=record_groups()).to_bytes())
    assert otlp.logs is None
    await exp.consume(records)
    await exp.shutdown()
    exp2 = await started(tmp_path, format=fmt, path=str(tmp_path / "otlp.jsonl"))
    await exp2.consume(otlp)
    await exp2.shutdown()
    got = (tmp_path / "rec.jsonl").read_bytes()
    assert got == (tmp_path / "otlp.jsonl").read_bytes()
    if fmt == "json":
        first = orjson.loads(got.splitlines()[0])
        assert first["raw"] == "AAE="
        assert first["tags"] == ["a", None, 2]
        assert first["big"] == str(2**70)
        assert first["time"] == "2023-11-14T22:13:20.123456789Z"
        assert len(got.splitlines()) == 4


# Crash safety: torn tails repaired on open, failed writes rolled back ---------------


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """RLIMIT_FSIZE for this process: a write past `limit` bytes writes what fits, the
    next one fails with EFBIG, as a full disk would (ENOSPC). Python ignores SIGXFSZ."""
    assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def metric(tel: Telemetry, name: str) -> float | None:
    return tel.registry.get_sample_value(f"otelpipe_exporter_file_{name}_total",
                                         {"exporter": "file"})


def bodies_of_json_lines(path: Path) -> list[str]:
    return [orjson.loads(line)["body"] for line in lines(path)]


@pytest.mark.parametrize(("content", "kept"), [
    (b'{"a":1}\n{"b":2}\n{"c":', b'{"a":1}\n{"b":2}\n'),
    (b'{"torn', b""),
    (b"ok\n" + b"x" * 200_000, b"ok\n"),  # longer than one read-back chunk
], ids=["torn-line", "no-newline-at-all", "long-tail"])
async def test_torn_tail_is_truncated_on_open_counted_and_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, kept: bytes) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(content)
    tel = Telemetry()
    with caplog.at_level(logging.WARNING, logger="otelpipe.exporter.file"):
        exp = await started(tmp_path, telemetry=tel, format="json")
    assert path.read_bytes() == kept
    assert metric(tel, "torn_tail_bytes") == len(content) - len(kept)
    [warning] = [r for r in caplog.records if r.name == "otelpipe.exporter.file"]
    assert warning.levelno == logging.WARNING
    assert warning.getMessage() == "truncated a torn last line (left by a crash) before appending"
    assert warning.__dict__["bytes"] == len(content) - len(kept)
    await exp.consume(Batch(Signal.LOGS, message=logs_request(1)))
    await exp.shutdown()
    assert path.read_bytes() == kept + b"".join(
        orjson.dumps(r) + b"\n" for r in flat_records(Signal.LOGS, logs_request(1)))


async def test_a_whole_file_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"a":1}\n')
    tel = Telemetry()
    exp = await started(tmp_path, telemetry=tel)
    await exp.shutdown()
    assert path.read_bytes() == b'{"a":1}\n'
    assert metric(tel, "torn_tail_bytes") == 0


async def test_partial_write_is_rolled_back_and_the_retry_lands_once(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    tel = Telemetry()
    exp = await started(tmp_path, telemetry=tel, format="json")
    await exp.consume(Batch(Signal.LOGS, message=logs_request(5)))
    before = path.read_bytes()
    big = Batch(Signal.LOGS, message=logs_request(200, start=100))
    with file_size_limit(len(before) + 1000), pytest.raises(RetryableError) as exc:
        await exp.consume(big)  # ~10 of its 200 lines fit, then EFBIG
    assert str(exc.value) == (f"exporter file cannot deliver: cannot write {path}: "
                              "File too large")
    assert path.read_bytes() == before
    assert metric(tel, "rolled_back_bytes") == 1000
    await exp.consume(big)
    await exp.shutdown()
    assert bodies_of_json_lines(path) == [f"message {i}" for i in (*range(5), *range(100, 300))]


async def test_a_failed_rollback_is_finished_when_the_file_is_reopened(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.jsonl"
    tel = Telemetry()
    exp = await started(tmp_path, telemetry=tel, format="json")
    await exp.consume(Batch(Signal.LOGS, message=logs_request(2)))
    before = path.read_bytes()
    [record] = flat_records(Signal.LOGS, logs_request(1, start=10))
    line = len(orjson.dumps(record)) + 1

    def broken_ftruncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    big = Batch(Signal.LOGS, message=logs_request(20, start=10))
    # room for 2 whole lines and half a third: the torn-tail repair alone would keep
    # the 2 lines and the retry would write them twice
    with file_size_limit(len(before) + 2 * line + line // 2):
        monkeypatch.setattr(os, "ftruncate", broken_ftruncate)
        with pytest.raises(RetryableError):
            await exp.consume(big)
        monkeypatch.undo()
    assert len(path.read_bytes()) == len(before) + 2 * line + line // 2
    await exp.consume(big)
    await exp.shutdown()
    assert bodies_of_json_lines(path) == [f"message {i}" for i in (0, 1, *range(10, 30))]
    assert metric(tel, "rolled_back_bytes") == 2 * line + line // 2


async def test_rotation_keeps_whole_lines_across_a_failed_write(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    exp = await started(tmp_path, format="json",
                        rotation={"max_megabytes": 1000 / (1024 * 1024), "max_backups": 1})
    await exp.consume(Batch(Signal.LOGS, message=logs_request(10)))  # > 1000 bytes: rotates
    assert not path.exists()
    rotated = path.with_name("out.jsonl.1").read_bytes()
    big = Batch(Signal.LOGS, message=logs_request(10, start=10))
    with file_size_limit(500), pytest.raises(RetryableError):
        await exp.consume(big)
    assert path.read_bytes() == b""
    await exp.consume(big)  # rotates again: .1 now holds exactly this batch
    await exp.shutdown()
    assert not path.exists()
    assert bodies_of_json_lines(path.with_name("out.jsonl.1")) == [
        f"message {i}" for i in range(10, 20)]
    assert rotated.count(b"\n") == 10


async def test_a_failed_rotation_does_not_fail_the_delivered_batch(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "out.jsonl"
    blocker = path.with_name("out.jsonl.1")
    blocker.mkdir()
    (blocker / "x").touch()  # a directory in the backup's place: unlink/rename fail
    exp = await started(tmp_path, format="json",
                        rotation={"max_megabytes": 100 / (1024 * 1024), "max_backups": 1})
    with caplog.at_level(logging.WARNING, logger="otelpipe.exporter.file"):
        await exp.consume(Batch(Signal.LOGS, message=logs_request(1)))
    assert [r.getMessage() for r in caplog.records] == [
        "cannot rotate the file; trying again after the next batch"]
    assert exp.health().healthy is True
    assert bodies_of_json_lines(path) == ["message 0"]
    (blocker / "x").unlink()
    blocker.rmdir()
    await exp.consume(Batch(Signal.LOGS, message=logs_request(1, start=1)))
    await exp.shutdown()
    assert bodies_of_json_lines(blocker) == ["message 0", "message 1"]
    assert not path.exists()
