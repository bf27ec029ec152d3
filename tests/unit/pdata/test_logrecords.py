"""Python log records: the hand-written OTLP encoder against upb, and record batches."""

from __future__ import annotations

import math
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as PbLogRecord

from pipeline.component import Signal
from pipeline.pdata.anyvalue import any_value as pb_any_value
from pipeline.pdata.batch import Batch
from pipeline.pdata.logfields import any_value_dict
from pipeline.pdata.logrecords import (
    LogGroup,
    LogRecord,
    any_value,
    encode_groups,
    encode_record,
)

VALUES: list[Any] = [
    "", "x", "héllo wörld ✓ 日本語 🎉", "a" * 200, "b" * 20000,
    0, 1, 127, 128, 300, 2**31, 2**63 - 1, -1, -127, -(2**63), 2**63, -(2**63) - 1, 10**30,
    True, False, 0.0, -0.0, 1.5, -2.25, 1e300, math.inf, -math.inf,
    b"", b"\x00\xff\x10", bytes(range(256)),
    None,
    [], [1, "two", 3.0, None, True, b"\x01"], {"a": 1, "b": None, "c": {"d": [1, {"e": "f"}]}},
    {}, {"k" * 300: "v" * 300}, [[[[]]]], ("tuple", 1),
]


def deep(n: int) -> Any:
    v: Any = "leaf"
    for i in range(n):
        v = {"k": v} if i % 2 else [v]
    return v


VALUES += [deep(30), deep(31), deep(32), deep(40)]


def pb_value(v: Any, depth: int = 1) -> AnyValue:
    """The reference: upb messages built field by field (JSON-like values as the jsonlogs
    receiver maps them; bytes as bytes_value and tuples as arrays at any depth)."""
    if type(v) is bytes:
        return AnyValue(bytes_value=v)
    if type(v) in (list, tuple) and depth <= 31:
        av = AnyValue()
        av.array_value.SetInParent()
        for x in v:
            av.array_value.values.add().CopyFrom(pb_value(x, depth + 1))
        return av
    if type(v) is dict and depth <= 31:
        av = AnyValue()
        av.kvlist_value.SetInParent()
        for k, x in v.items():
            if x is not None:
                av.kvlist_value.values.add(key=k).value.CopyFrom(pb_value(x, depth + 1))
        return av
    return AnyValue(**any_value_dict(v, depth, 31))


@pytest.mark.parametrize("v", VALUES, ids=lambda v: repr(v)[:40])
def test_any_value_bytes_equal_upb(v: Any) -> None:
    assert any_value(v) == pb_value(v).SerializeToString()
    parsed = AnyValue()
    parsed.ParseFromString(any_value(v))
    assert parsed == pb_value(v)


def pb_record(r: LogRecord) -> PbLogRecord:
    lr = PbLogRecord(time_unix_nano=r.time_unix_nano,
                     observed_time_unix_nano=r.observed_time_unix_nano,
                     severity_number=r.severity_number,  # type: ignore[arg-type]
                     severity_text=r.severity_text,
                     flags=r.flags, trace_id=r.trace_id, span_id=r.span_id,
                     dropped_attributes_count=r.dropped_attributes_count,
                     event_name=r.event_name)
    if r.body is not None:
        lr.body.CopyFrom(pb_value(r.body))
    for k, v in r.attributes.items():
        lr.attributes.add(key=k).value.CopyFrom(pb_value(v))
    return lr


RECORDS = [
    LogRecord(),
    LogRecord("plain line", {"log.file.name": "a.log"}, 1_700_000_000_123_456_789),
    LogRecord({"structured": [1, 2.5, None, {"x": b"\x00"}]},
              {f"k{i}": v for i, v in enumerate(VALUES)},
              time_unix_nano=2**64 - 1, severity_number=17, severity_text="ERROR",
              trace_id=bytes(range(16)), span_id=bytes(range(8)), flags=0xFFFFFFFF,
              dropped_attributes_count=300, event_name="ev"),
    LogRecord("", {"neg": -5, "ü": "ö"}, 1, severity_number=9, flags=1),
    LogRecord(b"\xff\xfe", {}, 0, time_unix_nano=5),
    LogRecord(7, {"big": 10**20, "none": None}),
]


