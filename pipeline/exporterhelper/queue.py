"""Sending queues: what every queue shares (sizing, overflow, hand-out, ack) and the
memory queue.

A queue holds entries from `put` until `ack`: an entry handed to a worker by
`get` still counts against the capacity until the worker acknowledges it, so
`size` is "accepted and not yet finished". Entries are handed out in the order
they were put; with several consumers they may finish (and be acknowledged)
in any order.

Sizers (`sizer`): `bytes` counts each batch's OTLP protobuf size
(`batch_bytes`), `requests` counts batches, `items` counts spans, log
records or data points. A queue may have a second bound in bytes
(`max_bytes`, a disk queue's `max_size_mib`) whatever its sizer. A batch
larger than the whole queue is let in when the queue is empty (it would
never fit otherwise). When there is no room, `put` raises `QueueFullError`
(retryable: the sender is told to come back), or waits for room with
`block_on_overflow`.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import logging
from collections.abc import Mapping
from typing import Literal

from pipeline.component import Signal
from pipeline.errors import RetryableError
from pipeline.pdata.batch import Batch

Sizer = Literal["requests", "items", "bytes"]


class QueueFullError(RetryableError):
    """The queue has no room for the batch (and `block_on_overflow` is off)."""


class QueueClosedError(RetryableError):
    """The queue is shut down; nothing more is accepted."""


class Entry:
    """One queued batch. `batch` is None while its bytes live only on disk."""

    __slots__ = ("batch", "items", "key", "metadata", "nbytes", "signal", "size")

    def __init__(self, key: int, signal: Signal, items: int, nbytes: int,
                 metadata: Mapping[str, str], batch: Batch | None, size: int):
        self.key = key
        self.signal = signal
        self.items = items
        self.nbytes = nbytes
        self.metadata = metadata
        self.batch = batch
        self.size = size

    def __repr__(self) -> str:
        return f"Entry(key={self.key}, {self.signal}, items={self.items})"


def batch_bytes(batch: Batch) -> int:
    """The OTLP protobuf size of a batch: the bytes it arrived as, the size of its
    decoded message (computed, not serialized), or for log records not encoded yet an
    estimate (`LogGroup.estimated_bytes`): weighing must not encode, or a route that
    never ships OTLP (filelog → logstruct → file/kafka JSON) pays for it twice."""
    if batch.has_raw:
        return len(batch.to_bytes())
    logs = batch.logs
    if logs is not None:
        return sum(g.estimated_bytes() for g in logs)
    if batch.decoded:
        size: int = batch.message.ByteSize()
        return size
    return len(batch.to_bytes())


def size_of(sizer: Sizer, items: int, nbytes: int) -> int:
    if sizer == "items":
        return items
    if sizer == "bytes":
        return nbytes
    return 1


class SendingQueue(abc.ABC):
    """Capacity, overflow policy and the hand-out of entries to consumers.

    Subclasses store entries (`_store`, `_load`, `_remove`); this class keeps
    the order of pending entries, the size, and wakes waiting getters/putters.
    """

    def __init__(self, capacity: int, sizer: Sizer, block_on_overflow: bool, name: str,
                 max_bytes: int | None = None):
        self.capacity = capacity
        self.sizer: Sizer = sizer
        self.block_on_overflow = block_on_overflow
        self.name = name
        self.max_bytes = max_bytes
        self.size = 0
        self.bytes = 0  # batch_bytes of the entries accepted and not acknowledged
        self._pending: collections.deque[Entry] = collections.deque()
        self._getters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._space = asyncio.Condition()
        self._drained = asyncio.Event()
        self._drained.set()
        self._closed = False
        self.unreadable_items = 0
        self.log = logging.getLogger("otelpipe.exporterhelper.queue")

    # Storage hooks ---------------------------------------------------------------
    @abc.abstractmethod
    async def _store(self, batch: Batch, size: int, nbytes: int) -> Entry:
        """Keep the batch (durably, for a disk queue); returns its entry."""

    def _held_bytes(self) -> int:
        """The bytes `max_bytes` bounds (a disk queue adds records still on disk)."""
        return self.bytes

    def _fits(self, size: int, nbytes: int) -> bool:
        if self.size <= 0:
            return True  # an empty queue takes any batch, however large
        if self.size + size > self.capacity:
            return False
        return self.max_bytes is None or self._held_bytes() + nbytes <= self.max_bytes

    async def _load(self, entry: Entry) -> Batch:
        """The batch of an entry whose bytes are not in memory."""
        assert entry.batch is not None
        return entry.batch

    async def _remove(self, entry: Entry) -> None:  # noqa: B027 - optional hook
        """Forget an acknowledged entry."""

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Recover stored entries (disk queues)."""

    def stop(self) -> None:
        """Accept nothing more and hand nothing more out (waiting consumers get
        `QueueClosedError`); entries not acknowledged stay stored (disk queues)."""
        self._closed = True
        for getter in self._getters:
            if not getter.done():
                getter.set_result(None)
        self._getters.clear()
        asyncio.get_running_loop().create_task(self._wake_space())

    async def close(self) -> None:
        """`stop`, then release the storage. Idempotent."""
        if not self._closed:
            self.stop()

    @property
    def closed(self) -> bool:
        return self._closed

    # API -------------------------------------------------------------------------
    @property
    def persistent(self) -> bool:
        return False

    def pending(self) -> int:
        """Entries waiting for a consumer (not counting those in flight)."""
        return len(self._pending)

    async def put(self, batch: Batch) -> None:
        """Accept a batch, or raise `QueueFullError` (retryable) when there is no room.

        Returns once the batch is stored: for a disk queue, durably written.
        """
        nbytes = batch_bytes(batch)
        size = size_of(self.sizer, batch.items, nbytes)
        while not self._fits(size, nbytes):
            if self._closed:
                raise QueueClosedError(f"sending queue of exporter {self.name} is closed",
                                       retry_after=1.0)
            if not self.block_on_overflow:
                raise QueueFullError(f"sending queue of exporter {self.name} is full",
                                     retry_after=1.0)
            async with self._space:
                await self._space.wait()
        if self._closed:
            raise QueueClosedError(f"sending queue of exporter {self.name} is closed",
                                   retry_after=1.0)
        self.size += size  # reserve before the (possibly slow) write
        self.bytes += nbytes
        self._drained.clear()
        try:
            entry = await self._store(batch, size, nbytes)
        except BaseException:
            self.size -= size
            self.bytes -= nbytes
            if self.size <= 0:
                self._drained.set()
            await self._wake_space()
            raise
        self._push(entry)

    def _push(self, entry: Entry) -> None:
        self._pending.append(entry)
        self._push_wakeup()

    async def get(self) -> Entry:
        """The oldest pending entry, with its batch loaded; waits while empty.

        An entry whose stored bytes cannot be read any more is logged, counted
        as unreadable, dropped, and the next one is returned.
        """
        while True:
            while not self._pending or self._closed:
                if self._closed:
                    raise QueueClosedError(f"sending queue of exporter {self.name} is closed")
                getter = asyncio.get_running_loop().create_future()
                self._getters.append(getter)
                try:
                    await getter
                except asyncio.CancelledError:
                    # Pass on a wake-up this consumer took but will not use.
                    if getter.done() and not getter.cancelled() and self._pending:
                        self._push_wakeup()
                    raise
            entry = self._pending.popleft()
            if entry.batch is not None:
                return entry
            try:
                entry.batch = await self._load(entry)
            except asyncio.CancelledError:
                self._pending.appendleft(entry)
                raise
            except Exception as exc:
                self.log.error("dropped a queued batch that cannot be read back",
                               extra={"queue": self.name, "items": entry.items,
                                      "error": f"{type(exc).__name__}: {exc}"})
                self.unreadable_items += entry.items
                await self.ack(entry)
                continue
            return entry

    def _push_wakeup(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return

    async def ack(self, entry: Entry) -> None:
        """The entry is finished (delivered or dropped): free its room."""
        entry.batch = None
        self.size -= entry.size
        self.bytes -= entry.nbytes
        try:
            await self._remove(entry)
        finally:
            if self.size <= 0:
                self._drained.set()
            await self._wake_space()

    async def _wake_space(self) -> None:
        async with self._space:
            self._space.notify_all()

    async def join(self) -> None:
        """Wait until every accepted entry has been acknowledged."""
        await self._drained.wait()


class MemoryQueue(SendingQueue):
    """Entries in memory: acknowledged once queued, lost if the process dies."""

    def __init__(self, capacity: int, sizer: Sizer, block_on_overflow: bool, name: str,
                 max_bytes: int | None = None):
        super().__init__(capacity, sizer, block_on_overflow, name, max_bytes)
        self._next_key = 0

    async def _store(self, batch: Batch, size: int, nbytes: int) -> Entry:
        self._next_key += 1
        return Entry(self._next_key, batch.signal, batch.items, nbytes, batch.metadata,
                     batch, size)
