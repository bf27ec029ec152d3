from __future__ import annotations

import hashlib
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pydantic import ValidationError

from pipeline.component import Signal
from pipeline.errors import PermanentError
from pipeline.pdata.batch import Batch
from pipeline.pdata.logrecords import LogGroup, LogRecord
from pipeline.processors.resource import ResourceConfig, ResourceProcessor, factory
from tests.builders import kv, metrics_request, traces_request
from tests.support import Sink, processor_settings

ACTIONS: list[dict[str, Any]] = [
    {"key": "deployment.environment.name", "value": "prod", "action": "insert"},
    {"key": "service.name", "value": "ignored", "action": "insert"},      # present: no-op
    {"key": "service.version", "value": "2", "action": "update"},         # absent: no-op
    {"key": "team", "value": "checkout", "action": "upsert"},
    {"key": "k8s.cluster.name", "from_attribute": "k8s-cluster", "action": "insert"},
    {"key": "k8s-cluster", "action": "delete"},
    {"pattern": r"^temp\.", "action": "delete"},
    {"key": "user.email", "action": "hash"},
    {"key": "host.name", "action": "extract", "pattern": r"^(?P<host__role>[a-z]+)-(?P<n>\d+)"},
    {"key": "replicas", "action": "convert", "converted_type": "int"},
]
IN: list[tuple[str, str | int | bool]] = [
    ("service.name", "api"), ("k8s-cluster", "eu-1"), ("temp.a", 1), ("temp.b", True),
    ("user.email", "bob@example.com"), ("host.name", "web-12.example.com"),
    ("replicas", "3")]
OUT = {"service.name": "api", "user.email": hashlib.sha256(b"bob@example.com").hexdigest(),
       "host.name": "web-12.example.com", "replicas": 3,
       "deployment.environment.name": "prod", "team": "checkout",
       "k8s.cluster.name": "eu-1", "host.role": "web", "n": "12"}


def make(sink: Sink, signal: Signal, actions: list[dict[str, Any]]) -> ResourceProcessor:
    settings = processor_settings("resource", next_consumer=sink, signal=signal)
    proc = factory.create(settings, ResourceConfig.model_validate({"attributes": actions}))
    assert isinstance(proc, ResourceProcessor)
    return proc


def values(kvs: Any) -> dict[str, Any]:
    out = {}
    for item in kvs:
        kind = item.value.WhichOneof("value")
        out[item.key] = getattr(item.value, kind) if kind else None
    return out


def traces_in(resources: int = 2) -> ExportTraceServiceRequest:
    req = traces_request(3, resources=resources)
    for rs in req.resource_spans:
        del rs.resource.attributes[:]
        rs.resource.attributes.extend(kv(k, v) for k, v in IN)
        rs.schema_url = "https://opentelemetry.io/schemas/1.26.0"
    return req


@pytest.mark.parametrize("decoded", [False, True])
async def test_traces_every_action(decoded: bool) -> None:
    sink = Sink()
    proc = make(sink, Signal.TRACES, ACTIONS)
    req = traces_in()
    batch = (Batch(Signal.TRACES, message=req) if decoded
             else Batch(Signal.TRACES, raw=req.SerializeToString()))
    await proc.consume(batch)
    out = sink.batches[0].message
    assert len(out.resource_spans) == 2
    for rs, orig in zip(out.resource_spans, traces_in().resource_spans, strict=True):
        assert values(rs.resource.attributes) == OUT
        # Items, scopes and schema URL untouched.
        assert rs.scope_spans == orig.scope_spans
        assert rs.schema_url == orig.schema_url


async def test_metrics_and_logs() -> None:
    sink = Sink()
    proc = make(sink, Signal.METRICS, ACTIONS)
    req = metrics_request([2, 3])
    for rm in req.resource_metrics:
        rm.resource.attributes.extend(kv(k, v) for k, v in IN)
    await proc.consume(Batch(Signal.METRICS, raw=req.SerializeToString()))
    got = sink.batches[0]
    assert got.items == 5
    for rm in got.message.resource_metrics:
        assert values(rm.resource.attributes) == {**OUT, **{
            kv.key: values([kv])[kv.key] for kv in rm.resource.attributes
            if kv.key not in OUT}}
    sink2 = Sink()
    proc2 = make(sink2, Signal.LOGS, ACTIONS)
    lreq = ExportLogsServiceRequest()
    rl = lreq.resource_logs.add()
    rl.resource.attributes.extend(kv(k, v) for k, v in IN)
    rl.scope_logs.add().log_records.add().body.string_value = "hello"
    await proc2.consume(Batch(Signal.LOGS, raw=lreq.SerializeToString()))
    out = sink2.batches[0].message.resource_logs[0]
    assert values(out.resource.attributes) == OUT
    assert out.scope_logs[0].log_records[0].body.string_value == "hello"


async def test_log_record_groups_stay_records() -> None:
    sink = Sink()
    proc = make(sink, Signal.LOGS, ACTIONS)
    group = LogGroup([LogRecord(body="a"), LogRecord(body="b")], resource=dict(IN))
    batch = Batch(Signal.LOGS, logs=[group])
    await proc.consume(batch)
    got = sink.batches[0]
    assert got.logs is not None  # not turned into an OTLP message
    assert got.logs[0].resource == OUT
    assert values(got.message.resource_logs[0].resource.attributes) == OUT


