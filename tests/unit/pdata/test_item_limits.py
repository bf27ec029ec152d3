"""Span event and link counts and array lengths per item (pdata/otlp.py:
apply_item_limits): cut to the limits, flagged in dropped_events_count /
dropped_links_count, counted exactly; nothing is looked at below the size bounds."""

from __future__ import annotations

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from pipeline.component import Signal
from pipeline.pdata.otlp import AttributeLimits, LimitCounts, apply_item_limits

LIMITS = AttributeLimits(max_attributes=10, max_value_length=50, max_events=4, max_links=3,
                         max_array_length=6)


def span_request(events: int, links: int, dropped_events: int = 0,
                 dropped_links: int = 0) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    sp = req.resource_spans.add().scope_spans.add().spans.add(
        trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="s",
        dropped_events_count=dropped_events, dropped_links_count=dropped_links)
    for i in range(events):
        sp.events.add(name=f"e{i}", time_unix_nano=i + 1)
    for i in range(links):
        sp.links.add(trace_id=b"\x03" * 16, span_id=(i + 1).to_bytes(8, "big"))
    return req


def apply(signal: Signal, req: object, limits: AttributeLimits = LIMITS) -> LimitCounts:
    return apply_item_limits(signal, req, req.SerializeToString(), limits)  # type: ignore[attr-defined]


def array(n: int) -> AnyValue:
    v = AnyValue()
    for i in range(n):
        v.array_value.values.add().int_value = i
    return v


def test_events_and_links_past_the_limits_are_dropped_and_counted() -> None:
    req = span_request(events=9, links=5, dropped_events=2, dropped_links=1)
    counts = apply(Signal.TRACES, req)
    assert counts == LimitCounts(events_dropped=5, links_dropped=2)
    sp = req.resource_spans[0].scope_spans[0].spans[0]
    assert [e.name for e in sp.events] == ["e0", "e1", "e2", "e3"]  # the first ones kept
    assert [ln.span_id[-1] for ln in sp.links] == [1, 2, 3]
    assert (sp.dropped_events_count, sp.dropped_links_count) == (2 + 5, 1 + 2)


def test_at_the_limits_nothing_changes() -> None:
    req = span_request(events=4, links=3)
    before = req.SerializeToString()
    assert not apply(Signal.TRACES, req)
    assert req.SerializeToString() == before


def test_no_limit_keeps_every_event() -> None:
    req = span_request(events=3000, links=3000)
    counts = apply(Signal.TRACES, req, AttributeLimits())
    assert not counts
    sp = req.resource_spans[0].scope_spans[0].spans[0]
    assert (len(sp.events), len(sp.links)) == (3000, 3000)


def test_arrays_are_cut_at_any_depth() -> None:
    req = span_request(events=1, links=0)
    sp = req.resource_spans[0].scope_spans[0].spans[0]
    sp.attributes.add(key="flat").value.CopyFrom(array(100))
    sp.attributes.add(key="short").value.CopyFrom(array(6))
    nested = sp.attributes.add(key="nested").value
    inner = nested.kvlist_value.values.add(key="inner").value
    inner.CopyFrom(array(7))
    for i in range(8):  # a key-value list longer than the limit is cut too
        nested.kvlist_value.values.add(key=f"k{i}").value.string_value = "x"
    sp.events[0].attributes.add(key="ev").value.CopyFrom(array(20))
    counts = apply(Signal.TRACES, req)
    assert counts == LimitCounts(arrays_truncated=4)
    assert [v.int_value for v in sp.attributes[0].value.array_value.values] == list(range(6))
    assert len(sp.attributes[1].value.array_value.values) == 6
    kvs = sp.attributes[2].value.kvlist_value.values
    assert [kv.key for kv in kvs] == ["inner", "k0", "k1", "k2", "k3", "k4"]
    assert len(kvs[0].value.array_value.values) == 6
    assert len(sp.events[0].attributes[0].value.array_value.values) == 6
    assert sp.dropped_attributes_count == 0  # values cut, not attributes dropped


def test_log_record_arrays_are_cut_and_events_limits_do_not_apply() -> None:
    req = ExportLogsServiceRequest()
    lr = req.resource_logs.add().scope_logs.add().log_records.add()
    lr.body.string_value = "b"
    lr.attributes.add(key="a").value.CopyFrom(array(10))
    assert apply(Signal.LOGS, req) == LimitCounts(arrays_truncated=1)
    assert len(lr.attributes[0].value.array_value.values) == 6


def test_all_limits_together_count_each_cut_once() -> None:
    req = span_request(events=6, links=4)
    sp = req.resource_spans[0].scope_spans[0].spans[0]
    for i in range(12):
        sp.attributes.add(key=f"k{i}").value.string_value = "y" * 60
    sp.attributes[0].value.CopyFrom(array(9))
    counts = apply(Signal.TRACES, req)
    assert counts == LimitCounts(attributes_dropped=2, values_truncated=9, events_dropped=2,
                                 links_dropped=1, arrays_truncated=1)
    assert sp.dropped_attributes_count == 2
    assert len(sp.attributes) == 10
