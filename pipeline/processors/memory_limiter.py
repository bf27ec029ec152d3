"""`memory_limiter` processor: refuses data while the process uses too much memory.

Every `check_interval` it reads the process RSS, plus what its worker processes
hold (the offload and decode workers of pdata/offload.py: their anonymous memory,
not the interpreter they share with us; ≈ 10 MiB idle each, hundreds while
encoding or decoding a big batch). Above the soft limit
(`limit_mib - spike_limit_mib`) it refuses batches with a retryable error, so
receivers answer 503 / UNAVAILABLE and clients back off; above the hard limit
it also forces a garbage collection. It accepts again once usage is back under
the soft limit. Put it first in every pipeline.

While it refuses, it says so in `receiverhelper.pressure.MEMORY`: the
receivers' listeners then refuse requests before reading their bodies (HTTP
503 + Retry-After, gRPC UNAVAILABLE), and `/health/readiness` reports
not-ready with the reason.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
from typing import Any

from pydantic import Field, model_validator

from pipeline.component import (
    Component,
    ComponentConfig,
    Consumer,
    Factory,
    Host,
    Kind,
    ProcessorCreateSettings,
    Signal,
)
from pipeline.config.types import Duration
from pipeline.errors import RetryableError
from pipeline.pdata.batch import Batch
from pipeline.pdata.offload import workers_memory
from pipeline.receiverhelper import pressure
from pipeline.telemetry.metrics import CounterSpec, GaugeSpec

REFUSING = GaugeSpec(
    "otelpipe_memory_limiter_refusing",
    "1 while the memory limiter refuses data, else 0.", ("processor",))

REFUSED_ITEMS = CounterSpec(
    "otelpipe_processor_refused_items",
    "Items a processor refused with a retryable error.", ("processor", "pipeline", "signal"))

MIB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class MemoryLimiterConfig(ComponentConfig):
    check_interval: Duration = Field(1.0, gt=0)
    limit_mib: int | None = Field(None, gt=0, description="hard limit of the process RSS")
    spike_limit_mib: int | None = Field(
        None, ge=0, description="headroom below the hard limit; default 20% of it")
    limit_percentage: int | None = Field(None, gt=0, le=100,
                                         description="hard limit as % of total memory")
    spike_limit_percentage: int | None = Field(None, ge=0, le=100)

    @model_validator(mode="after")
    def _one_limit(self) -> MemoryLimiterConfig:
        if (self.limit_mib is None) == (self.limit_percentage is None):
            raise ValueError("set exactly one of limit_mib or limit_percentage")
        self.limits_bytes()  # a spike limit at or above the hard limit is a config error
        return self

    def limits_bytes(self) -> tuple[int, int]:
        """(soft, hard) in bytes."""
        hard = (self.limit_mib * MIB if self.limit_mib is not None
                else total_memory() * (self.limit_percentage or 0) // 100)
        if self.spike_limit_mib is not None:
            spike = self.spike_limit_mib * MIB
        elif self.spike_limit_percentage is not None:
            spike = total_memory() * self.spike_limit_percentage // 100
        else:
            spike = hard // 5
        if spike >= hard:
            raise ValueError("spike limit must be below the hard limit")
        return hard - spike, hard


def total_memory() -> int:
    """The machine's memory in bytes (psutil loads only for limits in percent)."""
    import psutil

    return int(psutil.virtual_memory().total)


def _libc(name: str, *argtypes: Any) -> Any:
    """A glibc function (malloc_trim, mallopt), or None (musl, macOS)."""
    try:
        fn = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = list(argtypes)
    fn.restype = ctypes.c_int
    return fn


_malloc_trim = _libc("malloc_trim", ctypes.c_size_t)
_mallopt = _libc("mallopt", ctypes.c_int, ctypes.c_int)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 256 * 1024
TRIM_THRESHOLD = 1024 * 1024


def tune_malloc() -> None:
    """Fix glibc's thresholds so that freed request buffers leave the process.

    By default glibc raises its mmap threshold (up to 32 MiB) each time a
    large mmap'ed block is freed: after the first few MiB-sized requests,
    request buffers come from the arenas instead, and the free space at the
    top of a thread's arena (gRPC receives on its own threads) is never given
    back, not even by malloc_trim. Fixed thresholds keep big buffers mmap'ed
    (unmapped on free) and arenas trimmed.
    """
    if _mallopt is not None:
        _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        _mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def release_memory() -> None:
    """Hand freed heap memory back to the OS.

    CPython frees objects at once, but glibc keeps the freed pages of its
    arenas (one per thread that allocated: gRPC's threads too) mapped, so
    RSS would stay at its flood peak and the limiter would refuse forever.
    """
    if _malloc_trim is not None:
        _malloc_trim(0)


def current_rss() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


def current_usage() -> tuple[int, int]:
    """(the process's RSS, what its worker processes hold) in bytes."""
    return current_rss(), workers_memory()


class MemoryLimiter(Component, Consumer):
    def __init__(self, settings: ProcessorCreateSettings, config: MemoryLimiterConfig):
        self.next = settings.next_consumer
        self.config = config
        self.log = settings.logger
        self.soft, self.hard = config.limits_bytes()
        self.refusing = False
        self._task: asyncio.Task[None] | None = None
        self._owner = f"processor {settings.id} in {settings.pipeline_id or settings.signal}"
        self._gauge = settings.telemetry.gauge(REFUSING).labels(str(settings.id))
        self._refused = settings.telemetry.counter(REFUSED_ITEMS).labels(
            str(settings.id), settings.pipeline_id, str(settings.signal))

    async def start(self, host: Host) -> None:
        tune_malloc()
        self.check()
        self._task = asyncio.create_task(self._run(), name="memory_limiter")

    async def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        pressure.MEMORY.accept(self._owner)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config.check_interval)
            self.check()

    def check(self) -> int:
        """Compare the usage with the limits (refuse or accept); returns the usage."""
        rss, workers = current_usage()
        if rss + workers > self.soft:
            if rss + workers > self.hard:
                gc.collect()
            release_memory()
            rss, workers = current_usage()
        usage = rss + workers
        was = self.refusing
        self.refusing = usage > self.soft
        if self.refusing != was:
            self._gauge.set(1 if self.refusing else 0)
            if self.refusing:
                pressure.MEMORY.refuse(self._owner, self._refusal(), self._retry_after())
            else:
                pressure.MEMORY.accept(self._owner)
            (self.log.warning if self.refusing else self.log.info)(
                "memory above soft limit: refusing data" if self.refusing
                else "memory back under soft limit: accepting data",
                extra={"rss_mib": rss // MIB, "workers_mib": workers // MIB,
                       "soft_limit_mib": self.soft // MIB, "hard_limit_mib": self.hard // MIB})
        return usage

    async def consume(self, batch: Batch) -> None:
        if self.refusing:
            self._refused.inc(batch.items)
            raise RetryableError(f"memory limit: {self._refusal()}",
                                 retry_after=self._retry_after())
        await self.next.consume(batch)

    def _refusal(self) -> str:
        return f"process uses more than the soft limit of {self.soft // MIB} MiB"

    def _retry_after(self) -> float:
        return max(1.0, self.config.check_interval)


def _create(settings: ProcessorCreateSettings, config: MemoryLimiterConfig) -> MemoryLimiter:
    return MemoryLimiter(settings, config)


factory = Factory(type="memory_limiter", kind=Kind.PROCESSOR, config_model=MemoryLimiterConfig,
                  create=_create, signals=frozenset(Signal),
                  description="refuses data (503/UNAVAILABLE) while memory is above its limit")
