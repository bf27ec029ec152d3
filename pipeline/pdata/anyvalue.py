"""OTLP `AnyValue` → Python: the one converter, and the label form built on it.

- `any_value(v)`: the value as JSON-like Python: str, bool, int, float, a list
  for an array, a dict for a kvlist, None when empty; bytes as base64 text
  (`hex_bytes=True`: hex text). `nonfinite_text=True` writes NaN and ±Inf
  doubles as `NaN`, `+Inf`, `-Inf` (JSON has no such numbers).
- `any_value_to_python(v)`: the *scalar* form that identifies a series or is
  compared by a condition: scalars as they are, bytes as hex, an empty value
  as "", arrays and kvlists as their label text (`[a,b]`, `{k:v}`).
- `label_text(x)`: the text of such a scalar (the Collector's `AsString`:
  booleans as `true`/`false`).
"""

from __future__ import annotations

import base64
import math
from typing import Any

Scalar = str | int | float | bool


def any_value(v: Any, *, hex_bytes: bool = False, nonfinite_text: bool = False) -> Any:
    """Python value of an OTLP AnyValue (arrays as lists, kvlists as dicts, empty: None)."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x, hex_bytes=hex_bytes, nonfinite_text=nonfinite_text)
                for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value, hex_bytes=hex_bytes, nonfinite_text=nonfinite_text)
                for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        raw: bytes = v.bytes_value
        return raw.hex() if hex_bytes else base64.b64encode(raw).decode()
    if kind == "double_value" and nonfinite_text:
        d: float = v.double_value
        if math.isfinite(d):
            return d
        return "NaN" if math.isnan(d) else "+Inf" if d > 0 else "-Inf"
    return getattr(v, kind)


def any_value_to_python(value: Any) -> Scalar:
    """A scalar for an OTLP AnyValue: str, bool, int or float (bytes as hex, containers
    as their label text, an empty value as "")."""
    kind = value.WhichOneof("value")
    if kind is None:
        return ""
    if kind == "string_value":
        text: str = value.string_value
        return text
    if kind == "int_value":
        n: int = value.int_value
        return n
    if kind == "double_value":
        d: float = value.double_value
        return d
    if kind == "bool_value":
        b: bool = value.bool_value
        return b
    if kind == "bytes_value":
        raw: bytes = value.bytes_value
        return raw.hex()
    return _text(any_value(value, hex_bytes=True))


def _text(v: Any) -> str:
    """Label text of a value of `any_value` (lists as `[a,b]`, dicts as `{k:v}`)."""
    if v is None:
        return ""
    if isinstance(v, list):
        return "[" + ",".join(_text(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{_text(x)}" for k, x in v.items()) + "}"
    return label_text(v)


def label_text(value: Any) -> str:
    """The text form used to identify a series (the Collector's `AsString`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
