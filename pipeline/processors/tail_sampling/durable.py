"""`storage: disk`: the traces waiting for a decision live in the disk queue's segment
log (`pipeline.exporterhelper.diskqueue`, the same `Store`, records and recovery), so
a killed process loses nothing it acknowledged.

Each incoming request is appended as one record (the request bytes as they arrived)
before the sender is answered. A record is acknowledged once every trace with spans
in it is decided and, if sampled, delivered downstream (or dropped on purpose:
evicted, not sampled), and its late spans of sampled traces are delivered. After a
restart the records not acknowledged are read back and their traces decided at once
(counted as recovered).

A sampled batch the next consumer refuses (a full queue) is written as a record of
its own, marked decided (metadata `otelpipe.tail_sampling: sampled`), and its
traces' records are acknowledged: after a restart it is sent as it was decided, not
decided again.

The ack file holds a prefix (see `diskqueue.segment`): a record done out of order
behind an older pending one is read again after a crash, so its traces may be
decided and sent twice — duplicates, never loss.

Writes that arrive together share one write and one fsync, on a thread of this
store's own (the event loop never waits for the disk).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from pipeline.component import Signal
from pipeline.errors import RetryableError
from pipeline.exporterhelper.diskqueue import make_store
from pipeline.exporterhelper.diskqueue.store import NewRecord, RecoveryStats

SEGMENT_BYTES = 16 * 1024 * 1024
_T = TypeVar("_T")


class WaitingStore:
    """Records of waiting spans: `put` (durable, group commit), `ack`, recovery."""

    def __init__(self, path: Path, fsync: bool, name: str):
        self.path = path
        self.name = name
        self.store = make_store("segment", path, fsync, SEGMENT_BYTES)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"tailsampling-{name}")
        self._writes: list[tuple[NewRecord, asyncio.Future[int]]] = []
        self._acks: list[int] = []
        self._flusher: asyncio.Task[None] | None = None
        self._opened = False
        self._closed = False
        self.stats = RecoveryStats()

    async def _io(self, fn: Callable[..., _T], *args: object) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> list[tuple[int, bytes, Mapping[str, str]]]:
        """Open (lock the directory) and read back every record not acknowledged."""

        def recover() -> list[tuple[int, bytes, Mapping[str, str]]]:
            records = self.store.open()
            return [(r.key, self.store.read(r.key), r.metadata) for r in records]

        out = await self._io(recover)
        self._opened = True
        self.stats = self.store.stats
        return out

    async def put(self, raw: bytes, items: int, metadata: Mapping[str, str] | None = None,
                  ) -> int:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._writes.append((NewRecord(Signal.TRACES, raw, items, metadata or {}), fut))
        self._kick()
        return await asyncio.shield(fut)

    def ack(self, keys: list[int]) -> None:
        if keys and not self._closed:
            self._acks.extend(keys)
            self._kick()

    def _kick(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._writes or self._acks:
            writes, self._writes = self._writes, []
            acks, self._acks = self._acks, []
            try:
                keys = await self._io(self.store.write, [w for w, _ in writes], acks)
            except Exception as exc:
                err = RetryableError(f"tail_sampling {self.name} cannot write its waiting "
                                     f"traces to disk: {exc}", retry_after=1.0)
                for _, fut in writes:
                    if not fut.done():
                        fut.set_exception(err)
                if not writes:
                    return  # lost acks only mean duplicates after a restart
                continue
            for (_, fut), key in zip(writes, keys, strict=True):
                if not fut.done():
                    fut.set_result(key)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        if self._acks and self._opened:
            with contextlib.suppress(Exception):
                await self._io(self.store.write, [], self._acks)
            self._acks = []
        if self._opened:
            await self._io(self.store.close)
        self._executor.shutdown(wait=True)
