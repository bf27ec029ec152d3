"""The one place for exporter timeouts, retries, queues and their metrics.

An exporter subclasses `Exporter` and implements `send(batch)`; it raises
`RetryableError` for transient failures and `PermanentError` for data the
backend will never take. `consume` then does the rest:

- no queue: send now, retrying with exponential backoff while the caller
  waits; when retries run out the caller gets `RetryableError`, so the
  client retries and nothing acknowledged is lost;
- memory queue: acknowledge once queued (lost on a crash; documented),
  refuse with `RetryableError` when full, deliver with `num_consumers`
  workers, retrying each batch until `max_elapsed_time`.
"""

from __future__ import annotations

import abc
import asyncio
import random
import time
from collections.abc import Callable
from typing import Literal

from pydantic import Field

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
from pipeline.pdata.batch import Batch


class RetrySettings(ComponentConfig):
    enabled: bool = True
    initial_interval: Duration = 5.0
    max_interval: Duration = 30.0
    max_elapsed_time: Duration = Field(default=300.0, description="0 retries forever")
    multiplier: float = Field(default=1.5, ge=1.0)
    randomization_factor: float = Field(default=0.5, ge=0.0, le=1.0)


class QueueSettings(ComponentConfig):
    enabled: bool = True
    storage: Literal["memory"] = "memory"
    queue_size: int = Field(default=1000, gt=0)
    sizer: Literal["requests", "items"] = "requests"
    num_consumers: int = Field(default=10, gt=0)
    block_on_overflow: bool = False


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
        self._queue: asyncio.Queue[Batch] | None = None
        self._queued_size = 0
        self._workers: list[asyncio.Task[None]] = []
        self._space = asyncio.Condition()
        q = self.helper.sending_queue
        if q.enabled:
            t.exporter_queue_capacity.labels(self.id).set(q.queue_size)

    @abc.abstractmethod
    async def send(self, batch: Batch) -> None:
        """Deliver one batch to the backend."""

    async def start_exporter(self, host: Host) -> None:
        """Open connections; override instead of `start`."""

    async def shutdown_exporter(self) -> None:
        """Close connections after the queue drained; override instead of `shutdown`."""

    # Lifecycle ----------------------------------------------------------------
    async def start(self, host: Host) -> None:
        await self.start_exporter(host)
        q = self.helper.sending_queue
        if q.enabled:
            self._queue = asyncio.Queue()
            self._workers = [asyncio.create_task(self._worker(), name=f"{self.id}-queue-{i}")
                             for i in range(q.num_consumers)]

    async def shutdown(self) -> None:
        if self._queue is not None:
            await self._queue.join()  # bounded by the service's shutdown timeout
            for w in self._workers:
                w.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
        await self.shutdown_exporter()

    def health(self) -> ComponentHealth:
        q = self.helper.sending_queue
        return ComponentHealth(healthy=self._healthy, last_error=self._last_error,
                               queue_size=self._queued_size if q.enabled else None,
                               queue_capacity=q.queue_size if q.enabled else None)

    # Data path ------------------------------------------------------------------
    async def consume(self, batch: Batch) -> None:
        if self._queue is None:
            await self._send_with_retry(batch, raise_on_give_up=True)
            return
        q = self.helper.sending_queue
        size = batch.items if q.sizer == "items" else 1
        while self._queued_size + size > q.queue_size:
            if not q.block_on_overflow:
                self._enqueue_failed[batch.signal].inc(batch.items)
                raise RetryableError(f"sending queue of exporter {self.id} is full",
                                     retry_after=1.0)
            async with self._space:
                await self._space.wait()
        self._queued_size += size
        self._queue_size_gauge.set(self._queued_size)
        self._queue.put_nowait(batch)

    async def _worker(self) -> None:
        assert self._queue is not None
        q = self.helper.sending_queue
        while True:
            batch = await self._queue.get()
            try:
                await self._send_with_retry(batch, raise_on_give_up=False)
            except Exception as exc:  # a bug in send(): drop this batch, keep the worker alive
                self._failed[batch.signal].inc(batch.items)
                self._note_error(f"{type(exc).__name__}: {exc}", healthy=False)
                self.log.exception("dropped data after an unexpected exporter error",
                                   extra={"items": batch.items})
            finally:
                self._queued_size -= batch.items if q.sizer == "items" else 1
                self._queue_size_gauge.set(self._queued_size)
                self._queue.task_done()
                async with self._space:
                    self._space.notify_all()

    async def _send_with_retry(self, batch: Batch, *, raise_on_give_up: bool) -> None:
        retry = self.helper.retry_on_failure
        backoff = Backoff(retry) if retry.enabled else None
        while True:
            try:
                await asyncio.wait_for(self.send(batch), self.helper.timeout or None)
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
                await asyncio.sleep(delay)
                continue
            self._sent[batch.signal].inc(batch.items)
            self._healthy = True
            return

    def _note_error(self, message: str, *, healthy: bool) -> None:
        self._last_error = message
        self._healthy = healthy


