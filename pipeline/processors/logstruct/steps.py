"""The pieces of the `logstruct` processor's parser list: a parser's compiled `when:`
(`Condition`), one entry of the list (`Step`), where its text comes from, and the small
text helpers the processor shares (UTF-8 length, the clipped message the miner sees of a
too long text, the error text of a parser that raised, a bytes body decoded)."""

from __future__ import annotations

import logging
import re
from typing import Any

from pipeline.pdata.anyvalue import any_value
from pipeline.pdata.flatlogs import flat_value
from pipeline.processors.logstruct.masks import PARAM
from pipeline.processors.logstruct.parsers.auto import AutoParser
from pipeline.processors.logstruct.parsers.base import SOURCE, Parser, WhenConfig

__all__ = ["Condition", "Step", "attr_text", "clip_words", "decode", "failure", "source_key",
           "utf8_len"]


class Condition:
    """A parser's `when:`, compiled."""

    __slots__ = ("attrs", "needs_resource", "prefixes", "resource", "search")

    def __init__(self, cfg: WhenConfig):
        self.search = re.compile(cfg.matches).search if cfg.matches is not None else None
        sw = cfg.starts_with
        self.prefixes: tuple[str, ...] | None = None if sw is None else \
            ((sw,) if isinstance(sw, str) else tuple(sw))
        self.attrs = list((cfg.attributes or {}).items())
        self.resource = list((cfg.resource or {}).items())
        self.needs_resource = bool(self.resource)

    def __call__(self, text: str, lr: Any, res: dict[str, Any] | None,
                 native: bool = False) -> bool:
        if self.prefixes is not None and not text.startswith(self.prefixes):
            return False
        if self.search is not None and self.search(text) is None:
            return False
        if self.attrs:
            if lr is None:
                return False
            if native:  # a pdata.logrecords.LogRecord
                attrs = lr.attributes
                for k, v in self.attrs:
                    if k not in attrs or flat_value(attrs[k]) != v:
                        return False
            else:
                have = {kv.key: kv for kv in lr.attributes}
                for k, v in self.attrs:
                    kv = have.get(k)
                    if kv is None or any_value(kv.value) != v:
                        return False
        if self.resource:
            if res is None:
                return False
            for k, v in self.resource:
                if res.get(k) != v:
                    return False
        return True


class Step:
    """One parser of the list: where its text comes from and when it applies."""

    __slots__ = ("auto", "parser", "source", "when")

    def __init__(self, parser: Parser, when: Condition | None, source: str | None):
        self.parser = parser
        self.when = when
        self.source = source  # attribute key, or None for the body
        self.auto = parser if isinstance(parser, AutoParser) else None


def source_key(source: str) -> str | None:
    m = SOURCE.match(source)
    assert m is not None
    return m.group("key")


def attr_text(lr: Any, key: str, native: bool = False) -> str | None:
    if native:
        v = lr.attributes.get(key)
        return v if type(v) is str else None
    for kv in lr.attributes:
        if kv.key == key:
            v = kv.value
            if v.WhichOneof("value") == "string_value":
                return str(v.string_value)
            return None
    return None


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def clip_words(text: str, limit: int) -> str:
    """The first `limit` characters of `text` cut after the last whole word, and one
    `<*>` standing for the rest (what the template miner sees of a too long message)."""
    head = text[:limit + 1]
    if head[-1:].isspace():
        head = head.rstrip()
    else:  # the last word may be cut: drop it
        parts = head.rsplit(None, 1)
        head = parts[0] if len(parts) == 2 else ""
    return f"{head} {PARAM}" if head else PARAM


def failure(exc: Exception, log: logging.Logger) -> str:
    """The `log.parse_error` of a parser that raised."""
    log.debug("logstruct parser raised", exc_info=True)
    return f"parser failed: {type(exc).__name__}: {exc}"[:200]


def decode(raw: bytes) -> tuple[str, bool]:
    """(text, invalid UTF-8) of a bytes body: invalid sequences replaced."""
    try:
        return raw.decode(), False
    except UnicodeDecodeError:
        return raw.decode(errors="replace"), True
