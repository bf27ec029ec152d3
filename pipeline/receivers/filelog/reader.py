"""Reading files: what is new in a file becomes lines, lines become records (split at
`max_log_size`, flagged `log.split` / `log.invalid_encoding`; joined by the multiline
`Joiner` if configured), records go to `deliver` in batches of `max_batch_lines`.

The offset of a file advances only by what `deliver` returned for (it is the
receiver's: retried until accepted, then checkpointed). An unterminated line
(`rest`) waits for its newline, or `force_flush_period`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterable

from pipeline.component import CreateSettings
from pipeline.receivers.filelog.config import Extra, FileLogConfig
from pipeline.receivers.filelog.encoding import decode, pieces, split_lines, valid_utf8
from pipeline.receivers.filelog.multiline import Joiner, Records
from pipeline.receivers.filelog.tracker import WatchedFile
from pipeline.telemetry.metrics import CounterSpec

BYTES_READ = CounterSpec(
    "otelpipe_filelog_bytes_read", "Bytes a filelog receiver read from files.", ("receiver",))
FLAGGED_RECORDS = CounterSpec(
    "otelpipe_filelog_flagged_records",
    "Records flagged log.split (line over max_log_size) or log.invalid_encoding.",
    ("receiver", "flag"))

# Hand records of a file to the pipeline: (file, bodies, extras, bytes of the file
# they span); returns once they were accepted (or rejected for good).
Deliver = Callable[[WatchedFile, list[bytes], list[Extra] | None, int], Awaitable[None]]

READ_SIZE = 256 * 1024  # bytes per pread


class Reader:
    READ_BUDGET = 4 * 1024 * 1024  # bytes per file per poll before turning to the next file

    def __init__(self, settings: CreateSettings, config: FileLogConfig, deliver: Deliver,
                 *, read_size: int = READ_SIZE):
        self.config = config
        self._read_size = read_size
        self.log = settings.logger
        self._deliver = deliver
        rid = str(settings.id)
        t = settings.telemetry
        self._m_bytes = t.counter(BYTES_READ).labels(rid)
        flagged = t.counter(FLAGGED_RECORDS)
        self._m_flagged = {k: flagged.labels(rid, k) for k in ("split", "invalid_encoding")}
        # One joiner per group of files (None: one record per line).
        self._groups = config.file_groups()
        self._joiners = [Joiner(g.multiline, config, self._m_flagged)
                         if g.multiline is not None else None for g in self._groups]

    async def read(self, f: WatchedFile) -> bool:
        """Read what is new in a file and emit it; True if more is waiting already."""
        budget = self.READ_BUDGET
        got = False
        nl = f.codec.nl
        held = b""
        failed = False
        while budget > 0:
            try:
                data = os.pread(f.fd, self._read_size, f.read_pos)
            except OSError as exc:
                self.log.warning("cannot read file", extra={"path": f.path, "error": str(exc)})
                failed = True
                break
            if not data:
                break
            got = True
            self._m_bytes.inc(len(data))
            f.read_pos += len(data)
            budget -= len(data)
            buf = f.rest + data if f.rest else data
            lines, complete, f.rest = split_lines(buf, nl)
            held = b""
            if lines:
                # A full read: more is probably there, so a short last batch waits for the
                # next read's lines (one batch, one checkpoint, instead of two).
                held = await self._emit_lines(f, lines, complete,
                                              hold=len(data) == self._read_size and budget > 0)
            if held:
                f.rest = held + f.rest  # complete lines again at the next split
            elif len(f.rest) >= self.config.max_log_size:
                await self._emit_long_rest(f)
        if held:  # held back for a read that found nothing more: emit them now
            lines, complete, f.rest = split_lines(f.rest, nl)
            await self._emit_lines(f, lines, complete)
        if failed:
            return False
        now = time.monotonic()
        if got:
            f.last_data = now
            return budget <= 0
        await self._idle(f, now - f.last_data)
        return False

    async def _idle(self, f: WatchedFile, idle: float) -> None:
        """Nothing new in the file for `idle` seconds: emit what waited long enough."""
        ffp = self.config.force_flush_period
        flush_rest = bool(f.rest) and ffp > 0 and idle >= ffp
        ml = self._groups[f.group].multiline
        if ml is not None:
            if (f.ml_lines or flush_rest) and idle >= ml.flush_period:
                if flush_rest and not f.split_open:
                    # The unterminated line ends the open record.
                    line, bad = decode(f.codec, f.rest)
                    f.ml_lines.append(line)
                    f.ml_raw += len(f.rest)
                    f.ml_bad = f.ml_bad or bad
                    f.rest = b""
                await self.flush_pending(f)
        elif flush_rest:
            await self._flush_rest(f)

    async def flush_pending(self, f: WatchedFile) -> None:
        """Emit the open multiline record and the unterminated line, if any."""
        if f.ml_lines:
            await self._flush_multiline(f)
        if f.rest:
            await self._flush_rest(f)

    # -- records ----------------------------------------------------------------------

    async def _emit_lines(self, f: WatchedFile, lines: list[bytes], complete: bytes,
                          hold: bool = False) -> bytes:
        """Complete lines read from the file, in batches of max_batch_lines. With `hold`,
        a last batch shorter than max_batch_lines after full ones is not delivered: its
        raw bytes (newlines included) are returned, to be read again with what follows
        (they are not counted in the offset, so nothing is lost or repeated)."""
        codec = f.codec
        # Fast path: text valid in its encoding, so each line is its own UTF-8 body.
        bodies_all = _fast_bodies(f, lines, complete) if complete else None
        joiner = self._joiners[f.group]
        if joiner is not None:
            for records in joiner.feed(f, lines, bodies_all):
                await self._deliver(f, *records)
            return b""
        mb = self.config.max_batch_lines
        limit = self.config.max_log_size
        nl_len = codec.unit
        for i in range(0, len(lines), mb):
            group = lines[i:i + mb]
            if hold and i and len(group) < mb and nl_len == 1:
                held = codec.nl.join(group) + codec.nl
                if len(held) + len(f.rest) < limit:
                    return held
            raw_len = sum(map(len, group)) + len(group) * nl_len
            extras: list[Extra] | None = None
            if bodies_all is not None and not f.split_open and max(map(len, group)) <= limit:
                bodies = bodies_all if len(group) == len(bodies_all) else bodies_all[i:i + mb]
                if b"" in bodies:
                    bodies = [b for b in bodies if b]
            else:
                bodies, extras = self._slow_records(f, group)
            await self._deliver(f, bodies, extras, raw_len)
        return b""

    def _slow_records(self, f: WatchedFile, group: Iterable[bytes]
                      ) -> tuple[list[bytes], list[Extra] | None]:
        bodies: list[bytes] = []
        extras: list[Extra] = []
        limit = self.config.max_log_size
        codec = f.codec
        for raw in group:
            split = f.split_open
            f.split_open = False
            parts = pieces(codec, raw, limit) if len(raw) > limit else (raw,)
            if len(parts) > 1:
                split = True
            for piece in parts:
                body, bad = decode(codec, piece)
                if not body and not split:
                    continue
                extra: Extra = {}
                if bad:
                    extra["log.invalid_encoding"] = True
                    self._m_flagged["invalid_encoding"].inc()
                if split:
                    extra["log.split"] = True
                    self._m_flagged["split"].inc()
                bodies.append(body)
                extras.append(extra)
        return bodies, (extras if any(extras) else None)

    async def _emit_long_rest(self, f: WatchedFile) -> None:
        """An unterminated line already longer than max_log_size: emit full pieces."""
        parts = pieces(f.codec, f.rest, self.config.max_log_size)
        tail = parts.pop()
        if f.ml_lines:
            await self._flush_multiline(f)
        bodies: list[bytes] = []
        extras: list[Extra] = []
        for piece in parts:
            body, bad = decode(f.codec, piece)
            bodies.append(body)
            extras.append({"log.split": True, "log.invalid_encoding": True} if bad
                          else {"log.split": True})
            self._m_flagged["split"].inc()
            if bad:
                self._m_flagged["invalid_encoding"].inc()
        f.rest = tail
        f.split_open = True
        await self._deliver(f, bodies, extras, sum(map(len, parts)))

    async def _flush_rest(self, f: WatchedFile) -> None:
        """Emit an unterminated last line (force_flush_period passed)."""
        rest = f.rest
        f.rest = b""
        bodies, extras = self._slow_records(f, (rest,))
        await self._deliver(f, bodies, extras, len(rest))

    # -- multiline --------------------------------------------------------------------

    async def _flush_multiline(self, f: WatchedFile) -> None:
        joiner = self._joiners[f.group]
        assert joiner is not None
        records: Records = joiner.flush(f)
        await self._deliver(f, *records)


def _fast_bodies(f: WatchedFile, lines: list[bytes], complete: bytes) -> list[bytes] | None:
    """The UTF-8 bodies of `lines` (the text `complete` spans) if all are valid in the
    file's encoding, decoded in one go; None: decode line by line."""
    codec = f.codec
    bodies_all: list[bytes] | None = None
    if codec.utf8:
        if complete.isascii() or valid_utf8(complete):
            bodies_all = lines
    else:  # a one-byte newline: transcode the whole block at once
        try:
            bodies_all = complete.decode(codec.name).encode().split(b"\n")
        except UnicodeDecodeError:
            bodies_all = None
        if bodies_all is not None and len(bodies_all) != len(lines):
            bodies_all = None
    if bodies_all is not None and b"\r" in complete:
        bodies_all = [b[:-1] if b[-1:] == b"\r" else b for b in bodies_all]
    return bodies_all
