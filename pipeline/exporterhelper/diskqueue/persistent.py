"""Disk-backed sending queues: an append-only segment log and SQLite (WAL).

Both keep one record per batch: the signal, the request bytes as they
arrived (no re-encoding), the item count and the client metadata.

Semantics (both engines):

- `put` returns once the record is durably written: `fsync: true` waits for
  the disk (fdatasync of the segment / `synchronous=FULL` commit of the WAL);
  `fsync: false` waits for the OS (a `write`, or a `synchronous=NORMAL`
  commit), which survives a killed process but not a power cut.
  Concurrent puts share one write and one fsync (group commit), done on a
  thread of the queue's own, so the event loop never waits for the disk.
- An entry is removed only when the worker acknowledges it (delivered, or
  dropped as permanent). Acknowledgements are written lazily and never
  fsynced: after a crash, a batch whose acknowledgement was lost is sent
  again. That is the at-least-once contract: duplicates, never loss.
- After a restart everything not acknowledged is handed out again, oldest
  first.
- A torn or corrupt record (crash in the middle of a write, bit rot) is
  detected by its CRC32 (segment log) or by SQLite's WAL checksums, skipped
  with a log line and counted; it never stops the queue from opening.
- One directory per exporter id, locked (`flock`) so two processes cannot
  share a queue.

Segment log layout (`<directory>/<exporter id>/`):

    LOCK                    flock'ed while open
    ack                     u64 first unacknowledged sequence number + crc32
    00000000000000000001.seg  records, appended; a new file after segment_bytes

Record: `<u32 length><u32 crc32><u64 seq><u8 signal><u32 items><u16 meta_len>`
then `meta_len` bytes of JSON metadata and `length - meta_len` request bytes.
The crc covers everything but itself. A segment is deleted once every record
in it is acknowledged. The ack file holds a prefix: records acknowledged out
of order (several consumers) above the first unacknowledged one are resent
after a crash (duplicates, counted by the backend, never loss).

SQLite layout: `<directory>/<exporter id>/queue.db`, table `batches(id, signal,
items, metadata, data)`, one row per batch, deleted on acknowledgement.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import concurrent.futures
import contextlib
import errno
import fcntl
import logging
import os
import sqlite3
import struct
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import orjson

from pipeline.component import Signal
from pipeline.errors import RetryableError
from pipeline.exporterhelper.queue import Entry, SendingQueue, Sizer, size_of
from pipeline.pdata.batch import Batch

log = logging.getLogger("otelpipe.exporterhelper.diskqueue")

SIGNAL_CODES = {Signal.TRACES: 1, Signal.LOGS: 2, Signal.METRICS: 3}
CODE_SIGNALS = {v: k for k, v in SIGNAL_CODES.items()}
# Batches written in this process stay referenced in memory up to this many
# bytes, so a healthy backend is fed without reading back from disk.
MEMORY_CACHE_BYTES = 32 * 1024 * 1024


class StoredRecord(NamedTuple):
    key: int
    signal: Signal
    items: int
    nbytes: int
    metadata: Mapping[str, str]


class NewRecord(NamedTuple):
    signal: Signal
    raw: bytes
    items: int
    metadata: Mapping[str, str]


@dataclass
class RecoveryStats:
    records: int = 0
    items: int = 0
    corrupt_records: int = 0
    corrupt_bytes: int = 0


def queue_directory(directory: str | os.PathLike[str], exporter_id: str) -> Path:
    """One directory per exporter id (`otlp/jaeger` -> `otlp%2Fjaeger`)."""
    return Path(directory) / quote(exporter_id, safe="")


def _encode_metadata(metadata: Mapping[str, str]) -> bytes:
    return orjson.dumps(dict(metadata)) if metadata else b""


def _decode_metadata(data: bytes) -> Mapping[str, str]:
    if not data:
        return {}
    value = orjson.loads(data)
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


class Store(abc.ABC):
    """Synchronous storage, used from the queue's single I/O thread only."""

    def __init__(self, path: Path, fsync: bool):
        self.path = path
        self.fsync = fsync
        self.stats = RecoveryStats()
        self._lock_fd: int | None = None

    def _lock(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise OSError(errno.EBUSY, f"queue directory {self.path} is in use by another "
                                       "process (one directory per exporter and process)"
                          ) from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @abc.abstractmethod
    def open(self) -> list[StoredRecord]:
        """Recover: the records not acknowledged, oldest first."""

    @abc.abstractmethod
    def write(self, records: list[NewRecord], acks: list[int]) -> list[int]:
        """Append records durably (per the fsync policy) and drop acknowledged keys."""

    @abc.abstractmethod
    def read(self, key: int) -> bytes:
        """The request bytes of a stored record."""

    @abc.abstractmethod
    def close(self) -> None: ...


# Segment log -----------------------------------------------------------------------------

HEADER = struct.Struct("<IIQBIH")  # length, crc, seq, signal, items, meta_len
ACK = struct.Struct("<QI")  # first unacknowledged seq, crc32 of the seq


@dataclass
class _Segment:
    first: int  # seq in the file name
    path: Path
    last: int  # last seq written (first - 1 when empty)
    size: int


def _crc(header: bytes, meta: bytes, raw: bytes) -> int:
    # Everything but the crc field itself (bytes 4..8 of the header).
    c = zlib.crc32(header[:4])
    c = zlib.crc32(header[8:], c)
    c = zlib.crc32(meta, c)
    return zlib.crc32(raw, c)


class SegmentLogStore(Store):
    def __init__(self, path: Path, fsync: bool, segment_bytes: int = 16 * 1024 * 1024):
        super().__init__(path, fsync)
        self.segment_bytes = segment_bytes
        self._segments: list[_Segment] = []
        self._wfd: int | None = None
        self._rfds: dict[int, int] = {}
        self._loc: dict[int, tuple[int, int, int]] = {}  # seq -> (segment first, offset, len)
        self._order: collections.deque[int] = collections.deque()
        self._acked: set[int] = set()
        self._next_seq = 1
        self._ack_prefix = 0
        self._ack_fd: int | None = None

    # Recovery ------------------------------------------------------------------------
    def open(self) -> list[StoredRecord]:
        self._lock()
        self._warn_other_engine()
        self._ack_prefix = self._read_ack()
        out: list[StoredRecord] = []
        names = sorted(p for p in self.path.iterdir() if p.suffix == ".seg")
        last_seq = 0
        for p in names:
            try:
                first = int(p.stem)
            except ValueError:
                log.warning("ignoring a file that is not a queue segment",
                            extra={"path": str(p)})
                continue
            seg = _Segment(first, p, first - 1, 0)
            last_seq = self._scan(seg, out, last_seq)
            self._segments.append(seg)
        self._next_seq = max(last_seq + 1, self._ack_prefix, 1)
        # Segments whose records are all acknowledged are garbage; keep the newest
        # (it becomes the active one) unless it is empty or full.
        for seg in self._segments[:-1]:
            if seg.last < self._ack_prefix or seg.last < seg.first:
                self._delete_segment(seg)
        self._segments = [s for s in self._segments if s.path.exists()]
        if self._segments:
            active = self._segments[-1]
            if active.size >= self.segment_bytes or (active.last < self._ack_prefix
                                                     and active.last >= active.first):
                self._new_segment()
            else:
                self._wfd = os.open(active.path, os.O_WRONLY | os.O_APPEND)
        else:
            self._new_segment()
        self._ack_fd = os.open(self.path / "ack", os.O_RDWR | os.O_CREAT, 0o644)
        self.stats.records = len(out)
        self.stats.items = sum(r.items for r in out)
        return out

    def _warn_other_engine(self) -> None:
        if (self.path / "queue.db").exists():
            log.warning("this queue directory also holds an SQLite queue (queue.db) from an "
                        "earlier engine; its batches are not sent by the segment engine",
                        extra={"path": str(self.path)})

    def _read_ack(self) -> int:
        try:
            data = (self.path / "ack").read_bytes()
        except FileNotFoundError:
            return 0
        if len(data) == ACK.size:
            seq, crc = ACK.unpack(data)
            if zlib.crc32(data[:8]) == crc:
                return int(seq)
        if data:
            log.warning("the queue's ack file is corrupt; every stored batch is sent again "
                        "(duplicates possible)", extra={"path": str(self.path / "ack")})
        return 0

    def _scan(self, seg: _Segment, out: list[StoredRecord], last_seq: int) -> int:
        data = seg.path.read_bytes()
        pos, n = 0, len(data)
        hsize = HEADER.size
        problem = ""
        while pos < n:
            if n - pos < hsize:
                problem = "truncated record header"
                break
            header = data[pos:pos + hsize]
            length, crc, seq, code, items, meta_len = HEADER.unpack(header)
            end = pos + hsize + length
            if end > n or meta_len > length:
                problem = "truncated record"
                break
            meta = data[pos + hsize:pos + hsize + meta_len]
            raw_off = pos + hsize + meta_len
            if _crc(header, meta, data[raw_off:end]) != crc:
                problem = "CRC mismatch"
                break
            signal = CODE_SIGNALS.get(code)
            if signal is None or seq <= last_seq:
                problem = "invalid record header"
                break
            last_seq = seq
            seg.last = seq
            if seq >= self._ack_prefix:
                try:
                    metadata = _decode_metadata(meta)
                except orjson.JSONDecodeError:
                    metadata = {}
                out.append(StoredRecord(seq, signal, items, length - meta_len, metadata))
                self._loc[seq] = (seg.first, raw_off, length - meta_len)
                self._order.append(seq)
            pos = end
        seg.size = pos
        if problem:
            dropped = n - pos
            self.stats.corrupt_records += 1
            self.stats.corrupt_bytes += dropped
            log.warning("skipped a torn or corrupt record at the end of a queue segment; "
                        "the bytes after it are dropped",
                        extra={"segment": str(seg.path), "offset": pos,
                               "dropped_bytes": dropped, "problem": problem})
            os.truncate(seg.path, pos)
        return last_seq

    # Writing -------------------------------------------------------------------------
    def _new_segment(self) -> None:
        if self._wfd is not None:
            os.close(self._wfd)
        first = self._next_seq
        path = self.path / f"{first:020d}.seg"
        self._wfd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._segments.append(_Segment(first, path, first - 1, os.fstat(self._wfd).st_size))
        if self.fsync:
            self._fsync_dir()

    def _fsync_dir(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def write(self, records: list[NewRecord], acks: list[int]) -> list[int]:
        keys: list[int] = []
        if records:
            active = self._segments[-1]
            if active.size >= self.segment_bytes and active.last >= active.first:
                self._new_segment()
                active = self._segments[-1]
            parts: list[bytes] = []
            seq = self._next_seq
            offset = active.size
            locs: list[tuple[int, int, int, int]] = []
            for r in records:
                meta = _encode_metadata(r.metadata)
                raw = r.raw
                length = len(meta) + len(raw)
                header = HEADER.pack(length, 0, seq, SIGNAL_CODES[r.signal], r.items, len(meta))
                crc = _crc(header, meta, raw)
                parts.append(HEADER.pack(length, crc, seq, SIGNAL_CODES[r.signal], r.items,
                                         len(meta)))
                parts.append(meta)
                parts.append(raw)
                raw_off = offset + HEADER.size + len(meta)
                locs.append((seq, raw_off, len(raw), length))
                offset += HEADER.size + length
                keys.append(seq)
                seq += 1
            data = b"".join(parts)
            assert self._wfd is not None
            try:
                view = memoryview(data)
                while view:
                    written = os.write(self._wfd, view)
                    view = view[written:]
                if self.fsync:
                    os.fdatasync(self._wfd)
            except OSError:
                # Leave no half record behind for the next write to follow.
                with contextlib.suppress(OSError):
                    os.ftruncate(self._wfd, active.size)
                raise
            for s, raw_off, raw_len, _ in locs:
                self._loc[s] = (active.first, raw_off, raw_len)
                self._order.append(s)
            active.size = offset
            active.last = seq - 1
            self._next_seq = seq
        if acks:
            self._ack(acks)
        return keys

    def _ack(self, keys: list[int]) -> None:
        acked = self._acked
        for k in keys:
            if self._loc.pop(k, None) is not None:
                acked.add(k)
        order = self._order
        while order and order[0] in acked:
            acked.discard(order.popleft())
        prefix = order[0] if order else self._next_seq
        if prefix == self._ack_prefix:
            return
        self._ack_prefix = prefix
        seq_bytes = struct.pack("<Q", prefix)
        assert self._ack_fd is not None
        os.pwrite(self._ack_fd, ACK.pack(prefix, zlib.crc32(seq_bytes)), 0)
        # Delete fully acknowledged segments (never the active one).
        keep: list[_Segment] = []
        for seg in self._segments[:-1]:
            if seg.last < prefix:
                self._delete_segment(seg)
            else:
                keep.append(seg)
        keep.append(self._segments[-1])
        self._segments = keep

    def _delete_segment(self, seg: _Segment) -> None:
        fd = self._rfds.pop(seg.first, None)
        if fd is not None:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            seg.path.unlink()

    def read(self, key: int) -> bytes:
        first, offset, length = self._loc[key]
        fd = self._rfds.get(first)
        if fd is None:
            fd = self._rfds[first] = os.open(self.path / f"{first:020d}.seg", os.O_RDONLY)
        data = os.pread(fd, length, offset)
        if len(data) != length:
            raise OSError(errno.EIO, f"short read of queue record {key}")
        return data

    def close(self) -> None:
        for fd in [self._wfd, self._ack_fd, *self._rfds.values()]:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wfd = self._ack_fd = None
        self._rfds.clear()
        self._unlock()


# SQLite ------------------------------------------------------------------------------------


class SQLiteStore(Store):
    def __init__(self, path: Path, fsync: bool):
        super().__init__(path, fsync)
        self._db: sqlite3.Connection | None = None
        self.file = path / "queue.db"

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.file, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
        db.execute("""CREATE TABLE IF NOT EXISTS batches (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        signal INTEGER NOT NULL,
                        items INTEGER NOT NULL,
                        metadata BLOB NOT NULL,
                        data BLOB NOT NULL)""")
        return db

    def open(self) -> list[StoredRecord]:
        self._lock()
        try:
            db = self._connect()
            rows = db.execute("SELECT id, signal, items, length(data), metadata FROM batches "
                              "ORDER BY id").fetchall()
        except sqlite3.DatabaseError as exc:
            # A damaged database must not keep the exporter from starting: move it aside
            # (for inspection) and start empty, loudly.
            aside = self.file.with_name(f"queue.db.corrupt-{int(time.time())}")
            log.error("the queue database is corrupt; moved aside, starting with an empty "
                      "queue", extra={"path": str(self.file), "moved_to": str(aside),
                                      "error": str(exc)})
            self.stats.corrupt_records += 1
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(self.file) + suffix)
                if src.exists():
                    src.rename(str(aside) + suffix)
            db = self._connect()
            rows = []
        self._db = db
        out = []
        for key, code, items, nbytes, meta in rows:
            signal = CODE_SIGNALS.get(code)
            if signal is None:
                self.stats.corrupt_records += 1
                continue
            try:
                metadata = _decode_metadata(meta)
            except orjson.JSONDecodeError:
                metadata = {}
            out.append(StoredRecord(key, signal, items, nbytes, metadata))
        self.stats.records = len(out)
        self.stats.items = sum(r.items for r in out)
        return out

    def write(self, records: list[NewRecord], acks: list[int]) -> list[int]:
        db = self._db
        assert db is not None
        keys: list[int] = []
        db.execute("BEGIN")
        try:
            if acks:
                db.executemany("DELETE FROM batches WHERE id = ?", [(k,) for k in acks])
            for r in records:
                cur = db.execute("INSERT INTO batches (signal, items, metadata, data) "
                                 "VALUES (?, ?, ?, ?)",
                                 (SIGNAL_CODES[r.signal], r.items, _encode_metadata(r.metadata),
                                  r.raw))
                keys.append(int(cur.lastrowid or 0))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        return keys

    def read(self, key: int) -> bytes:
        assert self._db is not None
        row = self._db.execute("SELECT data FROM batches WHERE id = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(f"queue record {key} is gone")
        return bytes(row[0])

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        self._unlock()


ENGINES: dict[str, type[Store]] = {"segment": SegmentLogStore, "sqlite": SQLiteStore}


def make_store(engine: str, path: Path, fsync: bool, segment_bytes: int) -> Store:
    if engine == "segment":
        return SegmentLogStore(path, fsync, segment_bytes)
    if engine == "sqlite":
        return SQLiteStore(path, fsync)
    raise ValueError(f"unknown disk queue engine {engine!r}")


# The async queue -----------------------------------------------------------------------------


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

    async def _io(self, fn: Any, *args: Any) -> Any:
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
