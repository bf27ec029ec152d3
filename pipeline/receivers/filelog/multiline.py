"""Joining lines into multiline records (stack traces): a new record at a
`line_start_pattern` match or a non-indented line, or the record ends at a
`line_end_pattern` match; a record is cut (flagged `log.split`) at `max_lines` lines
or `max_log_size` bytes. The record still open lives on the file (`ml_lines`,
`ml_raw`, `ml_bad`) and is never checkpointed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from prometheus_client import Counter

from pipeline.receivers.filelog.config import Extra, FileLogConfig
from pipeline.receivers.filelog.encoding import decode, utf8_cut
from pipeline.receivers.filelog.tracker import WatchedFile

# Records ready to deliver: UTF-8 bodies, their extra attributes (None if none has
# any), and the bytes of the file they span.
Records = tuple[list[bytes], list[Extra] | None, int]


class Joiner:
    """Multiline record assembly for one receiver (state is per file)."""

    def __init__(self, config: FileLogConfig, flagged: Mapping[str, Counter]):
        ml = config.multiline
        assert ml is not None
        self._start_match = re.compile(ml.line_start_pattern.encode()).match \
            if ml.line_start_pattern is not None else None
        self._end_search = re.compile(ml.line_end_pattern.encode()).search \
            if ml.line_end_pattern is not None else None
        self._indented = ml.indented
        self._max_lines = ml.max_lines
        self._max_batch = config.max_batch_lines
        self._limit = config.max_log_size
        self._m_flagged = flagged

    def feed(self, f: WatchedFile, lines: list[bytes],
             bodies_all: list[bytes] | None) -> Iterator[Records]:
        """Complete raw lines of `f` (`bodies_all`: their UTF-8 bodies if all are valid),
        joined into records; yields batches of up to max_batch_lines records to deliver
        (each delivered before the next line is looked at), the last one possibly empty
        with only the bytes of lines that joined the open record."""
        start_match = self._start_match
        end_search = self._end_search
        indented = self._indented
        max_lines = self._max_lines
        nl_len = f.codec.unit
        mb = self._max_batch
        out_bodies: list[bytes] = []
        out_extras: list[Extra] = []
        out_raw = 0
        for i, raw in enumerate(lines):
            if bodies_all is not None:
                line, bad = bodies_all[i], False
            else:
                line, bad = decode(f.codec, raw)
            raw_len = len(raw) + nl_len
            if f.split_open:
                # The end of a line whose first pieces were emitted already.
                f.split_open = False
                out_raw += self.close_record(f, out_bodies, out_extras, False)
                f.ml_lines.append(line)
                f.ml_raw += raw_len
                f.ml_bad = bad
                out_raw += self.close_record(f, out_bodies, out_extras, True)
            else:
                if f.ml_lines:
                    if start_match is not None:
                        starts = start_match(line) is not None
                    elif indented:
                        starts = bool(line) and line[0] not in b" \t"
                    else:
                        starts = False
                    if starts:
                        out_raw += self.close_record(f, out_bodies, out_extras, False)
                f.ml_lines.append(line)
                f.ml_raw += raw_len
                f.ml_bad = f.ml_bad or bad
                if end_search is not None and end_search(line) is not None:
                    out_raw += self.close_record(f, out_bodies, out_extras, False)
                elif len(f.ml_lines) >= max_lines:
                    out_raw += self.close_record(f, out_bodies, out_extras, True)
            if len(out_bodies) >= mb:
                yield out_bodies, out_extras if any(out_extras) else None, out_raw
                out_bodies, out_extras, out_raw = [], [], 0
        if out_bodies or out_raw:
            yield out_bodies, out_extras if any(out_extras) else None, out_raw

    def close_record(self, f: WatchedFile, bodies: list[bytes], extras: list[Extra],
                     cut: bool) -> int:
        """Move the open multiline record into `bodies`; returns its size in the file."""
        body = b"\n".join(f.ml_lines).rstrip(b"\n")
        raw = f.ml_raw
        bad = f.ml_bad
        f.ml_lines = []
        f.ml_raw = 0
        f.ml_bad = False
        if not body and not cut:
            return raw
        limit = self._limit
        if len(body) > limit:
            pieces = []
            while len(body) > limit:
                c = utf8_cut(body, limit)
                pieces.append(body[:c])
                body = body[c:]
            pieces.append(body)
            cut = True
        else:
            pieces = [body]
        extra: Extra = {}
        if bad:
            extra["log.invalid_encoding"] = True
        if cut:
            extra["log.split"] = True
        if bad:
            self._m_flagged["invalid_encoding"].inc()
        if cut:
            self._m_flagged["split"].inc(len(pieces))
        for p in pieces:
            bodies.append(p)
            extras.append(extra)
        return raw

    def flush(self, f: WatchedFile) -> Records:
        """The open record, closed (flush_period passed, or the file ends)."""
        bodies: list[bytes] = []
        extras: list[Extra] = []
        raw = self.close_record(f, bodies, extras, False)
        return bodies, extras if any(extras) else None, raw
