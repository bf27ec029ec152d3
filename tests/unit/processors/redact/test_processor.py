"""The `redact` processor on whole batches: logs, spans, metrics; a clean batch passes
as its bytes."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from pipeline.component import Signal
from pipeline.pdata.batch import Batch
from pipeline.processors.redact import factory
from pipeline.processors.redact.config import RedactConfig
from pipeline.processors.redact.processor import RedactProcessor
from tests.builders import metrics_request, traces_request
from tests.support import Sink, processor_settings


def s(v: str) -> AnyValue:
    return AnyValue(string_value=v)


def make(sink: Sink, signal: Signal, **cfg: Any) -> RedactProcessor:
    settings = processor_settings("redact", next_consumer=sink, signal=signal)
    proc = factory.create(settings, RedactConfig.model_validate(cfg))
    assert isinstance(proc, RedactProcessor)
    return proc


def logs_batch() -> Batch:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend([
        KeyValue(key="service.name", value=s("api")),
        KeyValue(key="process.command_line", value=s("app --db-password=hunter2 --port 80"))])
    sl = rl.scope_logs.add()
    lr = sl.log_records.add()
    lr.body.string_value = "login ok for bob password=hunter2"
    lr.attributes.extend([
        KeyValue(key="http.request.header.authorization", value=s("Bearer abc")),
        KeyValue(key="db.password", value=AnyValue(int_value=1234)),
        KeyValue(key="user.ssn", value=s("123-45-6789")),
        KeyValue(key="http.route", value=s("/token=abc")),
        KeyValue(key="gen_ai.usage.input_tokens", value=AnyValue(int_value=523)),
        KeyValue(key="note", value=s("password reset requested")),
    ])
    lr2 = sl.log_records.add()
    kvl = lr2.body.kvlist_value.values
    kvl.add(key="msg", value=s("charged 4111-1111-1111-1111"))
    kvl.add(key="api_key", value=s("k-123"))
    arr = kvl.add(key="args").value.array_value.values
    arr.add(string_value="--token=t0ps3cret")
    arr.add(int_value=7)
    lr3 = sl.log_records.add()
    lr3.body.string_value = "nothing to see here"
    return Batch(Signal.LOGS, raw=req.SerializeToString())


def attrs(kvs: Any) -> dict[str, Any]:
    out = {}
    for kv in kvs:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind) if kind not in ("kvlist_value", "array_value") \
            else kv.value
    return out


async def test_logs_bodies_attributes_and_resource() -> None:
    sink = Sink()
    proc = make(sink, Signal.LOGS, blocked_keys=["user.ssn"], allowed_keys=["http.route"],
                summary=True)
    batch = logs_batch()
    await proc.consume(batch)
    out = Batch(Signal.LOGS, raw=sink.batches[0].to_bytes()).message
    rl = out.resource_logs[0]
    assert attrs(rl.resource.attributes) == {
        "service.name": "api", "process.command_line": "app --db-password=**** --port 80"}
    lr, lr2, lr3 = rl.scope_logs[0].log_records
    assert lr.body.string_value == "login ok for bob password=****"
    assert attrs(lr.attributes) == {
        "http.request.header.authorization": "****",
        "db.password": "****",                 # a secret key name: the whole value, any type
        "user.ssn": "****",                    # blocked_keys
        "http.route": "/token=abc",            # allowed_keys: untouched
        "gen_ai.usage.input_tokens": 523,
        "note": "password reset requested",
        "redaction.masked.count": 4,
        "redaction.masked.keys": "(body),db.password,http.request.header.authorization,user.ssn",
    }
    body = {kv.key: kv.value for kv in lr2.body.kvlist_value.values}
    assert body["msg"].string_value == "charged ****"
    assert body["api_key"].string_value == "****"
    assert [v.WhichOneof("value") for v in body["args"].array_value.values] == \
        ["string_value", "int_value"]
    assert body["args"].array_value.values[0].string_value == "--token=****"
    assert attrs(lr2.attributes) == {"redaction.masked.count": 3,
                                     "redaction.masked.keys": "(body)"}
    assert lr3.body.string_value == "nothing to see here"
    assert list(lr3.attributes) == []


async def test_spans_events_links_status_and_metrics() -> None:
    req = ExportTraceServiceRequest()
    sp = req.resource_spans.add().scope_spans.add().spans.add()
    sp.name = "POST /login"
    sp.attributes.add(key="url.full", value=s("https://u:p4ss@api/x?api_key=zz9"))
    ev = sp.events.add(name="exception")
    ev.attributes.add(key="exception.message", value=s("auth failed for token=abc123"))
    sp.links.add().attributes.add(key="cookie", value=s("sid=1"))
    sp.status.message = "connect: password=pw1 refused"
    sink = Sink()
    await make(sink, Signal.TRACES).consume(Batch(Signal.TRACES, raw=req.SerializeToString()))
    out = sink.batches[0].message.resource_spans[0].scope_spans[0].spans[0]
    assert out.name == "POST /login"
    assert out.attributes[0].value.string_value == "https://u:****@api/x?api_key=****"
    assert out.events[0].attributes[0].value.string_value == "auth failed for token=****"
    assert out.links[0].attributes[0].value.string_value == "****"
    assert out.status.message == "connect: password=**** refused"

    mreq = metrics_request([2])
    for dp in mreq.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points:
        dp.attributes.add(key="db.connection_string", value=s("Server=x;Password=abc;"))
    sink = Sink()
    await make(sink, Signal.METRICS).consume(Batch(Signal.METRICS, message=mreq))
    dps = sink.batches[0].message.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points
    assert [dp.attributes[0].value.string_value for dp in dps] == ["Server=x;Password=****;"] * 2


async def test_clean_batch_passes_as_its_bytes() -> None:
    """A batch with no trigger word is neither decoded nor re-encoded."""
    raw = traces_request(20).SerializeToString()
    batch = Batch(Signal.TRACES, raw=raw)
    sink = Sink()
    await make(sink, Signal.TRACES).consume(batch)
    assert sink.batches[0] is batch
    assert not batch.decoded
    assert batch.to_bytes() is raw
