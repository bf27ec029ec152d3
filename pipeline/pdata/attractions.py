"""Attribute actions, the Collector's `attraction`: insert, update, upsert, delete,
hash, extract and convert over a repeated `KeyValue` (span, log record, data point or
resource attributes).

Shared by the `attributes` processor (item or resource attributes) and the
`resource` processor (resource attributes), as the Collector shares
`internal/coreinternal/attraction` between its attributes and resource processors:

    action = compile_action(AttributeAction.model_validate(
        {"key": "cloud.region", "value": "eu-west-1", "action": "insert"}))
    changed = action(resource.attributes)

Semantics (as the Collector's):

- `insert` only if the key is absent, `update` only if present, `upsert` either way;
  the value is `value` (a string, number or bool, kept as that type) or a copy of
  another attribute's (`from_attribute`, any type; an absent source does nothing);
- `delete` the key (or every key matching `pattern`);
- `hash` replaces the value with the SHA-256 hex digest of its text (strings as they
  are, other values as the Collector prints them; bytes as they are) -- of the key, or
  of every key matching `pattern`;
- `extract` searches the string value of `key` with `pattern` (the Collector's key;
  `regex` is accepted too) and upserts one string attribute per named group that
  matched; the source attribute is kept. Python group names cannot hold dots: `__`
  in a group name stands for `.` (`(?P<url__scheme>...)` writes `url.scheme`);
- `convert` turns a value into `int`, `double`, `string` or `bool`; a value that
  does not convert is left as it is.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any, Literal

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from pydantic import Field, model_validator

from pipeline.component import ComponentConfig
from pipeline.config.types import Regex
from pipeline.pdata.anyvalue import any_value_to_python, label_text

__all__ = ["Action", "AttributeAction", "Edit", "compile_action", "compile_actions", "find",
           "set_value", "value_text"]

Action = Literal["insert", "update", "upsert", "delete", "hash", "extract", "convert"]
Scalar = str | int | float | bool
Edit = Callable[[Any], bool]
"""An action compiled: (repeated KeyValue) -> whether it changed anything."""


# --- AnyValue helpers ---------------------------------------------------------------


def find(attributes: Any, key: str) -> Any:
    """The KeyValue with this key, or None (a linear scan: no dict is built)."""
    for kv in attributes:
        if kv.key == key:
            return kv
    return None


def set_value(value: Any, v: Any) -> None:
    """Set an AnyValue from a Python scalar (bool before int: bool is an int)."""
    if isinstance(v, bool):
        value.bool_value = v
    elif isinstance(v, int):
        value.int_value = v
    elif isinstance(v, float):
        value.double_value = v
    elif isinstance(v, bytes):
        value.bytes_value = v
    else:
        value.string_value = str(v)


def value_text(value: Any) -> str:
    """Text of an AnyValue: a string as is, scalars as the Collector prints them."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return str(value.string_value)
    if kind is None:
        return ""
    return label_text(any_value_to_python(value))


# --- config -------------------------------------------------------------------------


class AttributeAction(ComponentConfig):
    """One action of an `attributes` or `resource` processor."""

    key: str | None = Field(None, min_length=1, description="attribute key acted on")
    action: Action
    value: Scalar | None = Field(None, description="insert/update/upsert: the value (a "
                                                   "string, number or bool, kept as that type)")
    from_attribute: str | None = Field(None, min_length=1,
                                       description="insert/update/upsert: copy the value of "
                                                   "this attribute")
    pattern: Regex | None = Field(
        None, description="delete/hash: act on every key matching this regex (instead of "
                          "key); extract: the regex whose named groups become attributes")
    regex: Regex | None = Field(None, description="extract: same as pattern (otelpipe's "
                                                  "earlier name)")
    converted_type: Literal["int", "double", "string", "bool"] | None = Field(
        None, description="convert: the type to convert to")

    @model_validator(mode="after")
    def _shape(self) -> AttributeAction:
        a = self.action
        if a == "extract":
            self._check_extract()
        elif self.regex is not None:
            raise ValueError("regex applies to extract only")
        elif self.pattern is not None:
            if a not in ("delete", "hash"):
                raise ValueError("pattern applies to delete and hash (keys matching it) and "
                                 "extract (the regex) only")
            if self.key is not None:
                raise ValueError("give key or pattern, not both")
        elif self.key is None:
            raise ValueError(f"{a} needs key" + (" or pattern" if a in ("delete", "hash")
                                                 else ""))
        if a in ("insert", "update", "upsert"):
            if (self.value is None) == (self.from_attribute is None):
                raise ValueError(f"{a} needs exactly one of value or from_attribute")
        elif self.value is not None or self.from_attribute is not None:
            raise ValueError(f"{a} takes no value or from_attribute")
        if (a == "convert") != (self.converted_type is not None):
            raise ValueError("converted_type goes with action: convert (and it needs one)")
        return self

    def _check_extract(self) -> None:
        if self.key is None:
            raise ValueError("extract needs key (the attribute whose value is searched)")
        if (self.pattern is None) == (self.regex is None):
            raise ValueError("extract needs regex with named groups, as pattern (or regex)"
                             if self.pattern is None and self.regex is None
                             else "give pattern or regex, not both")
        if not re.compile(self.extract_regex).groupindex:
            raise ValueError("extract: pattern has no named group (?P<name>...)")

    @property
    def extract_regex(self) -> str:
        text = self.pattern if self.pattern is not None else self.regex
        assert text is not None
        return text


