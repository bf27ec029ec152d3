from __future__ import annotations

import hashlib
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from pydantic import ValidationError

from pipeline.component import Signal
from pipeline.pdata.batch import Batch
from pipeline.processors.attributes import AttributesConfig, AttributesProcessor, factory
from tests.builders import kv, metrics_request, traces_request
from tests.support import Sink, processor_settings


def make(sink: Sink, signal: Signal, actions: list[dict[str, Any]]) -> AttributesProcessor:
    settings = processor_settings("attributes", next_consumer=sink, signal=signal)
    proc = factory.create(settings, AttributesConfig.model_validate({"actions": actions}))
    assert isinstance(proc, AttributesProcessor)
    return proc


def values(kvs: Any) -> dict[str, Any]:
    out = {}
    for item in kvs:
        kind = item.value.WhichOneof("value")
        out[item.key] = getattr(item.value, kind) if kind else None
    return out


def log_batch() -> Batch:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.append(kv("service.name", "api"))
    lr = rl.scope_logs.add().log_records.add()
    lr.body.string_value = "x"
    lr.attributes.extend([kv("http.url", "https://shop.example.com:8443/cart?x=1"),
                          kv("user.email", "bob@example.com"), kv("status", "404"),
                          kv("env", "dev"), kv("temp.a", 1), kv("temp.b", 2), kv("n", 7)])
    return Batch(Signal.LOGS, raw=req.SerializeToString())


async def test_actions_in_order() -> None:
    sink = Sink()
    proc = make(sink, Signal.LOGS, [
        {"key": "env", "value": "prod", "action": "insert"},          # present: no-op
        {"key": "team", "value": "checkout", "action": "insert"},
        {"key": "missing", "value": 1, "action": "update"},            # absent: no-op
        {"key": "n", "value": 8.5, "action": "update"},
        {"key": "env", "value": True, "action": "upsert"},
        {"key": "owner", "from_attribute": "team", "action": "upsert"},
        {"key": "nobody", "from_attribute": "absent", "action": "upsert"},
        {"pattern": r"^temp\.", "action": "delete"},
        {"key": "user.email", "action": "hash"},
        {"key": "http.url", "action": "extract",
         "regex": r"^(?P<url__scheme>\w+)://(?P<server__address>[^/:]+)(?::(?P<server__port>\d+))?"},
        {"key": "status", "action": "convert", "converted_type": "int"},
        {"key": "cloud.region", "value": "eu-west-1", "action": "insert", "context": "resource"},
        {"key": "service.name", "action": "delete", "context": "resource"},
    ])
    await proc.consume(log_batch())
    out = Batch(Signal.LOGS, raw=sink.batches[0].to_bytes()).message.resource_logs[0]
    assert values(out.resource.attributes) == {"cloud.region": "eu-west-1"}
    assert values(out.scope_logs[0].log_records[0].attributes) == {
        "http.url": "https://shop.example.com:8443/cart?x=1",
        "user.email": hashlib.sha256(b"bob@example.com").hexdigest(),
        "status": 404,
        "env": True,
        "n": 8.5,
        "team": "checkout",
        "owner": "checkout",
        "url.scheme": "https",
        "server.address": "shop.example.com",
        "server.port": "8443",
    }


async def test_spans_and_data_points() -> None:
    sink = Sink()
    proc = make(sink, Signal.TRACES, [{"key": "http.route", "action": "hash"},
                                      {"key": "deployment", "value": "blue", "action": "upsert"}])
    await proc.consume(Batch(Signal.TRACES, raw=traces_request(2).SerializeToString()))
    spans = sink.batches[0].message.resource_spans[0].scope_spans[0].spans
    assert [values(sp.attributes) for sp in spans] == [
        {"http.route": hashlib.sha256(f"/r/{i}".encode()).hexdigest(), "deployment": "blue"}
        for i in range(2)]

    sink = Sink()
    proc = make(sink, Signal.METRICS, [{"key": "host", "value": "h1", "action": "insert"}])
    await proc.consume(Batch(Signal.METRICS, message=metrics_request([2, 1, 1])))
    metrics = sink.batches[0].message.resource_metrics[0].scope_metrics[0].metrics
    points = [dp for m in metrics for dp in getattr(m, m.WhichOneof("data")).data_points]
    assert len(points) == 4
    assert all(values(dp.attributes) == {"host": "h1"} for dp in points)


@pytest.mark.parametrize(("value", "to", "expected"), [
    ("12", "int", 12), ("12.7", "int", 12), ("x", "int", "x"), (3, "double", 3.0),
    ("TRUE", "bool", True), ("yes", "bool", "yes"), (5, "string", "5"), (2.5, "int", 2),
])
async def test_convert(value: Any, to: str, expected: Any) -> None:
    req = ExportLogsServiceRequest()
    lr = req.resource_logs.add().scope_logs.add().log_records.add()
    a = lr.attributes.add(key="v")
    if isinstance(value, str):
        a.value.string_value = value
    elif isinstance(value, float):
        a.value.double_value = value
    else:
        a.value.int_value = value
    sink = Sink()
    proc = make(sink, Signal.LOGS, [{"key": "v", "action": "convert", "converted_type": to}])
    await proc.consume(Batch(Signal.LOGS, message=req))
    got = values(sink.batches[0].message.resource_logs[0].scope_logs[0].log_records[0].attributes)
    assert got == {"v": expected}
    assert type(got["v"]) is type(expected)


@pytest.mark.parametrize(("action", "error"), [
    ({"key": "a", "action": "insert"}, "exactly one of value or from_attribute"),
    ({"key": "a", "action": "delete", "value": 1}, "takes no value"),
    ({"action": "upsert", "value": 1}, "needs key"),
    ({"pattern": "a", "action": "upsert", "value": 1}, "pattern applies to delete and hash"),
    ({"key": "a", "action": "extract"}, "extract needs regex"),
    ({"key": "a", "action": "extract", "regex": "(x)"}, "no named group"),
    ({"key": "a", "action": "extract", "regex": "("}, "invalid regular expression"),
    ({"key": "a", "action": "convert"}, "converted_type"),
    ({"key": "a", "action": "rename"}, "action"),
    ({"key": "a", "action": "insert", "value": 1, "context": "scope"}, "context"),
])
def test_config_errors(action: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        AttributesConfig.model_validate({"actions": [action]})
