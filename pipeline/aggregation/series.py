"""Series: one aggregate per distinct set of dimension values.

`Series` is the base (attributes, resource, start time, what the last flush
saw); `SumSeries` and `GaugeSeries` live here, the histograms in
`pipeline.aggregation.histograms`.
"""

from __future__ import annotations

import abc
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

Attrs = tuple[tuple[str, Any], ...]
"""Attributes as ((key, value), ...); values are str, int, float or bool."""

Exemplar = tuple[bytes, bytes, float, int]
"""(trace id, span id, value in the series' input unit, time in ns)."""


def to_key_values(attrs: Attrs) -> list[KeyValue]:
    out = []
    for key, value in attrs:
        if isinstance(value, bool):
            out.append(KeyValue(key=key, value=AnyValue(bool_value=value)))
        elif isinstance(value, int):
            out.append(KeyValue(key=key, value=AnyValue(int_value=value)))
        elif isinstance(value, float):
            out.append(KeyValue(key=key, value=AnyValue(double_value=value)))
        else:
            out.append(KeyValue(key=key, value=AnyValue(string_value=str(value))))
    return out


class Series:
    """One aggregate. `count()` is the number of observations (cumulative, or in
    delta mode since the last successful flush)."""

    __slots__ = ("attrs", "kvs", "last_seen", "mark", "resource", "start")

    def __init__(self) -> None:
        self.attrs: Attrs = ()
        self.resource: Attrs = ()
        self.start = 0
        self.last_seen = 0
        self.mark = 0
        self.kvs: list[KeyValue] | None = None

    @abc.abstractmethod
    def count(self) -> int: ...

    @abc.abstractmethod
    def freeze(self) -> Any:
        """An immutable copy of the current state (what a flush reports)."""

    @abc.abstractmethod
    def subtract(self, frozen: Any) -> None:
        """Delta mode, after a successful flush: remove what that flush reported."""

    def clear_exemplars(self, frozen: Any) -> None:
        """After a flush of `frozen` (this series' `freeze()`): drop the exemplars it
        carried, keep those that came since."""
        return None

    def key_values(self) -> list[KeyValue]:
        if self.kvs is None:
            self.kvs = to_key_values(self.attrs)
        return self.kvs


class SumSeries(Series):
    __slots__ = ("n", "value")

    def __init__(self) -> None:
        super().__init__()
        self.value: float = 0
        self.n = 0

    def add(self, value: float) -> None:
        self.value += value
        self.n += 1

    def count(self) -> int:
        return self.n

    def freeze(self) -> tuple[float, int]:
        return self.value, self.n

    def subtract(self, frozen: tuple[float, int]) -> None:
        self.value -= frozen[0]
        self.n -= frozen[1]


class GaugeSeries(Series):
    __slots__ = ("n", "time", "value")

    def __init__(self) -> None:
        super().__init__()
        self.value: float = 0
        self.n = 0
        self.time = 0

    def set(self, value: float, time_ns: int) -> None:
        self.value = value
        self.time = time_ns
        self.n += 1

    def count(self) -> int:
        return self.n

    def freeze(self) -> tuple[float, int, int]:
        return self.value, self.n, self.time

    def subtract(self, frozen: tuple[float, int, int]) -> None:
        self.n -= frozen[1]

