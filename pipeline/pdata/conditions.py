"""Record conditions: the `when` of `logmetrics` and the include/exclude of `filter`.

Conditions are YAML mappings; every part present must hold:

- a selector — `attribute: NAME` (the item's attribute, else its resource's),
  `resource_attribute: NAME`, or `field: NAME` — with operators `equals`,
  `not_equals`, `in: [..]`, `matches: REGEX` (search), `exists: true|false`,
  `gt`, `gte`, `lt`, `lte` (numbers; numeric strings count); a selector alone
  means `exists: true`;
- `severity_at_least: WARN` (or a severity number; a record without a severity
  number is judged by its severity text);
- `all: [conditions]`, `any: [conditions]`, `not: condition`.

`equals`/`in` compare numbers as numbers and everything else as text
(`429` matches the int 429 and the string "429"; booleans as true/false).

Which fields exist depends on the signal: the compiler's built-in ones are the
log record's (`LOG_FIELDS`); `ConditionCompiler(fields=...)` replaces them
(the `filter` processor's span and metric fields).
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from pipeline.component import ComponentConfig
from pipeline.config.types import Regex
from pipeline.pdata.anyvalue import Scalar, label_text

SEVERITIES = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "NOTICE": 10, "WARN": 13, "WARNING": 13,
              "ERROR": 17, "ERR": 17, "CRITICAL": 21, "FATAL": 21}

LOG_FIELDS = frozenset({"body", "severity_text", "event_name"})
# Every field a Condition may name; which ones apply depends on the signal (the
# compiler's `fields`). logmetrics accepts LOG_FIELDS only.
FieldName = Literal["body", "severity_text", "event_name", "name", "kind", "status_code",
                    "status_message", "duration_ms", "type", "unit"]


def severity_number(value: str | int) -> int:
    if isinstance(value, int):
        return value
    text = value.strip().upper()
    if text.isdigit():
        return int(text)
    base = text.rstrip("0123456789")
    if base not in SEVERITIES:
        raise ValueError(f"unknown severity {value!r}: use TRACE, DEBUG, INFO, WARN, ERROR, "
                         "FATAL or a number 1-24")
    return SEVERITIES[base] + (int(text[len(base):]) - 1 if text[len(base):] else 0)


class Condition(ComponentConfig):
    """When a log record counts; every part present must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    attribute: str | None = Field(None, description="record attribute, else resource "
                                                    "attribute")
    resource_attribute: str | None = None
    field: FieldName | None = None
    equals: Scalar | None = None
    not_equals: Scalar | None = None
    in_: list[Scalar] | None = Field(None, alias="in")
    matches: Regex | None = Field(None, description="regular expression, searched")
    exists: bool | None = None
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    severity_at_least: str | int | None = None
    all: list[Condition] | None = None
    any: list[Condition] | None = None
    not_: Condition | None = Field(None, alias="not")

    @field_validator("severity_at_least")
    @classmethod
    def _severity(cls, v: str | int | None) -> str | int | None:
        if v is not None:
            severity_number(v)
        return v

    @model_validator(mode="after")
    def _shape(self) -> Condition:
        selectors = [s for s in ("attribute", "resource_attribute", "field")
                     if getattr(self, s) is not None]
        if len(selectors) > 1:
            raise ValueError(f"one selector per condition, got {', '.join(selectors)} "
                             "(combine with all:)")
        operators = [o for o in ("equals", "not_equals", "in_", "matches", "exists", "gt",
                                 "gte", "lt", "lte") if getattr(self, o) is not None]
        if operators and not selectors:
            raise ValueError("an operator needs attribute:, resource_attribute: or field:")
        if not selectors and self.severity_at_least is None and self.all is None \
                and self.any is None and self.not_ is None:
            raise ValueError("empty condition")
        return self

    def walk(self) -> list[Condition]:
        """This condition and every nested one."""
        out = [self]
        for sub in [*(self.all or ()), *(self.any or ()),
                    *([self.not_] if self.not_ is not None else [])]:
            out += sub.walk()
        return out

    def fields_used(self) -> set[str]:
        return {c.field for c in self.walk() if c.field is not None}

    def uses_severity(self) -> bool:
        return any(c.severity_at_least is not None for c in self.walk())


Condition.model_rebuild()


# --------------------------------------------------------------------------------------
# Conditions, compiled to closures over (values by slot, record)

Predicate = Callable[[list[Any], Any], bool]
"""`predicate(vals, rec)`: see `ConditionCompiler`."""