@pytest.mark.parametrize("r", RECORDS, ids=range(len(RECORDS)))
def test_record_bytes_equal_upb(r: LogRecord) -> None:
    expected = pb_record(r)
    assert encode_record(r) == expected.SerializeToString()
    parsed = PbLogRecord()
    parsed.ParseFromString(encode_record(r))
    assert parsed == expected


def pb_request(groups: list[LogGroup]) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    for g in groups:
        rl = req.resource_logs.add(schema_url=g.resource_schema_url)
        for k, v in g.resource.items():
            rl.resource.attributes.add(key=k).value.CopyFrom(pb_value(v))
        sl = rl.scope_logs.add(schema_url=g.scope_schema_url)
        if g.scope_name or g.scope_version or g.scope_attributes:
            sl.scope.name = g.scope_name
            sl.scope.version = g.scope_version
        for k, v in g.scope_attributes.items():
            sl.scope.attributes.add(key=k).value.CopyFrom(pb_value(v))
        for r in g.records:
            sl.log_records.add().CopyFrom(pb_record(r))
    return req


def groups_sample() -> list[LogGroup]:
    return [
        LogGroup([r.copy() for r in RECORDS]),
        LogGroup([LogRecord("x", {"a": 1})], resource={"service.name": "api", "n": 3},
                 resource_schema_url="https://opentelemetry.io/schemas/1.26.0",
                 scope_name="scope", scope_version="1.0", scope_attributes={"s": True},
                 scope_schema_url="s://u"),
        LogGroup.from_lines([b"line one", "ünïcode".encode(), b"", b"z" * 300],
                            {"log.file.name": "in.log"}, 1_700_000_000_000_000_000,
                            resource={"host.name": "h"}),
        LogGroup.from_lines([b"a", b"b"], {}, 42,
                            extras=[None, {"log.split": True, "log.invalid_encoding": True}]),
    ]


def test_request_equals_upb() -> None:
    groups = groups_sample()
    raw = encode_groups(groups)
    parsed = ExportLogsServiceRequest()
    parsed.ParseFromString(raw)
    expected = pb_request(groups_sample())
    assert parsed == expected
    # field by field, too (a message equality bug would hide everything)
    exp_recs = [lr for rl in expected.resource_logs for sl in rl.scope_logs
                for lr in sl.log_records]
    got_recs = [lr for rl in parsed.resource_logs for sl in rl.scope_logs
                for lr in sl.log_records]
    assert len(got_recs) == len(exp_recs) == sum(map(len, groups))
    for a, b in zip(got_recs, exp_recs, strict=True):
        for f in ("time_unix_nano", "observed_time_unix_nano", "severity_number",
                  "severity_text", "flags", "trace_id", "span_id", "dropped_attributes_count",
                  "event_name"):
            assert getattr(a, f) == getattr(b, f), f
        assert a.HasField("body") == b.HasField("body")
        assert pb_any_value(a.body) == pb_any_value(b.body) or \
            (a.body == b.body)  # NaN never equals itself
        assert [kv.key for kv in a.attributes] == [kv.key for kv in b.attributes]


def test_lines_group_encodes_like_its_records() -> None:
    lazy = groups_sample()[2:]
    built = groups_sample()[2:]
    for g in built:
        assert not g.materialized
        assert len(g.records) == len(g)
        assert g.materialized
    assert encode_groups(lazy) == encode_groups(built)
    assert built[1].records[1].attributes == {"log.split": True, "log.invalid_encoding": True}
    assert built[0].records[1].body == "ünïcode"


def records_batch(n: int, groups: int = 1) -> Batch:
    gs = []
    for gi in range(groups):
        gs.append(LogGroup([LogRecord(f"g{gi} r{i}", {"i": i}, 1) for i in range(n)],
                           resource={"g": gi}))
    return Batch(Signal.LOGS, logs=gs)


def bodies(batch: Batch) -> list[str]:
    return [lr.body.string_value for rl in batch.message.resource_logs
            for sl in rl.scope_logs for lr in sl.log_records]


