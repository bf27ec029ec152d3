"""Shared by the disk queue tests: a queue over a store, draining, crash snapshots."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from pipeline.exporterhelper.diskqueue import PersistentQueue, make_store
from pipeline.pdata.batch import Batch

ENGINES = ["segment", "sqlite"]


def make_queue(path: Path, engine: str, capacity: int = 1000, sizer: str = "requests",
               block: bool = False, segment_bytes: int = 1 << 20,
               cache_bytes: int = 1 << 20, max_bytes: int | None = None) -> PersistentQueue:
    store = make_store(engine, path, True, segment_bytes)
    return PersistentQueue(store, capacity, sizer, block, "test",  # type: ignore[arg-type]
                           cache_bytes=cache_bytes, max_bytes=max_bytes)


def span_names(batch: Batch) -> list[str]:
    return [sp.name for rs in batch.message.resource_spans for ss in rs.scope_spans
            for sp in ss.spans]


async def drain(q: PersistentQueue, n: int, ack: bool = True) -> list[Batch]:
    out = []
    for _ in range(n):
        e = await asyncio.wait_for(q.get(), 2)
        assert e.batch is not None
        out.append(e.batch)
        if ack:
            await q.ack(e)
    return out


def files(directory: Path, pattern: str) -> list[Path]:
    return sorted(directory.glob(pattern))


def snapshot(src: Path, dst: Path) -> Path:
    """The directory as a crash would leave it (files copied while the queue is open)."""
    shutil.copytree(src, dst)
    return dst
