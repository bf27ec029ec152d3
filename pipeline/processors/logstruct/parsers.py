"""Line parsers of `logstruct`: each fills a `Record` from one line of text.

Contract: `parse(text, rec)` returns False *before touching* `rec` when the
line is not in its format, True once it has filled `rec`. It may raise on a
bug or a pathological line; the processor contains that per record.

Fixed formats (logfmt, access logs, syslog, Apache error log, container
wrappers) are parsed by hand with `str.find`/`split`/`partition`, which beats
one general regex several times on CPython; user formats (`regex`, `grok`)
are one compiled regex each.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from pipeline.processors.logstruct.grok import GrokPattern, unquote
from pipeline.processors.logstruct.normalize import (
    _MONTHS,
    _WEEKDAYS,
    Normalizer,
    Record,
    level_of,
    syslog_severity_name,
)

__all__ = [
    "AccessLogParser",
    "ApacheErrorParser",
    "AutoParser",
    "ContainerParser",
    "GrokParser",
    "JsonParser",
    "KlogParser",
    "LogfmtParser",
    "Parser",
    "RegexParser",
    "SyslogParser",
]

Reparse = Callable[[str, Record], bool]
_SCALARS = frozenset({str, int, float, bool})


class Parser:
    """Base: `format` names the parser in metrics; `reason` says why a line did not fit."""

    format = "?"
    reason = "line does not match"
    wrapper = False

    def __init__(self, norm: Normalizer):
        self.norm = norm

    def parse(self, text: str, rec: Record) -> bool:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------
# JSON


class JsonParser(Parser):
    """A JSON object; with `allow_prefix`, also `<text prefix> {json}`.

    The prefix is scanned for a timestamp (its first one or two words) and a
    level word (`INFO`, `[error]`, `level=warn` …); what is left of it is kept as
    attribute `log.prefix`.
    """

    format = "json"
    reason = "not a JSON object"

    def __init__(self, norm: Normalizer, allow_prefix: bool = True, unwrap_docker: bool = False):
        super().__init__(norm)
        self.allow_prefix = allow_prefix
        self.unwrap_docker = unwrap_docker
        self.reparse: Reparse | None = None

    def parse(self, text: str, rec: Record) -> bool:
        s = text
        if s[:1] != "{":
            s = text.lstrip()
            if s[:1] != "{":
                return self.allow_prefix and self._prefixed(text, rec)
        try:
            obj = orjson.loads(s)
        except orjson.JSONDecodeError:
            return False
        if type(obj) is not dict:
            return False
        if self.unwrap_docker and "log" in obj and "stream" in obj \
                and type(obj["log"]) is str and self.reparse is not None:
            return docker_unwrap(obj, rec, self.norm, self.reparse)
        self.fill(obj, rec)
        return True

    def fill(self, obj: dict[str, Any], rec: Record) -> None:
        self.norm.fill(rec, obj.items())

    def _prefixed(self, text: str, rec: Record) -> bool:
        i = text.find("{")
        if i <= 0 or text.rstrip()[-1:] != "}":
            return False
        try:
            obj = orjson.loads(text[i:])
        except orjson.JSONDecodeError:
            return False
        if type(obj) is not dict:
            return False
        self.fill(obj, rec)
        prefix = text[:i].strip()
        if prefix:
            self._prefix(prefix, rec)
        return True

    def _prefix(self, prefix: str, rec: Record) -> None:
        all_words = prefix.split()
        words = all_words[:8]
        times = self.norm.times
        used: set[int] = set()
        if not rec.time:
            for i in range(len(words)):
                for n in (2, 1):
                    if i + n <= len(words):
                        ns = times.parse(" ".join(words[i:i + n]).strip("[]"))
                        if ns is not None:
                            rec.time = ns
                            used.update(range(i, i + n))
                            break
                if rec.time:
                    break
        if rec.sev_text is None:
            for i, w in enumerate(words):
                if i in used:
                    continue
                w = w.strip("[]:")
                if w[:6].lower() == "level=":
                    w = w[6:]
                sev = level_of(w)
                if sev is not None and sev[0]:
                    rec.sev_num, rec.sev_text = sev
                    used.add(i)
                    break
        rest = " ".join(w for i, w in enumerate(all_words) if i not in used)
        if rest:
            rec.attrs["log.prefix"] = rest


def docker_unwrap(obj: dict[str, Any], rec: Record, norm: Normalizer, reparse: Reparse) -> bool:
    """Docker json-file: `{"log": "...\\n", "stream": "stdout", "time": "..."}`."""
    rec.format = "container"
    inner = obj["log"]
    if inner.endswith("\n"):
        inner = inner[:-1]
        if inner.endswith("\r"):
            inner = inner[:-1]
    t = obj.get("time")
    if t is not None:
        ns = norm.times.parse(t)
        if ns is not None:
            rec.fallback_time = ns
    rec.attrs["log.iostream"] = str(obj["stream"])
    for k, v in obj.items():
        if k not in ("log", "stream", "time") and v is not None:
            rec.attrs["docker." + k] = v
    if inner and not reparse(inner, rec):
        pass  # a plain-text inner line is a message, not an error
    if rec.body is None:
        rec.body = inner
    return True


# ---------------------------------------------------------------------------------------
# logfmt


_LOGFMT = re.compile(r'([^\s=]+)(=("(?:[^"\\]|\\.)*"?|\S*))?')
_ESCAPES = {'\\"': '"', "\\\\": "\\", "\\n": "\n", "\\t": "\t", "\\r": "\r"}
_ESCAPE_RE = re.compile(r'\\["\\ntr]')


def _unescape(v: str) -> str:
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group()], v) if "\\" in v else v


class LogfmtParser(Parser):
    """`key=value key2="quoted \\"value\\"" flag` (a bare key is `true`).

    `strict` (used by auto-detection) wants the first word to be `key=` and at
    least as many `key=value` pairs as bare words.
    """

    format = "logfmt"
    reason = "no key=value pairs"

    def __init__(self, norm: Normalizer, strict: bool = False):
        super().__init__(norm)
        self.strict = strict

    def parse(self, text: str, rec: Record) -> bool:
        pairs = logfmt_pairs(text)
        n_eq = 0
        for _k, v in pairs:
            if v is not True:
                n_eq += 1
        if not n_eq:
            return False
        if self.strict and (pairs[0][1] is True or 2 * n_eq < len(pairs)):
            return False
        self.norm.fill(rec, pairs)
        return True


def _bare_words(chunk: str, out: list[tuple[str, Any]]) -> None:
    """Pairs of a text without quotes and backslashes, as `_LOGFMT` finds them."""
    for tok in chunk.split():
        if tok[0] == "=":  # `=` cannot start a key: skipped
            tok = tok.lstrip("=")
            if not tok:
                continue
        k, eq, v = tok.partition("=")
        out.append((k, v) if eq else (k, True))


def logfmt_pairs(s: str) -> list[tuple[str, Any]]:
    """The (key, value) pairs of a logfmt text: the value unquoted and unescaped, `True`
    for a bare key. What `_LOGFMT.findall` finds; without backslashes, and with quotes
    only right after `key=`, found with `split`/`find` instead (~2x faster)."""
    if "\\" not in s:
        q = s.find('"')
        out: list[tuple[str, Any]] = []
        if q < 0:
            _bare_words(s, out)
            return out
        pos = 0
        while q >= 0:
            head = s[pos:q]
            if head[-1:] != "=":
                break  # a quote inside a word or starting one: the regex decides
            words = head.rsplit(None, 1)
            k, _, rest = words[-1].partition("=")
            if not k or rest:
                break
            if len(words) == 2:
                _bare_words(words[0], out)
            close = s.find('"', q + 1)
            if close < 0:  # unterminated: the value runs to the end
                out.append((k, s[q + 1:]))
                return out
            out.append((k, s[q + 1:close]))
            pos = close + 1
            q = s.find('"', pos)
        else:
            _bare_words(s[pos:], out)
            return out
    return [(k, _unquote(v) if eq else True) for k, eq, v in _LOGFMT.findall(s)]


def _unquote(v: str) -> str:
    if v[:1] == '"':
        v = v[1:-1] if len(v) > 1 and v[-1] == '"' and v[-2:] != '\\"' else v[1:]
        return _unescape(v)
    return v


# ---------------------------------------------------------------------------------------
# syslog


def _sd_parse(s: str, pos: int) -> tuple[dict[str, dict[str, str]], int] | None:
    """RFC 5424 STRUCTURED-DATA from `s[pos] == '['`; returns (elements, end)."""
    out: dict[str, dict[str, str]] = {}
    n = len(s)
    while pos < n and s[pos] == "[":
        end_id = pos + 1
        while end_id < n and s[end_id] not in " ]":
            end_id += 1
        sd_id = s[pos + 1:end_id]
        params: dict[str, str] = {}
        i = end_id
        while i < n and s[i] == " ":
            eq = s.find("=", i)
            if eq < 0 or eq + 1 >= n or s[eq + 1] != '"':
                return None
            name = s[i + 1:eq]
            j = eq + 2
            buf: list[str] = []
            while j < n:
                c = s[j]
                if c == "\\" and j + 1 < n and s[j + 1] in '"\\]':
                    buf.append(s[j + 1])
                    j += 2
                    continue
                if c == '"':
                    break
                buf.append(c)
                j += 1
            if j >= n:
                return None
            params[name] = "".join(buf)
            i = j + 1
        if i >= n or s[i] != "]":
            return None
        out[sd_id] = params
        pos = i + 1
    return out, pos


class SyslogParser(Parser):
    """RFC 5424 and RFC 3164 (BSD) syslog, with or without the `<PRI>`.

    RFC 3164 lines without a priority must start with the `Mmm dd hh:mm:ss`
    timestamp (as in /var/log/syslog); with one, an ISO 8601 timestamp is
    accepted too (rsyslog's high-precision format).
    """

    format = "syslog"
    reason = "not a syslog line"

    def __init__(self, norm: Normalizer, protocol: str = "auto"):
        super().__init__(norm)
        self.protocol = protocol

    def parse(self, text: str, rec: Record) -> bool:
        s = text
        pri = -1
        if s[:1] == "<":
            gt = s.find(">", 1, 5)
            if gt < 2 or not s[1:gt].isdigit():
                return False
            pri = int(s[1:gt])
            if pri > 191:
                return False
            s = s[gt + 1:]
            if s[:1].isdigit() and (s[1:2] == " " or (s[1:2].isdigit() and s[2:3] == " ")) \
                    and self.protocol != "rfc3164":
                return self._rfc5424(s, pri, rec)
        if self.protocol == "rfc5424":
            return False
        return self._rfc3164(s, pri, rec)

    def _rfc5424(self, s: str, pri: int, rec: Record) -> bool:
        parts = s.split(" ", 6)
        if len(parts) < 6:
            return False
        version, ts, host, app, procid, msgid = parts[:6]
        rest = parts[6] if len(parts) == 7 else ""
        sd: dict[str, dict[str, str]] | None = None
        if rest[:1] == "[":
            parsed = _sd_parse(rest, 0)
            if parsed is None:
                return False
            sd, end = parsed
            rest = rest[end:]
            if rest[:1] == " ":
                rest = rest[1:]
        elif rest[:1] == "-":
            rest = rest[2:]
        elif rest:
            return False
        if rest[:1] == "\ufeff":
            rest = rest[1:]
        norm = self.norm
        field = norm.field
        rec.sev_num, rec.sev_text = level_of(syslog_severity_name(pri)) or (0, "")
        rec.attrs["syslog.facility"] = pri >> 3
        rec.attrs["syslog.version"] = int(version)
        if ts != "-":
            field(rec, "timestamp", ts)
        if host != "-":
            field(rec, "hostname", host)
        if app != "-":
            field(rec, "appname", app)
        if procid != "-":
            field(rec, "procid", procid)
        if msgid != "-":
            rec.attrs["syslog.msgid"] = msgid
        if sd:
            rec.attrs["syslog.structured_data"] = sd
        rec.body = rest
        return True

    def _rfc3164(self, s: str, pri: int, rec: Record) -> bool:
        if s[:3] in _MONTHS and len(s) > 15 and s[3] == " " and s[6] == " " and s[9] == ":":
            ts = s[:15]
            rest = s[15:]
            if rest[:1] == ".":  # fractional seconds
                sp = rest.find(" ")
                if sp < 0:
                    return False
                ts, rest = ts + rest[:sp], rest[sp:]
            if rest[1:5].isdigit() and rest[5:6] == " ":  # a year after the time
                ts, rest = ts + rest[:5], rest[5:]
            if rest[:1] != " ":
                return False
            rest = rest[1:]
        elif pri >= 0 and s[:1].isdigit() and s[4:5] == "-":
            ts, sep, rest = s.partition(" ")
            if not sep:
                return False
        else:
            return False
        first, _, after = rest.partition(" ")
        if first.endswith(":") or (first.endswith("]") and "[" in first):
            host, tag_tok, msg = "", first, after
        else:
            host = first
            tag_tok, _, msg = after.partition(" ")
            if not tag_tok.endswith(":") and not (tag_tok.endswith("]") and "[" in tag_tok):
                tag_tok, msg = "", after
        tag = tag_tok[:-1] if tag_tok.endswith(":") else tag_tok
        program, pid = tag, ""
        if tag.endswith("]"):
            b = tag.rfind("[")
            if b > 0:
                program, pid = tag[:b], tag[b + 1:-1]
        norm = self.norm
        field = norm.field
        if pri >= 0:
            rec.sev_num, rec.sev_text = level_of(syslog_severity_name(pri)) or (0, "")
            rec.attrs["syslog.facility"] = pri >> 3
        field(rec, "timestamp", ts)
        if host:
            field(rec, "hostname", host)
        if program:
            field(rec, "appname", program)
        if pid:
            field(rec, "procid", pid)
        rec.body = msg
        return True


# ---------------------------------------------------------------------------------------
# Access logs (Apache / Nginx common and combined)


def _quote_end(s: str, pos: int) -> int:
    """Index of the `"` closing a quoted string whose content starts at `pos` (-1: none)."""
    q = s.find('"', pos)
    while q > 0 and s[q - 1] == "\\":
        # an escaped quote unless the backslash itself is escaped
        k = q - 1
        while k >= pos and s[k] == "\\":
            k -= 1
        if (q - 1 - k) % 2 == 0:
            break
        q = s.find('"', q + 1)
    return q


def _access_unescape(v: str) -> str:
    if "\\" in v:
        return v.replace("\\\\", "\x00").replace('\\"', '"').replace("\x00", "\\")
    return v


class AccessLogParser(Parser):
    """NCSA common / combined log format (Apache `%h %l %u %t "%r" %>s %b "%{Referer}i"
    "%{User-agent}i"`, Nginx `combined`); text after the user agent is kept as
    attribute `http.access_log.extra`."""

    format = "access_log"
    reason = "not an access log line"

    def parse(self, text: str, rec: Record) -> bool:
        s = text
        i = s.find(" ")
        if i <= 0:
            return False
        j = s.find(" ", i + 1)
        if j < 0:
            return False
        k = s.find(" [", j)
        if k < 0:
            return False
        e = s.find('] "', k)
        if e < 0 or e - k > 40:
            return False
        q1 = _quote_end(s, e + 3)
        if q1 < 0 or s[q1 + 1:q1 + 2] != " ":
            return False
        parts = s[q1 + 2:].split(" ", 2)
        status = parts[0]
        if not (status.isdigit() or status == "-"):
            return False
        size = parts[1] if len(parts) > 1 else ""
        if size and not (size.isdigit() or size == "-"):
            return False
        referer = agent = extra = None
        if len(parts) == 3:
            tail = parts[2]
            if tail[:1] == '"':
                r1 = _quote_end(tail, 1)
                if r1 < 0:
                    return False
                referer = tail[1:r1]
                tail = tail[r1 + 1:].lstrip(" ")
                if tail[:1] == '"':
                    a1 = _quote_end(tail, 1)
                    if a1 < 0:
                        return False
                    agent = tail[1:a1]
                    tail = tail[a1 + 1:].strip()
            if tail:
                extra = tail
        norm = self.norm
        field = norm.field
        field(rec, "clientip", s[:i])
        ident = s[i + 1:j]
        if ident != "-":
            field(rec, "ident", ident)
        user = s[j + 1:k]
        if user != "-":
            field(rec, "auth", user)
        field(rec, "timestamp", s[k + 2:e])
        request = _access_unescape(s[e + 3:q1])
        method, sp, rest = request.partition(" ")
        target, sp2, proto = rest.partition(" ")
        if sp and method.isalpha() and method.isupper() and target and (
                not sp2 or (proto.startswith("HTTP/") and " " not in proto)):
            field(rec, "verb", method)
            field(rec, "request", target)
            if proto:
                rec.attrs["network.protocol.name"] = "http"
                field(rec, "httpversion", proto[5:])
        elif request and request != "-":
            field(rec, "rawrequest", request)
        if status != "-":
            field(rec, "response", int(status))
        if size and size != "-":
            field(rec, "bytes", int(size))
        if referer is not None and referer != "-":
            field(rec, "referrer", _access_unescape(referer))
        if agent is not None and agent != "-":
            field(rec, "agent", _access_unescape(agent))
        if extra is not None:
            rec.attrs["http.access_log.extra"] = extra
        return True


# ---------------------------------------------------------------------------------------
# Apache error log


class ApacheErrorParser(Parser):
    """`[Sun Dec 04 04:47:44 2005] [error] [client 1.2.3.4] msg` (2.2) and
    `[Fri Sep 09 10:42:29.902022 2011] [core:error] [pid 35708:tid 43] [client
    1.2.3.4:5] AH00128: msg` (2.4)."""

    format = "apache_error"
    reason = "not an Apache error log line"

    def parse(self, text: str, rec: Record) -> bool:
        s = text
        if s[:1] != "[" or s[1:4] not in _WEEKDAYS:
            return False
        e = s.find("]", 1)
        if e < 0 or s[e + 1:e + 3] != " [":
            return False
        e2 = s.find("]", e + 3)
        if e2 < 0:
            return False
        ts = s[1:e]
        level = s[e + 3:e2]
        module, colon, lvl = level.rpartition(":")
        if not colon:
            lvl = level
        pos = e2 + 1
        pid = tid = client = None
        while s.startswith(" [", pos):
            end = s.find("]", pos + 2)
            if end < 0:
                break
            inner = s[pos + 2:end]
            if inner.startswith("pid ") and pid is None:
                p, _, t = inner[4:].partition(":tid ")
                pid, tid = p, t or None
            elif inner.startswith("client ") and client is None:
                client = inner[7:]
            else:
                break
            pos = end + 1
        norm = self.norm
        field = norm.field
        field(rec, "timestamp", ts)
        field(rec, "level", lvl)
        if module:
            field(rec, "apache.module", module)
        if pid is not None:
            field(rec, "pid", pid)
        if tid is not None:
            field(rec, "tid", tid)
        if client is not None:
            host, sep, port = client.rpartition(":")
            if sep and port.isdigit() and "." in host:
                field(rec, "client", host)
                field(rec, "client_port", port)
            else:
                field(rec, "client", client)
        rec.body = s[pos:].lstrip(" ")
        return True


# ---------------------------------------------------------------------------------------
# Kubernetes klog / glog


_KLOG = re.compile(r"([IWEF])(\d{4} \d\d:\d\d:\d\d(?:\.\d+)?) +(\d+) ([^:\s\]]+):(\d+)\] ?",
                   re.ASCII)
_KLOG_LEVELS = {"I": "INFO", "W": "WARNING", "E": "ERROR", "F": "FATAL"}
_QUOTED_MSG = re.compile(r'"((?:[^"\\]|\\.)*)"(?: |$)')


class KlogParser(Parser):
    """`Lmmdd hh:mm:ss.uuuuuu threadid file:line] msg`; a structured-logging message
    (`"msg" key="value" …`) has its key/value pairs parsed as logfmt."""

    format = "klog"
    reason = "not a klog line"

    def parse(self, text: str, rec: Record) -> bool:
        m = _KLOG.match(text)
        if not m:
            return False
        letter, ts, thread, file, line = m.groups()
        msg = text[m.end():]
        norm = self.norm
        field = norm.field
        rec.sev_num, rec.sev_text = level_of(_KLOG_LEVELS[letter]) or (0, "")
        field(rec, "timestamp", ts)
        field(rec, "threadid", thread)
        field(rec, "file", file)
        field(rec, "line", line)
        if msg[:1] == '"':
            qm = _QUOTED_MSG.match(msg)
            if qm:
                rec.body = _unescape(qm.group(1))
                rest = msg[qm.end():]
                if rest:
                    norm.fill(rec, logfmt_pairs(rest))
                return True
        rec.body = msg
        return True


# ---------------------------------------------------------------------------------------
# Container runtime wrappers


class ContainerParser(Parser):
    """Docker json-file lines and CRI (containerd, CRI-O) lines: unwrap, then the
    inner line goes through the parsers again (`log.iostream` = stdout/stderr,
    CRI partial lines get `log.partial = true`)."""

    format = "container"
    reason = "not a Docker or CRI container log line"
    wrapper = True

    def __init__(self, norm: Normalizer, kind: str = "auto"):
        super().__init__(norm)
        self.kind = kind
        self.reparse: Reparse | None = None

    def parse(self, text: str, rec: Record) -> bool:
        if text[:1] == "{":
            if self.kind == "cri":
                return False
            try:
                obj = orjson.loads(text)
            except orjson.JSONDecodeError:
                return False
            if type(obj) is not dict or type(obj.get("log")) is not str or "stream" not in obj:
                return False
            assert self.reparse is not None
            return docker_unwrap(obj, rec, self.norm, self.reparse)
        if self.kind == "docker":
            return False
        return self.cri(text, rec)

    def cri(self, text: str, rec: Record) -> bool:
        parts = text.split(" ", 3)
        if len(parts) < 3:
            return False
        ts, stream, tag = parts[0], parts[1], parts[2]
        if stream != "stdout" and stream != "stderr":
            return False
        if tag != "F" and tag != "P" and not tag.startswith(("F:", "P:")):
            return False
        ns = self.norm.times.parse(ts)
        if ns is None:
            return False
        inner = parts[3] if len(parts) == 4 else ""
        rec.format = "container"
        rec.fallback_time = ns
        rec.attrs["log.iostream"] = stream
        if tag[0] == "P":
            rec.attrs["log.partial"] = True
        if inner and self.reparse is not None:
            self.reparse(inner, rec)
        if rec.body is None:
            rec.body = inner
        return True


# ---------------------------------------------------------------------------------------
# User formats


class RegexParser(Parser):
    """A Python regex with named groups, searched in the line (anchor it with `^`)."""

    format = "regex"
    reason = "regex did not match"

    def __init__(self, norm: Normalizer, pattern: str | re.Pattern[str]):
        super().__init__(norm)
        self.regex = re.compile(pattern, re.DOTALL) if isinstance(pattern, str) else pattern
        names = {i: n for n, i in self.regex.groupindex.items()}
        self.plans = [(i - 1, p, p[4])
                      for i in sorted(names) for p in [norm.plan(names[i])]]

    def parse(self, text: str, rec: Record) -> bool:
        m = self.regex.search(text)
        if m is None:
            return False
        groups = m.groups()
        put = self.norm.put
        attrs = rec.attrs
        for i, plan, plain in self.plans:
            v = groups[i]
            if v is not None:
                if plain:
                    attrs[plan[1]] = v
                else:
                    put(rec, plan, v)
        return True


_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


class GrokParser(Parser):
    """One or more grok expressions; the first that matches wins."""

    format = "grok"
    reason = "no grok pattern matched"

    def __init__(self, norm: Normalizer, patterns: Sequence[GrokPattern]):
        super().__init__(norm)
        self.compiled = []
        for gp in patterns:
            plans = []
            for i, (name, conv) in enumerate(gp.fields):
                p = norm.plan(name)
                plans.append((i, p, conv, not conv and p[4]))
            self.compiled.append((gp.regex.search, plans))

    def parse(self, text: str, rec: Record) -> bool:
        for search, plans in self.compiled:  # noqa: B007 - used after the loop
            m = search(text)
            if m is not None:
                break
        else:
            return False
        groups = m.groups()
        put = self.norm.put
        attrs = rec.attrs
        for i, plan, conv, plain in plans:
            v: Any = groups[i]
            if v is None:
                continue
            if plain:
                attrs[plan[1]] = v
                continue
            if conv:
                if conv == "int":
                    v = int(v) if _INT.fullmatch(v) else v
                elif conv == "float":
                    v = float(v) if _FLOAT.fullmatch(v) else v
                else:
                    v = unquote(v)
            put(rec, plan, v)
        return True


# ---------------------------------------------------------------------------------------
# Automatic detection


_HEX_OR_COLON = frozenset("0123456789abcdefABCDEF:")


class AutoParser(Parser):
    """Detects the format from the first characters of the line, then runs that parser.

    `{` JSON (a Docker json-file wrapper is unwrapped); `<` syslog with priority;
    `[Www ` Apache error log; a digit: CRI wrapper (`<RFC 3339> stdout|stderr F|P`),
    access log, JSON after a prefix; `Mmm ` syslog without priority; `Lmmdd `
    klog; `key=` logfmt; otherwise JSON after a text prefix (`... {json}`).
    """

    format = "auto"
    reason = "unrecognised format"

    def __init__(self, norm: Normalizer):
        super().__init__(norm)
        self.json = JsonParser(norm, allow_prefix=True, unwrap_docker=True)
        self.logfmt = LogfmtParser(norm, strict=True)
        self.syslog = SyslogParser(norm)
        self.access = AccessLogParser(norm)
        self.apache_error = ApacheErrorParser(norm)
        self.klog = KlogParser(norm)
        self.container = ContainerParser(norm)
        self.reparse: Reparse | None = None

    def set_reparse(self, reparse: Reparse) -> None:
        self.reparse = reparse
        self.json.reparse = reparse
        self.container.reparse = reparse

    def parse(self, text: str, rec: Record) -> bool:
        return self.detect(text, rec) is not None

    def detect(self, text: str, rec: Record) -> str | None:
        """Parse `text`; the name of the format it was, or None (reason in `self.last`)."""
        c = text[:1]
        if c == "{":
            if self.json.parse(text, rec):
                return rec.format or "json"
            self.last = "invalid JSON"
            return None
        if c == "<":
            if self.syslog.parse(text, rec):
                return "syslog"
            self.last = "invalid syslog priority or header"
            return None
        if c == "[":
            if self.apache_error.parse(text, rec):
                return "apache_error"
        elif c.isdigit():
            if text[4:5] == "-" and (" stdout " in text[:48] or " stderr " in text[:48]) \
                    and self.container.cri(text, rec):
                return "container"
            if " [" in text[:300] and self.access.parse(text, rec):
                return "access_log"
            if text.endswith("}") and self.json.parse(text, rec):
                return "json"
            if self.text_header(text, rec):
                return "text"
        elif c.isalpha():
            head = text[:3]
            if head in _MONTHS and text[3:4] == " ":
                if self.syslog.parse(text, rec):
                    return "syslog"
            elif c in "IWEF" and text[1:5].isdigit() and text[5:6] == " " \
                    and self.klog.parse(text, rec):
                return "klog"
            if c in _HEX_OR_COLON and " [" in text[:300] and self.access.parse(text, rec):
                return "access_log"
            eq = text.find("=", 0, 128)
            if eq > 0 and " " not in text[:eq] and self.logfmt.parse(text, rec):
                return "logfmt"
        elif c == ":" and self.access.parse(text, rec):
            return "access_log"
        if text.endswith("}") and self.json.parse(text, rec):
            return "json"
        self.last = "unrecognised format"
        return None

    last = "unrecognised format"

    def text_header(self, text: str, rec: Record) -> bool:
        """`<timestamp> [<LEVEL>] <message>`, the timestamp being one or two words
        (ISO 8601, `yyyy/MM/dd HH:mm:ss` …) and the level a known word, bracketed or not."""
        words = text.split(" ", 3)
        times = self.norm.times
        ns = None
        used = 0
        if len(words) >= 2:
            ns = times.parse(words[0] + " " + words[1])
            used = 2
        if ns is None:
            ns = times.parse(words[0])
            used = 1
        if ns is None:
            return False
        rest = text.split(" ", used)[used] if len(words) > used else ""
        rest = rest.lstrip(" ")
        lvl_word, _, after = rest.partition(" ")
        sev = level_of(lvl_word.strip("[]:"))
        rec.time = ns
        if sev is not None and sev[0]:
            rec.sev_num, rec.sev_text = sev
            rest = after.lstrip(" ")
            if rest[:2] == "- " or rest[:2] == ": ":
                rest = rest[2:]
        rec.body = rest
        return True

