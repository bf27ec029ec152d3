"""Attribute limits on OTLP requests (pdata/otlp.py: apply_attribute_limits)."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.component import Signal
from pipeline.pdata.otlp import AttributeLimits, apply_attribute_limits
from tests.builders import traces_request

LIMITS = AttributeLimits(max_attributes=3, max_value_length=10)


def add_attrs(kvs: Any, n: int, value: str = "v") -> None:
    for i in range(n):
        kvs.add(key=f"k{i}").value.string_value = value


def limited(signal: Signal, req: Any, limits: AttributeLimits = LIMITS) -> tuple[int, int]:
    return apply_attribute_limits(signal, req, req.SerializeToString(), limits)


def test_small_requests_are_not_touched() -> None:
    req = traces_request(50)  # many spans, each small
    before = req.SerializeToString()
    assert limited(Signal.TRACES, req) == (0, 0)
    assert req.SerializeToString() == before


def test_span_event_link_resource_scope_lists_are_cut_and_flagged() -> None:
    req = traces_request(3)
    rs = req.resource_spans[0]
    add_attrs(rs.resource.attributes, 5)
    add_attrs(rs.scope_spans[0].scope.attributes, 4)
    big = rs.scope_spans[0].spans[1]
    add_attrs(big.attributes, 20)  # + http.route: 21
    big.dropped_attributes_count = 2  # the sender dropped some already
    add_attrs(big.events.add(name="e").attributes, 6)
    add_attrs(big.links.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8).attributes, 4)
    small = rs.scope_spans[0].spans[0].SerializeToString()

    assert limited(Signal.TRACES, req) == (3 + 1 + 18 + 3 + 1, 0)
    assert len(rs.resource.attributes) == 3
    assert rs.resource.dropped_attributes_count == 3
    assert rs.scope_spans[0].scope.dropped_attributes_count == 1
    assert [kv.key for kv in big.attributes] == ["http.route", "k0", "k1"]  # the first kept
    assert big.dropped_attributes_count == 2 + 18
    assert (len(big.events[0].attributes), big.events[0].dropped_attributes_count) == (3, 3)
    assert (len(big.links[0].attributes), big.links[0].dropped_attributes_count) == (3, 1)
    assert rs.scope_spans[0].spans[0].SerializeToString() == small


def test_long_values_are_truncated_nested_too() -> None:
    req = ExportLogsServiceRequest()
    lr = req.resource_logs.add().scope_logs.add().log_records.add()
    lr.body.string_value = "b" * 100  # a body is not an attribute
    lr.attributes.add(key="s").value.string_value = "ü" * 11
    lr.attributes.add(key="ok").value.string_value = "x" * 10
    lr.attributes.add(key="b").value.bytes_value = b"\x00" * 12
    arr = lr.attributes.add(key="a").value.array_value.values
    arr.add(string_value="y" * 30)
    assert limited(Signal.LOGS, req, AttributeLimits(0, 10)) == (0, 3)
    values = [a.value for a in lr.attributes]
    assert values[0].string_value == "ü" * 10  # characters, not bytes
    assert values[1].string_value == "x" * 10
    assert values[2].bytes_value == b"\x00" * 10
    assert values[3].array_value.values[0].string_value == "y" * 10
    assert lr.body.string_value == "b" * 100
    assert lr.dropped_attributes_count == 0  # truncation is not a drop


def test_metric_data_points() -> None:
    req = ExportMetricsServiceRequest()
    m = req.resource_metrics.add().scope_metrics.add().metrics.add(name="g")
    add_attrs(m.gauge.data_points.add(as_int=1).attributes, 10)
    add_attrs(m.gauge.data_points.add(as_int=2).attributes, 2)
    assert limited(Signal.METRICS, req) == (7, 0)
    assert [len(p.attributes) for p in m.gauge.data_points] == [3, 2]


def test_resource_split_over_repeated_fields_is_still_limited() -> None:
    """Occurrences of a singular message field merge: sizes must add up."""
    part = ExportTraceServiceRequest()
    add_attrs(part.resource_spans.add().resource.attributes, 2)
    rs_bytes = part.resource_spans[0].resource.SerializeToString()
    # resource_spans[0] = resource (field 1) written 4 times
    resource_field = b"".join(b"\x0a" + bytes([len(rs_bytes)]) + rs_bytes for _ in range(4))
    raw = b"\x0a" + bytes([len(resource_field)]) + resource_field
    req = ExportTraceServiceRequest.FromString(raw)
    assert len(req.resource_spans[0].resource.attributes) == 8
    assert apply_attribute_limits(Signal.TRACES, req, raw, LIMITS) == (5, 0)
    assert len(req.resource_spans[0].resource.attributes) == 3


@pytest.mark.parametrize("limits", [AttributeLimits(0, 0), AttributeLimits(1000, 65536)])
def test_within_limits_or_off(limits: AttributeLimits) -> None:
    req = traces_request(2)
    add_attrs(req.resource_spans[0].scope_spans[0].spans[0].attributes, 500, "z" * 300)
    before = req.SerializeToString()
    assert limited(Signal.TRACES, req, limits) == (0, 0)
    assert req.SerializeToString() == before
