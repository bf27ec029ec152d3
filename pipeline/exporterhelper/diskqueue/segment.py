"""The segment log engine: records appended to segment files, a prefix ack file.

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
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import orjson

from pipeline.exporterhelper.diskqueue.store import (
    CODE_SIGNALS,
    SIGNAL_CODES,
    NewRecord,
    Store,
    StoredRecord,
    decode_metadata,
    encode_metadata,
    log,
)

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
                    metadata = decode_metadata(meta)
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
                meta = encode_metadata(r.metadata)
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
