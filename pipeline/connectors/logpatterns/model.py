"""What the connector remembers of a pattern, the events it emits, and their text."""

from __future__ import annotations

import datetime
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from pipeline.connectors.logpatterns.config import (
    SEVERITIES,
    EventKind,
)
from pipeline.pdata.anyvalue import any_value_to_python, label_text


@dataclass(slots=True)
class Pattern:
    service: str
    template_id: str
    template: str
    first_line: str
    first_seen: int  # ns
    last_seen: int  # ns
    count: int = 0
    bucket: int = 0  # index of the current rate window
    window_count: int = 0  # records in the current window
    history: deque[int] = field(default_factory=deque)  # completed windows, oldest first
    rate_state: str = "normal"  # normal | up | down
    template_raw: bytes | str = b""  # the log.template last seen (serialized, or text)


@dataclass(slots=True)
class PatternEvent:
    kind: EventKind
    at: int  # ns
    service: str
    template_id: str
    template: str
    first_line: str
    count: int
    window_count: int | None = None
    baseline_count: float | None = None
    direction: str | None = None
    alert_started: int | None = None  # resolved: when the alert fired
    alert_kind: str | None = None  # resolved: the kind of the event that fired it

    def to_json(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__slots__}
        return {k: v for k, v in d.items() if v is not None}


def _iso(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.UTC).isoformat().replace(
        "+00:00", "Z")


def severity_of(number: int, text: str) -> str:
    if 0 < number <= 24:
        return SEVERITIES[(number + 3) // 4]
    return text.strip().upper()[:16]


def _count(p: Pattern) -> int:
    return p.count


def _identity(key: Hashable) -> Hashable:
    return key


def _body_text(raw: bytes) -> str:
    if not raw:
        return ""
    try:
        value = any_value_to_python(AnyValue.FromString(raw))
    except DecodeError:
        return ""
    return value if isinstance(value, str) else label_text(value)


def _value_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return label_text(value)


def describe_event(ev: PatternEvent) -> str:
    svc = ev.service or "(no service.name)"
    if ev.kind == "new":
        head = f"new log pattern in {svc}"
    elif ev.kind == "reappeared":
        head = f"log pattern reappeared in {svc}"
    elif ev.kind == "rate_change":
        head = (f"log pattern rate {'up' if ev.direction == 'up' else 'down'} in {svc}: "
                f"{ev.window_count} in the window vs {ev.baseline_count:.1f} on average")
    else:
        head = f"log pattern alert resolved in {svc}"
    return f"{head}: {ev.template} (id {ev.template_id}); first line: {ev.first_line}"


def _event_json(ev: PatternEvent) -> dict[str, Any]:
    d = ev.to_json()
    d["at"] = ev.at / 1e9
    return d


