"""`PersistentQueue`: a `SendingQueue` whose entries live in a `Store` until acknowledged.

Puts that arrive together share one write and one fsync (group commit) on the
queue's own I/O thread; batches written in this process stay in memory up to
`cache_bytes`, so a healthy backend is fed without reading back from disk.

Bytes on disk (`max_bytes`, the `max_size_mib` setting) are counted as the
records not acknowledged plus the acknowledged ones still on disk behind an
older unacknowledged record (a segment is deleted only once every record in
it is acknowledged), so a batch stuck in retries cannot let the files grow
past the bound.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
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
                 name: str, cache_bytes: int = MEMORY_CACHE_BYTES,
                 max_bytes: int | None = None):
        super().__init__(capacity, sizer, block_on_overflow, name, max_bytes)
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
        # Records on disk in the order written (key -> bytes), up to the oldest one
        # not acknowledged; `_retained`: bytes of the acknowledged ones among them.
        self._on_disk: collections.OrderedDict[int, int] = collections.OrderedDict()
        self._acked: set[int] = set()
        self._retained = 0

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
            self.bytes += r.nbytes
            self._on_disk[r.key] = r.nbytes
            self._push(Entry(r.key, r.signal, r.items, r.nbytes, r.metadata, None, size))
        if records:
            self._drained.clear()
        self.recovered = self.store.stats
        if records or self.store.stats.corrupt_records:
            self.log.info("recovered the disk queue", extra={
                "queue": self.name, "path": str(self.store.path), "batches": len(records),
                "items": self.store.stats.items,
                "corrupt_records": self.store.stats.corrupt_records})

    def _held_bytes(self) -> int:
        return self.bytes + self._retained

    async def _store(self, batch: Batch, size: int, nbytes: int) -> Entry:
        raw = batch.to_bytes()
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._writes.append(_PendingWrite(NewRecord(batch.signal, raw, batch.items,
                                                    batch.metadata), fut))
        self._kick()
        try:
            key = await asyncio.shield(fut)
        except asyncio.CancelledError:
            # The sender gave up (it was not acknowledged): once written, the record is
            # acknowledged at once, so it is neither sent nor found again after a restart.
            fut.add_done_callback(functools.partial(self._orphan_written, len(raw)))
            raise
        self._on_disk[key] = len(raw)
        keep = self._cached + len(raw) <= self.cache_bytes
        if keep:
            self._cached += len(raw)
            self._cached_sizes[key] = len(raw)
        return Entry(key, batch.signal, batch.items, len(raw), batch.metadata,
                     batch if keep else None, size)

    async def _load(self, entry: Entry) -> Batch:
        raw: bytes = await self._io(self.store.read, entry.key)
        return Batch(entry.signal, raw=raw, items=entry.items, metadata=entry.metadata)

    def _orphan_written(self, nbytes: int, fut: asyncio.Future[int]) -> None:
        if fut.cancelled() or fut.exception() is not None or self._released:
            return
        key = fut.result()
        self._on_disk[key] = nbytes
        self._forget(key)

    async def _remove(self, entry: Entry) -> None:
        self._cached -= self._cached_sizes.pop(entry.key, 0)
        self._forget(entry.key)

    def _forget(self, key: int) -> None:
        """Acknowledge a record on disk; trim the acknowledged prefix of `_on_disk`."""
        self._acks.append(key)
        nbytes = self._on_disk.get(key)
        if nbytes is not None:
            self._acked.add(key)
            self._retained += nbytes
            on_disk = self._on_disk
            while on_disk:
                first = next(iter(on_disk))
                if first not in self._acked:
                    break
                self._retained -= on_disk.pop(first)
                self._acked.discard(first)
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
