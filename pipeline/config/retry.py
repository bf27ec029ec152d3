"""The settings every exporter shares: `timeout`, `retry_on_failure`, `sending_queue`.

```yaml
exporters:
  otlp:
    timeout: 5s
    retry_on_failure: {enabled: true, initial_interval: 5s, max_interval: 30s,
                       max_elapsed_time: 5m, multiplier: 1.5, randomization_factor: 0.5}
    sending_queue: {enabled: true, storage: memory, sizer: bytes, queue_size: 64MiB,
                    num_consumers: 10, block_on_overflow: false}
    max_in_flight_requests: 1000   # without a queue: exports waiting at once (0: no cap)
    max_in_flight_bytes: 64MiB     # and the bytes they hold (0: no cap)
```

Queues are bounded in bytes by default (`sizer: bytes`: the OTLP protobuf
size of each batch); `sizer: requests | items` count batches or spans/log
records/data points as the Collector does, and then bound nothing in bytes
(except a disk queue's `max_size_mib`). A `queue_size` written as a bare
number needs a `sizer` (the Collector counts requests, otelpipe defaults to
bytes: silently reading `queue_size: 1000` as bytes would be a trap); a size
with a unit (`64MiB`) means bytes.

Only the models live here (settings are configuration); what they drive (the
send loop, backoff, the memory and disk queues) is `pipeline.exporterhelper`.
An exporter's config model mixes in `ExporterSettings`; a component that
retries on its own (the kafka receiver) builds a `RetrySettings`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from pipeline.component import ComponentConfig
from pipeline.config.types import ByteSize, Duration

__all__ = [
    "DEFAULT_DISK_QUEUE_BYTES",
    "DEFAULT_MAX_IN_FLIGHT_BYTES",
    "DEFAULT_MAX_IN_FLIGHT_REQUESTS",
    "DEFAULT_MEMORY_QUEUE_BYTES",
    "DEFAULT_QUEUE_SIZE",
    "ExporterSettings",
    "QueueSettings",
    "RetrySettings",
]

MIB = 1024 * 1024
# A memory queue holds its batches in the process: 64 MiB per exporter keeps a
# gateway with a few exporters well inside a 512 MiB container while it rides
# out a backend outage of tens of seconds at several MB/s (a disk queue is the
# tool for longer ones). The bound is on the wire size; a batch held decoded
# (a parsed message, log records) takes a few times more.
DEFAULT_MEMORY_QUEUE_BYTES = 64 * MIB
# On disk, room costs little memory (at most the queue's 32 MiB cache).
DEFAULT_DISK_QUEUE_BYTES = 1024 * MIB
DEFAULT_QUEUE_SIZE = 1000  # sizer requests or items: the Collector's default
# Without a queue every export waits in its caller: bound what a dead backend
# can pile up (each one holds its batch until it is delivered or given up).
DEFAULT_MAX_IN_FLIGHT_REQUESTS = 1000
DEFAULT_MAX_IN_FLIGHT_BYTES = 64 * MIB


class RetrySettings(ComponentConfig):
    enabled: bool = True
    initial_interval: Duration = 5.0
    max_interval: Duration = 30.0
    max_elapsed_time: Duration = Field(default=300.0, description="0 retries forever")
    multiplier: float = Field(default=1.5, ge=1.0)
    randomization_factor: float = Field(default=0.5, ge=0.0, le=1.0)


class QueueSettings(ComponentConfig):
    enabled: bool = True
    storage: Literal["memory", "disk"] = Field(
        default="memory",
        description="memory: acknowledged once queued, lost if the process dies; disk: "
                    "acknowledged once durably written, kept until the backend acknowledged")
    directory: str | None = Field(
        default=None, description="disk: parent directory; each exporter gets a "
                                  "subdirectory named after its id")
    engine: Literal["segment", "sqlite"] = Field(
        default="segment", description="disk: append-only segment log or SQLite (WAL)")
    fsync: bool = Field(
        default=True, description="disk: wait for the disk (fsync) before acknowledging; "
                                  "false survives a killed process but not a power cut")
    segment_mib: float = Field(default=16.0, gt=0,
                               description="disk, engine segment: size of a segment file")
    max_size_mib: float = Field(
        default=DEFAULT_DISK_QUEUE_BYTES / MIB, gt=0,
        description="disk: bound on the bytes of the records on disk, whatever the sizer "
                    "(counted from the oldest unacknowledged record on); a full queue "
                    "refuses as for queue_size")
    queue_size: ByteSize | None = Field(
        default=None,
        description="Capacity in sizer units (bytes: a number or a size such as 64MiB); "
                    "default bytes: 64MiB (memory) or 1GiB (disk), requests/items: 1000. "
                    "A bare number needs an explicit sizer")
    sizer: Literal["requests", "items", "bytes"] = Field(
        default="bytes",
        description="bytes: the batches' OTLP protobuf size; requests: batches; items: "
                    "spans, log records or data points (the Collector's meanings)")
    num_consumers: int = Field(default=10, gt=0)
    block_on_overflow: bool = Field(
        default=False, description="Wait for room instead of refusing (retryable) when full")

    @model_validator(mode="before")
    @classmethod
    def _unit_of_queue_size(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("queue_size") is None:
            return data
        size = data["queue_size"]
        has_unit = isinstance(size, str) and not size.strip().isdigit()
        sizer = data.get("sizer")
        if sizer is None:
            if not has_unit:
                raise ValueError(
                    f"sending_queue.queue_size {size!r} needs a sizer: the sizer defaults "
                    "to bytes here (the Collector's to requests); write `sizer: requests` "
                    "to count requests, or a size such as 64MiB")
            return {**data, "sizer": "bytes"}
        if has_unit and sizer != "bytes":
            raise ValueError(f"sending_queue.queue_size {size!r} is a size in bytes but "
                             f"the sizer is {sizer}")
        return data

    @model_validator(mode="after")
    def _check(self) -> QueueSettings:
        if self.enabled and self.storage == "disk" and not self.directory:
            raise ValueError("sending_queue.directory is required when storage is disk")
        if self.queue_size is not None and self.queue_size <= 0:
            raise ValueError("sending_queue.queue_size must be greater than 0")
        return self

    @property
    def capacity(self) -> int:
        """`queue_size`, or the default for the sizer and storage."""
        if self.queue_size is not None:
            return self.queue_size
        if self.sizer != "bytes":
            return DEFAULT_QUEUE_SIZE
        return DEFAULT_DISK_QUEUE_BYTES if self.storage == "disk" else \
            DEFAULT_MEMORY_QUEUE_BYTES

    @property
    def max_bytes(self) -> int | None:
        """The byte bound beside the capacity: a disk queue's `max_size_mib`."""
        return int(self.max_size_mib * MIB) if self.storage == "disk" else None


class ExporterSettings(ComponentConfig):
    """Mix into an exporter's config model to get the standard keys."""

    timeout: Duration = 5.0
    retry_on_failure: RetrySettings = RetrySettings()
    sending_queue: QueueSettings = QueueSettings()
    max_in_flight_requests: int = Field(
        default=DEFAULT_MAX_IN_FLIGHT_REQUESTS, ge=0,
        description="Without a sending queue: exports waiting for the backend at once "
                    "(each holds its caller); one more is refused at once with a retryable "
                    "error. 0: no cap")
    max_in_flight_bytes: ByteSize = Field(
        default=DEFAULT_MAX_IN_FLIGHT_BYTES, ge=0,
        description="Without a sending queue: bytes (OTLP protobuf size) of the exports "
                    "waiting at once; beyond it a batch is refused at once (retryable), "
                    "unless nothing is in flight. 0: no cap")
