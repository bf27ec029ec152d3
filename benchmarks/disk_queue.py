"""Cost of the exporter sending queues: memory vs disk (segment log, SQLite WAL).

Each run moves the same batches (100 spans x 10 attributes, ≈ 25 KB) through
one queue the way an exporter does: producers `put` (as receivers do,
several concurrently), consumers `get` + `ack` (as exporter workers do, with
a send that costs nothing). Two shapes:

- `steady`: producers and consumers run together (a healthy backend): puts
  are group-committed, consumers take batches from the memory cache;
- `backlog`: put everything first, then drain with a cold cache (a backend
  that was down: every batch is read back from disk).

Reported per run: items per CPU-second of the process (all threads, the I/O
thread included) and per wall-second, and the CPU cost relative to the
memory queue at the same load.

    python -m benchmarks.disk_queue [--batches 2000] [--dir /var/tmp] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import write_result
from benchmarks.loadgen import make_request
from pipeline.component import Signal
from pipeline.exporterhelper.diskqueue import PersistentQueue, make_store
from pipeline.exporterhelper.queue import MemoryQueue, SendingQueue
from pipeline.pdata.batch import Batch

SPANS = 100
ATTRS = 10
PRODUCERS = 8
CONSUMERS = 4


def make_batches(n: int) -> list[Batch]:
    rng = random.Random(1)
    templates = [make_request(SPANS, ATTRS, rng=rng) for _ in range(20)]
    return [Batch(Signal.TRACES, raw=templates[i % len(templates)], items=SPANS)
            for i in range(n)]


def make_queue(kind: str, directory: Path) -> SendingQueue:
    if kind == "memory":
        return MemoryQueue(10**9, "requests", False, "bench")
    engine, _, sync = kind.partition("/")
    store = make_store(engine, directory, sync == "fsync", 16 * 1024 * 1024)
    return PersistentQueue(store, 10**9, "requests", False, "bench")


async def run_steady(q: SendingQueue, batches: list[Batch]) -> None:
    it = iter(batches)
    done = asyncio.Event()
    remaining = [len(batches)]

    async def producer() -> None:
        for b in it:
            await q.put(b)

    async def consumer() -> None:
        while remaining[0] > 0:
            e = await q.get()
            await q.ack(e)
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()

    consumers = [asyncio.create_task(consumer()) for _ in range(CONSUMERS)]
    await asyncio.gather(*(producer() for _ in range(PRODUCERS)))
    await done.wait()
    for c in consumers:
        c.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)


async def run_backlog(q: SendingQueue, batches: list[Batch], kind: str,
                      directory: Path) -> SendingQueue:
    it = iter(batches)

    async def producer() -> None:
        for b in it:
            await q.put(b)

    await asyncio.gather(*(producer() for _ in range(PRODUCERS)))
    if kind != "memory":
        # Restart: the drain reads every batch back from disk.
        await q.close()
        q = make_queue(kind, directory)
        await q.open()
    for _ in range(len(batches)):
        e = await q.get()
        await q.ack(e)
    return q


async def measure(kind: str, shape: str, batches: list[Batch], base: Path) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="dq-", dir=base))
    try:
        q = make_queue(kind, directory)
        await q.open()
        c0, w0 = time.process_time(), time.perf_counter()
        if shape == "steady":
            await run_steady(q, batches)
        else:
            q = await run_backlog(q, batches, kind, directory)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        await q.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    items = len(batches) * SPANS
    return {"queue": kind, "shape": shape, "batches": len(batches), "items": items,
            "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
            "items_per_cpu_s": round(items / cpu) if cpu else None,
            "items_per_wall_s": round(items / wall),
            "us_cpu_per_batch": round(cpu / len(batches) * 1e6, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=3000)
    ap.add_argument("--dir", default=os.environ.get("TMPDIR", "/var/tmp"),
                    help="where the disk queues go (use the disk you would deploy on)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N per configuration")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = 300 if args.quick else args.batches
    batches = make_batches(n)
    kinds = ["memory", "segment/fsync", "sqlite/fsync", "segment/nofsync", "sqlite/nofsync"]
    base = Path(args.dir)
    results = []
    for shape in ("steady", "backlog"):
        for kind in kinds:
            runs = [asyncio.run(measure(kind, shape, batches, base))
                    for _ in range(1 if args.quick else args.repeat)]
            best = min(runs, key=lambda r: r["cpu_s"])
            results.append(best)
            print(json.dumps(best), file=sys.stderr)
    for shape in ("steady", "backlog"):
        mem = next(r for r in results if r["queue"] == "memory" and r["shape"] == shape)
        for r in results:
            if r["shape"] == shape:
                r["cpu_vs_memory"] = round(r["cpu_s"] / mem["cpu_s"], 2) if mem["cpu_s"] else None
    batch_bytes = len(batches[0].to_bytes())
    out = {"benchmark": "disk_queue", "spans_per_batch": SPANS, "attrs_per_span": ATTRS,
           "batch_bytes": batch_bytes, "producers": PRODUCERS, "consumers": CONSUMERS,
           "directory": str(base), "python": sys.version.split()[0], "results": results}
    if not args.quick:
        print(write_result("disk_queue", out))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
