"""What both disk queue engines share: the synchronous `Store` interface, the record
types, the metadata codec and the directory lock (one process per queue directory)."""

from __future__ import annotations

import abc
import errno
import fcntl
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

import orjson

from pipeline.component import Signal

log = logging.getLogger("otelpipe.exporterhelper.diskqueue")

SIGNAL_CODES = {Signal.TRACES: 1, Signal.LOGS: 2, Signal.METRICS: 3}
CODE_SIGNALS = {v: k for k, v in SIGNAL_CODES.items()}


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


def encode_metadata(metadata: Mapping[str, str]) -> bytes:
    return orjson.dumps(dict(metadata)) if metadata else b""


def decode_metadata(data: bytes) -> Mapping[str, str]:
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


def make_store(engine: str, path: Path, fsync: bool, segment_bytes: int) -> Store:
    """The store of an engine (`segment` or `sqlite`); its module loads on first use."""
    if engine == "segment":
        from pipeline.exporterhelper.diskqueue.segment import SegmentLogStore

        return SegmentLogStore(path, fsync, segment_bytes)
    if engine == "sqlite":
        from pipeline.exporterhelper.diskqueue.sqlite import SQLiteStore

        return SQLiteStore(path, fsync)
    raise ValueError(f"unknown disk queue engine {engine!r}")
