"""file exporter: a big batch is encoded in the offload worker, byte for byte what the
loop would write, without holding the loop (issue 11: 67k spans held it ≈ 1 s)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from pipeline.component import Signal
from pipeline.exporters.file import (
    FLAT_OFF_LOOP_RECORDS,
    FileConfig,
    FileExporter,
    _slices,
    encode_lines,
    factory,
)
from pipeline.pdata.batch import Batch
from pipeline.pdata.flatlogs import dumps_flat
from pipeline.pdata.logrecords import LogGroup, LogRecord
from pipeline.pdata.otlpjson import encode_request, flat_records
from tests.big_batches import BIG_SPANS, big_request
from tests.builders import traces_request
from tests.loop_lag import LoopLag
from tests.support import exporter_settings


async def started(path: Path, fmt: str) -> FileExporter:
    exp = factory.create(exporter_settings("file"),
                         FileConfig.model_validate({"path": str(path), "format": fmt}))
    assert isinstance(exp, FileExporter)
    await exp.start(None)  # type: ignore[arg-type]
    return exp


async def test_big_otlp_json_batch_is_encoded_off_the_loop(tmp_path: Path) -> None:
    req = big_request()
    small = traces_request(2)
    exp = await started(tmp_path / "out.jsonl", "otlp_json")
    try:
        await exp.consume(Batch(Signal.TRACES, raw=small.SerializeToString()))
        assert exp._offload.calls == 0  # a small batch stays on the loop
        async with LoopLag() as lag:
            await exp.consume(Batch(Signal.TRACES, raw=req.SerializeToString()))
        assert exp._offload.calls == 1
    finally:
        await exp.shutdown()
    out = (tmp_path / "out.jsonl").read_bytes()
    assert out == encode_request(small) + b"\n" + encode_request(req) + b"\n"
    lag.assert_bounded()


async def test_big_flat_json_batch_is_encoded_off_the_loop(tmp_path: Path) -> None:
    req = big_request()
    exp = await started(tmp_path / "out.jsonl", "json")
    try:
        async with LoopLag() as lag:
            await exp.consume(Batch(Signal.TRACES, message=req))
        assert exp._offload.calls == 1
    finally:
        await exp.shutdown()
    lines = (tmp_path / "out.jsonl").read_bytes().splitlines()
    assert len(lines) == BIG_SPANS
    assert lines[0] == orjson.dumps(next(flat_records(Signal.TRACES, req)))
    assert b"".join(line + b"\n" for line in lines) == encode_lines("json", Signal.TRACES, req)
    lag.assert_bounded()


async def test_a_write_cancelled_between_pieces_is_rolled_back(tmp_path: Path) -> None:
    """A big batch is written a MiB at a time, yielding between pieces; cancelled there
    (a timeout, a sender gone), the pieces already written are truncated away."""
    path = tmp_path / "out.jsonl"
    exp = await started(path, "otlp_json")
    try:
        await exp.consume(Batch(Signal.TRACES, message=traces_request(1)))
        before = path.read_bytes()
        task = asyncio.create_task(exp._write([b"x" * (3 << 20) + b"\n"]))
        await asyncio.sleep(0)  # the task wrote its first MiB and yields
        assert path.stat().st_size == len(before) + (1 << 20)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert path.read_bytes() == before
        await exp.consume(Batch(Signal.TRACES, message=traces_request(2)))
    finally:
        await exp.shutdown()
    assert path.read_bytes() == before + encode_request(traces_request(2)) + b"\n"


def record_groups() -> list[LogGroup]:
    """12,100 Python log records in three groups: built records, lines not built yet
    (with per-line extras), and a small one: more than FLAT_OFF_LOOP_RECORDS, cut
    across group boundaries."""
    built = LogGroup([LogRecord(body=f"GET /orders/{i} 200", attributes={
        "http.status_code": 200, "user": "alice", "n": i, "tags": ["a", "b"]},
        time_unix_nano=1_700_000_000_000_000_000 + i, severity_text="INFO",
        severity_number=9, trace_id=b"\x01" * 16) for i in range(6000)],
        resource={"service.name": "web"}, scope_name="filelog")
    lines = LogGroup.from_lines([f"line {i} é".encode() for i in range(6000)],
                                {"log.file.name": "app.log"}, 1_700_000_000_000_000_001,
                                extras=[{"i": i} if i % 3 else None for i in range(6000)],
                                resource={"host.name": "h1"})
    lines.scope_name = "lines"
    small = LogGroup([LogRecord(body={"nested": [1, 2.5, None]}) for _ in range(100)])
    return [built, lines, small]


async def test_big_batch_of_python_log_records_is_encoded_off_the_loop(
        tmp_path: Path) -> None:
    expected = dumps_flat(record_groups())
    exp = await started(tmp_path / "out.jsonl", "json")
    try:
        await exp.consume(Batch(Signal.LOGS, logs=[record_groups()[2]]))
        assert exp._offload.calls == 0  # 100 records stay on the loop
        async with LoopLag() as lag:
            await exp.consume(Batch(Signal.LOGS, logs=record_groups()))
        assert exp._offload.calls == 1
    finally:
        await exp.shutdown()
    out = (tmp_path / "out.jsonl").read_bytes()
    assert out == dumps_flat([record_groups()[2]]) + expected
    assert out.count(b"\n") == 100 + 12_100
    lag.assert_bounded()


async def test_python_log_records_are_encoded_on_the_loop_in_slices_if_the_worker_dies(
        tmp_path: Path) -> None:
    expected = dumps_flat(record_groups())
    exp = await started(tmp_path / "out.jsonl", "json")
    try:
        await exp.consume(Batch(Signal.LOGS, logs=record_groups()))
        proc = exp._offload._proc
        assert proc is not None
        proc.kill()  # the worker dies: the next batch is encoded here, a slice per step
        proc.wait()
        async with LoopLag() as lag:
            await exp.consume(Batch(Signal.LOGS, logs=record_groups()))
    finally:
        await exp.shutdown()
    assert (tmp_path / "out.jsonl").read_bytes() == expected + expected
    lag.assert_bounded()


async def test_slices_cut_groups_at_the_record_count() -> None:
    parts = [part async for part in _slices(record_groups())]
    assert [sum(len(g) for g in part) for part in parts] == [
        FLAT_OFF_LOOP_RECORDS, FLAT_OFF_LOOP_RECORDS, 12_100 - 2 * FLAT_OFF_LOOP_RECORDS]
    assert b"".join(dumps_flat(part) for part in parts) == dumps_flat(record_groups())
