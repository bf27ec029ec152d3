"""Joining lines into multiline records (stack traces): a new record at a
`line_start_pattern` match, a non-indented line, or a line a `preset` does not
recognise as part of a stack trace; or the record ends at a `line_end_pattern`
match; a record is cut (flagged `log.split`) at `max_lines` lines or `max_log_size`
bytes. The record still open lives on the file (`ml_lines`, `ml_raw`, `ml_bad`,
`ml_state`) and is never checkpointed.

Presets (`multiline: {preset: python}`): which lines continue the record before them.
Every preset continues indented and empty lines; then

- python: `Traceback (most recent call last):`, the chaining lines (`During handling of
  the above exception, another exception occurred:`, `The above exception was the
  direct cause of the following exception:`) and the exception line that ends a
  traceback (`ValueError: bad`, the first unindented line after the frames);
- java: `Caused by: …`, `Suppressed: …` and an exception line (`java.lang.X: msg`,
  `Exception in thread "main" x.y.FooError`: a dotted class name whose last part has
  Exception, Error or Throwable in it, then `:` or the end of the line);
- go: everything a panic prints after `panic: ` or `fatal error: ` (which start a
  record): `goroutine N [state]:`, function lines (`main.main()`), `created by …`,
  `[signal …]`, `exit status N`, until some other line;
- nodejs: an error line (`TypeError: x`, `Error [ERR_X]: y`, a name ending in Error or
  Exception), `}` closing an error's printed properties and `Node.js vX` (a crash).

Each rule is a prefix test or an anchored regex without nested repetition: linear in
the line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import Counter

from pipeline.receivers.filelog.config import Extra, FileLogConfig, MultilineConfig
from pipeline.receivers.filelog.encoding import decode, utf8_cut
from pipeline.receivers.filelog.tracker import WatchedFile

# Records ready to deliver: UTF-8 bodies, their extra attributes (None if none has
# any), and the bytes of the file they span.
Records = tuple[list[bytes], list[Extra] | None, int]


# -- presets ----------------------------------------------------------------------------
# A preset: (file, line) -> does the line continue the open record? It may keep state
# in `f.ml_state` (reset with the file).

Continues = Callable[[WatchedFile, bytes], bool]

_IN_TRACE = 1
_MAX_TYPE = 512  # an exception line's type ends within this many bytes
_PY_CHAIN = (b"During handling of the above exception",
             b"The above exception was the direct cause")
_PY_HEADER = (b"Traceback (most recent call last):",
              b"Exception Group Traceback (most recent call last):")


def _python(f: WatchedFile, line: bytes) -> bool:
    if not line or line[0] in b" \t":
        return True
    if line.startswith(_PY_HEADER):
        f.ml_state = _IN_TRACE  # the exception line is still to come
        return True
    if line.startswith(_PY_CHAIN):
        return True
    if f.ml_state == _IN_TRACE:  # `ValueError: bad`, the line after the frames
        f.ml_state = 0
        return True
    return False


# A dotted class name then `:` or the end; its last part is checked in Python (a regex
# `[\w$]*Exception[\w$]*` would backtrack quadratically on `a.ErrorErrorError…!`).
_JAVA_EXC = re.compile(rb'(?:Exception in thread "[^"\n]*" )?(?:[A-Za-z_$][\w$]*\.)+'
                       rb'([\w$]*)(?::|$)').match


def _java(f: WatchedFile, line: bytes) -> bool:
    if not line or line[0] in b" \t":
        return True
    if line.startswith((b"Caused by: ", b"Suppressed: ")):
        return True
    m = _JAVA_EXC(line, 0, _MAX_TYPE)  # a class name is short: bounded work per line
    if m is None or (m.end() == _MAX_TYPE < len(line) and line[_MAX_TYPE - 1] != 58):  # ":"
        return False
    name = m.group(1)
    return b"Exception" in name or b"Error" in name or b"Throwable" in name


_GO_START = (b"panic: ", b"fatal error: ")
_GO_TRACE = (b"goroutine ", b"created by ", b"[signal ", b"exit status ", b"runtime stack:",
             b"...additional frames elided...", b"panic: ", b"fatal error: ")


def _go(f: WatchedFile, line: bytes) -> bool:
    if f.ml_state != _IN_TRACE:
        if line.startswith(_GO_START):
            f.ml_state = _IN_TRACE
            return False  # a panic starts its own record
        return not line or line[0] in b" \t"
    if not line or line[0] in b" \t" or line.startswith(_GO_TRACE):
        return True
    # A function line: `main.main()`, `main.(*T).m(0xc000010000, {0x1, 0x2})`.
    i = line.find(b"(")
    if i > 0 and line.endswith(b")") and b" " not in line[:i]:
        return True
    f.ml_state = 0
    return False


_NODE_ERR = re.compile(rb"(?:Uncaught )?([A-Za-z_$][\w$]*)(?: \[[^\]\n]*\])?(?::|$)").match


def _nodejs(f: WatchedFile, line: bytes) -> bool:
    if not line or line[0] in b" \t":
        return True
    if line == b"}" or line.startswith(b"Node.js v"):
        return True
    m = _NODE_ERR(line, 0, _MAX_TYPE)
    if m is not None and m.end() == _MAX_TYPE < len(line) and line[_MAX_TYPE - 1] != 58:
        return False
    return m is not None and m.group(1).endswith((b"Error", b"Exception"))


PRESETS: dict[str, Continues] = {"python": _python, "java": _java, "go": _go,
                                 "nodejs": _nodejs}


class Joiner:
    """Multiline record assembly for one group of files (state is per file)."""

    def __init__(self, ml: MultilineConfig, config: FileLogConfig,
                 flagged: Mapping[str, Counter]):
        self._continues = PRESETS[ml.preset] if ml.preset is not None else None
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
        continues = self._continues
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
                if continues is not None:
                    starts = not continues(f, line)  # called for every line: its state
                elif not f.ml_lines:
                    starts = False
                elif start_match is not None:
                    starts = start_match(line) is not None
                elif indented:
                    starts = bool(line) and line[0] not in b" \t"
                else:
                    starts = False
                if f.ml_lines and starts:
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