def test_batch_of_records_is_otlp_on_demand() -> None:
    b = records_batch(3)
    assert b.items == 3
    assert b.logs is not None
    assert not b.has_raw
    assert bodies(b) == ["g0 r0", "g0 r1", "g0 r2"]
    assert b.has_raw  # cached
    recs = b.mutable_logs()
    assert recs is not None
    assert not b.has_raw
    assert not b.decoded
    recs[0].records[0].attributes["x"] = "y"
    msg = b.message
    assert msg.resource_logs[0].log_records if False else True
    first = msg.resource_logs[0].scope_logs[0].log_records[0]
    assert {kv.key: pb_any_value(kv.value) for kv in first.attributes} == {"i": 0, "x": "y"}
    # mutable(): OTLP from then on
    m = b.mutable()
    m.resource_logs[0].scope_logs[0].log_records[0].body.string_value = "changed"
    assert b.logs is None
    assert b.mutable_logs() is None
    assert bodies(b)[0] == "changed"
    assert b.items == 3


def test_copy_is_independent() -> None:
    b = records_batch(2)
    b.logs[0].records[0].attributes["nested"] = {"a": [1]}  # type: ignore[index]
    c = b.copy()
    c.mutable_logs()[0].records[0].attributes["nested"]["a"].append(2)  # type: ignore[index]
    c.mutable_logs()[0].records[1].body = "other"  # type: ignore[index]
    c.mutable_logs()[0].resource["g"] = 9  # type: ignore[index]
    assert b.logs[0].records[0].attributes["nested"] == {"a": [1]}  # type: ignore[index]
    assert b.logs[0].records[1].body == "g0 r1"  # type: ignore[index]
    assert b.logs[0].resource == {"g": 0}  # type: ignore[index]
    lazy = Batch(Signal.LOGS, logs=[LogGroup.from_lines([b"a"], {"k": "v"}, 1)])
    lc = lazy.copy()
    lc.mutable_logs()[0].records[0].attributes["k"] = "w"  # type: ignore[index]
    assert lazy.logs[0].records[0].attributes == {"k": "v"}  # type: ignore[index]


def test_merge_records_and_mixed() -> None:
    a, b = records_batch(2), records_batch(3, groups=2)
    a.metadata = {"tenant": "t", "x": "1"}
    b.metadata = {"tenant": "t", "x": "2"}
    m = Batch.merge([a, b])
    assert m.logs is not None
    assert m.items == 8
    assert m.metadata == {"tenant": "t"}
    assert bodies(m) == bodies(a) + bodies(b)
    otlp = Batch(Signal.LOGS, raw=records_batch(1).to_bytes())
    mixed = Batch.merge([records_batch(2), otlp])
    assert mixed.logs is None
    assert mixed.items == 3
    assert bodies(mixed) == ["g0 r0", "g0 r1", "g0 r0"]


@pytest.mark.parametrize("max_items", [1, 2, 3, 4, 5, 7, 100])
def test_split_records(max_items: int) -> None:
    b = records_batch(3, groups=3)
    b.mutable_logs()[1].scope_name = "scope1"  # type: ignore[index]
    expected = pb_request(b.logs)  # type: ignore[arg-type]
    parts = b.split(max_items)
    assert all(p.logs is not None and 0 < p.items <= max_items for p in parts)
    assert sum(p.items for p in parts) == 9
    assert len(parts) == -(-9 // max_items)
    got = [(rl.resource.attributes[0].value.int_value, sl.scope.name, lr.body.string_value)
           for p in parts for rl in p.message.resource_logs for sl in rl.scope_logs
           for lr in sl.log_records]
    want = [(rl.resource.attributes[0].value.int_value, sl.scope.name, lr.body.string_value)
            for rl in expected.resource_logs for sl in rl.scope_logs for lr in sl.log_records]
    assert got == want


def test_record_api() -> None:
    r = LogRecord("b", severity_number=5)
    assert r.severity_number == 5
    assert r.time_unix_nano == 0
    assert r.attributes == {}
    with pytest.raises(TypeError):
        LogRecord(nope=1)
    assert r == r.copy()
    assert "severity_number=5" in repr(r)
    with pytest.raises(ValueError, match="log records make a logs batch"):
        Batch(Signal.TRACES, logs=[])
