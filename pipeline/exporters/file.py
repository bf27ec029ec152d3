"""`file` exporter: one line per request (`otlp_json`) or per record (`json`).

- `format: otlp_json` writes one OTLP JSON export request per line, as the
  Collector's file exporter does (hex trace/span ids, integer enums).
- `format: json` writes one flat JSON object per log record or span
  (resource and record attributes as top-level keys); metrics, which have no
  flat form, are written as OTLP JSON.
- `rotation`: when the file passes `max_megabytes` it is renamed to
  `<path>.1` (older backups shift to `.2` …, beyond `max_backups` deleted).

Delivery: a batch counts as delivered once written and flushed to the OS
(`fsync: true` also waits for the disk). A failed write (disk full, path
gone) raises a retryable error, so the sender retries; the file is reopened
on the next batch, which is how the exporter recovers by itself.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO, Literal

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
from pipeline.errors import RetryableError
from pipeline.exporterhelper import Exporter
from pipeline.pdata.batch import Batch
from pipeline.pdata.logrecords import dumps_flat
from pipeline.pdata.otlpjson import encode_request, flat_records


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
        super().__init__(settings)
        self.config = config
        self.path = Path(config.path)
        self._file: BinaryIO | None = None
        self._size = 0
        rot = config.rotation
        self._max_bytes = int(rot.max_megabytes * 1024 * 1024) if rot else 0

    async def start_exporter(self, host: Host) -> None:
        self._open()

    async def shutdown_exporter(self) -> None:
        self._close()

    def _open(self) -> BinaryIO:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")  # noqa: SIM115 - kept open across batches
            self._size = self._file.tell()
        return self._file

    def _close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):  # unflushed data of a failed write
                self._file.close()
            self._file = None

    def _encode(self, batch: Batch) -> bytes:
        if self.config.format == "json" and batch.signal is not Signal.METRICS:
            logs = batch.logs
            if logs is not None:  # Python records: no OTLP in between (same objects)
                return dumps_flat(logs)
            return b"".join(orjson.dumps(r) + b"\n"
                            for r in flat_records(batch.signal, batch.message))
        return encode_request(batch.message) + b"\n"

    async def send(self, batch: Batch) -> None:
        data = self._encode(batch)
        try:
            f = self._open()
            f.write(data)
            f.flush()
            if self.config.fsync:
                os.fsync(f.fileno())
        except OSError as exc:
            self._close()
            raise RetryableError(f"cannot write {self.path}: {exc.strerror or exc}",
                                 retry_after=1.0) from None
        self._size += len(data)
        if self._max_bytes and self._size >= self._max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        self._close()
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


def _create(settings: ExporterCreateSettings, config: FileConfig) -> FileExporter:
    return FileExporter(settings, config)


factory = Factory(type="file", kind=Kind.EXPORTER, config_model=FileConfig, create=_create,
                  signals=frozenset(Signal),
                  description="writes OTLP JSON lines or flat JSON records to a file")
