"""What every exporter shares: the send loop, retries, sending queues, HTTP pieces.

Modules:

- `exporter`: the `Exporter` base class (timeout, retry loop, queue workers,
  the `otelpipe_exporter_*` metrics);
- `retry`: `Backoff`, `Retry-After` and gRPC `RetryInfo` delays;
- `queue`: `SendingQueue` (sizing, overflow, hand-out, ack) and `MemoryQueue`;
- `diskqueue`: `PersistentQueue` over a segment log or SQLite;
- `http`: the aiohttp client pieces of the HTTP exporters.

Their settings (`timeout`, `retry_on_failure`, `sending_queue`) are models in
`pipeline.config.retry`.

This package is a library layer, not a component, so this module names its
public API, imported from the submodules: `from pipeline.exporterhelper
import Exporter`.
"""

from pipeline.exporterhelper.diskqueue import PersistentQueue
from pipeline.exporterhelper.exporter import Exporter
from pipeline.exporterhelper.queue import MemoryQueue, QueueFullError, SendingQueue
from pipeline.exporterhelper.retry import Backoff

__all__ = [
    "Backoff",
    "Exporter",
    "MemoryQueue",
    "PersistentQueue",
    "QueueFullError",
    "SendingQueue",
]
