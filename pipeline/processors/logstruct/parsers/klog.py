"""Kubernetes klog / glog lines: `Lmmdd hh:mm:ss.uuuuuu threadid file:line] msg`."""

from __future__ import annotations

import re
from typing import Literal

from pipeline.processors.logstruct.normalize import Normalizer
from pipeline.processors.logstruct.parsers.base import Parser, ParserConfigBase
from pipeline.processors.logstruct.parsers.logfmt import logfmt_pairs, unescape
from pipeline.processors.logstruct.record import Record
from pipeline.processors.logstruct.severity import level_of

__all__ = ["KlogParser", "KlogParserConfig"]

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
                rec.body = unescape(qm.group(1))
                rest = msg[qm.end():]
                if rest:
                    norm.fill(rec, logfmt_pairs(rest))
                return True
        rec.body = msg
        return True


class KlogParserConfig(ParserConfigBase):
    type: Literal["klog"]

    def build(self, norm: Normalizer) -> KlogParser:
        return KlogParser(norm)
