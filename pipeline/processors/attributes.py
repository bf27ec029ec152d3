"""`attributes` processor: insert, update, upsert, delete, hash, extract and convert
attributes of spans, log records and metric data points (or of their resource),
like the Collector's attributes processor.

```yaml
processors:
  attributes/tidy:
    actions:
      - {key: deployment.environment, value: prod, action: insert}   # only if absent
      - {key: http.status_code, value: 0, action: update}            # only if present
      - {key: team, value: checkout, action: upsert}                 # either way
      - {key: peer.service, from_attribute: net.peer.name, action: upsert}
      - {key: db.statement, action: delete}
      - {pattern: '^temp\\.', action: delete}                        # keys matching a regex
      - {key: user.email, action: hash}                              # sha256 hex of the value
      - {key: http.url, action: extract,
         regex: '^(?P<url__scheme>\\w+)://(?P<server__address>[^/:]+)'}  # named groups -> upsert
      - {key: http.status_code, action: convert, converted_type: int}
      - {key: cloud.region, value: eu-west-1, action: insert, context: resource}
```

Actions run in order, on every item (`context: item`, the default) or on each
resource (`context: resource`). `value` is a string, number or bool (kept as
that type); `from_attribute` copies another attribute of the same item (or
resource), whatever its type; an absent source does nothing. `hash` replaces
the value with the SHA-256 hex digest of its text (strings as they are, other
values as the Collector prints them). `extract` applies `regex` (searched) to a
string value and upserts one string attribute per named group that matched
(Python group names cannot hold dots: `__` in a group name stands for `.`, so
`(?P<url__scheme>…)` writes `url.scheme`); the source attribute is kept.
`convert` turns a value into `int`, `double`,
`string` or `bool`; a value that does not convert is left as it is.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any, Literal

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from pydantic import Field, model_validator

from pipeline.component import (
    Component,
    ComponentConfig,
    Consumer,
    Factory,
    Kind,
    ProcessorCreateSettings,
    Signal,
)
from pipeline.config.types import Regex
from pipeline.pdata.batch import Batch
from pipeline.processors._otlp import find, items, resources, set_value, value_text

Action = Literal["insert", "update", "upsert", "delete", "hash", "extract", "convert"]
Scalar = str | int | float | bool


class ActionConfig(ComponentConfig):
    key: str | None = Field(None, min_length=1, description="attribute key acted on")
    pattern: Regex | None = Field(
        None, description="delete/hash: act on every key matching this regex (instead of key)")
    action: Action
    value: Scalar | None = None
    from_attribute: str | None = Field(None, min_length=1,
                                       description="copy the value of this attribute")
    regex: Regex | None = Field(None, description="extract: named groups become attributes")
    converted_type: Literal["int", "double", "string", "bool"] | None = None
    context: Literal["item", "resource"] = Field(
        "item", description="item: span/log record/data point attributes; resource: the "
                            "resource's")

    @model_validator(mode="after")
    def _shape(self) -> ActionConfig:
        a = self.action
        if self.pattern is not None and a not in ("delete", "hash"):
            raise ValueError("pattern applies to delete and hash only")
        if self.key is None and self.pattern is None:
            raise ValueError(f"{a} needs key" + (" or pattern" if a in ("delete", "hash")
                                                 else ""))
        if self.key is not None and self.pattern is not None:
            raise ValueError("give key or pattern, not both")
        if a in ("insert", "update", "upsert"):
            if (self.value is None) == (self.from_attribute is None):
                raise ValueError(f"{a} needs exactly one of value or from_attribute")
        elif self.value is not None or self.from_attribute is not None:
            raise ValueError(f"{a} takes no value or from_attribute")
        if a == "extract":
            if self.regex is None:
                raise ValueError("extract needs regex with named groups")
            if not re.compile(self.regex).groupindex:
                raise ValueError("extract: regex has no named group (?P<name>...)")
        elif self.regex is not None:
            raise ValueError("regex applies to extract only")
        if (a == "convert") != (self.converted_type is not None):
            raise ValueError("converted_type goes with action: convert (and it needs one)")
        return self


class AttributesConfig(ComponentConfig):
    actions: list[ActionConfig] = Field(min_length=1)


Apply = Callable[[Any], bool]  # (repeated KeyValue) -> changed


def _sha256(value: AnyValue) -> str:
    if value.WhichOneof("value") == "bytes_value":
        return hashlib.sha256(value.bytes_value).hexdigest()
    return hashlib.sha256(value_text(value).encode("utf-8", "surrogatepass")).hexdigest()


def _convert(value: AnyValue, to: str) -> bool:
    kind = value.WhichOneof("value")
    if kind is None:
        return False
    if to == "string":
        if kind == "string_value":
            return False
        value.string_value = value_text(value)
        return True
    if kind == "string_value":
        text = value.string_value.strip()
        try:
            if to == "int":
                new: Any = int(float(text)) if "." in text or "e" in text.lower() \
                    else int(text)
            elif to == "double":
                new = float(text)
            else:
                low = text.lower()
                if low not in ("true", "false"):
                    return False
                new = low == "true"
        except (ValueError, OverflowError):
            return False
    elif kind in ("int_value", "double_value", "bool_value"):
        old = getattr(value, kind)
        if to == "int":
            if kind == "double_value" and old != old:  # NaN
                return False
            new = int(old)
        elif to == "double":
            new = float(old)
        else:
            new = bool(old)
    else:
        return False
    if to == "int" and not -(1 << 63) <= new < (1 << 63):
        return False
    set_value(value, new)
    return True


def compile_action(a: ActionConfig) -> Apply:
    if a.pattern is not None:
        return _pattern_action(a.action, a.pattern)
    key = a.key
    assert key is not None
    act = a.action
    if act in ("insert", "update", "upsert"):
        return _write_action(a, key)
    if act == "delete":
        return _delete_action(key)
    if act == "hash":
        return _hash_action(key)
    if act == "extract":
        assert a.regex is not None
        return _extract_action(key, a.regex)
    assert a.converted_type is not None
    to = a.converted_type

    def convert(attrs: Any) -> bool:
        kv = find(attrs, key)
        return kv is not None and _convert(kv.value, to)
    return convert


def _pattern_action(act: str, pattern: str) -> Apply:
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


def _write_action(a: ActionConfig, key: str) -> Apply:
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


def _delete_action(key: str) -> Apply:
    def delete(attrs: Any) -> bool:
        doomed = [i for i, kv in enumerate(attrs) if kv.key == key]
        for i in reversed(doomed):
            del attrs[i]
        return bool(doomed)
    return delete


def _hash_action(key: str) -> Apply:
    def hash_(attrs: Any) -> bool:
        kv = find(attrs, key)
        if kv is None:
            return False
        kv.value.string_value = _sha256(kv.value)
        return True
    return hash_


def _extract_action(key: str, regex: str) -> Apply:
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


class AttributesProcessor(Component, Consumer):
    def __init__(self, settings: ProcessorCreateSettings, config: AttributesConfig):
        self.next = settings.next_consumer
        self.signal = settings.signal
        self.item_actions = [compile_action(a) for a in config.actions if a.context == "item"]
        self.resource_actions = [compile_action(a) for a in config.actions
                                 if a.context == "resource"]

    async def consume(self, batch: Batch) -> None:
        self.apply(batch)
        await self.next.consume(batch)

    def apply(self, batch: Batch) -> None:
        request = batch.mutable()
        signal = self.signal
        item_actions = self.item_actions
        resource_actions = self.resource_actions
        for res in resources(signal, request):
            if resource_actions:
                attrs = res.resource.attributes
                for act in resource_actions:
                    act(attrs)
            if item_actions:
                for item in items(signal, res):
                    attrs = item.attributes
                    for act in item_actions:
                        act(attrs)


def _create(settings: ProcessorCreateSettings, config: AttributesConfig) -> AttributesProcessor:
    return AttributesProcessor(settings, config)


factory = Factory(type="attributes", kind=Kind.PROCESSOR, config_model=AttributesConfig,
                  create=_create, signals=frozenset(Signal),
                  description="insert, update, upsert, delete, hash, extract and convert "
                              "attributes")