async def test_missing_resource_gets_one_and_unchanged_bytes_are_kept() -> None:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()      # no resource field at all
    rs.scope_spans.add().spans.add(name="s", trace_id=b"\x01" * 16, span_id=b"\x01" * 8)
    raw = req.SerializeToString()
    sink = Sink()
    proc = make(sink, Signal.TRACES, [{"key": "team", "value": "a", "action": "insert"}])
    await proc.consume(Batch(Signal.TRACES, raw=raw))
    out = sink.batches[0].message.resource_spans[0]
    assert values(out.resource.attributes) == {"team": "a"}
    assert out.scope_spans[0].spans[0].name == "s"
    # An action that changes nothing passes the very same batch and bytes on.
    sink2 = Sink()
    proc2 = make(sink2, Signal.TRACES, [{"key": "absent", "action": "delete"}])
    batch = Batch(Signal.TRACES, raw=raw)
    await proc2.consume(batch)
    assert sink2.batches[0] is batch
    assert sink2.batches[0].to_bytes() is raw


async def test_repeated_resource_fields_are_merged_as_protobuf_does() -> None:
    a = ExportTraceServiceRequest()
    a.resource_spans.add().resource.attributes.append(kv("x", "1"))
    b = ExportTraceServiceRequest()
    b.resource_spans.add().resource.attributes.append(kv("y", "2"))
    # One ResourceSpans holding two resource fields: the parser concatenates them.
    inner_a = a.resource_spans[0].SerializeToString()
    inner_b = b.resource_spans[0].SerializeToString()
    payload = inner_a + inner_b
    raw = b"\x0a" + bytes([len(payload)]) + payload
    assert values(ExportTraceServiceRequest.FromString(raw).resource_spans[0]
                  .resource.attributes) == {"x": "1", "y": "2"}
    sink = Sink()
    proc = make(sink, Signal.TRACES, [{"key": "z", "value": 3, "action": "insert"}])
    await proc.consume(Batch(Signal.TRACES, raw=raw))
    assert values(sink.batches[0].message.resource_spans[0].resource.attributes) == {
        "x": "1", "y": "2", "z": 3}


async def test_the_cache_gives_the_same_answer() -> None:
    sink = Sink()
    proc = make(sink, Signal.TRACES, ACTIONS)
    raw = traces_in(1).SerializeToString()
    for _ in range(3):
        await proc.consume(Batch(Signal.TRACES, raw=raw))
    outs = [b.to_bytes() for b in sink.batches]
    assert outs[0] == outs[1] == outs[2]
    assert values(sink.batches[2].message.resource_spans[0].resource.attributes) == OUT


@pytest.mark.parametrize("raw", [b"\x0a\x05abc", b"\x0a\x03\x0a\x05xx", b"\x0f"])
async def test_malformed_request_is_a_permanent_error(raw: bytes) -> None:
    proc = make(Sink(), Signal.TRACES, [{"key": "a", "value": 1, "action": "insert"}])
    with pytest.raises(PermanentError, match="undecodable"):
        await proc.consume(Batch(Signal.TRACES, raw=raw))


@pytest.mark.parametrize(("action", "error"), [
    ({"key": "a", "action": "insert"}, "exactly one of value or from_attribute"),
    ({"key": "a", "action": "insert", "from_context": "x"}, "from_context"),
    ({"key": "a", "action": "extract"}, "extract needs regex"),
    ({"action": "extract", "pattern": "(?P<a>x)"}, "extract needs key"),
    ({"key": "a", "action": "extract", "pattern": "(x)"}, "no named group"),
    ({"key": "a", "action": "extract", "pattern": "("}, "invalid regular expression"),
    ({"pattern": "a", "action": "upsert", "value": 1}, "pattern applies to delete and hash"),
    ({"key": "a", "action": "rename"}, "action"),
])
def test_config_errors(action: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        ResourceConfig.model_validate({"attributes": [action]})


def test_no_actions_is_an_error() -> None:
    with pytest.raises(ValidationError, match="at least 1"):
        ResourceConfig.model_validate({"attributes": []})


@pytest.mark.parametrize("decoded", [False, True])
async def test_the_item_count_is_carried_over_not_recounted(decoded: bool) -> None:
    """Recounting would parse the whole request again (or serialize a decoded one): the
    count the receiver set travels on. 99 is deliberately not the real count (3)."""
    req = traces_in(1)
    batch = (Batch(Signal.TRACES, message=req, items=99) if decoded
             else Batch(Signal.TRACES, raw=req.SerializeToString(), items=99))
    sink = Sink()
    await make(sink, Signal.TRACES, ACTIONS).consume(batch)
    out = sink.batches[0]
    assert out is not batch
    assert out.items == 99
    assert values(out.message.resource_spans[0].resource.attributes) == OUT


async def test_a_big_request_is_edited_off_the_loop() -> None:
    """20,000 distinct resources (1.3 MB): ~150 ms of work, done in a thread; the event
    loop keeps turning (no gap over 100 ms) and every resource is edited."""
    import asyncio
    import time

    req = ExportTraceServiceRequest()
    for i in range(20_000):
        rs = req.resource_spans.add()
        rs.resource.attributes.append(kv("service.name", f"svc-{i}"))
        rs.scope_spans.add().spans.add(name=f"s{i}", trace_id=b"\x01" * 16,
                                       span_id=b"\x01" * 8)
    raw = req.SerializeToString()
    sink = Sink()
    proc = make(sink, Signal.TRACES, [{"key": "team", "value": "a", "action": "upsert"}])
    gaps: list[float] = []
    done = False

    async def tick() -> None:
        last = time.monotonic()
        while not done:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    await proc.consume(Batch(Signal.TRACES, raw=raw, items=20_000))
    done = True
    await ticker
    assert max(gaps) < 0.1, max(gaps)
    out = sink.batches[0]
    assert out.items == 20_000
    got = out.message.resource_spans
    assert len(got) == 20_000
    assert values(got[12_345].resource.attributes) == {"service.name": "svc-12345",
                                                       "team": "a"}
    assert got[19_999].scope_spans[0].spans[0].name == "s19999"
