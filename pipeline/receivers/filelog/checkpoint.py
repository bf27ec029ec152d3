"""Checkpoints: the offsets accepted by the pipeline, per file identity, in one JSON
file (`{"version": 1, "files": [{path, dev, ino, offset, fingerprint}, ...]}`),
written as temp file + fsync + rename in a thread, one write at a time, in order.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson

from pipeline.component import CreateSettings
from pipeline.receivers.filelog.config import FileLogConfig
from pipeline.receivers.filelog.tracker import Known, WatchedFile


def checkpoint_file(settings: CreateSettings, config: FileLogConfig) -> Path | None:
    """`checkpoint_path`, or `storage_dir/filelog-<id>.json`; None: offsets not kept."""
    if config.checkpoint_path:
        return Path(config.checkpoint_path)
    if config.storage_dir:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(settings.id))
        return Path(config.storage_dir) / f"filelog-{name}.json"
    return None


class Checkpoint:
    """Loads and writes one receiver's checkpoint. `dirty`: the positions changed since
    the last write (or a write failed), so the next poll writes again."""

    def __init__(self, settings: CreateSettings, config: FileLogConfig):
        self.log = settings.logger
        self.path = checkpoint_file(settings, config)
        self._str = str(self.path)
        self._tmp = self._str + ".tmp"
        self._fp_b64: dict[bytes, str] = {}
        self.dirty = False
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="filelog-checkpoint")
        self._future: asyncio.Future[None] | None = None

    def mark_dirty(self) -> None:
        self.dirty = True

    def load(self) -> tuple[list[Known], float] | None:
        """The positions of the previous run and when they were written; None if there
        is no checkpoint (an unreadable one is set aside as `<name>.corrupt`)."""
        path = self.path
        if path is None or not path.exists():
            return None
        try:
            doc = orjson.loads(path.read_bytes())
            known = [Known(base64.b64decode(e["fingerprint"]), int(e["offset"]),
                           int(e.get("dev", -1)), int(e.get("ino", -1)))
                     for e in doc["files"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            bad = path.with_name(path.name + ".corrupt")
            self.log.error("checkpoint unreadable; starting without it",
                           extra={"path": str(path), "error": str(exc), "moved_to": str(bad)})
            with contextlib.suppress(OSError):
                path.replace(bad)
            return None
        return known, path.stat().st_mtime

    def _b64(self, fp: bytes) -> str:
        """base64 of a fingerprint, cached (written with every checkpoint, changes rarely)."""
        s = self._fp_b64.get(fp)
        if s is None:
            if len(self._fp_b64) >= 1024:
                self._fp_b64.clear()
            s = self._fp_b64[fp] = base64.b64encode(fp).decode()
        return s

    def data(self, files: Iterable[WatchedFile], known: Iterable[Known]) -> bytes:
        b64 = self._b64
        entries = [{"path": f.path, "dev": f.dev, "ino": f.ino, "offset": f.offset,
                    "fingerprint": b64(f.fp)}
                   for f in files]
        entries += [{"dev": k.dev, "ino": k.ino, "offset": k.offset,
                     "fingerprint": b64(k.fp)}
                    for k in known]
        return orjson.dumps({"version": 1, "files": entries})

    def write(self, data: bytes) -> None:
        """temp file, fsync, rename over the checkpoint (runs in the checkpoint thread)."""
        path = self.path
        assert path is not None
        tmp = self._tmp
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
            os.replace(tmp, self._str)
        except OSError as exc:
            self.dirty = True  # try again after the next poll
            self.log.error("cannot write checkpoint", extra={"path": str(path),
                                                             "error": str(exc)})

    def save(self, files: Iterable[WatchedFile], known: Iterable[Known]) -> None:
        """Start writing the current offsets. Writes run one at a time, in order, in a
        thread, so that the event loop does not wait for the disk (fsync + rename cost
        milliseconds); `settled` waits for the last one."""
        self.dirty = False
        if self.path is None:
            return
        data = self.data(files, known)
        self._future = asyncio.get_running_loop().run_in_executor(self._pool, self.write, data)

    async def settled(self) -> None:
        fut = self._future
        if fut is not None and not fut.done():
            await asyncio.shield(fut)
        self._future = None

    def close(self, files: Iterable[WatchedFile], known: Iterable[Known]) -> None:
        """The last write, in the caller's thread (after `settled`), and no more."""
        if self.path is not None:
            self.write(self.data(files, known))
        self._pool.shutdown(wait=False)
