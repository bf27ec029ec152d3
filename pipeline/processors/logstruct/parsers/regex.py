"""User format: a Python regex with named groups."""

from __future__ import annotations

import re
import sys
from typing import Literal

from pydantic import Field, field_validator

from pipeline.processors.logstruct.normalize import Normalizer
from pipeline.processors.logstruct.parsers.base import Continuation, Parser, ParserConfigBase
from pipeline.processors.logstruct.record import Record
from pipeline.processors.logstruct.semconv import BODY

__all__ = ["RegexParser", "RegexParserConfig"]


class RegexParser(Parser):
    """A Python regex with named groups, matched at the start of the line (`re.match`,
    as if it began with `^`; write `.*?` to skip a prefix). Anchored, a regex is tried
    at one offset only: searched, a pattern that fails late is tried at every offset,
    quadratic in the length of the line."""

    format = "regex"
    reason = "regex did not match"
    windowed = True

    def __init__(self, norm: Normalizer, pattern: str | re.Pattern[str]):
        super().__init__(norm)
        self.regex = re.compile(pattern, re.DOTALL) if isinstance(pattern, str) else pattern
        names = {i: n for n, i in self.regex.groupindex.items()}
        self.plans = [(i - 1, p, p[4])
                      for i in sorted(names) for p in [norm.plan(names[i])]]
        self.cont = Continuation([i for i, _p, _s in self.plans],
                                 [i for i, p, _s in self.plans if p[0] == BODY])

    def parse(self, text: str, rec: Record, endpos: int = sys.maxsize) -> bool:
        m = self.regex.match(text, 0, endpos)
        if m is None:
            return False
        groups = self.cont.apply(text, m, m.groups())
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


class RegexParserConfig(ParserConfigBase):
    type: Literal["regex"]
    pattern: str = Field(description="Python regex with named groups, matched at the start "
                                      "of the text")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            rx = re.compile(v)
        except re.error as exc:
            raise ValueError(f"invalid regex: {exc}") from None
        if not rx.groupindex:
            raise ValueError("the regex has no named groups (?P<name>...)")
        return v

    def build(self, norm: Normalizer) -> RegexParser:
        return RegexParser(norm, self.pattern)
