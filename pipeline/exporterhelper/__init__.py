"""The one place for exporter timeouts, retries, queues and their metrics.

An exporter subclasses `Exporter` and implements `send(batch)`; it raises
`RetryableError` for transient failures and `PermanentError` for data the
backend will never take, and may return the number of items a partial
success rejected. `consume` then does the rest:

- no queue: send now, retrying with exponential backoff while the caller
  waits; when retries run out the caller gets `RetryableError`, so the
  client retries and nothing acknowledged is lost;
- memory queue (`queue.MemoryQueue`): acknowledge once queued (lost on a
  crash; documented), refuse with `RetryableError` when full, deliver with
  `num_consumers` workers, retrying each batch until `max_elapsed_time`
  (0: forever);
- disk queue (`diskqueue.PersistentQueue` over a segment log or SQLite):
  acknowledge once durably written, remove only after the backend
  acknowledged; after a crash everything not acknowledged is sent again.

See docs/exporters.md for the guarantees and the measured costs.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import Literal

from pydantic import Field, model_validator

from pipeline.component import (
    Component,
    ComponentConfig,
    ComponentHealth,
    Consumer,
    CreateSettings,
    Host,
    Signal,
)
from pipeline.config.types import Duration
from pipeline.errors import PermanentError, RetryableError
from pipeline.exporterhelper.diskqueue import PersistentQueue, make_store, queue_directory
from pipeline.exporterhelper.queue import (
    MemoryQueue,
    QueueClosedError,
    QueueFullError,
    SendingQueue,
)
from pipeline.pdata.batch import Batch

__all__ = [
    "Backoff",
    "Exporter",
    "ExporterSettings",
    "MemoryQueue",
    "PersistentQueue",
    "QueueFullError",
    "QueueSettings",
    "RetrySettings",
    "SendingQueue",
]


class RetrySettings(ComponentConfig):
    enabled: bool = True
    initial_interval: Duration = 5.0
    max_interval: Duration = 30.0
    max_elapsed_time: Duration = Field(default=300.0, description="0 retries forever")
    multiplier: float = Field(default=1.5, ge=1.0)
    randomization_factor: float = Field(default=0.5, ge=0.0, le=1.0)


class QueueSettings(ComponentConfig):
    enabled: bool = True
    storage: Literal["memory", "disk"] = Field(
        default="memory",
        description="memory: acknowledged once queued, lost if the process dies; disk: "
                    "acknowledged once durably written, kept until the backend acknowledged")
    directory: str | None = Field(
        default=None, description="disk: parent directory; each exporter gets a "
                                  "subdirectory named after its id")
    engine: Literal["segment", "sqlite"] = Field(
        default="segment", description="disk: append-only segment log or SQLite (WAL)")
    fsync: bool = Field(
        default=True, description="disk: wait for the disk (fsync) before acknowledging; "
                                  "false survives a killed process but not a power cut")
    segment_mib: float = Field(default=16.0, gt=0,
                               description="disk, engine segment: size of a segment file")
    queue_size: int = Field(default=1000, gt=0)
    sizer: Literal["requests", "items", "bytes"] = "requests"
    num_consumers: int = Field(default=10, gt=0)
    block_on_overflow: bool = False

    @model_validator(mode="after")
    def _disk_needs_directory(self) -> QueueSettings:
        if self.enabled and self.storage == "disk" and not self.directory:
            raise ValueError("sending_queue.directory is required when storage is disk")
        return self


class ExporterSettings(ComponentConfig):
    """Mix into an exporter's config model to get the standard keys."""

    timeout: Duration = 5.0
    retry_on_failure: RetrySettings = RetrySettings()
    sending_queue: QueueSettings = QueueSettings()


