"""filelog delivery: backpressure retried without loss or repeats, permanent
rejections skipped, a shutdown while refused keeps the offset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from pipeline.errors import PermanentError, RetryableError
from pipeline.telemetry.metrics import Telemetry
from tests.support import Sink, aeventually
from tests.unit.receivers.filelog.helpers import (
    Writer,
    bodies,
    check_exactly_once,
    polls,
    running,
    write,
)


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
        await aeventually(lambda: (telemetry.registry.get_sample_value(
            "otelpipe_receiver_refused_items_total", refused) or 0) >= 1000)
        assert sink.items == 0
        sink.refuse = None
        await aeventually(lambda: not w.is_alive(), timeout=60)
        await aeventually(lambda: sink.items >= total, timeout=30)
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
        await aeventually(lambda: telemetry.registry.get_sample_value(
            "otelpipe_receiver_rejected_items_total", labels) == 2)
        sink.refuse = None
        write(log, "good\n")
        await aeventually(lambda: sink.items == 1)
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
        await aeventually(lambda: (telemetry.registry.get_sample_value(
            "otelpipe_receiver_refused_items_total", labels) or 0) >= 300)
    ckpt = orjson.loads((state / "filelog-filelog.json").read_bytes())
    assert ckpt["files"][0]["offset"] == 0
    sink2 = Sink()
    async with running(sink2, **cfg):
        await aeventually(lambda: sink2.items == 100)
    check_exactly_once(bodies(sink2), 100)
