"""Which files are read: glob discovery, file identity (device + inode + fingerprint,
the first `fingerprint_size` bytes), rotation, truncation and where a new file starts.

A `WatchedFile` is one open file and what was read of it; a `Known` is a position
remembered without an open file (from the checkpoint, or a file whose content was
replaced by copytruncate and whose copy may show up).
"""

from __future__ import annotations

import codecs
import contextlib
import fnmatch
import glob
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.component import CreateSettings
from pipeline.receivers.filelog.config import AttrValue, FileGroupConfig, FileLogConfig
from pipeline.receivers.filelog.encoding import Codec, resolve_codec
from pipeline.telemetry.metrics import CounterSpec, GaugeSpec

FILES_WATCHED = GaugeSpec(
    "otelpipe_filelog_files_watched", "Files a filelog receiver has open.", ("receiver",))
ROTATIONS = CounterSpec(
    "otelpipe_filelog_rotations",
    "Files rotated away (rename), deleted, or truncated (copytruncate), by kind.",
    ("receiver", "kind"))

FileKey = tuple[int, int]  # (st_dev, st_ino)


class WatchedFile:
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
        "group",
        "ino",
        "last_data",
        "lost_polls",
        "ml_bad",
        "ml_lines",
        "ml_raw",
        "ml_state",
        "offset",
        "path",
        "read_pos",
        "rest",
        "split_open",
    )

    def __init__(self, fd: int, dev: int, ino: int, path: str, fp: bytes, offset: int,
                 codec: Codec, group: int = 0):
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
        self.ml_state = 0  # a multiline preset's state (e.g. inside a traceback)
        self.split_open = False  # the last record emitted was a piece of an unfinished line
        self.group = group  # index of its group in FileLogConfig.file_groups()
        self.last_data = time.monotonic()
        self.lost_polls = 0
        self.codec = codec
        self.attrs: dict[str, AttrValue] = {}

    @property
    def key(self) -> FileKey:
        return (self.dev, self.ino)

    def reset(self, offset: int = 0) -> None:
        self.offset = self.read_pos = offset
        self.rest = b""
        self.ml_lines = []
        self.ml_raw = 0
        self.ml_bad = False
        self.ml_state = 0
        self.split_open = False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


@dataclass
class Known:
    """A file position remembered without an open file: from the checkpoint, or a file
    whose content was replaced (copytruncate) and whose copy may show up."""

    fp: bytes
    offset: int
    dev: int = -1
    ino: int = -1
    polls_left: int = 10


# A new file found by `discover`: its identity, path, fstat, descriptor, fingerprint
# and group.
_New = tuple[FileKey, str, os.stat_result, int, bytes, int]
# What the globs found: identity -> (path, stat, group index).
_Found = dict[FileKey, tuple[str, os.stat_result, int]]


class _Group:
    """One group of files, ready to match: its globs, codec and static attributes."""

    def __init__(self, g: FileGroupConfig):
        self.name = g.name or "default"
        self.include = [os.path.abspath(os.path.expanduser(p)) for p in g.include]
        self.exclude = [os.path.expanduser(p) for p in g.exclude]
        enc = g.encoding or "utf-8"
        self.encoding = enc
        self.codec = resolve_codec(enc)
        self.auto_bom = codecs.lookup(enc).name in ("utf-16", "utf-32")
        self.attrs: dict[str, AttrValue] = dict(g.attributes)

    def excluded(self, path: str) -> bool:
        """Absolute patterns match the full path; relative ones (`*.gz`, `*/debug/*`) the
        full path or the file name. `*` also matches `/` here."""
        if not self.exclude:
            return False
        name = os.path.basename(path)
        return any(fnmatch.fnmatchcase(path, ex) or
                   (not ex.startswith("/") and fnmatch.fnmatchcase(name, ex))
                   for ex in self.exclude)


