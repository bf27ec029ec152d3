"""The exporter base class: timeouts, retries, the sending queue and their metrics.

An exporter subclasses `Exporter` and implements `send(batch)`; it raises
`RetryableError` for transient failures and `PermanentError` for data the
backend will never take, and may return the number of items a partial
success rejected. `consume` then does the rest:

- no queue: send now, retrying with exponential backoff (`retry.Backoff`)
  while the caller waits; when retries run out the caller gets
  `RetryableError`, so the client retries and nothing acknowledged is lost.
  The send runs in the caller's task: when the caller is cancelled (its
  sender disconnected, or a gRPC deadline passed), so is the send and its
  retries, and the batch is freed. At most `max_in_flight_requests` exports
  holding `max_in_flight_bytes` wait at once (`inflight.InFlightLimit`); one
  more is refused at once with `RetryableError`;
- memory queue (`queue.MemoryQueue`): acknowledge once queued (lost on a
  crash; documented), bounded in bytes by default, refuse with
  `RetryableError` when full, deliver with
  `num_consumers` workers, retrying each batch until `max_elapsed_time`
  (0: forever);
- disk queue (`diskqueue.PersistentQueue` over a segment log or SQLite):
  acknowledge once durably written, remove only after the backend
  acknowledged; after a crash everything not acknowledged is sent again.

The settings (`timeout`, `retry_on_failure`, `sending_queue`) are
`pipeline.config.retry.ExporterSettings`. See docs/exporters.md for the
guarantees and the measured costs.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib

from pipeline.component import (
    Component,
    ComponentHealth,
    Consumer,
    CreateSettings,
    Host,
    Signal,
)
from pipeline.config.retry import ExporterSettings, QueueSettings, RetrySettings
from pipeline.config.secrets import mask_text
from pipeline.errors import PermanentError, PipelineError, RetryableError
from pipeline.exporterhelper.diskqueue import PersistentQueue, make_store, queue_directory
from pipeline.exporterhelper.failurelog import DeliveryLog
from pipeline.exporterhelper.inflight import InFlightLimit
from pipeline.exporterhelper.queue import (
    MemoryQueue,
    QueueClosedError,
    SendingQueue,
    batch_bytes,
)
from pipeline.exporterhelper.retry import Backoff
from pipeline.pdata.batch import Batch
from pipeline.telemetry.metrics import CounterSpec, GaugeSpec

_EXP = ("exporter", "signal")
SENT = CounterSpec(
    "otelpipe_exporter_sent_items", "Items delivered by an exporter.", _EXP)
SEND_FAILED = CounterSpec(
    "otelpipe_exporter_send_failed_items",
    "Items an exporter failed to deliver (permanent error or retries exhausted).", _EXP)
ENQUEUE_FAILED = CounterSpec(
    "otelpipe_exporter_enqueue_failed_items",
    "Items refused because the exporter's queue was full.", _EXP)
QUEUE_SIZE = GaugeSpec(
    "otelpipe_exporter_queue_size", "Current size of the exporter's sending queue.",
    ("exporter",))
QUEUE_CAPACITY = GaugeSpec(
    "otelpipe_exporter_queue_capacity", "Capacity of the exporter's sending queue.",
    ("exporter",))
QUEUE_RECOVERED = CounterSpec(
    "otelpipe_exporter_queue_recovered_items",
    "Items found in an exporter's disk queue at start (not acknowledged before the "
    "last stop or crash; sent again).", ("exporter",))
IN_FLIGHT_REQUESTS = GaugeSpec(
    "otelpipe_exporter_in_flight_requests",
    "Exports in flight without a sending queue (callers waiting for a send or its "
    "retries).", ("exporter",))
IN_FLIGHT_BYTES = GaugeSpec(
    "otelpipe_exporter_in_flight_bytes",
    "Bytes (OTLP protobuf size) of the exports in flight without a sending queue.",
    ("exporter",))
IN_FLIGHT_REFUSED = CounterSpec(
    "otelpipe_exporter_in_flight_refused_items",
    "Items refused at once because the exporter had max_in_flight_requests or "
    "max_in_flight_bytes in flight.", _EXP)
CANCELLED = CounterSpec(
    "otelpipe_exporter_cancelled_items",
    "Items whose export was cancelled because its sender went away (disconnected, or "
    "its deadline passed); the sender was not acknowledged.", _EXP)
QUEUE_CORRUPT = CounterSpec(
    "otelpipe_exporter_queue_corrupt_records",
    "Torn or corrupt records skipped while opening an exporter's disk queue.",
    ("exporter",))


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
        sent, failed = t.counter(SENT), t.counter(SEND_FAILED)
        enqueue_failed = t.counter(ENQUEUE_FAILED)
        self._sent = {s: sent.labels(self.id, s.value) for s in Signal}
        self._failed = {s: failed.labels(self.id, s.value) for s in Signal}
        self._enqueue_failed = {s: enqueue_failed.labels(self.id, s.value) for s in Signal}
        self._queue_size_gauge = t.gauge(QUEUE_SIZE).labels(self.id)
        refused, cancelled = t.counter(IN_FLIGHT_REFUSED), t.counter(CANCELLED)
        self._in_flight_refused = {s: refused.labels(self.id, s.value) for s in Signal}
        self._cancelled = {s: cancelled.labels(self.id, s.value) for s in Signal}
        self._in_flight_requests = t.gauge(IN_FLIGHT_REQUESTS).labels(self.id)
        self._in_flight_bytes = t.gauge(IN_FLIGHT_BYTES).labels(self.id)
        self._in_flight = InFlightLimit(self.helper.max_in_flight_requests,
                                        self.helper.max_in_flight_bytes)
        self._last_error: str | None = None
        self._healthy = True
        self._delivery_log = DeliveryLog(self.id, self.log)
        self._queue: SendingQueue | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        q = self.helper.sending_queue
        if q.enabled:
            t.gauge(QUEUE_CAPACITY).labels(self.id).set(q.capacity)

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
            return PersistentQueue(store, q.capacity, q.sizer, q.block_on_overflow, self.id,
                                   max_bytes=q.max_bytes)
        return MemoryQueue(q.capacity, q.sizer, q.block_on_overflow, self.id, q.max_bytes)

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
                t.counter(QUEUE_RECOVERED).labels(self.id).inc(rec.items)
                t.counter(QUEUE_CORRUPT).labels(self.id).inc(rec.corrupt_records)
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
                               queue_capacity=q.capacity if q.enabled else None)

    # Data path ------------------------------------------------------------------
    async def consume(self, batch: Batch) -> None:
        try:
            await self._consume(batch)
        except PipelineError as exc:
            # Receivers answer the sender a generic reason naming this exporter:
            # the error's text may quote the backend's URL and answer.
            exc.from_origin(f"exporter {self.id}")
            raise

    async def _consume(self, batch: Batch) -> None:
        queue = self._queue
        if queue is None:
            await self._send_now(batch)
            return
        try:
            await queue.put(batch)
        except RetryableError:
            self._enqueue_failed[batch.signal].inc(batch.items)
            raise
        self._queue_size_gauge.set(queue.size)

    async def _send_now(self, batch: Batch) -> None:
        """Send in the caller's task, within the in-flight caps; a cancelled caller
        cancels the send and its retries."""
        limit = self._in_flight
        nbytes = batch_bytes(batch) if limit.max_bytes else 0
        if not limit.try_acquire(nbytes):
            self._in_flight_refused[batch.signal].inc(batch.items)
            raise RetryableError(f"exporter {self.id} has too many exports in flight",
                                 retry_after=1.0)
        self._in_flight_requests.set(limit.requests)
        self._in_flight_bytes.set(limit.bytes)
        try:
            await self._send_with_retry(batch, raise_on_give_up=True)
        except asyncio.CancelledError:
            self._cancelled[batch.signal].inc(batch.items)
            self.log.debug("export cancelled: its sender went away",
                           extra={"items": batch.items})
            raise
        finally:
            limit.release(nbytes)
            self._in_flight_requests.set(limit.requests)
            self._in_flight_bytes.set(limit.bytes)

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
                self._delivery_log.failed(err, retrying=delay is not None)
                if delay is None:
                    if raise_on_give_up:
                        raise RetryableError(f"exporter {self.id} cannot deliver: {err}",
                                             retry_after=err.retry_after) from None
                    self._failed[batch.signal].inc(batch.items)
                    self.log.error("dropped data after retries were exhausted",
                                   extra={"items": batch.items, "error": mask_text(err)})
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
            self._delivery_log.delivered()
            return

    def _note_error(self, message: str, *, healthy: bool) -> None:
        self._last_error = message
        self._healthy = healthy
