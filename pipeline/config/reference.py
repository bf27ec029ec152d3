"""The component reference (docs/components.md), generated from the config models.

`otelpipe components --markdown` prints it; a test keeps the committed file in
sync, so the reference can never drift from the code.
"""

from __future__ import annotations

import json
import re
import types
import typing
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from pipeline.component import Factory, Kind
from pipeline.config.types import parse_duration
from pipeline.registry import Registry


def _type_name(annotation: Any) -> str:
    if _is_duration_type(annotation):
        return "duration"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(repr(a).replace("'", "") for a in args)
    if origin in (types.UnionType, typing.Union):
        return " \\| ".join(_type_name(a) for a in args if a is not type(None)) + (
            " \\| null" if type(None) in args else "")
    if origin in (list, tuple, set, frozenset):
        return f"list[{', '.join(_type_name(a) for a in args if a is not Ellipsis)}]"
    if origin is dict:
        return f"map[{_type_name(args[0])}, {_type_name(args[1])}]"
    if isinstance(annotation, type):
        if issubclass(annotation, SecretStr):
            return "secret string"
        if issubclass(annotation, BaseModel):
            return "object"
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _is_duration_marker(meta: Any) -> bool:
    """`pipeline.config.types.Duration`, or a type that documents itself as one in its
    JSON schema ("seconds, or a duration such as …", e.g. the SLO `Period`)."""
    if getattr(meta, "func", None) is parse_duration:
        return True
    schema = getattr(meta, "json_schema", None)
    return isinstance(schema, dict) and str(schema.get("description", "")).startswith(
        "seconds, or a duration")


def _is_duration_type(annotation: Any) -> bool:
    return typing.get_origin(annotation) is typing.Annotated and any(
        _is_duration_marker(m) for m in typing.get_args(annotation)[1:])


def _is_duration(field: FieldInfo) -> bool:
    return any(_is_duration_marker(m) for m in field.metadata)


def _unwrap(annotation: Any) -> Any:
    """`X` of `X | None` (a duration's Annotated type is kept whole)."""
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _key(name: str, field: FieldInfo) -> str:
    """The key as written in YAML: the field's alias (`for`), else its name."""
    alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
    return alias or name


def duration_text(seconds: float) -> str:
    """`5m`, `1h30m`, `30d`, `200ms`: as a user writes a duration."""
    if seconds and seconds < 1:
        return f"{seconds * 1000:g}ms"
    whole = round(seconds)
    if abs(seconds - whole) > 1e-9:
        return f"{seconds:g}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts) or "0s"


_PLAIN = re.compile(r"^[A-Za-z_/][\w./:-]*(?<!:)$")  # safe unquoted in YAML flow style


def _yaml(value: Any, annotation: Any = None, duration: bool = False) -> str:
    """`value` in YAML flow style, durations as strings, keys as written in YAML."""
    annotation = _unwrap(annotation)
    duration = duration or _is_duration_type(annotation)
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        items = [(_key(n, f), _yaml(getattr(value, n), f.annotation, _is_duration(f)))
                 for n, f in fields.items() if getattr(value, n) != f.get_default(
                     call_default_factory=True)]
        return "{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"
    args = typing.get_args(annotation)
    if isinstance(value, list | tuple | set | frozenset):
        item = args[0] if args else None
        return "[" + ", ".join(_yaml(v, item, duration) for v in value) + "]"
    if isinstance(value, dict):
        key_t, val_t = (args[0], args[1]) if len(args) == 2 else (None, None)
        return "{" + ", ".join(f"{_yaml(k, key_t)}: {_yaml(v, val_t, duration)}"
                               for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return duration_text(float(value)) if duration else repr(value)
    if isinstance(value, str) and _PLAIN.match(value) and value not in (
            "true", "false", "null", "yes", "no", "on", "off"):
        return value
    return json.dumps(str(value), ensure_ascii=False)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    value = field.default
    if value is PydanticUndefined:
        value = field.default_factory() if field.default_factory else None  # type: ignore[call-arg]
    if isinstance(value, BaseModel):
        return "(object)"
    if value in (None, ""):
        return "—"
    return f"`{_yaml(value, field.annotation, _is_duration(field))}`"


def _nested_models(annotation: Any) -> list[type[BaseModel]]:
    found = []
    stack = [annotation]
    while stack:
        a = stack.pop()
        if isinstance(a, type) and issubclass(a, BaseModel):
            found.append(a)
        stack.extend(typing.get_args(a))
    return found


def _rows(model: type[BaseModel], prefix: str, seen: set[type]) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{_key(name, field)}"
        desc = (field.description or "").replace("\n", " ").replace("|", "\\|")
        type_name = "duration" if _is_duration(field) else _type_name(field.annotation)
        rows.append(f"| `{key}` | {type_name} | {_default(field)} | {desc} |")
        for nested in _nested_models(field.annotation):
            if nested not in seen:
                rows.extend(_rows(nested, f"{key}.", seen | {nested}))
    return rows


def _signals(f: Factory) -> str:
    if f.kind is Kind.CONNECTOR:
        return ", ".join(f"{a} → {b}" for a, b in sorted(f.connector_pairs))
    if f.kind is Kind.EXTENSION:
        return "—"
    return ", ".join(s.value for s in sorted(f.signals))


def render(registry: Registry) -> str:
    out = ["# Component reference", "",
           "Generated from the config models by `otelpipe components --markdown`; "
           "do not edit by hand.", ""]
    for kind in Kind:
        factories = [f for f in registry.factories() if f.kind is kind]
        if not factories:
            continue
        out += [f"## {kind.section.capitalize()}", ""]
        for f in factories:
            alias = f" (alias `{'`, `'.join(f.aliases)}`)" if f.aliases else ""
            out += [f"### `{f.type}`{alias}", "", f"{f.description}", "",
                    f"Signals: {_signals(f)}", ""]
            rows = _rows(f.config_model, "", {f.config_model})
            if rows:
                out += ["| key | type | default | description |", "| --- | --- | --- | --- |",
                        *rows, ""]
            else:
                out += ["No settings.", ""]
    return "\n".join(out).rstrip() + "\n"
