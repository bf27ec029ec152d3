"""Disk-backed sending queues: an append-only segment log and SQLite (WAL).

Both keep one record per batch: the signal, the request bytes as they
arrived (no re-encoding), the item count and the client metadata.

Semantics (both engines):

- `put` returns once the record is durably written: `fsync: true` waits for
  the disk (fdatasync of the segment / `synchronous=FULL` commit of the WAL);
  `fsync: false` waits for the OS (a `write`, or a `synchronous=NORMAL`
  commit), which survives a killed process but not a power cut.
  Concurrent puts share one write and one fsync (group commit), done on a
  thread of the queue's own, so the event loop never waits for the disk.
- An entry is removed only when the worker acknowledges it (delivered, or
  dropped as permanent). Acknowledgements are written lazily and never
  fsynced: after a crash, a batch whose acknowledgement was lost is sent
  again. That is the at-least-once contract: duplicates, never loss.
- After a restart everything not acknowledged is handed out again, oldest
  first.
- A torn or corrupt record (crash in the middle of a write, bit rot) is
  detected by its CRC32 (segment log) or by SQLite's WAL checksums, skipped
  with a log line and counted; it never stops the queue from opening.
- One directory per exporter id, locked (`flock`) so two processes cannot
  share a queue.

Modules: `store` (the synchronous `Store` interface, record types, the
directory lock), `segment` and `sqlite` (the two engines, with their on-disk
layouts), `persistent` (`PersistentQueue`: the async queue, group commit on
its own I/O thread, the in-memory cache). This module names the public API.
"""

from pipeline.exporterhelper.diskqueue.persistent import PersistentQueue
from pipeline.exporterhelper.diskqueue.store import (
    RecoveryStats,
    Store,
    make_store,
    queue_directory,
)

__all__ = ["PersistentQueue", "RecoveryStats", "Store", "make_store", "queue_directory"]
