"""User format: grok expressions (see `logstruct/grok.py` for the pattern library)."""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from pipeline.pdata.logfields import MAX_INT_DIGITS
from pipeline.processors.logstruct.grok import GrokError, GrokPattern, compile_grok, unquote
from pipeline.processors.logstruct.normalize import Normalizer
from pipeline.processors.logstruct.parsers.base import Continuation, Parser, ParserConfigBase
from pipeline.processors.logstruct.record import Record
from pipeline.processors.logstruct.semconv import BODY, Plan

__all__ = ["GrokParser", "GrokParserConfig"]

_INT = re.compile(r"[+-]?\d+")
_MAX_INT = MAX_INT_DIGITS + 1  # a sign
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")

#: Per capturing group: (group index, plan, conversion, plain: stored as it is).
_GroupPlan = tuple[int, Plan, str, bool]


class GrokParser(Parser):
    """One or more grok expressions; the first that matches wins.

    Each is matched anchored at the start of the text (`re.match`), as if it began
    with `^`: a pattern that should skip a prefix says so with `.*?` (or `%{DATA}`).
    Searching instead would try the whole pattern at every offset, quadratic in the
    length of a line that does not match (18.9 s for one 40 KB line against
    `%{COMBINEDAPACHELOG}`); anchored, every built-in pattern is linear.
    """

    format = "grok"
    reason = "no grok pattern matched"
    windowed = True

    def __init__(self, norm: Normalizer, patterns: Sequence[GrokPattern]):
        super().__init__(norm)
        self.compiled: list[tuple[Callable[[str, int, int], re.Match[str] | None],
                                  list[_GroupPlan], Continuation]] = []
        for gp in patterns:
            plans: list[_GroupPlan] = []
            for i, (name, conv) in enumerate(gp.fields):
                p = norm.plan(name)
                plans.append((i, p, conv, not conv and p[4]))
            cont = Continuation(list(range(len(gp.fields))),
                                [i for i, p, _c, _p in plans if p[0] == BODY])
            self.compiled.append((gp.regex.match, plans, cont))

    def parse(self, text: str, rec: Record, endpos: int = sys.maxsize) -> bool:
        for match, plans, cont in self.compiled:  # noqa: B007 - used after the loop
            m = match(text, 0, endpos)
            if m is not None:
                break
        else:
            return False
        groups = cont.apply(text, m, m.groups())
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
                    # more than 20 digits stay text: int() raises past 4,300 digits
                    v = int(v) if len(v) <= _MAX_INT and _INT.fullmatch(v) else v
                elif conv == "float":
                    f = float(v) if _FLOAT.fullmatch(v) else None
                    v = f if f is not None and math.isfinite(f) else v
                else:
                    v = unquote(v)
            put(rec, plan, v)
        return True


class GrokParserConfig(ParserConfigBase):
    type: Literal["grok"]
    pattern: str | list[str] = Field(
        description="grok expression(s), matched at the start of the text; the first "
                    "match wins")
    pattern_definitions: dict[str, str] = Field(
        default_factory=dict, description="extra named patterns, usable as %{NAME}")

    @model_validator(mode="after")
    def _compiles(self) -> GrokParserConfig:
        for p in self.patterns():
            try:
                compile_grok(p, self.pattern_definitions)
            except GrokError as exc:
                raise ValueError(str(exc)) from None
        return self

    def patterns(self) -> list[str]:
        return [self.pattern] if isinstance(self.pattern, str) else list(self.pattern)

    def build(self, norm: Normalizer) -> GrokParser:
        return GrokParser(norm, [compile_grok(p, self.pattern_definitions)
                                 for p in self.patterns()])
