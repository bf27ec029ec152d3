"""Exceptions in log text: `exception.type`, `exception.message` and
`exception.stacktrace` (OpenTelemetry semantic conventions) from the stack traces that
Python, Java (and other JVM languages), Go and Node.js print.

`find_exception(text)` looks for the first stack trace in a multi-line text:

- Python: `Traceback (most recent call last):` (or `Exception Group Traceback`); the
  exception is the one of the *last* top-level traceback (with chained exceptions,
  "During handling of the above exception…" / "The above exception was the direct
  cause…", the one raised last, as Python prints it last): its line after the frames,
  `KeyError: 'total'` -> type `KeyError`, message `'total'` (with the lines after it:
  a multi-line message, notes). An exception group gives `ExceptionGroup` and its
  message.
- Java, Node.js (and anything printing `at …` frames): the exception line before the
  first frame line (`\\tat ` or `    at `): `java.lang.IllegalStateException: boom`,
  `Exception in thread "main" java.io.IOException: x`, `TypeError: x`, `Error [ERR_X]:
  y`; the type is a dotted class name or a name with Error or Exception in it. The
  outermost exception is the one thrown (`Caused by:` lines stay in the stack trace);
  a message on several lines is kept whole.
- Go: `panic: …` or `fatal error: …` at the start of a line, followed by a
  `goroutine N [state]:` line: type `panic` (`runtime.Error` when the message starts
  with `runtime error: `, as for an index out of range or a nil dereference) or
  `fatal error`, the message the rest of the line (without ` [recovered]`).

`exception.stacktrace` is the trace as the runtime printed it, from its first line
(the first `Traceback`, the exception line, the `panic:` line) to the end of the text,
without the trailers a launcher adds (`Node.js v20.1.0`, `exit status 2`).

Cost: a text without a newline is not looked at (one `in` test); the others are
scanned with `str.find` for a few fixed markers and then line by line around the
match, with anchored regexes without nested repetition: linear in the text.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

__all__ = ["FoundException", "find_exception", "tag_exception", "tag_exception_otlp"]


class FoundException(NamedTuple):
    type: str
    message: str
    stacktrace: str
    start: int  # where the stack trace starts in the text (what comes before: the log line)


_PY_HEADER = "Traceback (most recent call last):"
_PY_GROUP = "Exception Group "
_TYPE = re.compile(r"([A-Za-z_][\w.]*)(?::[ \t]?|$)")
# Java / Node.js exception line: optional JVM or REPL prefix, type, optional [code].
_HEADER = re.compile(
    r'(?:Exception in thread "[^"\n]*" |Uncaught )?'
    r"([A-Za-z_$][\w$]*(?:[./][A-Za-z_$][\w$]*)*)(?: \[[^\]\n]*\])?(?::[ \t]?|[ \t]*$)")
_FRAMES = ("\n\tat ", "\n    at ", "\n\t  at ")
_GO = ("panic: ", "fatal error: ")
_TRAILERS = ("Node.js v", "exit status ")
_SCAN_BACK = 20  # lines looked at before a frame line for the exception line
_MAX_HEADERS = 64  # Python traceback headers looked at from each end of a text
_MAX_TYPE = 512  # an exception type ends within this many characters of its line
_UNINDENTED = re.compile(r"\n(?=[^ \t\n])")  # the next line that starts with text


def find_exception(text: str) -> FoundException | None:
    """The exception of the first stack trace in `text`; None if there is none."""
    if "\n" not in text:
        return None
    found: FoundException | None = None
    if _PY_HEADER in text:
        found = _python(text)
    if "\ngoroutine " in text:
        go = _go(text)
        if go is not None and (found is None or go.start < found.start):
            found = go
    frame = min((i for i in map(text.find, _FRAMES) if i >= 0), default=-1)
    if frame >= 0 and (found is None or frame < found.start):
        at = _frames(text, frame)
        if at is not None and (found is None or at.start < found.start):
            found = at
    return found


def _line_start(text: str, i: int) -> int:
    return text.rfind("\n", 0, i) + 1


def _line_end(text: str, i: int) -> int:
    j = text.find("\n", i)
    return len(text) if j < 0 else j


def _trace(text: str, start: int) -> str:
    """The stack trace from `start` to the end, without a launcher's trailer line."""
    end = len(text.rstrip())
    last = _line_start(text, end)
    if last > start and text.startswith(_TRAILERS, last):
        end = len(text[:last].rstrip())
    return text[start:end]


# -- Python ---------------------------------------------------------------------------

def _top_header(text: str, i: int) -> tuple[int, str] | None:
    """(line start, prefix) of the header at `i` if it is a top-level one: no prefix, or
    `  + ` (an exception group); `    | ` is nested in a group."""
    ls = _line_start(text, i)
    prefix = text[ls:i]
    if prefix.endswith(_PY_GROUP):
        prefix = prefix[:-len(_PY_GROUP)]
    if not prefix or prefix == "  + ":
        return ls, prefix
    return None


