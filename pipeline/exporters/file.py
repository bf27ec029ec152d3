"""`file` exporter: one line per request (`otlp_json`) or per record (`json`).

- `format: otlp_json` writes one OTLP JSON export request per line, as the
  Collector's file exporter does (hex trace/span ids, integer enums).
- `format: json` writes one flat JSON object per log record or span
  (resource and record attributes as top-level keys); metrics, which have no
  flat form, are written as OTLP JSON.
- `rotation`: when the file passes `max_megabytes` it is renamed to
  `<path>.1` (older backups shift to `.2` …, beyond `max_backups` deleted).

Delivery: a batch counts as delivered once written and flushed to the OS
(`fsync: true` also waits for the disk). A failed write (disk full, file too
large, I/O error, path gone) raises a retryable error, so the sender retries;
the file is reopened on the next batch, which is how the exporter recovers by
itself.

Crash safety: the file only ever holds whole lines.
- A failed or partial write is rolled back before the error is returned: the
  file is truncated to its size before the batch, so the retry cannot leave
  half a batch behind or write part of it twice (`rolled_back_bytes`). If
  even the truncation fails, it is done again when the file is next opened.
- On open, bytes after the last newline (a line torn by a SIGKILL or power
  loss mid-write, never acknowledged) are truncated away, counted
  (`torn_tail_bytes`) and logged at warn, so the next batch does not glue its
  first line onto them.
- Rotation happens between batches, after a batch was written whole; a
  failed rename is logged and retried after the next batch, never returned as
  the batch's error (it was delivered).
Timeout: an export, encoding included, is bounded at 60 s (`EXPORT_TIMEOUT`): a
batch over 256 KiB of protobuf, or (`format: json`) of over 4096 Python log records,
is encoded in a worker process (`pdata/offload.py`), which on a loaded machine takes
longer than the exporters' usual 5 s. Python records travel pickled, 4096 records per
loop step (pickling costs the loop ≈ 60 % of encoding them); if the worker fails they
are encoded here, 4096 records per loop step.

Writes go through `os.write` on an `O_APPEND` descriptor (no user-space
buffer that could flush a failed batch's rest later). Repair and rollback
apply to regular files; a device or FIFO path is written as is.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import stat
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import Field

from pipeline.component import (
    ComponentConfig,
    ExporterCreateSettings,
    Factory,
    Host,
    Kind,
    Signal,
)
from pipeline.config.retry import ExporterSettings, QueueSettings, RetrySettings
from pipeline.errors import RetryableError
from pipeline.exporterhelper import Exporter
from pipeline.pdata.batch import Batch
from pipeline.pdata.flatlogs import dumps_flat
from pipeline.pdata.logrecords import LogGroup
from pipeline.pdata.offload import OFF_LOOP_BYTES, Offload, OffloadError
from pipeline.pdata.otlp import REQUEST_TYPES
from pipeline.pdata.otlpjson import encode_request, flat_records
from pipeline.telemetry.metrics import CounterSpec

TORN_TAIL_BYTES = CounterSpec(
    "otelpipe_exporter_file_torn_tail_bytes",
    "Bytes after the last newline (a line torn by a crash) the file exporter truncated "
    "when opening its file.", ("exporter",))
ROLLED_BACK_BYTES = CounterSpec(
    "otelpipe_exporter_file_rolled_back_bytes",
    "Bytes of failed or partial writes the file exporter truncated away before "
    "returning a retryable error.", ("exporter",))

#: The bound on one export, encoding included. A write cannot be interrupted (it is
#: synchronous); what can take long is encoding a big batch in the offload worker:
#: ≈ 1 s for 67k spans of OTLP JSON on an idle core, 5 s and more on a loaded one, so
#: the exporters' usual 5 s would refuse big batches on a busy machine.
EXPORT_TIMEOUT = 60.0
#: `format: json` batches of Python log records larger than this are encoded in the
#: offload worker (≈ 4.5 µs a record on the loop: 4096 records ≈ 20 ms on a loaded core),
#: and cut into slices of this many records (one pickled, or encoded, per loop step).
FLAT_OFF_LOOP_RECORDS = 4096
_TAIL_CHUNK = 64 * 1024
_WRITE_PIECE = 1024 * 1024
_OPEN_FLAGS = os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


class RotationConfig(ComponentConfig):
    max_megabytes: float = Field(100, gt=0)
    max_backups: int = Field(3, ge=0)


class FileConfig(ComponentConfig):
    path: str = Field(description="file to append to; parent directories are created")
    format: Literal["otlp_json", "json"] = "otlp_json"
    rotation: RotationConfig | None = None
    fsync: bool = False


class FileExporter(Exporter):
    def __init__(self, settings: ExporterCreateSettings, config: FileConfig):
        super().__init__(settings, ExporterSettings(
            timeout=EXPORT_TIMEOUT, retry_on_failure=RetrySettings(enabled=False),
            sending_queue=QueueSettings(enabled=False)))
        self.config = config
        self.path = Path(config.path)
        self._fd: int | None = None
        self._regular = False  # a regular file: repair and rollback apply
        # a rollback that failed: (device, inode, size to truncate to) on next open
        self._pending_rollback: tuple[int, int, int] | None = None
        rot = config.rotation
        self._max_bytes = int(rot.max_megabytes * 1024 * 1024) if rot else 0
        t = settings.telemetry
        self._torn_tail_bytes = t.counter(TORN_TAIL_BYTES).labels(self.id)
        self._rolled_back_bytes = t.counter(ROLLED_BACK_BYTES).labels(self.id)
        self._offload = Offload()
        self._write_lock = asyncio.Lock()

    async def start_exporter(self, host: Host) -> None:
        self._open()

    async def shutdown_exporter(self) -> None:
        self._close()
        await self._offload.close()

    # Opening: repair what a crash or a failed rollback left ----------------------
    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            readable = True  # the tail repair reads the end of the file
            try:
                fd = os.open(self.path, os.O_RDWR | _OPEN_FLAGS, 0o644)
            except PermissionError:  # write-only for us: append without repair
                fd = os.open(self.path, os.O_WRONLY | _OPEN_FLAGS, 0o644)
                readable = False
            try:
                st = os.fstat(fd)
                self._regular = stat.S_ISREG(st.st_mode)
                if self._regular:
                    self._finish_rollback(fd, st)
                    if readable:
                        self._repair_tail(fd)
            except OSError:
                os.close(fd)
                raise
            self._fd = fd
        return self._fd

    def _finish_rollback(self, fd: int, st: os.stat_result) -> None:
        if self._pending_rollback is None:
            return
        dev, ino, size = self._pending_rollback
        if (st.st_dev, st.st_ino) == (dev, ino) and st.st_size > size:
            os.ftruncate(fd, size)  # raises: still pending, this open fails
            self._rolled_back_bytes.inc(st.st_size - size)
        self._pending_rollback = None

    def _repair_tail(self, fd: int) -> None:
        """Truncate bytes after the last newline (a line torn by a crash)."""
        size = os.lseek(fd, 0, os.SEEK_END)
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        keep, end = 0, size
        while end > 0:
            start = max(0, end - _TAIL_CHUNK)
            i = os.pread(fd, end - start, start).rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            end = start
        os.ftruncate(fd, keep)
        if self.config.fsync:
            os.fsync(fd)
        self._torn_tail_bytes.inc(size - keep)
        self.log.warning("truncated a torn last line (left by a crash) before appending",
                         extra={"path": str(self.path), "bytes": size - keep,
                                "kept_bytes": keep})

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError as exc:  # EIO reported late: the batches were acknowledged
                self.log.warning("closing the file failed",
                                 extra={"path": str(self.path), "error": str(exc)})

    # Writing ---------------------------------------------------------------------
    def _encode(self, batch: Batch) -> bytes:
        if self.config.format == "json" and batch.signal is not Signal.METRICS:
            logs = batch.logs
            if logs is not None:  # Python records: no OTLP in between (same objects)
                return dumps_flat(logs)
        return encode_lines(self.config.format, batch.signal, batch.message)

    async def _encode_bounded(self, batch: Batch) -> list[bytes]:
        """The batch's lines, in pieces; a big batch is encoded in the offload worker
        (OTLP JSON of 67k spans holds a core ≈ 1 s, flat JSON of 50k Python log
        records ≈ 0.2 s), or here if the worker fails (Python records: a slice per
        loop step)."""
        logs = batch.logs if self.config.format == "json" else None
        if logs is not None:
            if batch.items <= FLAT_OFF_LOOP_RECORDS:
                return [dumps_flat(logs)]
            try:
                frames = [pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL)
                          async for part in _slices(logs)]
                return await self._offload.call_chunked(_encode_flat_pickled, frames)
            except OffloadError as exc:
                self.log.warning("encoding on the event loop: the offload worker failed",
                                 extra={"error": str(exc)})
            return [dumps_flat(part) async for part in _slices(logs)]
        raw = batch.to_bytes()
        if len(raw) > OFF_LOOP_BYTES:
            try:
                return await self._offload.call_chunked(_encode_raw, self.config.format,
                                                        batch.signal, raw)
            except OffloadError as exc:
                self.log.warning("encoding on the event loop: the offload worker failed",
                                 extra={"error": str(exc)})
        return [self._encode(batch)]

    async def send(self, batch: Batch) -> None:
        chunks = await self._encode_bounded(batch)
        async with self._write_lock:  # a batch's pieces are written together
            start = await self._write(chunks)
        size = sum(map(len, chunks))
        if self._max_bytes and start is not None and start + size >= self._max_bytes:
            self._rotate()

    async def _write(self, chunks: list[bytes]) -> int | None:
        """Append the pieces, yielding to the loop between MiBs (writing 20 MB at once
        holds it 20-200 ms on a loaded machine); on failure or cancellation what was
        written is rolled back. Returns the offset the batch starts at (None if the
        path is not a regular file)."""
        start: int | None = None
        try:
            fd = self._open()
            if self._regular:
                start = os.lseek(fd, 0, os.SEEK_END)  # O_APPEND writes here
            first = True
            for chunk in chunks:
                view = memoryview(chunk)
                for i in range(0, len(view), _WRITE_PIECE):
                    if not first:
                        await asyncio.sleep(0)
                    first = False
                    _write_all(fd, view[i:i + _WRITE_PIECE])
            if self.config.fsync:
                os.fsync(fd)
        except OSError as exc:
            if start is not None:
                self._roll_back(start)
            self._close()
            raise RetryableError(f"cannot write {self.path}: {exc.strerror or exc}",
                                 retry_after=1.0) from None
        except BaseException:  # cancelled between pieces: leave no part of the batch
            if start is not None and self._fd is not None:
                self._roll_back(start)
            raise
        return start

    def _roll_back(self, start: int) -> None:
        """Truncate what a failed write left after `start`; if that fails too, note it
        for the next open."""
        assert self._fd is not None
        try:
            st = os.fstat(self._fd)
            if st.st_size > start:
                os.ftruncate(self._fd, start)
                self._rolled_back_bytes.inc(st.st_size - start)
        except OSError as exc:
            self.log.warning("cannot roll back a failed write; trying again on reopen",
                             extra={"path": str(self.path), "error": str(exc)})
            try:
                st = os.fstat(self._fd)
            except OSError:
                return  # nothing to identify the file by: the tail repair is the fallback
            self._pending_rollback = (st.st_dev, st.st_ino, start)

    def _rotate(self) -> None:
        """Called between batches only, so every rotated file ends on a whole line. The
        batch that got here is delivered: a failed rename is logged, not raised."""
        self._close()
        try:
            self._shift_backups()
        except OSError as exc:
            self.log.warning("cannot rotate the file; trying again after the next batch",
                             extra={"path": str(self.path), "error": str(exc)})

    def _shift_backups(self) -> None:
        assert self.config.rotation is not None
        backups = self.config.rotation.max_backups
        if backups == 0:
            self.path.unlink(missing_ok=True)
            return
        oldest = self.path.with_name(f"{self.path.name}.{backups}")
        oldest.unlink(missing_ok=True)
        for i in range(backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                src.rename(self.path.with_name(f"{self.path.name}.{i + 1}"))
        self.path.rename(self.path.with_name(f"{self.path.name}.1"))


def encode_lines(fmt: str, signal: Signal, message: Any) -> bytes:
    """The lines of an OTLP request in `fmt`: one OTLP JSON line, or one flat JSON
    object per log record or span (metrics: OTLP JSON)."""
    if fmt == "json" and signal is not Signal.METRICS:
        return b"".join(orjson.dumps(r) + b"\n" for r in flat_records(signal, message))
    return encode_request(message) + b"\n"


def _encode_raw(fmt: str, signal: Signal, raw: bytes) -> bytes:
    """`encode_lines` of protobuf bytes, run in the offload worker."""
    return encode_lines(fmt, signal, REQUEST_TYPES[signal].FromString(raw))


async def _slices(groups: list[LogGroup]) -> Any:
    """The groups cut into lists of groups of at most FLAT_OFF_LOOP_RECORDS records (the
    same flat lines: resource, scope name and records), one per loop step."""
    part: list[LogGroup] = []
    size = 0
    for g in groups:
        lines = g.lines
        n = len(lines) if lines is not None else len(g.records)
        i = 0
        while i < n:
            j = min(n, i + FLAT_OFF_LOOP_RECORDS - size)
            if i == 0 and j == n:
                piece = g
            elif lines is not None:
                extras = g.extras
                piece = LogGroup.from_lines(lines[i:j], g.line_attributes, g.observed,
                                            extras=extras[i:j] if extras is not None else None,
                                            resource=g.resource)
                piece.scope_name = g.scope_name
            else:
                piece = LogGroup(g.records[i:j], resource=g.resource, scope_name=g.scope_name)
            part.append(piece)
            size += j - i
            i = j
            if size >= FLAT_OFF_LOOP_RECORDS:
                yield part
                part, size = [], 0
                await asyncio.sleep(0)
    if part:
        yield part


def _encode_flat_pickled(frames: list[bytes]) -> bytes:
    """`format: json` lines of pickled lists of log groups, run in the offload worker."""
    return b"".join([dumps_flat(pickle.loads(frame)) for frame in frames])


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """`os.write` until everything is written; a short write followed by an error
    (disk full after part of the batch) raises that error."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _create(settings: ExporterCreateSettings, config: FileConfig) -> FileExporter:
    return FileExporter(settings, config)


factory = Factory(type="file", kind=Kind.EXPORTER, config_model=FileConfig, create=_create,
                  signals=frozenset(Signal),
                  runs_once=lambda config: True,  # one writer per file
                  description="writes OTLP JSON lines or flat JSON records to a file")
