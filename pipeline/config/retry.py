"""The settings every exporter shares: `timeout`, `retry_on_failure`, `sending_queue`.

```yaml
exporters:
  otlp:
    timeout: 5s
    retry_on_failure: {enabled: true, initial_interval: 5s, max_interval: 30s,
                       max_elapsed_time: 5m, multiplier: 1.5, randomization_factor: 0.5}
    sending_queue: {enabled: true, storage: memory, queue_size: 1000, sizer: requests,
                    num_consumers: 10, block_on_overflow: false}
```

Only the models live here (settings are configuration); what they drive (the
send loop, backoff, the memory and disk queues) is `pipeline.exporterhelper`.
An exporter's config model mixes in `ExporterSettings`; a component that
retries on its own (the kafka receiver) builds a `RetrySettings`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.component import ComponentConfig
from pipeline.config.types import Duration

__all__ = ["ExporterSettings", "QueueSettings", "RetrySettings"]


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
    queue_size: int = Field(default=1000, gt=0)
    sizer: Literal["requests", "items", "bytes"] = "requests"
    num_consumers: int = Field(default=10, gt=0)
    block_on_overflow: bool = False

    @model_validator(mode="after")
    def _disk_needs_directory(self) -> QueueSettings:
        if self.enabled and self.storage == "disk" and not self.directory:
            raise ValueError("sending_queue.directory is required when storage is disk")
        return self


class ExporterSettings(ComponentConfig):
    """Mix into an exporter's config model to get the standard keys."""

    timeout: Duration = 5.0
    retry_on_failure: RetrySettings = RetrySettings()
    sending_queue: QueueSettings = QueueSettings()
