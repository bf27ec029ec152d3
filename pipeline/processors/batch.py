"""`batch` processor: merges small batches into bigger ones.

Unlike the Collector's batch processor, a caller is acknowledged only when
the merged batch it joined has been accepted downstream: data that was
acknowledged is never lost in a batch buffer, and backpressure from the
exporters reaches the client. Merging concatenates the serialized requests
(protobuf appends repeated fields), so it costs no decode; only a merged
batch above `send_batch_max_size` is decoded, to be split.

Because callers wait, a pure size/timeout batcher would make every request
of a lightly loaded pipeline wait the full `timeout` (an SDK exporter sends
one request at a time, so it would be slowed to one export per timeout). With
`flush_when_idle` (the default) a batch is sent at once when nothing is in
flight downstream; while a send is in flight, arrivals accumulate and go out
when it completes, when they reach `send_batch_size`, or at `timeout`. Under
load this batches as much as the downstream's latency allows ("group commit");
set it to false for the Collector's size-or-timeout behaviour.
"""

from __future__ import annotations

import asyncio

from pydantic import Field, model_validator

from pipeline.component import (
    Component,
    ComponentConfig,
    Consumer,
    Factory,
    Kind,
    ProcessorCreateSettings,
    Signal,
)
from pipeline.config.types import Duration
from pipeline.pdata.batch import Batch
from pipeline.pdata.offload import OFF_LOOP_BYTES, Offload, OffloadError
from pipeline.telemetry.metrics import CounterSpec, HistogramSpec

BATCH_SIZE_BUCKETS = (10, 25, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 20000, 50000)

SEND_SIZE = HistogramSpec(
    "otelpipe_processor_batch_send_size",
    "Items per batch sent by the batch processor.",
    ("processor", "pipeline"), buckets=BATCH_SIZE_BUCKETS)

SENDS = CounterSpec(
    "otelpipe_processor_batch_sends",
    "Batches sent by the batch processor, by what triggered the send.",
    ("processor", "pipeline", "trigger"))


class BatchConfig(ComponentConfig):
    send_batch_size: int = Field(8192, ge=0,
                                 description="items that trigger a send; 0: no batching")
    timeout: Duration = Field(0.2, description="longest wait before a partial batch is sent")
    send_batch_max_size: int = Field(0, ge=0, description="split batches above this; 0: no limit")
    flush_when_idle: bool = Field(
        True, description="send at once when nothing is in flight downstream")
    metadata_keys: list[str] = Field(
        default_factory=list, description="client metadata keys whose values batch separately")

    @model_validator(mode="after")
    def _max_not_below_size(self) -> BatchConfig:
        if self.send_batch_max_size and self.send_batch_max_size < self.send_batch_size:
            raise ValueError("send_batch_max_size must be 0 or at least send_batch_size")
        return self


class _Bucket:
    __slots__ = ("batches", "items", "timer", "waiters")

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.waiters: list[asyncio.Future[None]] = []
        self.items = 0
        self.timer: asyncio.TimerHandle | None = None


class BatchProcessor(Component, Consumer):
    def __init__(self, settings: ProcessorCreateSettings, config: BatchConfig):
        self.next = settings.next_consumer
        self.config = config
        pid = settings.pipeline_id
        self._sizes = settings.telemetry.histogram(SEND_SIZE).labels(str(settings.id), pid)
        self._triggers = {t: settings.telemetry.counter(SENDS).labels(str(settings.id), pid, t)
                          for t in ("size", "timeout", "idle", "shutdown")}
        self._buckets: dict[tuple[str, ...], _Bucket] = {}
        self._sending: set[asyncio.Task[None]] = set()
        self.log = settings.logger
        self._offload = Offload()

    _draining = False

    def begin_shutdown(self) -> None:
        """Send what is held now, and from now on every batch at once: the receivers
        drain their in-flight requests before this processor's `shutdown`, and those
        requests wait for their batch to be sent (the timeout could outlast the drain)."""
        self._draining = True
        for key in list(self._buckets):
            self._flush(key, "shutdown")

    async def consume(self, batch: Batch) -> None:
        cfg = self.config
        if cfg.send_batch_size == 0 or self._draining:
            await self._send_parts(batch)
            return
        key = tuple(batch.metadata.get(k, "") for k in cfg.metadata_keys)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        bucket.batches.append(batch)
        bucket.waiters.append(fut)
        bucket.items += batch.items
        if bucket.items >= cfg.send_batch_size or cfg.timeout == 0:
            self._flush(key, "size")
        elif cfg.flush_when_idle and not self._sending:
            self._flush(key, "idle")
        elif bucket.timer is None:
            bucket.timer = asyncio.get_running_loop().call_later(
                cfg.timeout, self._flush, key, "timeout")
        # Shielded: a client that hangs up does not cancel the send of others' data.
        await asyncio.shield(fut)

    def _flush(self, key: tuple[str, ...], trigger: str) -> None:
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            return
        if bucket.timer is not None:
            bucket.timer.cancel()
        merged = Batch.merge(bucket.batches)
        self._triggers[trigger].inc()
        task = asyncio.create_task(self._send_and_notify(merged, bucket.waiters))
        self._sending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        if self.config.flush_when_idle and not self._sending:
            for key in list(self._buckets):
                self._flush(key, "idle")

    async def _send_and_notify(self, batch: Batch, waiters: list[asyncio.Future[None]]) -> None:
        try:
            await self._send_parts(batch)
        except Exception as exc:
            for w in waiters:
                if not w.done():
                    w.set_exception(exc)
            return
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def _send_parts(self, batch: Batch) -> None:
        max_size = self.config.send_batch_max_size
        parts = await self._split(batch, max_size) if max_size and batch.items > max_size \
            else [batch]
        for part in parts:
            self._sizes.observe(part.items)
            await self.next.consume(part)

    async def _split(self, batch: Batch, max_size: int) -> list[Batch]:
        """`batch.split`; a big OTLP batch is split in the offload worker (decode, copy
        and encode of 67k spans hold a core for seconds), or here if the worker fails.
        Python log records split cheaply (list slices) and stay here."""
        if batch.logs is None:
            raw = batch.to_bytes()
            if len(raw) > OFF_LOOP_BYTES:
                try:
                    parts = await self._offload.call(split_raw, batch.signal, raw, max_size)
                except OffloadError as exc:
                    self.log.warning("splitting on the event loop: the offload worker failed",
                                     extra={"error": str(exc)})
                else:
                    return [Batch(batch.signal, raw=p, items=n, metadata=batch.metadata)
                            for p, n in parts]
        return batch.split(max_size)

    async def shutdown(self) -> None:
        for key in list(self._buckets):
            self._flush(key, "shutdown")
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        await self._offload.close()


def split_raw(signal: Signal, raw: bytes, max_items: int) -> list[tuple[bytes, int]]:
    """(protobuf, items) of the parts of a request of at most `max_items` items each;
    run in the offload worker."""
    return [(b.to_bytes(), b.items) for b in Batch(signal, raw=raw).split(max_items)]


def _create(settings: ProcessorCreateSettings, config: BatchConfig) -> BatchProcessor:
    return BatchProcessor(settings, config)


factory = Factory(type="batch", kind=Kind.PROCESSOR, config_model=BatchConfig, create=_create,
                  signals=frozenset(Signal),
                  description="merges batches by size or timeout; acknowledges after delivery")
