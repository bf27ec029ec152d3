from __future__ import annotations

import psutil
import pytest
from pydantic import ValidationError

from pipeline.component import Signal
from pipeline.errors import RetryableError
from pipeline.processors.memory_limiter import (
    MIB,
    MemoryLimiter,
    MemoryLimiterConfig,
    current_rss,
    current_usage,
    factory,
)
from pipeline.receiverhelper import pressure
from pipeline.telemetry.metrics import Telemetry
from tests.builders import traces
from tests.support import Sink, aeventually, processor_settings

HEADROOM_MIB = 150  # the soft limit sits this far above the RSS at the start of a test
BALLAST = 300 * MIB  # enough to cross it


def make(sink: Sink, telemetry: Telemetry, **cfg: object) -> MemoryLimiter:
    settings = processor_settings("memory_limiter", telemetry=telemetry,
                                  next_consumer=sink, signal=Signal.LOGS)
    proc = factory.create(settings, MemoryLimiterConfig.model_validate(cfg))
    assert isinstance(proc, MemoryLimiter)
    return proc


def test_exactly_one_limit() -> None:
    for cfg in ({}, {"limit_mib": 100, "limit_percentage": 10}):
        with pytest.raises(ValidationError, match="set exactly one of limit_mib or "
                                                  "limit_percentage"):
            MemoryLimiterConfig.model_validate(cfg)


def test_spike_must_be_below_limit() -> None:
    with pytest.raises(ValidationError, match="spike limit must be below the hard limit"):
        MemoryLimiterConfig(limit_mib=100, spike_limit_mib=100)
    with pytest.raises(ValidationError, match="spike limit must be below the hard limit"):
        MemoryLimiterConfig(limit_percentage=10, spike_limit_percentage=10)


def test_limits() -> None:
    assert MemoryLimiterConfig(limit_mib=100).limits_bytes() == (80 * MIB, 100 * MIB)
    assert MemoryLimiterConfig(limit_mib=100, spike_limit_mib=30).limits_bytes() == (
        70 * MIB, 100 * MIB)
    total = psutil.virtual_memory().total
    assert MemoryLimiterConfig(limit_percentage=50, spike_limit_percentage=10).limits_bytes() == (
        total * 50 // 100 - total * 10 // 100, total * 50 // 100)


def test_current_rss_matches_psutil() -> None:
    assert abs(current_rss() - psutil.Process().memory_info().rss) < 16 * MIB


async def test_refuses_above_soft_limit_and_accepts_again() -> None:
    sink = Sink()
    tel = Telemetry()
    soft_mib = current_rss() // MIB + HEADROOM_MIB
    proc = make(sink, tel, limit_mib=soft_mib + 1000, spike_limit_mib=1000,
                check_interval="2s")  # the test calls check() itself
    await proc.start(None)  # type: ignore[arg-type]
    try:
        await proc.consume(traces(2))
        assert sink.items == 2
        ballast = b"x" * BALLAST  # written, so resident
        assert proc.check() > soft_mib * MIB
        with pytest.raises(RetryableError) as exc:
            await proc.consume(traces(3))
        assert str(exc.value) == (
            f"memory limit: process uses more than the soft limit of {soft_mib} MiB")
        assert exc.value.retry_after == 2.0  # until the next check
        assert sink.items == 2
        assert tel.registry.get_sample_value(
            "otelpipe_processor_refused_items_total",
            {"processor": "memory_limiter", "pipeline": "logs", "signal": "logs"}) == 3.0
        assert tel.registry.get_sample_value(
            "otelpipe_memory_limiter_refusing", {"processor": "memory_limiter"}) == 1.0
        # Listeners and readiness see it without importing the processor.
        assert pressure.MEMORY.refusal() == pressure.Refusal(
            "processor memory_limiter in logs: process uses more than the soft limit of "
            f"{soft_mib} MiB", 2.0)
        del ballast
        assert proc.check() < soft_mib * MIB
        await proc.consume(traces(1))
        assert sink.items == 3
        assert tel.registry.get_sample_value(
            "otelpipe_memory_limiter_refusing", {"processor": "memory_limiter"}) == 0.0
        assert pressure.MEMORY.refusal() is None
    finally:
        await proc.shutdown()


async def test_shutdown_withdraws_a_refusal() -> None:
    soft_mib = current_rss() // MIB + HEADROOM_MIB
    proc = make(Sink(), Telemetry(), limit_mib=soft_mib + 1000, spike_limit_mib=1000,
                check_interval="2s")
    await proc.start(None)  # type: ignore[arg-type]
    ballast = b"x" * BALLAST
    assert proc.check() > soft_mib * MIB
    assert pressure.MEMORY.refusal() is not None
    await proc.shutdown()
    del ballast
    assert pressure.MEMORY.refusal() is None


async def test_background_check_notices_memory() -> None:
    sink = Sink()
    soft_mib = current_rss() // MIB + HEADROOM_MIB
    proc = make(sink, Telemetry(), limit_mib=soft_mib + 1000, spike_limit_mib=1000,
                check_interval="10ms")
    await proc.start(None)  # type: ignore[arg-type]
    try:
        assert not proc.refusing
        ballast = b"x" * BALLAST
        await aeventually(lambda: proc.refusing, timeout=5, what="refusing", interval=0.01)
        del ballast
        await aeventually(lambda: not proc.refusing, timeout=5, what="accepting again",
                          interval=0.01)
    finally:
        await proc.shutdown()
    assert proc._task is not None
    assert proc._task.done()


async def test_the_memory_of_offload_workers_counts() -> None:
    """A worker process (pdata/offload.py) holding 300 MiB gets the limiter refusing, as
    the same ballast in the process itself does; once freed, it accepts again."""
    from pipeline.pdata.offload import Offload
    from tests.unit.pdata.test_offload import add, drop, hold

    off = Offload()
    await off.call(add, 1, 1)  # the worker runs, idle
    soft_mib = (current_usage()[0] + current_usage()[1]) // MIB + HEADROOM_MIB
    proc = make(Sink(), Telemetry(), limit_mib=soft_mib + 1000, spike_limit_mib=1000,
                check_interval="2s")
    await proc.start(None)  # type: ignore[arg-type]
    try:
        assert not proc.refusing
        await off.call(hold, BALLAST)
        rss, workers = current_usage()
        assert rss < soft_mib * MIB < rss + workers
        assert proc.check() > soft_mib * MIB
        assert proc.refusing
        with pytest.raises(RetryableError, match="memory limit"):
            await proc.consume(traces(1))
        await off.call(drop)
        assert proc.check() < soft_mib * MIB
        assert not proc.refusing
    finally:
        await proc.shutdown()
        await off.close()
