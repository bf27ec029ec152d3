"""The component reference (docs/components.md), generated from the config models.

`otelpipe components --markdown` prints it; a test keeps the committed file in
sync, so the reference can never drift from the code.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from pipeline.component import Factory, Kind
from pipeline.config.types import format_duration, parse_duration
from pipeline.registry import Registry


def _type_name(annotation: Any) -> str:
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


def _is_duration(field: FieldInfo) -> bool:
    return any(getattr(m, "func", None) is parse_duration for m in field.metadata)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    value = field.default
    if value is PydanticUndefined:
        value = field.default_factory() if field.default_factory else None  # type: ignore[call-arg]
    if isinstance(value, BaseModel):
        return "(object)"
    if isinstance(value, float) and _is_duration(field):
        return f"`{format_duration(value)}`"
    return f"`{value!r}`" if value not in (None, "") else "—"


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
        key = f"{prefix}{name}"
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
