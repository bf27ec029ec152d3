"""The `filelog` receiver: tails files matched by globs, one log record per line.

    receivers:
      filelog:
        include: [/var/log/app/*.log]
        exclude: [/var/log/app/debug*.log]
        start_at: end                # or beginning (only for files found on the first run)
        storage_dir: /var/lib/otelpipe   # checkpoints (offsets) survive restarts
        multiline: {line_start_pattern: '^\\d{4}-\\d{2}-\\d{2}'}

Or groups of files, each with its own rules (`include`, `exclude`, `multiline`,
`encoding`, `attributes`); the receiver's `exclude` applies to every group, its
`encoding` and `attributes` are their defaults:

    receivers:
      filelog:
        storage_dir: /var/lib/otelpipe
        groups:
          - name: app
            include: [/var/log/app/*.log]
            multiline: {preset: python}     # or java, go, nodejs, or a line_start_pattern
          - name: nginx
            include: [/var/log/nginx/access.log]   # one record per line

A file matched by several groups belongs to the first (listed order; logged once per
file at info, naming both groups), so a specific group goes before a catch-all one;
the same glob in a later group is a config error unless the earlier group excludes
something (the later one then gets what it excludes). A file
keeps the group it was opened with (a rotated file is read to its end with the same
rules). Checkpoints are per file identity, whatever its group.

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

Modules, as the Collector contrib's file tailing: `config` (the models),
`tracker` (discovery, file identity, rotation), `checkpoint` (offsets on disk),
`encoding` (codecs and lines), `multiline` (joining lines), `reader` (lines to
records to batches), `receiver` (poll loop, delivery, lifecycle). This module
holds only the factory; the receiver's modules load when one is created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.component import Factory, Kind, ReceiverCreateSettings, Signal
from pipeline.receivers.filelog.config import FileLogConfig

if TYPE_CHECKING:
    from pipeline.receivers.filelog.receiver import FileLogReceiver


def _create(settings: ReceiverCreateSettings, config: FileLogConfig) -> FileLogReceiver:
    from pipeline.receivers.filelog.receiver import FileLogReceiver

    return FileLogReceiver(settings, config)


factory = Factory(
    type="filelog",
    kind=Kind.RECEIVER,
    config_model=FileLogConfig,
    create=_create,
    signals=frozenset({Signal.LOGS}),
    runs_once=lambda config: True,  # checkpoints, and one reader per file
    description="Tails files by glob, one log record per line (or multiline record), "
                "with checkpointed offsets and rotation handling.",
)
