"""Syslog lines: RFC 5424 and RFC 3164 (BSD), with or without the `<PRI>`."""

from __future__ import annotations

from typing import Literal

from pipeline.processors.logstruct.normalize import Normalizer
from pipeline.processors.logstruct.parsers.base import Parser, ParserConfigBase
from pipeline.processors.logstruct.record import Record
from pipeline.processors.logstruct.severity import level_of, syslog_severity_name
from pipeline.processors.logstruct.timestamps import MONTHS

__all__ = ["SyslogParser", "SyslogParserConfig"]


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


def _bsd_stamp(s: str, pri: int) -> tuple[str, str] | None:
    """(timestamp, rest after it) of an RFC 3164 line: `Mmm dd hh:mm:ss[.frac][ yyyy]`,
    or with a priority also an ISO 8601 stamp; None if it has neither."""
    if s[:3] in MONTHS and len(s) > 15 and s[3] == " " and s[6] == " " and s[9] == ":":
        ts = s[:15]
        rest = s[15:]
        if rest[:1] == ".":  # fractional seconds
            sp = rest.find(" ")
            if sp < 0:
                return None
            ts, rest = ts + rest[:sp], rest[sp:]
        if rest[1:5].isdigit() and rest[5:6] == " ":  # a year after the time
            ts, rest = ts + rest[:5], rest[5:]
        if rest[:1] != " ":
            return None
        return ts, rest[1:]
    if pri >= 0 and s[:1].isdigit() and s[4:5] == "-":
        ts, sep, rest = s.partition(" ")
        return (ts, rest) if sep else None
    return None


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
            if gt < 2 or not (s[1:gt].isdigit() and s[1:gt].isascii()):
                return False
            pri = int(s[1:gt])
            if pri > 191:
                return False
            s = s[gt + 1:]
            if s[:2].isascii() and s[:1].isdigit() \
                    and (s[1:2] == " " or (s[1:2].isdigit() and s[2:3] == " ")) \
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
        stamp = _bsd_stamp(s, pri)
        if stamp is None:
            return False
        ts, rest = stamp
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


class SyslogParserConfig(ParserConfigBase):
    type: Literal["syslog"]
    protocol: Literal["auto", "rfc5424", "rfc3164"] = "auto"

    def build(self, norm: Normalizer) -> SyslogParser:
        return SyslogParser(norm, self.protocol)
