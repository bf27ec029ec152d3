"""Small helpers the attribute-editing processors (redact, filter, attributes) share:
walking the items of an OTLP request and reading/writing `AnyValue`s."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pipeline.component import Signal
from pipeline.pdata.attractions import find, set_value, value_text

__all__ = ["POINT_KINDS", "data_points", "find", "items", "resources", "set_value",
           "value_text"]

POINT_KINDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")


def resources(signal: Signal, request: Any) -> Any:
    if signal is Signal.TRACES:
        return request.resource_spans
    if signal is Signal.LOGS:
        return request.resource_logs
    return request.resource_metrics


def data_points(metric: Any) -> Any:
    """The repeated data_points of a metric (empty tuple if it has no data)."""
    kind = metric.WhichOneof("data")
    return getattr(metric, kind).data_points if kind is not None else ()


def items(signal: Signal, resource: Any) -> Iterator[Any]:
    """Spans, log records or metric data points of one Resource* message."""
    if signal is Signal.TRACES:
        for ss in resource.scope_spans:
            yield from ss.spans
    elif signal is Signal.LOGS:
        for sl in resource.scope_logs:
            yield from sl.log_records
    else:
        for sm in resource.scope_metrics:
            for m in sm.metrics:
                yield from data_points(m)