class Tracker:
    """The files being read (`files`) and the positions remembered (`known`).

    `on_change` is called whenever what a checkpoint would hold changed.
    """

    def __init__(self, settings: CreateSettings, config: FileLogConfig,
                 on_change: Callable[[], None]):
        self.config = config
        self.log = settings.logger
        rid = str(settings.id)
        t = settings.telemetry
        self._m_files = t.gauge(FILES_WATCHED).labels(rid)
        rotations = t.counter(ROTATIONS)
        self._m_rotations = {k: rotations.labels(rid, k) for k in ("rename", "truncate", "delete")}
        self._changed = on_change
        self.groups = [_Group(g) for g in config.file_groups()]
        self._overlaps: set[str] = set()  # paths already reported as matched twice
        self.files: dict[FileKey, WatchedFile] = {}
        self.known: list[Known] = []
        self._first_run = True
        self._ckpt_mtime: float | None = None  # of the checkpoint found at start

    def restore(self, known: list[Known], checkpoint_mtime: float) -> None:
        """Positions from the checkpoint of the previous run (written at that time)."""
        self.known = known
        self._first_run = False
        self._ckpt_mtime = checkpoint_mtime

    # -- discovery --------------------------------------------------------------------

    def _matches(self) -> _Found:
        """The files the globs match now; a path matched by several groups belongs to the
        first of them (reported once per path)."""
        owner: dict[str, int] = {}
        for gi, g in enumerate(self.groups):
            paths: set[str] = set()
            for pattern in g.include:
                paths.update(glob.glob(pattern, recursive=True))
            for path in paths:
                if g.excluded(path):
                    continue
                first = owner.setdefault(path, gi)
                if first != gi:
                    self._overlap(path, first, gi)
        found: _Found = {}
        for path in sorted(owner):
            try:
                st = os.stat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found.setdefault((st.st_dev, st.st_ino), (path, st, owner[path]))
        return found

    def _overlap(self, path: str, first: int, other: int) -> None:
        if path in self._overlaps or len(self._overlaps) >= 1024:
            return
        self._overlaps.add(path)
        self.log.info("file matched by two groups; the first applies",
                         extra={"path": path, "group": self.groups[first].name,
                                "also_matched_by": self.groups[other].name})

    def discover(self, first: bool = False) -> None:
        """Match the globs; notice rotation, truncation, new and vanished files."""
        seen = self._matches()
        for key, f in list(self.files.items()):
            self._recheck(f, seen.pop(key, None))
        new = self._open_new(seen)
        if new:
            self._track(new, first)
        self._m_files.set(len(self.files))

    def _recheck(self, f: WatchedFile, hit: tuple[str, os.stat_result, int] | None) -> None:
        """A file being read: gone from the globs (rotated, deleted), renamed, truncated.
        It keeps the group it was opened with (a rotated file is read to its end with the
        same rules)."""
        if hit is None:
            if f.lost_polls == 0:
                self._m_rotations["delete" if _deleted(f.fd) else "rename"].inc()
            f.lost_polls += 1
            return
        path, st, _group = hit
        f.lost_polls = 0
        if path != f.path:
            f.path = path
            f.attrs = self._file_attrs(path, f.group)
        fps = self.config.fingerprint_size
        head = _pread(f.fd, len(f.fp), 0) if f.fp else b""
        if st.st_size < f.read_pos or head != f.fp:
            # copytruncate or truncation: the same inode, other content. Its copy, if
            # it matches the globs, goes on from where this file was.
            self._m_rotations["truncate"].inc()
            if f.fp and f.offset:
                self.known.append(Known(f.fp, f.offset))
            f.fp = _pread(f.fd, fps, 0)
            f.reset(len(f.codec.bom) if f.codec.bom and f.fp.startswith(f.codec.bom)
                    else 0)
            self._changed()
            self.log.info("file truncated, reading it from the start",
                          extra={"path": path})
        elif len(f.fp) < fps and st.st_size > len(f.fp):
            f.fp = _pread(f.fd, fps, 0)

    def _open_new(self, seen: _Found) -> list[_New]:
        """New identities, sorted by path for a stable reading order."""
        fps = self.config.fingerprint_size
        new: list[_New] = []
        for key, (path, st, gi) in sorted(seen.items(), key=lambda kv: kv[1][0]):
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
            new.append((key, path, fst, fd, fp, gi))
        return new

    def _track(self, new: list[_New], first: bool) -> None:
        # Where to start: first the checkpoints of the same inodes (same first bytes),
        # then rotated content recognised by its first bytes, then the start_at policy.
        offsets: dict[FileKey, int] = {}
        for key, _path, fst, _fd, fp, _gi in new:
            for i, k in enumerate(self.known):
                if (k.dev, k.ino) == key:
                    del self.known[i]
                    if fp.startswith(k.fp) and fst.st_size >= k.offset:
                        offsets[key] = k.offset
                    break
        for key, path, fst, fd, fp, gi in new:
            g = self.groups[gi]
            codec = resolve_codec(g.encoding, fp[:4]) if g.auto_bom else g.codec
            offset = offsets.get(key)
            if offset is None:
                offset = self._start_offset(fp, fst, fd, codec, first)
            if offset == 0 and codec.bom and fp.startswith(codec.bom):
                offset = len(codec.bom)
            f = WatchedFile(fd, key[0], key[1], path, fp, offset, codec, gi)
            f.attrs = self._file_attrs(path, gi)
            self.files[key] = f
            self._changed()
            self.log.info("watching file", extra={"path": path, "offset": offset,
                                                  "group": g.name})

    def _duplicate(self, fp: bytes) -> bool:
        """A new file whose first bytes are those of a file being read (a copy made by
        copytruncate before the truncation): skip it for now."""
        for f in self.files.values():
            if f.lost_polls == 0 and f.fp and (fp.startswith(f.fp) or f.fp.startswith(fp)):
                return True
        return False

    def _start_offset(self, fp: bytes, st: os.stat_result, fd: int, codec: Codec,
                      first: bool) -> int:
        size = st.st_size
        # A file we were reading whose content moved here (copytruncate's copy, or a
        # rotation while we were stopped).
        # Only a full fingerprint is trusted for this: a short one (a small file) may be
        # the start of an unrelated new file, and skipping its first lines would lose them.
        full = self.config.fingerprint_size
        for i, k in enumerate(self.known):
            if len(k.fp) >= full and fp.startswith(k.fp) and size >= k.offset:
                del self.known[i]
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

    def _file_attrs(self, path: str, group: int) -> dict[str, AttrValue]:
        a: dict[str, AttrValue] = {}
        if self.config.include_file_name:
            a["log.file.name"] = os.path.basename(path)
        if self.config.include_file_path:
            a["log.file.path"] = path
        a.update(self.groups[group].attrs)
        return a

    # -- after a poll -----------------------------------------------------------------

    def untrack(self, f: WatchedFile) -> None:
        """Close a file that was read to its end after it was rotated away or deleted."""
        f.close()
        del self.files[f.key]
        self._changed()
        self.log.info("file closed", extra={"path": f.path})

    def end_poll(self) -> None:
        """Forget remembered positions whose file did not show up within a few polls."""
        for k in self.known:
            k.polls_left -= 1
        if any(k.polls_left <= 0 for k in self.known):
            self.known = [k for k in self.known if k.polls_left > 0]
            self._changed()
        self._m_files.set(len(self.files))

    def close_all(self) -> None:
        for f in self.files.values():
            f.close()
        self.files.clear()
        self._m_files.set(0)


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


def _line_start_before(fd: int, size: int, codec: Codec) -> int:
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
