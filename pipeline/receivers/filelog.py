"""The `filelog` receiver: tails files matched by globs, one log record per line.

    receivers:
      filelog:
        include: [/var/log/app/*.log]
        exclude: [/var/log/app/debug*.log]
        start_at: end                # or beginning (only for files found on the first run)
        storage_dir: /var/lib/otelpipe   # checkpoints (offsets) survive restarts
        multiline: {line_start_pattern: '^\\d{4}-\\d{2}-\\d{2}'}

Each line becomes a LogRecord whose body is the line (a string; no parsing here:
the `logstruct` processor parses), `observed_time_unix_nano` the time it was read,
and attributes `log.file.name` (and `log.file.path` if asked). A trailing `\\r`
(CRLF files) is removed; empty lines are skipped.

Delivery: a batch of up to `max_batch_lines` records from one file is handed to
the pipeline (when a read filled the read buffer, so more is waiting, a short last
batch is not sent: its lines go out with the next read's, so a file being caught
up on becomes full batches); only after `consume` returned is the file's offset
advanced and the checkpoint written (temp file + fsync + rename). A restart resumes exactly
there: nothing lost, nothing repeated after a clean shutdown; after a crash, at
most the batch that was in flight is delivered again. A refused batch
(`RetryableError`) is retried with exponential backoff, forever, and the file is
not read further meanwhile; a `PermanentError` is counted, logged and the batch
skipped. Pending data (an unterminated line, a multiline record still open) is
never checkpointed: it is read again after a restart.

File identity is the device and inode plus a fingerprint (the first
`fingerprint_size` bytes), as in the Collector:

- rename rotation (the file moved away, a new one created at the path): the old
  file is read to its end through the open descriptor (for two more polls, so
  the writer may still finish), then closed; the new file is read from the start.
- copytruncate / truncation (same inode, shorter than the read offset, or its
  first bytes changed): read again from offset 0. If the copy also matches
  `include`, it is recognised by its fingerprint and read on from the offset
  the truncated file had reached, so no line is lost or repeated.
- new files matching the globs are picked up at the next poll and read from the
  start; deleted files are read to the end and closed. Empty files are not
  tracked until they have a first byte.

Encodings: any Python codec (`utf-8` default, `latin-1`, `ascii`, `utf-16le`,
`utf-16be`, `utf-16` with BOM detection, default little endian, `utf-32*`,
`cp1252`, `shift_jis` ...). Bodies are UTF-8; undecodable bytes become U+FFFD and
the record gets `log.invalid_encoding = true`. A byte order mark at the start of
a file is skipped.

Long lines: a line longer than `max_log_size` bytes (default 1 MiB) is SPLIT
into records of at most that size (cut at a character boundary); every piece
carries `log.split = true`. Nothing is dropped. A multiline record is also cut
when it reaches `max_log_size` bytes or `multiline.max_lines` lines (flagged the
same way).
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import contextlib
import fnmatch
import glob
import os
import re
import stat
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from pydantic import AliasChoices, Field, field_validator, model_validator

from pipeline.component import (
    Component,
    ComponentConfig,
    CreateSettings,
    Factory,
    Host,
    Kind,
    Signal,
)
from pipeline.config.types import ByteSize, Duration
from pipeline.errors import PermanentError, RetryableError
from pipeline.pdata.batch import Batch
from pipeline.pdata.logrecords import LogGroup, encode_lines
from pipeline.pdata.wire import varint
from pipeline.receivers.common import ReceiverObs

# ---------------------------------------------------------------------------------------
# Config



class MultilineConfig(ComponentConfig):
    """Join lines into one record. Exactly one of the three modes."""

    line_start_pattern: str | None = Field(
        None, description="Regex matched at the start of a line that begins a new record.")
    line_end_pattern: str | None = Field(
        None, description="Regex found in a line that ends the record.")
    indented: bool = Field(
        False, description="Lines starting with a space or tab (and empty lines) continue "
                           "the record before them.")
    max_lines: int = Field(1000, ge=1, description="Lines per record before it is cut.")
    flush_period: Duration = Field(
        0.5, validation_alias=AliasChoices("flush_period", "timeout"),
        description="A record still open after this long without new data is emitted "
                    "(alias: timeout).")

    @field_validator("line_start_pattern", "line_end_pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v.encode())
            except re.error as exc:
                raise ValueError(f"invalid regex: {exc}") from None
        return v

    @model_validator(mode="after")
    def _one_mode(self) -> MultilineConfig:
        modes = sum((self.line_start_pattern is not None, self.line_end_pattern is not None,
                     self.indented))
        if modes != 1:
            raise ValueError("set exactly one of line_start_pattern, line_end_pattern, "
                             "indented: true")
        return self


class BackoffConfig(ComponentConfig):
    initial_interval: Duration = Field(0.1, description="First wait after a refused batch.")
    max_interval: Duration = Field(5.0, description="Longest wait between retries.")


AttrValue = str | bool | int | float
Extra = dict[str, AttrValue]  # attributes of one record beyond the file's


class FileLogConfig(ComponentConfig):
    include: list[str] = Field(min_length=1, description="Glob patterns of files to tail "
                                                         "(`**` matches directories).")
    exclude: list[str] = Field(
        default_factory=list,
        description="Glob patterns to leave out: absolute ones match the full path, relative "
                    "ones the full path or the file name.")
    start_at: Literal["beginning", "end"] = Field(
        "end", description="Where to start in files found at the first start (no checkpoint "
                           "yet); files found later are always read from the beginning.")
    poll_interval: Duration = Field(0.2, description="How often to look for new data.")
    storage_dir: str | None = Field(
        None, description="Directory for the checkpoint file (filelog-<id>.json).")
    checkpoint_path: str | None = Field(None, description="Exact checkpoint file path.")
    multiline: MultilineConfig | None = Field(
        None, description="Join lines into one record (stack traces).")
    encoding: str = Field("utf-8", description="Python codec name of the files.")
    max_log_size: ByteSize = Field(
        1024 * 1024, ge=16,
        description="Longest record in bytes (or 64KiB, 1MiB); longer lines are split into "
                    "pieces flagged log.split.")
    max_batch_lines: int = Field(1000, ge=1, description="Records per batch.")
    include_file_name: bool = Field(True, description="Attribute log.file.name.")
    include_file_path: bool = Field(False, description="Attribute log.file.path.")
    resource: dict[str, AttrValue] = Field(default_factory=dict,
                                           description="Static resource attributes.")
    attributes: dict[str, AttrValue] = Field(default_factory=dict,
                                             description="Static attributes of every record.")
    fingerprint_size: ByteSize = Field(1000, ge=16,
                                       description="Leading bytes that identify a file.")
    force_flush_period: Duration = Field(
        0.5, description="An unterminated last line is emitted after this long without new "
                         "data; 0 waits for its newline forever.")
    retry_on_failure: BackoffConfig = Field(
        default_factory=BackoffConfig,
        description="Backoff while the pipeline refuses a batch (retried forever).")

    @field_validator("encoding")
    @classmethod
    def _codec(cls, v: str) -> str:
        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown encoding {v!r}") from None
        return v

    @model_validator(mode="after")
    def _one_store(self) -> FileLogConfig:
        if self.storage_dir and self.checkpoint_path:
            raise ValueError("set storage_dir or checkpoint_path, not both")
        return self


# ---------------------------------------------------------------------------------------
# Records. A batch is a `LogGroup.from_lines` (pdata/logrecords.py): the lines, the
# file's attributes and the observed time. Processors that want records get Python
# `LogRecord`s built on demand; an exporter that wants OTLP gets the lines encoded by
# hand (`b"".join(prefix(len(line)), line, tail ...)`: no per-record objects).
# The helpers below encode single pieces (tests use them).


def _any_value(v: AttrValue) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    return AnyValue(string_value=str(v))


def encode_attribute(key: str, value: AttrValue) -> bytes:
    """`LogRecord.attributes` (field 6) entry, serialized."""
    kv = KeyValue(key=key, value=_any_value(value)).SerializeToString()
    return b"\x32" + varint(len(kv)) + kv


def encode_records(bodies: list[bytes], extras: list[bytes] | None, attrs: bytes,
                   observed: int) -> bytes:
    """Serialized `ScopeLogs.log_records` of UTF-8 bodies; `extras[i]` adds attributes."""
    return encode_lines(bodies, extras, attrs, observed)


def wrap_request(records: bytes, resource: bytes) -> bytes:
    """An ExportLogsServiceRequest with one ResourceLogs and one (unnamed) ScopeLogs."""
    head = b"\x12" + varint(len(records))
    rl_len = len(resource) + len(head) + len(records)
    return b"".join((b"\x0a", varint(rl_len), resource, head, records))


# ---------------------------------------------------------------------------------------
# Lines


def utf8_cut(data: bytes, limit: int) -> int:
    """Largest cut <= limit not inside a UTF-8 sequence (never 0)."""
    cut = limit
    while cut > limit - 3 and cut > 1 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut


@dataclass(frozen=True)
class _Codec:
    name: str  # Python codec name
    nl: bytes  # newline in this encoding
    bom: bytes
    utf8: bool

    @property
    def unit(self) -> int:
        return len(self.nl)


_BOMS = {"utf-8": codecs.BOM_UTF8, "utf-16-le": codecs.BOM_UTF16_LE,
         "utf-16-be": codecs.BOM_UTF16_BE, "utf-32-le": codecs.BOM_UTF32_LE,
         "utf-32-be": codecs.BOM_UTF32_BE}


def resolve_codec(name: str, head: bytes = b"") -> _Codec:
    """The codec of a file; `utf-16`/`utf-32` pick the byte order from a BOM in `head`."""
    n = codecs.lookup(name).name
    if n == "utf-8-sig":
        n = "utf-8"
    if n in ("utf-16", "utf-32"):
        be = codecs.BOM_UTF16_BE if n == "utf-16" else codecs.BOM_UTF32_BE
        n = f"{n}-be" if head.startswith(be) else f"{n}-le"
    nl = "\n".encode(n)
    return _Codec(n, nl, _BOMS.get(n, b""), n == "utf-8")


def split_lines(buf: bytes, nl: bytes) -> tuple[list[bytes], bytes, bytes]:
    """(complete lines without newline, the text they span, the unterminated rest)."""
    if len(nl) == 1:
        end = buf.rfind(nl)
        if end < 0:
            return [], b"", buf
        complete = buf[:end]
        return complete.split(nl), complete, buf[end + 1:]
    unit = len(nl)
    lines: list[bytes] = []
    start = 0
    pos = buf.find(nl)
    while pos >= 0:
        if (pos - start) % unit:  # a newline byte pattern across two characters
            pos = buf.find(nl, pos + 1)
            continue
        lines.append(buf[start:pos])
        start = pos + unit
        pos = buf.find(nl, start)
    return lines, b"", buf[start:]


# ---------------------------------------------------------------------------------------
# Files


class _File:
    """One open file (identity = dev + inode + fingerprint) and what was read of it.

    Positions are in bytes of the file. `offset`: everything before it was accepted by
    the pipeline (this is what is checkpointed). `read_pos`: where the next read starts.
    In between: `rest` (an unterminated line) and `ml_lines` (a multiline record still
    open), `ml_raw` bytes of the file.
    """

    __slots__ = (
        "attrs",
        "codec",
        "dev",
        "fd",
        "fp",
        "ino",
        "last_data",
        "lost_polls",
        "ml_bad",
        "ml_lines",
        "ml_raw",
        "offset",
        "path",
        "read_pos",
        "rest",
        "split_open",
    )

    def __init__(self, fd: int, dev: int, ino: int, path: str, fp: bytes, offset: int,
                 codec: _Codec):
        self.fd = fd
        self.dev = dev
        self.ino = ino
        self.path = path
        self.fp = fp
        self.offset = offset
        self.read_pos = offset
        self.rest = b""
        self.ml_lines: list[bytes] = []
        self.ml_raw = 0
        self.ml_bad = False
        self.split_open = False  # the last record emitted was a piece of an unfinished line
        self.last_data = time.monotonic()
        self.lost_polls = 0
        self.codec = codec
        self.attrs: dict[str, AttrValue] = {}

    @property
    def key(self) -> tuple[int, int]:
        return (self.dev, self.ino)

    def reset(self, offset: int = 0) -> None:
        self.offset = self.read_pos = offset
        self.rest = b""
        self.ml_lines = []
        self.ml_raw = 0
        self.ml_bad = False
        self.split_open = False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


@dataclass
class _Known:
    """A file position remembered without an open file: from the checkpoint, or a file
    whose content was replaced (copytruncate) and whose copy may show up."""

    fp: bytes
    offset: int
    dev: int = -1
    ino: int = -1
    polls_left: int = 10


class _Stopping(Exception):
    """The receiver is shutting down while a batch waits to be accepted."""


class FileLogReceiver(Component):
    READ_SIZE = 256 * 1024
    READ_BUDGET = 4 * 1024 * 1024  # bytes per file per poll before turning to the next file

    def __init__(self, settings: CreateSettings, config: FileLogConfig):
        self.config = config
        self.log = settings.logger
        self.consumer = settings.consumers[Signal.LOGS]
        self.obs = ReceiverObs(settings, "file")
        rid = self._rid = str(settings.id)
        t = settings.telemetry
        self._m_files = t.filelog_files_watched.labels(rid)
        self._m_bytes = t.filelog_bytes_read.labels(rid)
        self._m_rotations = {k: t.filelog_rotations.labels(rid, k)
                             for k in ("rename", "truncate", "delete")}
        self._m_flagged = {k: t.filelog_flagged_records.labels(rid, k)
                           for k in ("split", "invalid_encoding")}
        self._include = [os.path.abspath(os.path.expanduser(p)) for p in config.include]
        self._exclude = [os.path.expanduser(p) for p in config.exclude]
        self._codec = resolve_codec(config.encoding)
        self._auto_bom = codecs.lookup(config.encoding).name in ("utf-16", "utf-32")
        self._files: dict[tuple[int, int], _File] = {}
        self._known: list[_Known] = []
        self._resource: dict[str, AttrValue] = dict(config.resource or {})
        self._static_attrs: dict[str, AttrValue] = dict(config.attributes)
        ml = config.multiline
        self._ml_start = re.compile(ml.line_start_pattern.encode()).match \
            if ml and ml.line_start_pattern is not None else None
        self._ml_end = re.compile(ml.line_end_pattern.encode()).search \
            if ml and ml.line_end_pattern is not None else None
        self._ckpt_path = self._checkpoint_file(settings)
        self._ckpt_str = str(self._ckpt_path)
        self._ckpt_tmp = self._ckpt_str + ".tmp"
        self._fp_b64: dict[bytes, str] = {}
        self._ckpt_dirty = False
        self._ckpt_pool = ThreadPoolExecutor(1, thread_name_prefix="filelog-checkpoint")
        self._ckpt_future: asyncio.Future[None] | None = None
        self._ckpt_mtime: float | None = None  # of the checkpoint found at start
        self._first_run = True
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.polls = 0  # completed polls (tests wait on it)

    # -- lifecycle ------------------------------------------------------------------------

    def _checkpoint_file(self, settings: CreateSettings) -> Path | None:
        c = self.config
        if c.checkpoint_path:
            return Path(c.checkpoint_path)
        if c.storage_dir:
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(settings.id))
            return Path(c.storage_dir) / f"filelog-{name}.json"
        return None

    async def start(self, host: Host) -> None:
        self._load_checkpoint()
        if self._ckpt_path is None:
            self.log.warning("filelog has no storage_dir/checkpoint_path: offsets are not kept "
                             "across restarts")
        # Find the files now, so that `start_at: end` means "from when start() returned".
        self._discover(first=True)
        self._save_checkpoint()
        self._task = asyncio.create_task(self._run(), name=f"filelog {self._rid}")

    async def shutdown(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await self._task
            except asyncio.CancelledError:
                # Our own shutdown was cancelled (drain timeout): stop the reader too.
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
                raise
            finally:
                self._task = None
                with contextlib.suppress(Exception):
                    await self._checkpoint_settled()
                if self._ckpt_path is not None:
                    self._write_checkpoint(self._checkpoint_data())
                self._ckpt_pool.shutdown(wait=False)
                for f in self._files.values():
                    f.close()
                self._files.clear()
                self._m_files.set(0)

    async def _run(self) -> None:
        interval = self.config.poll_interval
        while not self._stop.is_set():
            busy = False
            try:
                busy = await self._poll()
            except _Stopping:
                return
            except Exception:
                self.log.exception("filelog poll failed")
            self.polls += 1
            if busy:
                await asyncio.sleep(0)
            else:
                await self._wait(interval)

    async def _wait(self, seconds: float) -> bool:
        """Sleep; True if the receiver is stopping."""
        if self._stop.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
        return self._stop.is_set()

    # -- discovery --------------------------------------------------------------------

    def _matches(self) -> dict[tuple[int, int], tuple[str, os.stat_result]]:
        found: dict[tuple[int, int], tuple[str, os.stat_result]] = {}
        paths: set[str] = set()
        for pattern in self._include:
            paths.update(glob.glob(pattern, recursive=True))
        for path in sorted(paths):
            if self._exclude and self._excluded(path):
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found.setdefault((st.st_dev, st.st_ino), (path, st))
        return found

    def _excluded(self, path: str) -> bool:
        """Absolute patterns match the full path; relative ones (`*.gz`, `*/debug/*`) the
        full path or the file name. `*` also matches `/` here."""
        name = os.path.basename(path)
        return any(fnmatch.fnmatchcase(path, ex) or
                   (not ex.startswith("/") and fnmatch.fnmatchcase(name, ex))
                   for ex in self._exclude)

    def _discover(self, first: bool = False) -> None:
        """Match the globs; notice rotation, truncation, new and vanished files."""
        seen = self._matches()
        fps = self.config.fingerprint_size
        for key, f in list(self._files.items()):
            hit = seen.pop(key, None)
            if hit is None:
                if f.lost_polls == 0:
                    self._m_rotations["delete" if _deleted(f.fd) else "rename"].inc()
                f.lost_polls += 1
                continue
            path, st = hit
            f.lost_polls = 0
            if path != f.path:
                f.path = path
                f.attrs = self._file_attrs(path)
            head = _pread(f.fd, len(f.fp), 0) if f.fp else b""
            if st.st_size < f.read_pos or head != f.fp:
                # copytruncate or truncation: the same inode, other content. Its copy, if
                # it matches the globs, goes on from where this file was.
                self._m_rotations["truncate"].inc()
                if f.fp and f.offset:
                    self._known.append(_Known(f.fp, f.offset))
                f.fp = _pread(f.fd, fps, 0)
                f.reset(len(f.codec.bom) if f.codec.bom and f.fp.startswith(f.codec.bom)
                        else 0)
                self._ckpt_dirty = True
                self.log.info("file truncated, reading it from the start",
                              extra={"path": path})
            elif len(f.fp) < fps and st.st_size > len(f.fp):
                f.fp = _pread(f.fd, fps, 0)
        # New identities, sorted by path for a stable reading order.
        new: list[tuple[tuple[int, int], str, os.stat_result, int, bytes]] = []
        for key, (path, st) in sorted(seen.items(), key=lambda kv: kv[1][0]):
            if st.st_size == 0:
                continue  # nothing to recognise it by yet
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                continue
            fst = os.fstat(fd)
            fp = _pread(fd, fps, 0)
            if (fst.st_dev, fst.st_ino) != key or not fp or self._duplicate(fp):
                os.close(fd)  # replaced between stat and open; or a copy being made
                continue
            new.append((key, path, fst, fd, fp))
        if not new:
            self._m_files.set(len(self._files))
            return
        # Where to start: first the checkpoints of the same inodes (same first bytes),
        # then rotated content recognised by its first bytes, then the start_at policy.
        offsets: dict[tuple[int, int], int] = {}
        for key, _path, fst, _fd, fp in new:
            for i, k in enumerate(self._known):
                if (k.dev, k.ino) == key:
                    del self._known[i]
                    if fp.startswith(k.fp) and fst.st_size >= k.offset:
                        offsets[key] = k.offset
                    break
        for key, path, fst, fd, fp in new:
            codec = resolve_codec(self.config.encoding, fp[:4]) if self._auto_bom \
                else self._codec
            offset = offsets.get(key)
            if offset is None:
                offset = self._start_offset(fp, fst, fd, codec, first)
            if offset == 0 and codec.bom and fp.startswith(codec.bom):
                offset = len(codec.bom)
            f = _File(fd, key[0], key[1], path, fp, offset, codec)
            f.attrs = self._file_attrs(path)
            self._files[key] = f
            self._ckpt_dirty = True
            self.log.info("watching file", extra={"path": path, "offset": offset})
        self._m_files.set(len(self._files))

    def _duplicate(self, fp: bytes) -> bool:
        """A new file whose first bytes are those of a file being read (a copy made by
        copytruncate before the truncation): skip it for now."""
        for f in self._files.values():
            if f.lost_polls == 0 and f.fp and (fp.startswith(f.fp) or f.fp.startswith(fp)):
                return True
        return False

    def _start_offset(self, fp: bytes, st: os.stat_result, fd: int, codec: _Codec,
                      first: bool) -> int:
        size = st.st_size
        # A file we were reading whose content moved here (copytruncate's copy, or a
        # rotation while we were stopped).
        # Only a full fingerprint is trusted for this: a short one (a small file) may be
        # the start of an unrelated new file, and skipping its first lines would lose them.
        full = self.config.fingerprint_size
        for i, k in enumerate(self._known):
            if len(k.fp) >= full and fp.startswith(k.fp) and size >= k.offset:
                del self._known[i]
                self.log.info("continuing a rotated file", extra={"offset": k.offset})
                return k.offset
        # Never seen.
        if first and self.config.start_at == "end":
            if self._first_run:
                return _line_start_before(fd, size, codec)
            if self._ckpt_mtime is not None and st.st_mtime < self._ckpt_mtime:
                # Unknown to the checkpoint of the previous run, yet unchanged since: a file
                # that was excluded before; start_at applies. Files changed while we were
                # stopped are read from the start, so no line is lost.
                return _line_start_before(fd, size, codec)
        return 0

    def _file_attrs(self, path: str) -> dict[str, AttrValue]:
        a: dict[str, AttrValue] = {}
        if self.config.include_file_name:
            a["log.file.name"] = os.path.basename(path)
        if self.config.include_file_path:
            a["log.file.path"] = path
        a.update(self._static_attrs)
        return a

    # -- reading ----------------------------------------------------------------------

    async def _poll(self) -> bool:
        """One round over all files; True if some file has more data right away."""
        self._discover()
        busy = False
        for f in list(self._files.values()):
            if self._stop.is_set():
                raise _Stopping
            more = await self._read(f)
            busy = busy or more
            if f.lost_polls >= 2 and not more:
                # Rotated away or deleted, read to the end: emit what is pending, close.
                await self._flush_pending(f)
                f.close()
                del self._files[f.key]
                self._ckpt_dirty = True
                self.log.info("file closed", extra={"path": f.path})
        for k in self._known:
            k.polls_left -= 1
        if any(k.polls_left <= 0 for k in self._known):
            self._known = [k for k in self._known if k.polls_left > 0]
            self._ckpt_dirty = True
        self._m_files.set(len(self._files))
        if self._ckpt_dirty:
            self._save_checkpoint()
        return busy

    async def _read(self, f: _File) -> bool:
        """Read what is new in a file and emit it; True if more is waiting already."""
        budget = self.READ_BUDGET
        got = False
        nl = f.codec.nl
        held = b""
        failed = False
        while budget > 0:
            try:
                data = os.pread(f.fd, self.READ_SIZE, f.read_pos)
            except OSError as exc:
                self.log.warning("cannot read file", extra={"path": f.path, "error": str(exc)})
                failed = True
                break
            if not data:
                break
            got = True
            self._m_bytes.inc(len(data))
            f.read_pos += len(data)
            budget -= len(data)
            buf = f.rest + data if f.rest else data
            lines, complete, f.rest = split_lines(buf, nl)
            held = b""
            if lines:
                # A full read: more is probably there, so a short last batch waits for the
                # next read's lines (one batch, one checkpoint, instead of two).
                held = await self._emit_lines(f, lines, complete,
                                              hold=len(data) == self.READ_SIZE and budget > 0)
            if held:
                f.rest = held + f.rest  # complete lines again at the next split
            elif len(f.rest) >= self.config.max_log_size:
                await self._emit_long_rest(f)
        if held:  # held back for a read that found nothing more: emit them now
            lines, complete, f.rest = split_lines(f.rest, nl)
            await self._emit_lines(f, lines, complete)
        if failed:
            return False
        now = time.monotonic()
        if got:
            f.last_data = now
            return budget <= 0
        idle = now - f.last_data
        ffp = self.config.force_flush_period
        flush_rest = bool(f.rest) and ffp > 0 and idle >= ffp
        ml = self.config.multiline
        if ml is not None:
            if (f.ml_lines or flush_rest) and idle >= ml.flush_period:
                if flush_rest and not f.split_open:
                    # The unterminated line ends the open record.
                    line, bad = self._decode(f, f.rest)
                    f.ml_lines.append(line)
                    f.ml_raw += len(f.rest)
                    f.ml_bad = f.ml_bad or bad
                    f.rest = b""
                await self._flush_pending(f)
        elif flush_rest:
            await self._flush_rest(f)
        return False

    # -- records ----------------------------------------------------------------------

    def _decode(self, f: _File, raw: bytes) -> tuple[bytes, bool]:
        """UTF-8 bytes of a raw line (without `\\r`), and whether bytes were replaced."""
        codec = f.codec
        bad = False
        if codec.utf8:
            try:
                raw.decode()
                body = raw
            except UnicodeDecodeError:
                body = raw.decode("utf-8", "replace").encode()
                bad = True
        else:
            try:
                text = raw.decode(codec.name)
            except UnicodeDecodeError:
                text = raw.decode(codec.name, "replace")
                bad = True
            body = text.encode()
        if body[-1:] == b"\r":
            body = body[:-1]
        return body, bad

    def _pieces(self, f: _File, raw: bytes) -> list[bytes]:
        """A raw line cut into pieces of at most max_log_size bytes."""
        limit = self.config.max_log_size
        unit = f.codec.unit
        out = []
        while len(raw) > limit:
            cut = utf8_cut(raw, limit) if f.codec.utf8 else limit - limit % unit
            out.append(raw[:cut])
            raw = raw[cut:]
        out.append(raw)
        return out

    async def _emit_lines(self, f: _File, lines: list[bytes], complete: bytes,
                          hold: bool = False) -> bytes:
        """Complete lines read from the file, in batches of max_batch_lines. With `hold`,
        a last batch shorter than max_batch_lines after full ones is not delivered: its
        raw bytes (newlines included) are returned, to be read again with what follows
        (they are not counted in the offset, so nothing is lost or repeated)."""
        codec = f.codec
        # Fast path: text valid in its encoding, so each line is its own UTF-8 body.
        bodies_all: list[bytes] | None = None
        if complete:
            if codec.utf8:
                if complete.isascii() or _valid_utf8(complete):
                    bodies_all = lines
            else:  # a one-byte newline: transcode the whole block at once
                try:
                    bodies_all = complete.decode(codec.name).encode().split(b"\n")
                except UnicodeDecodeError:
                    bodies_all = None
                if bodies_all is not None and len(bodies_all) != len(lines):
                    bodies_all = None
            if bodies_all is not None and b"\r" in complete:
                bodies_all = [b[:-1] if b[-1:] == b"\r" else b for b in bodies_all]
        if self.config.multiline is not None:
            await self._emit_multiline(f, lines, bodies_all)
            return b""
        mb = self.config.max_batch_lines
        limit = self.config.max_log_size
        nl_len = codec.unit
        for i in range(0, len(lines), mb):
            group = lines[i:i + mb]
            if hold and i and len(group) < mb and nl_len == 1:
                held = codec.nl.join(group) + codec.nl
                if len(held) + len(f.rest) < limit:
                    return held
            raw_len = sum(map(len, group)) + len(group) * nl_len
            extras: list[Extra] | None = None
            if bodies_all is not None and not f.split_open and max(map(len, group)) <= limit:
                bodies = bodies_all if len(group) == len(bodies_all) else bodies_all[i:i + mb]
                if b"" in bodies:
                    bodies = [b for b in bodies if b]
            else:
                bodies, extras = self._slow_records(f, group)
            await self._deliver(f, bodies, extras, raw_len)
        return b""

    def _slow_records(self, f: _File, group: Iterable[bytes]
                      ) -> tuple[list[bytes], list[Extra] | None]:
        bodies: list[bytes] = []
        extras: list[Extra] = []
        limit = self.config.max_log_size
        for raw in group:
            split = f.split_open
            f.split_open = False
            pieces = self._pieces(f, raw) if len(raw) > limit else (raw,)
            if len(pieces) > 1:
                split = True
            for piece in pieces:
                body, bad = self._decode(f, piece)
                if not body and not split:
                    continue
                extra: Extra = {}
                if bad:
                    extra["log.invalid_encoding"] = True
                    self._m_flagged["invalid_encoding"].inc()
                if split:
                    extra["log.split"] = True
                    self._m_flagged["split"].inc()
                bodies.append(body)
                extras.append(extra)
        return bodies, (extras if any(extras) else None)

    async def _emit_long_rest(self, f: _File) -> None:
        """An unterminated line already longer than max_log_size: emit full pieces."""
        pieces = self._pieces(f, f.rest)
        tail = pieces.pop()
        if f.ml_lines:
            await self._flush_multiline(f)
        bodies: list[bytes] = []
        extras: list[Extra] = []
        for piece in pieces:
            body, bad = self._decode(f, piece)
            bodies.append(body)
            extras.append({"log.split": True, "log.invalid_encoding": True} if bad
                          else {"log.split": True})
            self._m_flagged["split"].inc()
            if bad:
                self._m_flagged["invalid_encoding"].inc()
        f.rest = tail
        f.split_open = True
        await self._deliver(f, bodies, extras, sum(map(len, pieces)))

    async def _flush_rest(self, f: _File) -> None:
        """Emit an unterminated last line (force_flush_period passed)."""
        rest = f.rest
        f.rest = b""
        bodies, extras = self._slow_records(f, (rest,))
        await self._deliver(f, bodies, extras, len(rest))

    async def _flush_pending(self, f: _File) -> None:
        if f.ml_lines:
            await self._flush_multiline(f)
        if f.rest:
            await self._flush_rest(f)

    # -- multiline --------------------------------------------------------------------

    async def _emit_multiline(self, f: _File, lines: list[bytes],
                              bodies_all: list[bytes] | None) -> None:
        ml = self.config.multiline
        assert ml is not None
        start_match = self._ml_start
        end_search = self._ml_end
        indented = ml.indented
        max_lines = ml.max_lines
        nl_len = f.codec.unit
        mb = self.config.max_batch_lines
        out_bodies: list[bytes] = []
        out_extras: list[Extra] = []
        out_raw = 0
        for i, raw in enumerate(lines):
            if bodies_all is not None:
                line, bad = bodies_all[i], False
            else:
                line, bad = self._decode(f, raw)
            raw_len = len(raw) + nl_len
            if f.split_open:
                # The end of a line whose first pieces were emitted already.
                f.split_open = False
                out_raw += self._close_record(f, out_bodies, out_extras, False)
                f.ml_lines.append(line)
                f.ml_raw += raw_len
                f.ml_bad = bad
                out_raw += self._close_record(f, out_bodies, out_extras, True)
            else:
                if f.ml_lines:
                    if start_match is not None:
                        starts = start_match(line) is not None
                    elif indented:
                        starts = bool(line) and line[0] not in b" \t"
                    else:
                        starts = False
                    if starts:
                        out_raw += self._close_record(f, out_bodies, out_extras, False)
                f.ml_lines.append(line)
                f.ml_raw += raw_len
                f.ml_bad = f.ml_bad or bad
                if end_search is not None and end_search(line) is not None:
                    out_raw += self._close_record(f, out_bodies, out_extras, False)
                elif len(f.ml_lines) >= max_lines:
                    out_raw += self._close_record(f, out_bodies, out_extras, True)
            if len(out_bodies) >= mb:
                await self._deliver(f, out_bodies, out_extras if any(out_extras) else None,
                                    out_raw)
                out_bodies, out_extras, out_raw = [], [], 0
        if out_bodies or out_raw:
            await self._deliver(f, out_bodies, out_extras if any(out_extras) else None, out_raw)

    def _close_record(self, f: _File, bodies: list[bytes], extras: list[Extra],
                      cut: bool) -> int:
        """Move the open multiline record into `bodies`; returns its size in the file."""
        body = b"\n".join(f.ml_lines).rstrip(b"\n")
        raw = f.ml_raw
        bad = f.ml_bad
        f.ml_lines = []
        f.ml_raw = 0
        f.ml_bad = False
        if not body and not cut:
            return raw
        limit = self.config.max_log_size
        if len(body) > limit:
            pieces = []
            while len(body) > limit:
                c = utf8_cut(body, limit)
                pieces.append(body[:c])
                body = body[c:]
            pieces.append(body)
            cut = True
        else:
            pieces = [body]
        extra: Extra = {}
        if bad:
            extra["log.invalid_encoding"] = True
        if cut:
            extra["log.split"] = True
        if bad:
            self._m_flagged["invalid_encoding"].inc()
        if cut:
            self._m_flagged["split"].inc(len(pieces))
        for p in pieces:
            bodies.append(p)
            extras.append(extra)
        return raw

    async def _flush_multiline(self, f: _File) -> None:
        bodies: list[bytes] = []
        extras: list[Extra] = []
        raw = self._close_record(f, bodies, extras, False)
        await self._deliver(f, bodies, extras if any(extras) else None, raw)

    # -- delivery ---------------------------------------------------------------------

    async def _deliver(self, f: _File, bodies: list[bytes], extras: list[Extra] | None,
                       raw_len: int) -> None:
        """Hand the records to the pipeline until accepted; then advance the offset by
        `raw_len` bytes and checkpoint. Raises `_Stopping` if shut down meanwhile."""
        if bodies:
            # Python records, built from the lines only if a processor asks for them;
            # encoded as OTLP (from the lines directly) only if an exporter needs it.
            group = LogGroup.from_lines(
                bodies, f.attrs, time.time_ns(),
                extras=extras if extras is None else [e or None for e in extras],
                resource=dict(self._resource))
            batch = Batch(Signal.LOGS, logs=[group])
            backoff = self.config.retry_on_failure
            delay = backoff.initial_interval
            await self._checkpoint_settled()
            while True:
                if self._stop.is_set():
                    raise _Stopping
                try:
                    await self.obs.deliver(self.consumer, batch)
                    break
                except RetryableError as exc:
                    wait = max(delay, min(exc.retry_after or 0.0, 60.0))
                except PermanentError as exc:
                    self.log.error("pipeline rejected a batch of file lines; skipped",
                                   extra={"path": f.path, "records": len(bodies),
                                          "error": str(exc)})
                    break
                except Exception:
                    wait = delay  # logged by deliver(); a bug downstream, keep the data
                if await self._wait(wait):
                    raise _Stopping
                delay = min(delay * 2, backoff.max_interval)
        f.offset += raw_len
        if bodies:
            # Written while the next batch is read and built; awaited before that batch
            # is delivered, so after a crash at most the batch in flight comes again.
            self._save_checkpoint()
        else:
            self._ckpt_dirty = True
        await asyncio.sleep(0)

    # -- checkpoints ------------------------------------------------------------------

    def _load_checkpoint(self) -> None:
        path = self._ckpt_path
        if path is None or not path.exists():
            return
        try:
            doc = orjson.loads(path.read_bytes())
            known = [_Known(base64.b64decode(e["fingerprint"]), int(e["offset"]),
                            int(e.get("dev", -1)), int(e.get("ino", -1)))
                     for e in doc["files"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            bad = path.with_name(path.name + ".corrupt")
            self.log.error("checkpoint unreadable; starting without it",
                           extra={"path": str(path), "error": str(exc), "moved_to": str(bad)})
            with contextlib.suppress(OSError):
                path.replace(bad)
            return
        self._known = known
        self._first_run = False
        self._ckpt_mtime = path.stat().st_mtime

    def _b64(self, fp: bytes) -> str:
        """base64 of a fingerprint, cached (written with every checkpoint, changes rarely)."""
        s = self._fp_b64.get(fp)
        if s is None:
            if len(self._fp_b64) >= 1024:
                self._fp_b64.clear()
            s = self._fp_b64[fp] = base64.b64encode(fp).decode()
        return s

    def _checkpoint_data(self) -> bytes:
        b64 = self._b64
        files = [{"path": f.path, "dev": f.dev, "ino": f.ino, "offset": f.offset,
                  "fingerprint": b64(f.fp)}
                 for f in self._files.values()]
        files += [{"dev": k.dev, "ino": k.ino, "offset": k.offset,
                   "fingerprint": b64(k.fp)}
                  for k in self._known]
        return orjson.dumps({"version": 1, "files": files})

    def _write_checkpoint(self, data: bytes) -> None:
        """temp file, fsync, rename over the checkpoint (runs in the checkpoint thread)."""
        path = self._ckpt_path
        assert path is not None
        tmp = self._ckpt_tmp
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        try:
            try:
                fd = os.open(tmp, flags, 0o644)
            except FileNotFoundError:  # the directory: created on first use (or again)
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp, flags, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self._ckpt_str)
        except OSError as exc:
            self._ckpt_dirty = True  # try again after the next poll
            self.log.error("cannot write checkpoint", extra={"path": str(path),
                                                             "error": str(exc)})

    def _save_checkpoint(self) -> None:
        """Start writing the current offsets. Writes run one at a time, in order, in a
        thread, so that the event loop does not wait for the disk (fsync + rename cost
        milliseconds); `_checkpoint_settled` waits for the last one."""
        self._ckpt_dirty = False
        if self._ckpt_path is None:
            return
        data = self._checkpoint_data()
        self._ckpt_future = asyncio.get_running_loop().run_in_executor(
            self._ckpt_pool, self._write_checkpoint, data)

    async def _checkpoint_settled(self) -> None:
        fut = self._ckpt_future
        if fut is not None and not fut.done():
            await asyncio.shield(fut)
        self._ckpt_future = None

def _pread(fd: int, n: int, pos: int) -> bytes:
    try:
        return os.pread(fd, n, pos)
    except OSError:
        return b""


def _deleted(fd: int) -> bool:
    try:
        return os.fstat(fd).st_nlink == 0
    except OSError:
        return True


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _line_start_before(fd: int, size: int, codec: _Codec) -> int:
    """`start_at: end`: the end of the last complete line, so that a line being written
    is read whole."""
    if codec.unit != 1:
        return size - size % codec.unit
    pos = size
    while pos > 0:
        n = min(65536, pos)
        chunk = _pread(fd, n, pos - n)
        i = chunk.rfind(codec.nl)
        if i >= 0:
            return pos - n + i + 1
        pos -= n
    return 0


def _create(settings: CreateSettings, config: FileLogConfig) -> FileLogReceiver:
    return FileLogReceiver(settings, config)


factory = Factory(
    type="filelog",
    kind=Kind.RECEIVER,
    config_model=FileLogConfig,
    create=_create,
    signals=frozenset({Signal.LOGS}),
    description="Tails files by glob, one log record per line (or multiline record), "
                "with checkpointed offsets and rotation handling.",
)

