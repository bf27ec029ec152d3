from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pydantic import ValidationError

from pipeline.component import Consumer, Kind, Signal
from pipeline.pdata.batch import Batch
from pipeline.pdata.logrecords import LogGroup, LogRecord
from pipeline.processors.semconv import SemconvConfig, SemconvProcessor, factory
from pipeline.registry import default_registry
from tests.builders import kv
from tests.support import Sink, processor_settings
from tests.unit.aggregation.support import CALLS, DURATION
from tests.unit.aggregation.support import make as make_red
from tests.unit.connectors.spans import (
    FLASK_REQUESTS,
    attrs_of,
    flask_batch,
    flask_span,
    metrics,
    span_batch,
)


def make(sink: Consumer, signal: Signal = Signal.TRACES, **cfg: Any) -> SemconvProcessor:
    settings = processor_settings("semconv", next_consumer=sink, signal=signal)
    proc = factory.create(settings, SemconvConfig.model_validate(cfg))
    assert isinstance(proc, SemconvProcessor)
    return proc


def spans_of(batch: Batch) -> list[dict[str, Any]]:
    req = ExportTraceServiceRequest.FromString(batch.to_bytes())
    return [attrs_of(sp) for rs in req.resource_spans for ss in rs.scope_spans
            for sp in ss.spans]


# What the processor makes of Flask's default (old-convention) server span: the stable
# names an opted-in app sends, except where the stable conventions and the Python
# instrumentation differ: `http.host` splits into server.address + server.port (Python
# puts the whole Host header into server.address), the peer socket address also becomes
# network.peer.address (migration guide), and error.type is not derived (not a rename).
UPGRADED_BOOM = {
    "http.request.method": "GET", "url.scheme": "http", "client.port": 50001,
    "user_agent.original": "python-requests/2.32.3", "http.route": "/boom",
    "http.response.status_code": 500, "network.protocol.version": "1.1",
    "server.address": "127.0.0.1", "server.port": 5000, "url.path": "/boom",
    "network.peer.address": "127.0.0.1", "client.address": "127.0.0.1"}


async def test_upgrades_flask_default_spans_to_the_stable_names() -> None:
    sink = Sink()
    proc = make(sink)
    await proc.consume(flask_batch(stable=False))
    got = spans_of(sink.batches[0])
    assert got[1] == UPGRADED_BOOM
    assert got[3]["url.path"] == "/items/42"
    assert got[3]["url.query"] == "verbose=1"
    new = [flask_span(*r, stable=True, client_port=50000 + i)["attrs"]
           for i, r in enumerate(FLASK_REQUESTS)]
    for upgraded, opted_in in zip(got, new, strict=True):
        assert upgraded.keys() - opted_in.keys() == {"network.peer.address"}
        assert opted_in.keys() - upgraded.keys() <= {"error.type"}
        same = upgraded.keys() & opted_in.keys() - {"server.address"}
        assert {k: upgraded[k] for k in same} == {k: opted_in[k] for k in same}


async def test_duplicate_mode_keeps_both() -> None:
    sink = Sink()
    proc = make(sink, mode="duplicate")
    await proc.consume(flask_batch(stable=False))
    boom = spans_of(sink.batches[0])[1]
    old = flask_span(*FLASK_REQUESTS[1], stable=False, client_port=50001)["attrs"]
    assert boom == {**old, **UPGRADED_BOOM}
    assert list(boom)[:len(old)] == list(old)  # old ones first, as they were


async def test_stable_batch_passes_without_decoding() -> None:
    sink = Sink()
    proc = make(sink)
    batch = flask_batch(stable=True)
    raw = batch.to_bytes()
    assert proc.apply(batch) == 0
    assert batch.has_raw
    assert not batch.decoded
    assert batch.to_bytes() is raw


async def test_only_items_with_old_names_change() -> None:
    sink = Sink()
    proc = make(sink)
    batch = span_batch([{"attrs": {"http.request.method": "GET", "http.status_code": 200}},
                        {"attrs": {"http.request.method": "PUT", "app.x": 1}}],
                       resource={"deployment.environment": "prod"})
    assert proc.apply(batch) == 2  # one span and the resource
    req = ExportTraceServiceRequest.FromString(batch.to_bytes())
    assert attrs_of(req.resource_spans[0].resource) == {
        "service.name": "checkout", "deployment.environment.name": "prod"}
    assert spans_of(batch) == [
        {"http.request.method": "GET", "http.response.status_code": 200},
        {"http.request.method": "PUT", "app.x": 1}]


async def test_span_events_use_the_span_kind() -> None:
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    sp = ss.spans.add(name="call", kind=3)
    sp.attributes.append(kv("net.peer.name", "api.internal"))
    ev = sp.events.add(name="message")
    ev.attributes.extend([kv("message.type", "SENT"), kv("net.peer.port", 443)])
    sp2 = ss.spans.add(name="serve", kind=2)
    sp2.events.add(name="e").attributes.append(kv("net.peer.name", "client.example"))
    batch = Batch(Signal.TRACES, raw=req.SerializeToString())
    assert make(Sink()).apply(batch) == 3
    out = ExportTraceServiceRequest.FromString(batch.to_bytes()).resource_spans[0]
    client, server = out.scope_spans[0].spans
    assert attrs_of(client) == {"server.address": "api.internal"}
    assert attrs_of(client.events[0]) == {"rpc.message.type": "SENT", "server.port": 443}
    assert attrs_of(server.events[0]) == {"client.address": "client.example"}