def _python(text: str) -> FoundException | None:
    """The last top-level traceback's exception; the trace from the first header.
    Headers are looked at from both ends, at most _MAX_HEADERS from each."""
    first = -1
    i = text.find(_PY_HEADER)
    for _ in range(_MAX_HEADERS):
        if i < 0:
            break
        top = _top_header(text, i)
        if top is not None:
            first = top[0]
            break
        i = text.find(_PY_HEADER, i + len(_PY_HEADER))
    if first < 0:
        return None
    last = -1
    last_prefix = ""
    j = text.rfind(_PY_HEADER)
    for _ in range(_MAX_HEADERS):
        if j < first:
            break
        top = _top_header(text, j)
        if top is not None:
            last, last_prefix = j, top[1]
            break
        j = text.rfind(_PY_HEADER, 0, j)
    if last < 0:
        return None
    cont = last_prefix.replace("+", "|")  # the prefix of the group's own lines
    pos = _line_end(text, last) + 1
    n = len(text)
    if not cont:  # skip the frames (indented) in C
        m = _UNINDENTED.search(text, pos - 1)
        pos = n if m is None else m.end()
    while pos < n:
        end = _line_end(text, pos)
        if text.startswith(cont, pos) and pos + len(cont) < end \
                and text[pos + len(cont)] not in " \t":
            stop = min(end, pos + len(cont) + _MAX_TYPE)
            m = _TYPE.match(text, pos + len(cont), stop)
            if m is None or (m.end() == stop < end and text[stop - 1] != ":"):
                return None
            # In a group, just the line; else the rest (a message on several lines).
            message = text[m.end():end if cont else n].rstrip()
            return FoundException(m.group(1), message, _trace(text, first), first)
        pos = end + 1
    return None  # cut before its exception line


# -- Java, Node.js --------------------------------------------------------------------

def _frames(text: str, frame: int) -> FoundException | None:
    """The exception line at most _SCAN_BACK lines before the first frame line (the
    newline before it at `frame`)."""
    end = frame
    for _ in range(_SCAN_BACK):
        if end <= 0:
            return None
        ls = _line_start(text, end)
        stop = min(end, ls + _MAX_TYPE)
        m = _HEADER.match(text, ls, stop)
        if m is not None and (m.end() < stop or stop == end):
            name = m.group(1)
            if "." in name or "Error" in name or "Exception" in name or "Throwable" in name:
                message = text[m.end():frame].rstrip()
                start = m.start(1)
                return FoundException(name, message, _trace(text, start), start)
        end = ls - 1
    return None


# -- Go -------------------------------------------------------------------------------

def _go(text: str) -> FoundException | None:
    for marker in _GO:
        if text.startswith(marker):
            i = 0
        else:
            i = text.find("\n" + marker) + 1
            if not i:
                continue
        break
    else:
        return None
    g = text.find("\ngoroutine ", i)
    if g < 0:
        return None
    end = _line_end(text, i)
    kind = text[i:i + len(marker) - 2]  # "panic" / "fatal error"
    message = text[i + len(marker):end].rstrip()
    if message.endswith("]"):
        b = message.rfind(" [recovered")
        if b >= 0:
            message = message[:b]
    if kind == "panic" and message.startswith("runtime error: "):
        kind = "runtime.Error"
    return FoundException(kind, message, _trace(text, i), i)


# -- applied to a record (the processor) ---------------------------------------------

_OTLP_KEYS = frozenset({"exception.type", "exception.stacktrace"})


def tag_exception(attrs: dict[str, Any], message: str) -> str:
    """`exception.*` of a stack trace in the message (or in an
    `exception.stacktrace` attribute a parser found) unless the record has
    `exception.type`; returns the text to mine the template from: the message
    before the stack trace (or the exception's first line)."""
    if "exception.type" in attrs:
        return message
    st = attrs.get("exception.stacktrace")
    own = isinstance(st, str)
    found = find_exception(st if isinstance(st, str) else message)
    if found is None:
        return message
    attrs["exception.type"] = found.type
    attrs["exception.message"] = found.message
    if own:
        return message
    attrs["exception.stacktrace"] = found.stacktrace
    head = message[:found.start].rstrip()
    return head or found.stacktrace.partition("\n")[0]


def tag_exception_otlp(lr: Any, message: str) -> str:
    """`tag_exception` for an OTLP LogRecord."""
    have = {kv.key: kv for kv in lr.attributes if kv.key in _OTLP_KEYS}
    if "exception.type" in have:
        return message
    attrs: dict[str, Any] = {}
    kv = have.get("exception.stacktrace")
    if kv is not None and kv.value.WhichOneof("value") == "string_value":
        attrs["exception.stacktrace"] = kv.value.string_value
    tmpl = tag_exception(attrs, message)
    add = lr.attributes.add
    for k, v in attrs.items():
        if k not in have:
            add(key=k).value.string_value = v
    return tmpl
