"""The exporter base class: the send loop, retries, the memory queue and their metrics
(disk-queue specifics: tests/unit/exporterhelper/diskqueue)."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from pipeline.component import ComponentHealth, Signal
from pipeline.config.retry import ExporterSettings
from pipeline.errors import PermanentError, PipelineError, RetryableError
from pipeline.exporterhelper import Exporter
from pipeline.pdata.batch import Batch
from pipeline.telemetry.metrics import Telemetry
from tests.builders import logs, traces
from tests.support import aeventually, exporter_settings
from tests.unit.exporterhelper.diskqueue.helpers import ENGINES, span_names


class Scripted(Exporter):
    """Fails with the scripted errors first, then accepts; records attempt times."""

    def __init__(self, telemetry: Telemetry, helper: ExporterSettings,
                 errors: list[Exception] | None = None,
                 gate: asyncio.Event | None = None):
        super().__init__(exporter_settings("scripted", telemetry=telemetry), helper)
        self.errors = list(errors or [])
        self.attempts: list[float] = []
        self.delivered: list[Batch] = []
        self.gate = gate

    async def send(self, batch: Batch) -> None:
        self.attempts.append(time.monotonic())
        if self.gate is not None:
            await self.gate.wait()
        if self.errors:
            raise self.errors.pop(0)
        self.delivered.append(batch)


def helper(retry: dict[str, Any] | None = None, queue: dict[str, Any] | None = None,
           timeout: float = 5.0) -> ExporterSettings:
    return ExporterSettings.model_validate({
        "timeout": timeout,
        "retry_on_failure": {"initial_interval": "1ms", "max_interval": "5ms",
                             "randomization_factor": 0, **(retry or {})},
        "sending_queue": {"enabled": False, **(queue or {})}})


def metric(tel: Telemetry, name: str, signal: str = "traces") -> float | None:
    return tel.registry.get_sample_value(name, {"exporter": "scripted", "signal": signal})


async def test_no_queue_retries_until_delivered() -> None:
    tel = Telemetry()
    exp = Scripted(tel, helper(), [RetryableError("down"), OSError("conn reset"),
                                   RetryableError("down")])
    await exp.start(None)  # type: ignore[arg-type]
    await exp.consume(traces(3))
    assert len(exp.attempts) == 4
    assert [b.items for b in exp.delivered] == [3]
    assert metric(tel, "otelpipe_exporter_sent_items_total") == 3.0
    assert exp.health() == ComponentHealth(healthy=True, last_error="down")
    await exp.shutdown()


async def test_retry_after_is_honoured() -> None:
    exp = Scripted(Telemetry(), helper(), [RetryableError("slow down", retry_after=0.2)])
    await exp.consume(traces(1))
    assert len(exp.attempts) == 2
    assert exp.attempts[1] - exp.attempts[0] >= 0.2


async def test_max_elapsed_time_gives_up_with_retryable_error() -> None:
    tel = Telemetry()
    exp = Scripted(tel, helper({"max_elapsed_time": "100ms"}),
                   [RetryableError("down", retry_after=0.03)] * 1000)
    start = time.monotonic()
    with pytest.raises(RetryableError) as exc:
        await exp.consume(traces(2))
    elapsed = time.monotonic() - start
    assert 0.1 <= elapsed < 1.0
    assert str(exc.value) == "exporter scripted cannot deliver: down"
    assert exc.value.retry_after == 0.03
    assert 3 <= len(exp.attempts) <= 6
    assert exp.health() == ComponentHealth(healthy=False, last_error="down")
    # the caller retries: nothing counted as failed here
    assert metric(tel, "otelpipe_exporter_send_failed_items_total") == 0.0


async def test_retry_disabled_fails_at_once() -> None:
    exp = Scripted(Telemetry(), helper({"enabled": False}), [RetryableError("down")])
    with pytest.raises(RetryableError, match="exporter scripted cannot deliver: down"):
        await exp.consume(traces(1))
    assert len(exp.attempts) == 1


async def test_send_timeout_is_retryable() -> None:
    gate = asyncio.Event()
    exp = Scripted(Telemetry(), helper({"enabled": False}, timeout=0.05), gate=gate)
    with pytest.raises(RetryableError, match="exporter scripted cannot deliver: send timed out"):
        await exp.consume(traces(1))


async def test_permanent_error_is_not_retried_and_counted() -> None:
    tel = Telemetry()
    exp = Scripted(tel, helper(), [PermanentError("bad span", rejected=2)])
    with pytest.raises(PermanentError, match="bad span"):
        await exp.consume(traces(5))
    assert len(exp.attempts) == 1
    assert metric(tel, "otelpipe_exporter_send_failed_items_total") == 2.0
    exp2 = Scripted(tel, helper(), [PermanentError("bad logs")])
    exp2.id = "scripted"
    with pytest.raises(PermanentError):
        await exp2.consume(logs(4))
    assert metric(tel, "otelpipe_exporter_send_failed_items_total", "logs") == 4.0
    assert exp.health().healthy is True


async def test_queue_acknowledges_then_delivers_in_background() -> None:
    tel = Telemetry()
    gate = asyncio.Event()
    exp = Scripted(tel, helper(queue={"enabled": True, "queue_size": 2, "sizer": "requests",
                                           "num_consumers": 1}),
                   gate=gate)
    await exp.start(None)  # type: ignore[arg-type]
    await exp.consume(traces(1))
    await exp.consume(traces(2))
    assert exp.delivered == []
    assert exp.health().queue_size == 2
    assert exp.health().queue_capacity == 2
    assert tel.registry.get_sample_value("otelpipe_exporter_queue_size",
                                         {"exporter": "scripted"}) == 2.0
    # a worker holds the first batch (it left the queue but is still counted) and the
    # second waits: the queue is full
    with pytest.raises(RetryableError) as exc:
        await exp.consume(traces(4))
    assert str(exc.value) == "sending queue of exporter scripted is full"
    assert exc.value.retry_after == 1.0
    assert metric(tel, "otelpipe_exporter_enqueue_failed_items_total") == 4.0
    gate.set()
    await asyncio.wait_for(exp.shutdown(), 5)
    assert [b.items for b in exp.delivered] == [1, 2]
    assert metric(tel, "otelpipe_exporter_sent_items_total") == 3.0
    assert exp.health().queue_size == 0


async def test_queue_sizer_items() -> None:
    exp = Scripted(Telemetry(), helper(queue={"enabled": True, "queue_size": 5,
                                              "sizer": "items", "num_consumers": 1}),
                   gate=asyncio.Event())
    await exp.start(None)  # type: ignore[arg-type]
    await exp.consume(traces(3))
    with pytest.raises(RetryableError):
        await exp.consume(traces(3))
    await exp.consume(traces(2))
    assert exp.health().queue_size == 5
    for w in exp._workers:
        w.cancel()


async def test_queue_block_on_overflow_waits_for_space() -> None:
    gate = asyncio.Event()
    exp = Scripted(Telemetry(), helper(queue={"enabled": True, "queue_size": 1, "sizer": "requests",
                                              "num_consumers": 1, "block_on_overflow": True}),
                   gate=gate)
    await exp.start(None)  # type: ignore[arg-type]
    await exp.consume(traces(1))
    blocked = asyncio.create_task(exp.consume(traces(2)))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    gate.set()
    await asyncio.wait_for(blocked, 5)
    await asyncio.wait_for(exp.shutdown(), 5)
    assert [b.items for b in exp.delivered] == [1, 2]


async def test_queue_retries_in_background_and_drains_on_shutdown() -> None:
    tel = Telemetry()
    exp = Scripted(tel, helper(queue={"enabled": True, "num_consumers": 2}),
                   [RetryableError("down")] * 3)
    await exp.start(None)  # type: ignore[arg-type]
    for i in range(5):
        await exp.consume(traces(1, start=i))
    await asyncio.wait_for(exp.shutdown(), 5)
    assert sorted(b.items for b in exp.delivered) == [1] * 5
    assert metric(tel, "otelpipe_exporter_sent_items_total") == 5.0
    assert all(w.done() for w in exp._workers)


async def test_queue_drops_permanent_errors_and_counts_them() -> None:
    tel = Telemetry()
    exp = Scripted(tel, helper(queue={"enabled": True, "num_consumers": 1}),
                   [PermanentError("never")])
    await exp.start(None)  # type: ignore[arg-type]
    await exp.consume(traces(2))
    await exp.consume(traces(3))
    await asyncio.wait_for(exp.shutdown(), 5)
    assert [b.items for b in exp.delivered] == [3]
    assert metric(tel, "otelpipe_exporter_send_failed_items_total") == 2.0


async def test_queue_worker_survives_an_unexpected_error() -> None:
    tel = Telemetry()
    exp = Scripted(tel, helper(queue={"enabled": True, "num_consumers": 1}),
                   [ValueError("bug in send")])
    await exp.start(None)  # type: ignore[arg-type]
    await exp.consume(traces(2))
    await exp.consume(traces(3))
    await asyncio.wait_for(exp.shutdown(), 5)
    assert [b.items for b in exp.delivered] == [3]
    assert metric(tel, "otelpipe_exporter_send_failed_items_total") == 2.0
    assert exp.health().last_error == "ValueError: bug in send"


def test_signal_labels_exist_for_every_signal() -> None:
    tel = Telemetry()
    Scripted(tel, helper())
    for s in Signal:
        assert metric(tel, "otelpipe_exporter_sent_items_total", s.value) == 0.0


class Flaky(Exporter):
    def __init__(self, tel: Telemetry, helper: ExporterSettings, up: bool):
        super().__init__(exporter_settings("otlp/flaky", telemetry=tel), helper)
        self.up = up
        self.delivered: list[Batch] = []

    async def send(self, batch: Batch) -> int | None:
        if not self.up:
            raise RetryableError("backend down")
        self.delivered.append(batch)
        return None


@pytest.mark.parametrize("engine", ENGINES)
async def test_exporter_with_disk_queue_delivers_after_restart(tmp_path: Path,
                                                               engine: str) -> None:
    helper = ExporterSettings.model_validate({
        "retry_on_failure": {"initial_interval": "5ms", "max_interval": "10ms",
                             "max_elapsed_time": 0},
        "sending_queue": {"storage": "disk", "directory": str(tmp_path), "engine": engine,
                          "num_consumers": 2, "sizer": "items", "queue_size": 100}})
    tel = Telemetry()
    down = Flaky(tel, helper, up=False)
    await down.start(None)  # type: ignore[arg-type]
    for i in range(10):
        await down.consume(traces(3, start=i * 3))
    await asyncio.sleep(0.05)
    h = down.health()
    assert h.healthy is False
    assert h.last_error == "backend down"
    assert h.queue_size == 30
    assert h.queue_capacity == 100
    await asyncio.wait_for(down.shutdown(), 5)
    assert (tmp_path / "otlp%2Fflaky").is_dir()

    tel2 = Telemetry()
    up = Flaky(tel2, helper, up=True)
    await up.start(None)  # type: ignore[arg-type]
    assert tel2.registry.get_sample_value("otelpipe_exporter_queue_recovered_items_total",
                                          {"exporter": "otlp/flaky"}) == 30.0
    await aeventually(lambda: up.health().queue_size == 0, what="an empty queue")
    await asyncio.wait_for(up.shutdown(), 5)
    names = sorted(n for b in up.delivered for n in span_names(b))
    assert names == sorted(f"span-{i}" for i in range(30))
    assert up.health().healthy


@pytest.mark.parametrize("error", [RetryableError("http://u:pw@h: down"),
                                   PermanentError("http://u:pw@h: HTTP 400")])
async def test_errors_leaving_an_exporter_name_it_as_their_origin(error: PipelineError) -> None:
    exp = Scripted(Telemetry(), helper({"enabled": False}), [error])
    with pytest.raises(PipelineError) as exc:
        await exp.consume(traces(1))
    assert exc.value.origin == "exporter scripted"


async def test_a_full_queue_names_the_exporter_as_origin() -> None:
    gate = asyncio.Event()
    exp = Scripted(Telemetry(), helper(queue={"enabled": True, "sizer": "requests",
                                              "queue_size": 1, "num_consumers": 1}), gate=gate)
    await exp.start(None)  # type: ignore[arg-type]
    refused: RetryableError | None = None
    for _ in range(3):  # the worker waits at the gate: the queue fills up
        try:
            await exp.consume(traces(1))
        except RetryableError as exc:
            refused = exc
            break
    assert refused is not None
    assert refused.origin == "exporter scripted"
    gate.set()
    await exp.shutdown()


# Without a queue: cancellation and the in-flight caps -------------------------------------

class Hanging(Exporter):
    """A backend that accepts the connection and never answers."""

    def __init__(self, tel: Telemetry, helper: ExporterSettings):
        super().__init__(exporter_settings("scripted", telemetry=tel), helper)
        self.attempts = 0

    async def send(self, batch: Batch) -> None:
        self.attempts += 1
        await asyncio.Event().wait()


def gauge(tel: Telemetry, name: str) -> float | None:
    return tel.registry.get_sample_value(name, {"exporter": "scripted"})


def big_batch(mib: int) -> Batch:
    return Batch(Signal.TRACES, raw=bytes(mib * 1024 * 1024), items=1)


async def test_cancelled_caller_stops_the_retry_loop_and_frees_the_batch() -> None:
    tel = Telemetry()
    # Per attempt 20 ms, then retries for 5 minutes: only the caller's cancellation ends it.
    exp = Hanging(tel, helper({"max_elapsed_time": "5m"}, timeout=0.02))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        task = asyncio.create_task(exp.consume(big_batch(8)))
        await aeventually(lambda: exp.attempts >= 3, what="three attempts")
        assert gauge(tel, "otelpipe_exporter_in_flight_requests") == 1.0
        assert gauge(tel, "otelpipe_exporter_in_flight_bytes") == 8 * 1024 * 1024
        held = tracemalloc.get_traced_memory()[0] - before
        started = time.monotonic()
        task.cancel()  # the sender disconnected
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 0.1
        del task
        await asyncio.sleep(0.01)  # the loop lets go of the finished task's last callback
        gc.collect()
        freed = held - (tracemalloc.get_traced_memory()[0] - before)
    finally:
        tracemalloc.stop()
    assert held >= 8 * 1024 * 1024
    assert freed >= 8 * 1024 * 1024
    attempts = exp.attempts
    await asyncio.sleep(0.1)
    assert exp.attempts == attempts  # no retry after the cancellation
    assert gauge(tel, "otelpipe_exporter_in_flight_requests") == 0.0
    assert gauge(tel, "otelpipe_exporter_in_flight_bytes") == 0.0
    assert metric(tel, "otelpipe_exporter_cancelled_items_total") == 1.0
    assert metric(tel, "otelpipe_exporter_send_failed_items_total") == 0.0


async def test_in_flight_request_cap_refuses_at_once() -> None:
    tel = Telemetry()
    gate = asyncio.Event()
    exp = Scripted(tel, helper().model_copy(update={"max_in_flight_requests": 2}), gate=gate)
    first = asyncio.create_task(exp.consume(traces(1)))
    second = asyncio.create_task(exp.consume(traces(2)))
    await aeventually(lambda: len(exp.attempts) == 2, what="two sends waiting")
    with pytest.raises(RetryableError) as exc:
        await asyncio.wait_for(exp.consume(traces(4)), 0.1)  # at once, not after a wait
    assert str(exc.value) == "exporter scripted has too many exports in flight"
    assert exc.value.retry_after == 1.0
    assert metric(tel, "otelpipe_exporter_in_flight_refused_items_total") == 4.0
    assert gauge(tel, "otelpipe_exporter_in_flight_requests") == 2.0
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, second), 1)
    assert sorted(b.items for b in exp.delivered) == [1, 2]
    assert gauge(tel, "otelpipe_exporter_in_flight_requests") == 0.0
    await exp.consume(traces(3))


async def test_in_flight_byte_cap_refuses_at_once() -> None:
    tel = Telemetry()
    gate = asyncio.Event()
    cap = 3 * 1024 * 1024
    exp = Scripted(tel, helper().model_copy(update={"max_in_flight_bytes": cap}), gate=gate)
    first = asyncio.create_task(exp.consume(big_batch(2)))
    await aeventually(lambda: len(exp.attempts) == 1, what="one send waiting")
    with pytest.raises(RetryableError):
        await exp.consume(big_batch(2))
    small = asyncio.create_task(exp.consume(big_batch(1)))  # 2 + 1 MiB: fits
    await aeventually(lambda: len(exp.attempts) == 2, what="two sends waiting")
    assert gauge(tel, "otelpipe_exporter_in_flight_bytes") == cap
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, small), 1)
    # Alone, a batch over the cap is admitted (it could never pass otherwise).
    await exp.consume(big_batch(4))
    assert len(exp.delivered) == 3
    assert gauge(tel, "otelpipe_exporter_in_flight_bytes") == 0.0


async def test_queue_workers_are_not_capped_by_in_flight() -> None:
    """With a queue the in-flight caps do not apply: the queue's bound does."""
    exp = Scripted(Telemetry(), helper(queue={"enabled": True, "sizer": "requests",
                                              "num_consumers": 3}).model_copy(
        update={"max_in_flight_requests": 1}), gate=asyncio.Event())
    await exp.start(None)  # type: ignore[arg-type]
    for _ in range(3):
        await exp.consume(traces(1))
    await aeventually(lambda: len(exp.attempts) == 3, what="three workers sending")
    for w in exp._workers:
        w.cancel()
