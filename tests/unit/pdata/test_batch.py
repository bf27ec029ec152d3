from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.component import Signal
from pipeline.pdata.batch import Batch, split_request
from pipeline.pdata.otlp import DecodeError, count_items, drop_invalid_id_items, invalid_id_items
from tests.builders import logs_request, metrics_request, span_names, traces, traces_request


def test_count_items_traces_across_resources() -> None:
    raw = traces_request(3, resources=2).SerializeToString()
    assert count_items(Signal.TRACES, raw) == 6


def test_count_items_logs() -> None:
    assert count_items(Signal.LOGS, logs_request(5).SerializeToString()) == 5


def test_count_items_metrics_counts_data_points_of_every_kind() -> None:
    # gauge 2 points, sum 3 points, histogram 4 points, gauge 0 points
    raw = metrics_request([2, 3, 4, 0]).SerializeToString()
    assert count_items(Signal.METRICS, raw) == 9


def test_count_items_empty_request() -> None:
    assert count_items(Signal.TRACES, b"") == 0


def test_count_items_rejects_malformed_protobuf() -> None:
    with pytest.raises(DecodeError):
        count_items(Signal.TRACES, b"\x0a\xff\xff\xff")


def test_invalid_id_items_spans_need_both_ids() -> None:
    req = traces_request(4)
    spans = req.resource_spans[0].scope_spans[0].spans
    spans[0].trace_id = b"\x01" * 15
    spans[1].span_id = b""
    raw = req.SerializeToString()
    assert invalid_id_items(Signal.TRACES, raw) == (4, 2)


def test_invalid_id_items_logs_may_have_no_ids() -> None:
    req = logs_request(4)
    recs = req.resource_logs[0].scope_logs[0].log_records
    recs[1].trace_id = b"\x02" * 16
    recs[1].span_id = b"\x02" * 8
    recs[2].trace_id = b"\x03" * 3
    recs[3].span_id = b"\x04" * 9
    assert invalid_id_items(Signal.LOGS, req.SerializeToString()) == (4, 2)


def test_invalid_id_items_metrics_has_no_ids() -> None:
    assert invalid_id_items(Signal.METRICS, metrics_request([2, 1]).SerializeToString()) == (3, 0)


def test_drop_invalid_id_items_removes_only_bad_spans() -> None:
    req = traces_request(5)
    spans = req.resource_spans[0].scope_spans[0].spans
    spans[1].trace_id = b"\x00" * 4
    spans[3].span_id = b"\x00" * 16
    assert drop_invalid_id_items(Signal.TRACES, req) == 2
    assert [s.name for s in req.resource_spans[0].scope_spans[0].spans] == [
        "span-0", "span-2", "span-4"]


def test_drop_invalid_id_items_logs() -> None:
    req = logs_request(3)
    req.resource_logs[0].scope_logs[0].log_records[0].span_id = b"\x01"
    assert drop_invalid_id_items(Signal.LOGS, req) == 1
    assert [r.body.string_value for r in req.resource_logs[0].scope_logs[0].log_records] == [
        "message 1", "message 2"]


def test_batch_needs_raw_or_message() -> None:
    with pytest.raises(ValueError, match="raw bytes or a message"):
        Batch(Signal.TRACES)


def test_batch_decodes_lazily_and_keeps_bytes() -> None:
    raw = traces_request(2).SerializeToString()
    b = Batch(Signal.TRACES, raw=raw)
    assert b.items == 2
    assert not b.decoded
    assert b.to_bytes() is raw
    assert span_names(b) == ["span-0", "span-1"]
    assert b.decoded
    assert b.to_bytes() is raw  # reading does not re-encode


def test_mutable_drops_cached_bytes_and_count() -> None:
    b = traces(3)
    msg = b.mutable()
    del msg.resource_spans[0].scope_spans[0].spans[0]
    assert not b.has_raw
    assert b.items == 2
    assert count_items(Signal.TRACES, b.to_bytes()) == 2


def test_merge_concatenates_and_keeps_order() -> None:
    merged = Batch.merge([traces(2), traces(3, start=2), traces(1, start=5)])
    assert merged.items == 6
    assert span_names(Batch(Signal.TRACES, raw=merged.to_bytes())) == [
        f"span-{i}" for i in range(6)]
    assert len(merged.message.resource_spans) == 3


def test_merge_of_one_is_the_batch() -> None:
    b = traces(2)
    assert Batch.merge([b]) is b


def test_merge_keeps_metadata_shared_by_all_batches() -> None:
    a = Batch(Signal.TRACES, raw=traces_request(1).SerializeToString(),
              metadata={"tenant": "a", "x": "1"})
    b = Batch(Signal.TRACES, raw=traces_request(1).SerializeToString(),
              metadata={"tenant": "a", "x": "2"})
    assert dict(Batch.merge([a, b]).metadata) == {"tenant": "a"}


def test_split_respects_max_items_and_keeps_resource_and_scope() -> None:
    b = Batch(Signal.TRACES, raw=traces_request(3, resources=2).SerializeToString(),
              metadata={"tenant": "t1"})
    parts = b.split(4)
    assert [p.items for p in parts] == [4, 2]
    first = parts[0].message
    assert [rs.resource.attributes[0].value.string_value for rs in first.resource_spans] == [
        "checkout", "checkout1"]
    assert [len(rs.scope_spans[0].spans) for rs in first.resource_spans] == [3, 1]
    assert first.resource_spans[1].scope_spans[0].scope.name == "test-scope"
    second = parts[1].message
    assert [rs.resource.attributes[0].value.string_value for rs in second.resource_spans] == [
        "checkout1"]
    assert [s.name for s in second.resource_spans[0].scope_spans[0].spans] == [
        "span-1", "span-2"]
    assert all(dict(p.metadata) == {"tenant": "t1"} for p in parts)


def test_split_not_needed_returns_self() -> None:
    b = traces(3)
    assert b.split(3) == [b]


def test_split_logs() -> None:
    b = Batch(Signal.LOGS, raw=logs_request(5).SerializeToString())
    assert [p.items for p in b.split(2)] == [2, 2, 1]


def test_split_metrics_keeps_a_metric_whole() -> None:
    req = metrics_request([2, 2, 5, 1])
    parts = split_request(Signal.METRICS, req, 4)
    names = [[m.name for m in p.resource_metrics[0].scope_metrics[0].metrics] for p in parts]
    # metric-2 alone exceeds the limit and stays whole
    assert names == [["metric-0", "metric-1"], ["metric-2"], ["metric-3"]]


def test_copy_is_independent() -> None:
    b = traces(2)
    _ = b.message
    c = b.copy()
    c.mutable().resource_spans[0].scope_spans[0].spans[0].name = "changed"
    assert span_names(c) == ["changed", "span-1"]
    assert span_names(b) == ["span-0", "span-1"]
    assert b.items == 2


def test_copy_of_mutated_batch_carries_the_change() -> None:
    b = traces(2)
    b.mutable().resource_spans[0].scope_spans[0].spans[1].name = "renamed"
    c = b.copy()
    assert span_names(c) == ["span-0", "renamed"]


def test_len_and_repr() -> None:
    b = traces(4)
    assert len(b) == 4
    assert repr(b) == "Batch(traces, items=4)"


def test_empty_request_message() -> None:
    b = Batch(Signal.TRACES, message=ExportTraceServiceRequest())
    assert b.items == 0
    assert b.to_bytes() == b""
