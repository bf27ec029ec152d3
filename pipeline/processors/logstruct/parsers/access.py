"""Web server logs: access logs (Apache / Nginx common and combined) and the Apache
error log (2.2 and 2.4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pipeline.pdata.logfields import MAX_INT_DIGITS
from pipeline.processors.logstruct.normalize import Normalizer
from pipeline.processors.logstruct.parsers.base import Parser, ParserConfigBase
from pipeline.processors.logstruct.record import Record
from pipeline.processors.logstruct.timestamps import WEEKDAYS

__all__ = [
    "AccessLogParser",
    "AccessLogParserConfig",
    "ApacheErrorParser",
    "ApacheErrorParserConfig",
]

#: What follows the request of an access log line: (status, size, referer, user
#: agent, extra text after the user agent).
_Tail = tuple[str, str, str | None, str | None, str | None]


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


def _access_tail(s: str) -> _Tail | None:
    """`200 5 "referer" "agent" extra` (all but the status optional); None if malformed."""
    parts = s.split(" ", 2)
    status = parts[0]
    if not ((status.isdigit() and status.isascii() and len(status) <= MAX_INT_DIGITS)
            or status == "-"):
        return None
    size = parts[1] if len(parts) > 1 else ""
    if size and not ((size.isdigit() and size.isascii()) or size == "-"):
        return None
    referer = agent = extra = None
    if len(parts) == 3:
        tail = parts[2]
        if tail[:1] == '"':
            r1 = _quote_end(tail, 1)
            if r1 < 0:
                return None
            referer = tail[1:r1]
            tail = tail[r1 + 1:].lstrip(" ")
            if tail[:1] == '"':
                a1 = _quote_end(tail, 1)
                if a1 < 0:
                    return None
                agent = tail[1:a1]
                tail = tail[a1 + 1:].strip()
        if tail:
            extra = tail
    return status, size, referer, agent, extra


def _request(field: Callable[[Record, str, Any], None], rec: Record, request: str) -> None:
    """`GET /path HTTP/1.1` -> method, target, protocol; anything else is kept whole."""
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
        tail = _access_tail(s[q1 + 2:])
        if tail is None:
            return False
        status, size, referer, agent, extra = tail
        field = self.norm.field
        field(rec, "clientip", s[:i])
        ident = s[i + 1:j]
        if ident != "-":
            field(rec, "ident", ident)
        user = s[j + 1:k]
        if user != "-":
            field(rec, "auth", user)
        field(rec, "timestamp", s[k + 2:e])
        _request(field, rec, _access_unescape(s[e + 3:q1]))
        if status != "-":
            field(rec, "response", int(status))
        if size and size != "-":
            # more than 20 digits stay text: int() raises past 4,300 (int-string limit)
            field(rec, "bytes", int(size) if len(size) <= MAX_INT_DIGITS else size)
        if referer is not None and referer != "-":
            field(rec, "referrer", _access_unescape(referer))
        if agent is not None and agent != "-":
            field(rec, "agent", _access_unescape(agent))
        if extra is not None:
            rec.attrs["http.access_log.extra"] = extra
        return True


class ApacheErrorParser(Parser):
    """`[Sun Dec 04 04:47:44 2005] [error] [client 1.2.3.4] msg` (2.2) and
    `[Fri Sep 09 10:42:29.902022 2011] [core:error] [pid 35708:tid 43] [client
    1.2.3.4:5] AH00128: msg` (2.4)."""

    format = "apache_error"
    reason = "not an Apache error log line"

    def parse(self, text: str, rec: Record) -> bool:
        s = text
        if s[:1] != "[" or s[1:4] not in WEEKDAYS:
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


class AccessLogParserConfig(ParserConfigBase):
    type: Literal["access_log"]

    def build(self, norm: Normalizer) -> AccessLogParser:
        return AccessLogParser(norm)


class ApacheErrorParserConfig(ParserConfigBase):
    type: Literal["apache_error"]

    def build(self, norm: Normalizer) -> ApacheErrorParser:
        return ApacheErrorParser(norm)
