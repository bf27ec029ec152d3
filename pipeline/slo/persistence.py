"""The SLO connector's state on disk, so a restart keeps the error budget.

One JSON file holds the engine's buckets and alert states plus the connector's
per-series counter baselines. Writes are atomic: the new state goes to a
temporary file in the same directory, is flushed and fsynced, then renamed over
the old one (and the directory fsynced), so a crash leaves either the old or the
new file, never a torn one. A file that cannot be parsed is moved aside
(`<name>.corrupt-<time>`) and the connector starts afresh, loudly.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson


class StateFile:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none. Raises `ValueError` (after
        moving the file aside) when it is unreadable."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            state = orjson.loads(raw)
            if not isinstance(state, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            raise ValueError(f"{self.path}: unreadable SLO state ({exc}); moved to {aside}, "
                             "starting afresh") from None
        return state

    def save(self, state: dict[str, Any]) -> None:
        data = orjson.dumps(state, option=orjson.OPT_SERIALIZE_NUMPY)
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        except OSError:  # some filesystems refuse fsync on directories
            pass
        finally:
            os.close(dir_fd)
