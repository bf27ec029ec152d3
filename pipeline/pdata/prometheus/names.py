"""Prometheus names and values: metric and label names from OTLP, label values
from AnyValues, bucket bounds (`le`) as the client libraries write them."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from typing import Any

import orjson
from prometheus_client.utils import floatToGoString

from pipeline.pdata.anyvalue import any_value

UNIT_WORDS = {
    # time
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds",
    "us": "microseconds", "ns": "nanoseconds",
    # bytes
    "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes",
    "TiBy": "tibibytes", "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes",
    "TBy": "terabytes",
    # SI
    "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams",
    # misc
    "Cel": "celsius", "Hz": "hertz", "1": "", "%": "percent",
}
PER_UNIT_WORDS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week",
                  "mo": "month", "y": "year"}

_NON_ALNUM = re.compile(r"[^a-zA-Z0-9]+")
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_ANNOTATION = re.compile(r"\{[^}]*\}")

COUNTER, GAUGE, HISTOGRAM, SUMMARY, INFO = "counter", "gauge", "histogram", "summary", "info"


def _unit_word(unit: str, table: Mapping[str, str]) -> str:
    unit = unit.strip()
    if unit in table:
        return table[unit]
    return "_".join(t for t in _NON_ALNUM.split(unit) if t)


def unit_suffix(unit: str) -> list[str]:
    """Name tokens for an OTLP (UCUM) unit: `s` → [seconds], `m/s` → [meters, per, second]."""
    unit = _ANNOTATION.sub("", unit).strip()
    if not unit:
        return []
    main, _, per = unit.partition("/")
    tokens: list[str] = []
    word = _unit_word(main, UNIT_WORDS)
    if word:
        tokens.append(word)
    per_word = _unit_word(per, PER_UNIT_WORDS) if per.strip() else ""
    if per_word:
        tokens += ["per", per_word]
    return tokens


def metric_name(name: str, unit: str, kind: str, *, namespace: str = "",
                gauge_ratio: bool = False) -> str:
    """The Prometheus family name (counters without `_total`: see `sample_name`)."""
    tokens = [t for t in _NON_ALNUM.split(name) if t]
    for word in "_".join(unit_suffix(unit)).split("_"):
        if word and word not in tokens:
            tokens.append(word)
    if gauge_ratio and unit.strip() == "1" and "ratio" not in tokens:
        tokens.append("ratio")
    if kind == COUNTER:
        tokens = [t for t in tokens if t != "total"]
    if namespace:
        tokens = [t for t in _NON_ALNUM.split(namespace) if t] + tokens
    out = "_".join(tokens) or "_"
    if out[0].isdigit():
        out = "_" + out
    return out


def family_unit(family: str, unit: str) -> str:
    """The OpenMetrics UNIT of a family: the unit word when the name ends with it."""
    words = unit_suffix(unit)
    if not words:
        return ""
    word = "_".join(words)
    return word if family.endswith("_" + word) else ""


def sample_name(family: str, kind: str) -> str:
    return family + "_total" if kind == COUNTER else family


def label_name(key: str) -> str:
    out = _INVALID_LABEL_CHARS.sub("_", key)
    if not out:
        return "key_"
    if out[0].isdigit():
        return "key_" + out
    if out[0] == "_" and not out.startswith("__"):
        return "key" + out
    return out


def any_value_string(v: Any) -> str:
    """An OTLP AnyValue as a label value (arrays and maps as JSON)."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return str(v.string_value)
    if kind == "bool_value":
        return "true" if v.bool_value else "false"
    if kind == "int_value":
        return str(v.int_value)
    if kind == "double_value":
        return _format_float(v.double_value)
    if kind is None:
        return ""
    value = any_value(v, nonfinite_text=True)  # bytes: base64 text
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _format_float(d: float) -> str:
    if math.isnan(d):
        return "NaN"
    if math.isinf(d):
        return "+Inf" if d > 0 else "-Inf"
    if d == int(d) and abs(d) < 1e15:
        return str(int(d))
    return repr(d)



@functools.lru_cache(maxsize=4096)
def format_le(bound: float) -> str:
    """A bucket bound as the Prometheus client libraries write it (`0.5`, `1.0`, `+Inf`).

    Both exporters use this form, so a series has the same `le` whether it was
    scraped or remote-written."""
    return str(floatToGoString(bound))  # type: ignore[no-untyped-call,unused-ignore]

