"""JSON lines: a JSON object, optionally after a text prefix (`<text> {json}`)."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import Field

from pipeline.processors.logstruct.normalize import Normalizer
from pipeline.processors.logstruct.parsers._jsonload import loads
from pipeline.processors.logstruct.parsers.base import Parser, ParserConfigBase, Reparse
from pipeline.processors.logstruct.parsers.container import docker_unwrap
from pipeline.processors.logstruct.record import Record
from pipeline.processors.logstruct.severity import level_of

__all__ = ["JsonParser", "JsonParserConfig"]


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

    def set_reparse(self, reparse: Reparse) -> None:
        self.reparse = reparse

    def parse(self, text: str, rec: Record) -> bool:
        s = text
        if s[:1] != "{":
            s = text.lstrip()
            if s[:1] != "{":
                return self.allow_prefix and self._prefixed(text, rec)
        try:
            obj = loads(s)
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
            obj = loads(text[i:])
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
        used: set[int] = set()
        if not rec.time:
            used.update(self._prefix_time(words, rec))
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

    def _prefix_time(self, words: list[str], rec: Record) -> range:
        """The first timestamp of one or two words (two tried first) into `rec.time`;
        the indexes of the words it took."""
        times = self.norm.times
        for i in range(len(words)):
            for n in (2, 1):
                if i + n <= len(words):
                    ns = times.parse(" ".join(words[i:i + n]).strip("[]"))
                    if ns is not None:
                        rec.time = ns
                        return range(i, i + n)
        return range(0)


class JsonParserConfig(ParserConfigBase):
    type: Literal["json"]
    allow_prefix: bool = Field(True, description="also parse `<text> {json}`")

    def build(self, norm: Normalizer) -> JsonParser:
        return JsonParser(norm, allow_prefix=self.allow_prefix)