# --- compiled actions ---------------------------------------------------------------


def _sha256(value: AnyValue) -> str:
    if value.WhichOneof("value") == "bytes_value":
        return hashlib.sha256(value.bytes_value).hexdigest()
    return hashlib.sha256(value_text(value).encode("utf-8", "surrogatepass")).hexdigest()


def _converted(value: AnyValue, kind: str, to: str) -> Any:
    """The converted Python value, or None when it does not convert."""
    if kind == "string_value":
        text = value.string_value.strip()
        try:
            if to == "int":
                return int(float(text)) if "." in text or "e" in text.lower() else int(text)
            if to == "double":
                return float(text)
        except (ValueError, OverflowError):
            return None
        low = text.lower()
        return low == "true" if low in ("true", "false") else None
    if kind in ("int_value", "double_value", "bool_value"):
        old = getattr(value, kind)
        if to == "int":
            return None if kind == "double_value" and old != old else int(old)  # NaN
        return float(old) if to == "double" else bool(old)
    return None


def _convert(value: AnyValue, to: str) -> bool:
    kind = value.WhichOneof("value")
    if kind is None:
        return False
    if to == "string":
        if kind == "string_value":
            return False
        value.string_value = value_text(value)
        return True
    new = _converted(value, kind, to)
    if new is None or (to == "int" and not -(1 << 63) <= new < (1 << 63)):
        return False
    set_value(value, new)
    return True


def compile_actions(actions: list[AttributeAction]) -> Edit:
    """All actions in order, as one edit."""
    edits = [compile_action(a) for a in actions]

    def run(attrs: Any) -> bool:
        changed = False
        for edit in edits:
            changed = edit(attrs) or changed
        return changed
    return run


def compile_action(a: AttributeAction) -> Edit:
    act = a.action
    if a.pattern is not None and act != "extract":
        return _pattern_action(act, a.pattern)
    key = a.key
    assert key is not None
    if act in ("insert", "update", "upsert"):
        return _write_action(a, key)
    if act == "delete":
        return _delete_action(key)
    if act == "hash":
        return _hash_action(key)
    if act == "extract":
        return _extract_action(key, a.extract_regex)
    assert a.converted_type is not None
    to = a.converted_type

    def convert(attrs: Any) -> bool:
        kv = find(attrs, key)
        return kv is not None and _convert(kv.value, to)
    return convert


def _pattern_action(act: str, pattern: str) -> Edit:
    """delete / hash of every attribute whose key matches `pattern`."""
    match = re.compile(pattern).search
    if act == "delete":
        def delete_matching(attrs: Any) -> bool:
            doomed = [i for i, kv in enumerate(attrs) if match(kv.key)]
            for i in reversed(doomed):
                del attrs[i]
            return bool(doomed)
        return delete_matching

    def hash_matching(attrs: Any) -> bool:
        hit = False
        for kv in attrs:
            if match(kv.key):
                kv.value.string_value = _sha256(kv.value)
                hit = True
        return hit
    return hash_matching


def _write_action(a: AttributeAction, key: str) -> Edit:
    """insert (only if absent), update (only if present), upsert."""
    source = a.from_attribute
    literal = a.value
    want_present = {"insert": False, "update": True, "upsert": None}[a.action]

    def write(attrs: Any) -> bool:
        kv = find(attrs, key)
        if want_present is not None and (kv is not None) != want_present:
            return False
        if source is not None:
            src = find(attrs, source)
            if src is None:
                return False
            copy = AnyValue()
            copy.CopyFrom(src.value)
            if kv is None:
                kv = attrs.add()
                kv.key = key
            kv.value.CopyFrom(copy)
            return True
        if kv is None:
            kv = attrs.add()
            kv.key = key
        set_value(kv.value, literal)
        return True
    return write


def _delete_action(key: str) -> Edit:
    def delete(attrs: Any) -> bool:
        doomed = [i for i, kv in enumerate(attrs) if kv.key == key]
        for i in reversed(doomed):
            del attrs[i]
        return bool(doomed)
    return delete


def _hash_action(key: str) -> Edit:
    def hash_(attrs: Any) -> bool:
        kv = find(attrs, key)
        if kv is None:
            return False
        kv.value.string_value = _sha256(kv.value)
        return True
    return hash_


def _extract_action(key: str, regex: str) -> Edit:
    compiled = re.compile(regex)
    search = compiled.search
    # Attribute name per group number (None: unnamed group); "__" stands for ".".
    by_index = {i: n.replace("__", ".") for n, i in compiled.groupindex.items()}
    names = [by_index.get(i) for i in range(1, compiled.groups + 1)]

    def extract(attrs: Any) -> bool:
        kv = find(attrs, key)
        if kv is None or kv.value.WhichOneof("value") != "string_value":
            return False
        m = search(kv.value.string_value)
        if m is None:
            return False
        hit = False
        for name, text in zip(names, m.groups(), strict=True):
            if name is None or text is None:
                continue
            out = find(attrs, name)
            if out is None:
                out = attrs.add()
                out.key = name
            out.value.string_value = text
            hit = True
        return hit
    return extract
