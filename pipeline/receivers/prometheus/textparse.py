"""The slow half of the exposition parser: series text (`name{a="b",...}`) into a
name and labels, exemplars, metadata lines. The hot loop in `target` only
calls these for a series it has not seen before (or a line with an exemplar),
so a steady target costs one dict lookup per sample.

Accepted: the Prometheus text format 0.0.4 (and 1.0.0, whose quoted UTF-8
names `{"my.metric", a="b"}` are read too) and OpenMetrics 1.0 (exemplars,
`_created`, `# EOF`, float-second timestamps).
"""

from __future__ import annotations

import re

_QUOTED = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_ESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"n": "\n", "\\": "\\", '"': '"'}
_VALUE = r'"([^"\\\n]*(?:\\.[^"\\\n]*)*)"'
_PAIR = r"[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*" + _VALUE + r"[ \t]*"
_PAIR_NC = (r"[ \t]*[a-zA-Z_][a-zA-Z0-9_]*[ \t]*=[ \t]*" + _VALUE.replace("(", "(?:", 1)
            + r"[ \t]*")
# The common case in one C-speed match: `name{a="x",b="y"}` with plain label names.
_FAST_SET = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)[ \t]*\{(?:" + _PAIR_NC + r",)*(?:"
                       + _PAIR_NC + r")?\}")
_PAIRS = re.compile(_PAIR)


class ParseError(ValueError):
    """A line of the exposition is malformed; the scrape fails (as in Prometheus)."""


def unescape(s: str) -> str:
    if "\\" not in s:
        return s
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), s)


def _skip(s: str, i: int) -> int:
    n = len(s)
    while i < n and s[i] in " \t":
        i += 1
    return i


def _quoted(s: str, i: int) -> tuple[str, int]:
    m = _QUOTED.match(s, i)
    if m is None:
        raise ParseError("unterminated or invalid quoted string")
    return unescape(m.group(1)), m.end()


def parse_labels(s: str, i: int, name: str) -> tuple[str, list[tuple[str, str]], int]:
    """Labels from `s[i] == '{'` to the closing brace; returns (name, labels, end)."""
    labels: list[tuple[str, str]] = []
    i += 1
    n = len(s)
    while True:
        i = _skip(s, i)
        if i >= n:
            raise ParseError("unterminated label set")
        c = s[i]
        if c == "}":
            return name, labels, i + 1
        if c == '"':
            lname, i = _quoted(s, i)
            i = _skip(s, i)
            if i < n and s[i] in ",}":
                if name:
                    raise ParseError("metric name given twice")
                name = lname
                if s[i] == ",":
                    i += 1
                continue
        else:
            m = _LABEL.match(s, i)
            if m is None:
                raise ParseError(f"invalid label name at {s[i:i + 20]!r}")
            lname, i = m.group(), m.end()
        i = _skip(s, i)
        if i >= n or s[i] != "=":
            raise ParseError(f"expected '=' after label {lname!r}")
        i = _skip(s, i + 1)
        if i >= n or s[i] != '"':
            raise ParseError(f"expected a quoted value for label {lname!r}")
        value, i = _quoted(s, i)
        labels.append((lname, value))
        i = _skip(s, i)
        if i < n and s[i] == ",":
            i += 1
        elif i >= n or s[i] != "}":
            raise ParseError("expected ',' or '}' in label set")


def parse_series(key: str) -> tuple[str, list[tuple[str, str]]]:
    """`name{labels}` (the text before the value) into (name, labels)."""
    key = key.strip()
    m = _FAST_SET.fullmatch(key)
    if m is not None:
        name = m.group(1)
        labels = [(k, unescape(v)) for k, v in _PAIRS.findall(key, m.end(1) + 1)]
        if len({k for k, _ in labels}) != len(labels):
            raise ParseError("a label given twice")
        return name, labels
    brace = key.find("{")
    if brace < 0:
        if _NAME.fullmatch(key) is None:
            raise ParseError(f"invalid metric name {key[:80]!r}")
        return key, []
    name = key[:brace].rstrip()
    if name and _NAME.fullmatch(name) is None:
        raise ParseError(f"invalid metric name {name[:80]!r}")
    name, labels, end = parse_labels(key, brace, name)
    if end != len(key):
        raise ParseError(f"unexpected text after the label set: {key[end:end + 40]!r}")
    if not name:
        raise ParseError("sample without a metric name")
    seen: set[str] = set()
    for k, _ in labels:
        if k in seen:
            raise ParseError(f"label {k!r} given twice")
        seen.add(k)
    return name, labels


def split_sample(line: str) -> tuple[str, str, str | None]:
    """A sample line with an exemplar (or otherwise unusual) into (series text,
    value-and-timestamp text, exemplar text or None)."""
    brace = line.find("{")
    space = line.find(" ")
    if brace >= 0 and (space < 0 or brace < space or line[:brace].strip() == ""):
        _, _, end = parse_labels(line, brace, line[:brace].strip() or "x")
    else:
        end = space if space >= 0 else len(line)
    key, rest = line[:end], line[end:]
    value, sep, exemplar = rest.partition(" # ")
    if not sep and rest.rstrip().endswith(" #"):
        value = rest.rstrip()[:-2]
    return key, value, (exemplar if sep else None)


def parse_exemplar(text: str) -> tuple[list[tuple[str, str]], float, float | None]:
    """OpenMetrics exemplar `{labels} value [timestamp]` -> (labels, value, ts seconds)."""
    text = text.strip()
    if not text.startswith("{"):
        raise ParseError("exemplar must start with a label set")
    _, labels, end = parse_labels(text, 0, "x")
    parts = text[end:].split()
    if not 1 <= len(parts) <= 2:
        raise ParseError("exemplar needs a value and an optional timestamp")
    try:
        value = float(parts[0])
        ts = float(parts[1]) if len(parts) == 2 else None
    except ValueError:
        raise ParseError(f"invalid exemplar value {text[end:end + 40]!r}") from None
    return labels, value, ts


def parse_meta(line: str) -> tuple[str, str, str] | None:
    """`# HELP name text`, `# TYPE name type`, `# UNIT name unit` -> (kind, name, rest);
    None for other comments."""
    parts = line.split(None, 3)
    if len(parts) < 3 or parts[0] != "#" or parts[1] not in ("HELP", "TYPE", "UNIT"):
        return None
    name = parts[2]
    if name.startswith('"'):
        name, end = _quoted(line, line.index('"'))
        rest = line[end:].strip()
    else:
        rest = parts[3] if len(parts) > 3 else ""
    if parts[1] == "HELP":
        rest = unescape(rest)
    return parts[1], name, rest.strip() if parts[1] != "HELP" else rest
