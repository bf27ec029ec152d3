"""Loki stream labels: label-name syntax, value texts, the `{a="x"}` rendering, and the
cardinality guard (`max_label_values`, `label_values_ttl`) of the `loki` exporter."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from typing import Any

import orjson

from pipeline.pdata.anyvalue import any_value

_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")


@functools.lru_cache(maxsize=4096)
def sanitize_label_name(name: str) -> str:
    """Loki/Prometheus label syntax `[a-zA-Z_][a-zA-Z0-9_]*` (`service.name` -> `service_name`)."""
    out = _INVALID_LABEL_CHARS.sub("_", name)
    if not out or out[0].isdigit():
        out = "_" + out
    return out


def value_text(v: Any) -> str | None:
    """A string for an OTLP AnyValue (labels and structured metadata), None when empty."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return str(v.string_value)
    if kind is None:
        return None
    if kind == "bool_value":
        return "true" if v.bool_value else "false"
    if kind in ("int_value", "double_value"):
        return str(getattr(v, kind))
    return orjson.dumps(any_value(v)).decode()


def render_labels(labels: tuple[tuple[str, str], ...]) -> str:
    """`{a="x", b="y"}`: label values quoted with Go/PromQL string escapes."""
    return "{" + ", ".join(f"{k}={orjson.dumps(v).decode()}" for k, v in labels) + "}"



class LabelGuard:
    """At most `max_values` distinct values per label name; idle values expire after `ttl`.

    `admit(name, value, now)` is True when the value may be a label. Values already
    admitted stay admitted while they keep being used.
    """

    def __init__(self, max_values: int, ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_values = max_values
        self.ttl = ttl
        self.clock = clock
        self._seen: dict[str, dict[str, float]] = {}
        self._pruned: dict[str, float] = {}

    def admit(self, name: str, value: str, now: float) -> bool:
        if not self.max_values:
            return True
        values = self._seen.get(name)
        if values is None:
            values = self._seen[name] = {}
        if value in values:
            values[value] = now
            return True
        if len(values) >= self.max_values:
            # Full: drop idle values, at most once per second of clock per label.
            if self.ttl and now - self._pruned.get(name, -1e18) >= min(1.0, self.ttl):
                self._pruned[name] = now
                cutoff = now - self.ttl
                for stale in [k for k, t in values.items() if t < cutoff]:
                    del values[stale]
            if len(values) >= self.max_values:
                return False
        values[value] = now
        return True

    def values(self, name: str) -> int:
        return len(self._seen.get(name, ()))
