"""`PersistentQueue`: a `SendingQueue` whose entries live in a `Store` until acknowledged.

Puts that arrive together share one write and one fsync (group commit) on the
queue's own I/O thread; batches written in this process stay in memory up to
`cache_bytes`, so a healthy backend is fed without reading back from disk.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable
from typing import NamedTuple, TypeVar

from pipeline.errors import RetryableError
from pipeline.exporterhelper.diskqueue.store import (
    NewRecord,
    RecoveryStats,
    Store,
    StoredRecord,
)
from pipeline.exporterhelper.queue import Entry, SendingQueue, Sizer, size_of
from pipeline.pdata.batch import Batch

# Batches written in this process stay referenced in memory up to this many
# bytes, so a healthy backend is fed without reading back from disk.
MEMORY_CACHE_BYTES = 32 * 1024 * 1024

_T = TypeVar("_T")


class _PendingWrite(NamedTuple):
    record: NewRecord
    future: asyncio.Future[int]


class PersistentQueue(SendingQueue):
    """A `SendingQueue` whose entries live in a `Store` until acknowledged."""

    def __init__(self, store: Store, capacity: int, sizer: Sizer, block_on_overflow: bool,
                 name: str, cache_bytes: int = MEMORY_CACHE_BYTES):
        super().__init__(capacity, sizer, block_on_overflow, name)
        self.store = store
        self.cache_bytes = cache_bytes
        self._cached = 0
        self._cached_sizes: dict[int, int] = {}
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"queue-{name}")
        self._writes: list[_PendingWrite] = []
        self._acks: list[int] = []
        self._flusher: asyncio.Task[None] | None = None
        self._opened = False
        self._released = False
        self.recovered = RecoveryStats()

    @property
    def persistent(self) -> bool:
        return True

    async def _io(self, fn: Callable[..., _T], *args: object) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        records: list[StoredRecord] = await self._io(self.store.open)
        self._opened = True
        for r in records:
            size = size_of(self.sizer, r.items, r.nbytes)
            self.size += size
            self._push(Entry(r.key, r.signal, r.items, r.nbytes, r.metadata, None, size))
        if records:
            self._drained.clear()
        self.recovered = self.store.stats
        if records or self.store.stats.corrupt_records:
            self.log.info("recovered the disk queue", extra={
                "queue": self.name, "path": str(self.store.path), "batches": len(records),
                "items": self.store.stats.items,
                "corrupt_records": self.store.stats.corrupt_records})

    async def _store(self, batch: Batch, size: int) -> Entry:
        raw = batch.to_bytes()
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._writes.append(_PendingWrite(NewRecord(batch.signal, raw, batch.items,
                                                    batch.metadata), fut))
        self._kick()
        key = await fut
        keep = self._cached + len(raw) <= self.cache_bytes
        if keep:
            self._cached += len(raw)
            self._cached_sizes[key] = len(raw)
        return Entry(key, batch.signal, batch.items, len(raw), batch.metadata,
                     batch if keep else None, size)

    async def _load(self, entry: Entry) -> Batch:
        raw: bytes = await self._io(self.store.read, entry.key)
        return Batch(entry.signal, raw=raw, items=entry.items, metadata=entry.metadata)

    async def _remove(self, entry: Entry) -> None:
        self._cached -= self._cached_sizes.pop(entry.key, 0)
        self._acks.append(entry.key)
        self._kick()

    def _kick(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._writes or self._acks:
            writes, self._writes = self._writes, []
            acks, self._acks = self._acks, []
            try:
                keys = await self._io(self.store.write, [w.record for w in writes], acks)
            except Exception as exc:
                self.log.error("disk queue write failed", extra={
                    "queue": self.name, "error": f"{type(exc).__name__}: {exc}",
                    "batches": len(writes), "acks": len(acks)})
                err = RetryableError(f"disk queue of exporter {self.name} cannot write: {exc}",
                                     retry_after=1.0)
                for w in writes:
                    if not w.future.done():
                        w.future.set_exception(err)
                if not writes:
                    # Acks that failed to write only cause duplicates after a restart.
                    return
                continue
            for w, key in zip(writes, keys, strict=True):
                if not w.future.done():
                    w.future.set_result(key)

    async def close(self) -> None:
        await super().close()
        if self._released:
            return
        self._released = True
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        if self._acks:  # acks that came after the last flush
            with contextlib.suppress(Exception):
                await self._io(self.store.write, [], self._acks)
            self._acks = []
        if self._opened:
            await self._io(self.store.close)
        self._executor.shutdown(wait=True)