async def test_groups_limit_what_changes() -> None:
    sink = Sink()
    proc = make(sink, groups=["db"])
    batch = span_batch([{"kind": 3, "attrs": {"db.statement": "SELECT 1", "http.method": "GET",
                                              "net.peer.name": "db"}}])
    await proc.consume(batch)
    assert spans_of(sink.batches[0]) == [
        {"db.query.text": "SELECT 1", "http.method": "GET", "net.peer.name": "db"}]


async def test_log_records_otlp_and_python() -> None:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.append(kv("deployment.environment", "dev"))
    lr = rl.scope_logs.add().log_records.add()
    lr.attributes.extend([kv("http.method", "GET"), kv("http.status_code", 429),
                          kv("http.target", "/a?b=c")])
    batch = Batch(Signal.LOGS, raw=req.SerializeToString())
    proc = make(Sink(), Signal.LOGS)
    assert proc.apply(batch) == 2
    out = ExportLogsServiceRequest.FromString(batch.to_bytes()).resource_logs[0]
    assert attrs_of(out.resource) == {"deployment.environment.name": "dev"}
    assert attrs_of(out.scope_logs[0].log_records[0]) == {
        "http.request.method": "GET", "http.response.status_code": 429,
        "url.path": "/a", "url.query": "b=c"}

    # Records as Python objects: materialized, and still as lines (built only if needed).
    rec = LogRecord("x", {"db.statement": "SELECT 1", "db.system": "postgresql"})
    lines = LogGroup.from_lines([b"a", b"b"], {"http.method": "GET"}, 1)
    clean = LogGroup.from_lines([b"c"], {"http.request.method": "GET"}, 1)
    groups = [LogGroup([rec], resource={"service.name": "s"}), lines, clean]
    batch = Batch(Signal.LOGS, logs=groups)
    assert proc.apply(batch) == 3
    assert rec.attributes == {"db.query.text": "SELECT 1", "db.system.name": "postgresql"}
    assert [r.attributes for r in lines.records] == [{"http.request.method": "GET"}] * 2
    assert not clean.materialized
    assert proc.apply(Batch(Signal.LOGS, logs=[clean])) == 0


async def test_metric_data_points() -> None:
    req = ExportMetricsServiceRequest()
    sm = req.resource_metrics.add().scope_metrics.add()
    h = sm.metrics.add(name="http.server.duration")
    dp = h.histogram.data_points.add()
    dp.attributes.extend([kv("http.method", "GET"), kv("http.status_code", 200),
                          kv("net.host.name", "api")])
    g = sm.metrics.add(name="db.client.connections.usage")
    g.gauge.data_points.add().attributes.append(kv("db.client.connections.state", "idle"))
    s = sm.metrics.add(name="n")
    s.sum.data_points.add().attributes.append(kv("k", "v"))
    batch = Batch(Signal.METRICS, raw=req.SerializeToString())
    assert make(Sink(), Signal.METRICS).apply(batch) == 2
    out = ExportMetricsServiceRequest.FromString(batch.to_bytes()).resource_metrics[0]
    h2, g2, s2 = out.scope_metrics[0].metrics
    assert h2.name == "http.server.duration"  # metric names are not renamed
    assert attrs_of(h2.histogram.data_points[0]) == {
        "http.request.method": "GET", "http.response.status_code": 200,
        "server.address": "api"}
    assert attrs_of(g2.gauge.data_points[0]) == {"db.client.connection.state": "idle"}
    assert attrs_of(s2.sum.data_points[0]) == {"k": "v"}


async def test_flask_old_and_new_give_identical_red_series() -> None:
    """The RED series of configs/red-metrics.yaml from Flask's default spans — through
    the semconv processor, or straight into redmetrics (deprecated names matched) — are
    those of the opted-in app: same series, same counts, same buckets."""
    red: dict[str, Any] = {
        "dimensions": [{"name": "http.route"}, {"name": "http.request.method"},
                       {"name": "http.response.status_code"}],
        "errors": {"http_5xx": True}}

    async def series(batch: Batch, through_semconv: bool) -> dict[Any, Any]:
        sink = Sink()
        conn = make_red(sink, **red)
        if through_semconv:
            await make(conn).consume(batch)
        else:
            await conn.consume(batch)
        await conn.flush()
        got = metrics(sink.batches)
        calls = {tuple(sorted(a.items())): dp.as_int for _, a, dp in got[CALLS]}
        buckets = {tuple(sorted(a.items())): list(dp.bucket_counts)
                   for _, a, dp in got[DURATION]}
        return {"calls": calls, "buckets": buckets}

    opted_in = await series(flask_batch(stable=True, repeat=3), False)
    assert await series(flask_batch(stable=False, repeat=3), True) == opted_in
    assert await series(flask_batch(stable=False, repeat=3), False) == opted_in
    codes: dict[int, int] = {}
    for k, n in opted_in["calls"].items():
        code = dict(k)["http.response.status_code"]
        codes[code] = codes.get(code, 0) + n
    assert codes == {200: 9, 500: 3, 201: 3, 404: 3}
    assert len(opted_in["calls"]) == len(FLASK_REQUESTS)
    errors = [dict(k) for k in opted_in["calls"] if dict(k)["status.code"].endswith("ERROR")]
    assert [e["http.route"] for e in errors] == ["/boom"]


def test_config_validation() -> None:
    assert SemconvConfig().groups == ["http", "url", "network", "db", "rpc", "messaging",
                                      "resource"]
    bad: dict[str, Any]
    for bad in ({"mode": "rename"}, {"groups": []}, {"groups": ["http", "http"]},
                {"groups": ["grpc"]}, {"extra": 1}):
        with pytest.raises(ValidationError):
            SemconvConfig.model_validate(bad)


def test_registered() -> None:
    f = default_registry().get(Kind.PROCESSOR, "semconv")
    assert f is factory
    assert f.signals == frozenset(Signal)
