"""Automatic detection: the format of a line from its first characters."""

from __future__ import annotations

from typing import Literal

from pipeline.processors.logstruct.normalize import Normalizer
from pipeline.processors.logstruct.parsers.access import AccessLogParser, ApacheErrorParser
from pipeline.processors.logstruct.parsers.base import Parser, ParserConfigBase, Reparse
from pipeline.processors.logstruct.parsers.container import ContainerParser
from pipeline.processors.logstruct.parsers.json import JsonParser
from pipeline.processors.logstruct.parsers.klog import KlogParser
from pipeline.processors.logstruct.parsers.logfmt import LogfmtParser
from pipeline.processors.logstruct.parsers.syslog import SyslogParser
from pipeline.processors.logstruct.record import Record
from pipeline.processors.logstruct.severity import level_of
from pipeline.processors.logstruct.timestamps import MONTHS

__all__ = ["AutoParser", "AutoParserConfig"]

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
    #: Why the last line `detect` returned None for was not recognised.
    last = "unrecognised format"

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
        self.json.set_reparse(reparse)
        self.container.set_reparse(reparse)

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
        fmt: str | None = None
        if c == "[":
            if self.apache_error.parse(text, rec):
                return "apache_error"
        elif c.isdigit():
            fmt = self._digit_first(text, rec)
        elif c.isalpha():
            fmt = self._letter_first(text, rec)
        elif c == ":" and self.access.parse(text, rec):
            return "access_log"
        if fmt is not None:
            return fmt
        if text.endswith("}") and self.json.parse(text, rec):
            return "json"
        self.last = "unrecognised format"
        return None

    def _digit_first(self, text: str, rec: Record) -> str | None:
        """A CRI wrapper, an access log (IPv4 client), JSON after a prefix, or a text
        line with a timestamp header."""
        if text[4:5] == "-" and (" stdout " in text[:48] or " stderr " in text[:48]) \
                and self.container.cri(text, rec):
            return "container"
        if " [" in text[:300] and self.access.parse(text, rec):
            return "access_log"
        if text.endswith("}") and self.json.parse(text, rec):
            return "json"
        if self.text_header(text, rec):
            return "text"
        return None

    def _letter_first(self, text: str, rec: Record) -> str | None:
        """Syslog without priority, klog, an access log (host name or IPv6 client), or
        logfmt."""
        c = text[:1]
        if text[:3] in MONTHS and text[3:4] == " ":
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
        return None

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


class AutoParserConfig(ParserConfigBase):
    type: Literal["auto"]

    def build(self, norm: Normalizer) -> AutoParser:
        return AutoParser(norm)