def as_number(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float):
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _same(actual: Any, expected: Scalar) -> bool:
    """Numbers compare as numbers (429 == "429"), everything else as text."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return label_text(actual) == label_text(expected)
    if isinstance(expected, int | float):
        n = as_number(actual)
        return n is not None and n == expected
    if isinstance(actual, int | float):
        n = as_number(expected)
        return n is not None and n == actual
    return label_text(actual) == expected


def _compare(op: Callable[[float, float], bool], bound: float, v: Any) -> bool:
    n = as_number(v)
    return n is not None and op(n, bound)


class ConditionCompiler:
    """Turns conditions into predicates; collects the attribute keys they read.

    A predicate is called as `predicate(vals, rec)`: `vals[slot]` holds the value
    of the attribute keyed `slot` (the record's, else the resource's; None if
    absent) and `vals[-1][rslot]` the `resource_attribute` values; `rec` is the
    item (a log record with `body` as bytes here; whatever `fields` expects).

    `fields`, when given, replaces the built-in log fields: field name -> getter
    of the item; naming a field not in it is a ValueError.
    """

    def __init__(self, slots: dict[str, int], resource_slots: dict[str, int],
                 decode_body: Callable[[bytes], Any] | None = None,
                 fields: dict[str, Callable[[Any], Any]] | None = None):
        self.slots = slots
        self.resource_slots = resource_slots
        self.decode_body = decode_body
        self.fields = fields

    def slot(self, key: str) -> int:
        return self.slots.setdefault(key, len(self.slots))

    def compile(self, c: Condition) -> Predicate:
        parts: list[Predicate] = []
        getter = self._getter(c)
        if getter is not None:
            parts.append(self._operators(c, getter))
        if c.severity_at_least is not None:
            floor = severity_number(c.severity_at_least)

            def severity(vals: list[Any], rec: Any) -> bool:
                n = rec.severity_number
                if not n and rec.severity_text:
                    try:
                        n = severity_number(rec.severity_text)
                    except ValueError:
                        return False
                return bool(n >= floor)
            parts.append(severity)
        if c.all is not None:
            subs = [self.compile(x) for x in c.all]
            parts.append(lambda v, r: all(p(v, r) for p in subs))
        if c.any is not None:
            alts = [self.compile(x) for x in c.any]
            parts.append(lambda v, r: any(p(v, r) for p in alts))
        if c.not_ is not None:
            neg = self.compile(c.not_)
            parts.append(lambda v, r: not neg(v, r))
        if len(parts) == 1:
            return parts[0]
        return lambda v, r: all(p(v, r) for p in parts)

    def _getter(self, c: Condition) -> Callable[[list[Any], Any], Any] | None:
        if c.attribute is not None:
            slot = self.slot(c.attribute)
            return lambda vals, rec: vals[slot]
        if c.resource_attribute is not None:
            rslot = self.resource_slots.setdefault(c.resource_attribute,
                                                   len(self.resource_slots))
            return lambda vals, rec: vals[-1][rslot]
        if c.field is not None and self.fields is not None:
            get = self.fields.get(c.field)
            if get is None:
                raise ValueError(f"field {c.field!r} is not available here; use one of "
                                 f"{', '.join(sorted(self.fields))}")
            return lambda vals, rec: get(rec)
        if c.field == "body":
            decode = self.decode_body
            assert decode is not None
            return lambda vals, rec: decode(rec.body) if rec.body else None
        if c.field == "severity_text":
            return lambda vals, rec: rec.severity_text or None
        if c.field == "event_name":
            return lambda vals, rec: rec.event_name or None
        return None

    @staticmethod
    def _operators(c: Condition, get: Callable[[list[Any], Any], Any]) -> Predicate:
        tests: list[Callable[[Any], bool]] = []
        if c.exists is not None:
            want = c.exists
            tests.append(lambda v: (v is not None) == want)
        if c.equals is not None:
            eq = c.equals
            tests.append(lambda v: v is not None and _same(v, eq))
        if c.not_equals is not None:
            ne = c.not_equals
            tests.append(lambda v: v is None or not _same(v, ne))
        if c.in_ is not None:
            choices = list(c.in_)
            texts = frozenset(x for x in choices if isinstance(x, str))
            tests.append(lambda v: v is not None and (
                (isinstance(v, str) and v in texts) or any(_same(v, x) for x in choices)))
        if c.matches is not None:
            search = re.compile(c.matches).search
            tests.append(lambda v: v is not None and search(label_text(v)) is not None)
        for compare, bound in ((operator.gt, c.gt), (operator.ge, c.gte),
                               (operator.lt, c.lt), (operator.le, c.lte)):
            if bound is not None:
                tests.append(functools.partial(_compare, compare, bound))
        if not tests:
            tests.append(lambda v: v is not None)
        if len(tests) == 1:
            t = tests[0]
            return lambda vals, rec: t(get(vals, rec))

        def check(vals: list[Any], rec: Any) -> bool:
            v = get(vals, rec)
            return all(t(v) for t in tests)
        return check