class Backoff:
    """Exponential backoff with jitter, as the Collector's retry sender."""

    def __init__(self, s: RetrySettings, clock: Callable[[], float] = time.monotonic):
        self.s = s
        self.clock = clock
        self.start = clock()
        self.interval = s.initial_interval

    def next_delay(self, retry_after: float | None) -> float | None:
        """Seconds to wait before the next attempt, or None when time is up."""
        jitter = self.s.randomization_factor * self.interval
        delay = self.interval + random.uniform(-jitter, jitter)
        self.interval = min(self.interval * self.s.multiplier, self.s.max_interval)
        if retry_after is not None:
            delay = max(delay, retry_after)
        if self.s.max_elapsed_time:
            remaining = self.start + self.s.max_elapsed_time - self.clock()
            if remaining <= 0:
                return None
            delay = min(delay, remaining)
        return max(delay, 0.0)


class _Abandoned(Exception):
    """A queue worker gave up on its entry because the exporter shuts down."""


class Exporter(Component, Consumer):
    """Base class of every exporter."""

    def __init__(self, settings: CreateSettings, helper: ExporterSettings | None = None):
        self.settings = settings
        self.id = str(settings.id)
        self.log = settings.logger
        self.helper = helper or ExporterSettings(
            retry_on_failure=RetrySettings(enabled=False),
            sending_queue=QueueSettings(enabled=False))
        t = settings.telemetry
        self._sent = {s: t.exporter_sent.labels(self.id, s.value) for s in Signal}
        self._failed = {s: t.exporter_send_failed.labels(self.id, s.value) for s in Signal}
        self._enqueue_failed = {s: t.exporter_enqueue_failed.labels(self.id, s.value)
                                for s in Signal}
        self._queue_size_gauge = t.exporter_queue_size.labels(self.id)
        self._last_error: str | None = None
        self._healthy = True
        self._queue: SendingQueue | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        q = self.helper.sending_queue
        if q.enabled:
            t.exporter_queue_capacity.labels(self.id).set(q.queue_size)

    @abc.abstractmethod
    async def send(self, batch: Batch) -> int | None:
        """Deliver one batch to the backend.

        Raise `RetryableError` (or `OSError`/`TimeoutError`) for transient
        failures and `PermanentError` for data the backend will never take.
        Return the number of items the backend rejected while accepting the
        rest (an OTLP partial success), or None when it took everything.
        """

    async def start_exporter(self, host: Host) -> None:
        """Open connections; override instead of `start`."""

    async def shutdown_exporter(self) -> None:
        """Close connections after the queue drained; override instead of `shutdown`."""

    # Lifecycle ----------------------------------------------------------------
    def _make_queue(self) -> SendingQueue:
        q = self.helper.sending_queue
        if q.storage == "disk":
            assert q.directory is not None
            store = make_store(q.engine, queue_directory(q.directory, self.id), q.fsync,
                               int(q.segment_mib * 1024 * 1024))
            return PersistentQueue(store, q.queue_size, q.sizer, q.block_on_overflow, self.id)
        return MemoryQueue(q.queue_size, q.sizer, q.block_on_overflow, self.id)

    async def start(self, host: Host) -> None:
        await self.start_exporter(host)
        q = self.helper.sending_queue
        if q.enabled:
            queue = self._make_queue()
            queue.log = self.log
            await queue.open()
            if isinstance(queue, PersistentQueue):
                t = self.settings.telemetry
                rec = queue.recovered
                t.exporter_queue_recovered.labels(self.id).inc(rec.items)
                t.exporter_queue_corrupt.labels(self.id).inc(rec.corrupt_records)
            self._queue = queue
            self._queue_size_gauge.set(queue.size)
            self._workers = [asyncio.create_task(self._worker(queue), name=f"{self.id}-queue-{i}")
                             for i in range(q.num_consumers)]

    async def shutdown(self) -> None:
        queue = self._queue
        try:
            if queue is not None:
                if queue.persistent:
                    # What is not delivered stays on disk for the next start: give the
                    # sends in flight a moment to finish, then stop.
                    queue.stop()
                    self._stopping.set()  # ends retry backoffs at once
                    if self._workers:
                        await asyncio.wait(self._workers, timeout=self._drain_grace())
                else:
                    await queue.join()  # bounded by the service's shutdown timeout
                    await queue.close()
        finally:
            for w in self._workers:
                w.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
            if queue is not None and queue.persistent:
                await queue.close()
            await self.shutdown_exporter()

    def _drain_grace(self) -> float:
        # A stopped queue hands nothing more out; a worker in a retry backoff could
        # wait long, so the grace is bounded (its entry is sent after the restart).
        return min(self.helper.timeout or 5.0, 5.0)

    def health(self) -> ComponentHealth:
        queue = self._queue
        q = self.helper.sending_queue
        return ComponentHealth(healthy=self._healthy, last_error=self._last_error,
                               queue_size=queue.size if queue is not None else
                               (0 if q.enabled else None),
                               queue_capacity=q.queue_size if q.enabled else None)

    # Data path ------------------------------------------------------------------
    async def consume(self, batch: Batch) -> None:
        queue = self._queue
        if queue is None:
            await self._send_with_retry(batch, raise_on_give_up=True)
            return
        try:
            await queue.put(batch)
        except RetryableError:
            self._enqueue_failed[batch.signal].inc(batch.items)
            raise
        self._queue_size_gauge.set(queue.size)

    async def _worker(self, queue: SendingQueue) -> None:
        while True:
            try:
                entry = await queue.get()
            except QueueClosedError:
                return
            batch = entry.batch
            assert batch is not None
            try:
                await self._send_with_retry(batch, raise_on_give_up=False)
            except _Abandoned:
                # Shutdown: a disk queue keeps the entry (sent again after the restart).
                return
            except Exception as exc:  # a bug in send(): drop this batch, keep the worker alive
                self._failed[batch.signal].inc(batch.items)
                self._note_error(f"{type(exc).__name__}: {exc}", healthy=False)
                self.log.exception("dropped data after an unexpected exporter error",
                                   extra={"items": batch.items})
            await queue.ack(entry)
            self._queue_size_gauge.set(queue.size)

    async def _send_with_retry(self, batch: Batch, *, raise_on_give_up: bool) -> None:
        retry = self.helper.retry_on_failure
        backoff = Backoff(retry) if retry.enabled else None
        while True:
            try:
                rejected = await asyncio.wait_for(self.send(batch), self.helper.timeout or None)
            except PermanentError as exc:
                self._failed[batch.signal].inc(exc.rejected or batch.items)
                self._note_error(f"permanent: {exc}", healthy=True)
                self.log.warning("dropped data the backend rejected permanently",
                                 extra={"items": exc.rejected or batch.items, "error": str(exc)})
                if raise_on_give_up:
                    raise
                return
            except (RetryableError, TimeoutError, OSError) as exc:
                err = exc if isinstance(exc, RetryableError) else RetryableError(
                    f"{type(exc).__name__}: {exc}" if str(exc) else "send timed out")
                self._note_error(str(err), healthy=False)
                delay = backoff.next_delay(err.retry_after) if backoff else None
                if delay is None:
                    if raise_on_give_up:
                        raise RetryableError(f"exporter {self.id} cannot deliver: {err}",
                                             retry_after=err.retry_after) from None
                    self._failed[batch.signal].inc(batch.items)
                    self.log.error("dropped data after retries were exhausted",
                                   extra={"items": batch.items, "error": str(err)})
                    return
                if raise_on_give_up:
                    await asyncio.sleep(delay)
                    continue
                # A queue worker: a shutdown ends the wait, the entry stays queued.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                if self._stopping.is_set():
                    raise _Abandoned from None
                continue
            if rejected:
                # Partial success: the backend kept the rest; the rejected part is final.
                rejected = min(rejected, batch.items)
                self._failed[batch.signal].inc(rejected)
                self._sent[batch.signal].inc(batch.items - rejected)
            else:
                self._sent[batch.signal].inc(batch.items)
            self._healthy = True
            return

    def _note_error(self, message: str, *, healthy: bool) -> None:
        self._last_error = message
        self._healthy = healthy
