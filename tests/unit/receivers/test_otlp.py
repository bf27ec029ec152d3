"""The otlp receiver over real sockets: a grpc.aio channel and aiohttp HTTP clients."""

from __future__ import annotations

import asyncio
import gzip
import os
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
import grpc.aio
import orjson
import pytest
import zstandard
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from multidict import CIMultiDictProxy
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from pydantic import ValidationError

from pipeline.component import Signal
from pipeline.errors import PermanentError, RetryableError
from pipeline.pdata.otlpjson import encode_request
from pipeline.receivers.otlp import factory
from pipeline.receivers.otlp.config import OTLPReceiverConfig
from pipeline.telemetry.metrics import Telemetry
from tests.support import Sink, aeventually, free_port, receiver_settings

HTTP_LIMIT = 1024 * 1024
GRPC_METHODS = {
    Signal.TRACES: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    Signal.LOGS: "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    Signal.METRICS: "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}
PATHS = {Signal.TRACES: "/v1/traces", Signal.LOGS: "/v1/logs", Signal.METRICS: "/v1/metrics"}
PB = "application/x-protobuf"
JSON = "application/json"


# Requests -------------------------------------------------------------------------------

def traces(n: int = 3, *, bad: int = 0, service: str = "checkout", start: int = 0
           ) -> ExportTraceServiceRequest:
    """`n` good spans followed by `bad` spans with 5-byte trace ids."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    ss = rs.scope_spans.add()
    ss.scope.name = "test-scope"
    for i in range(n + bad):
        sp = ss.spans.add()
        sp.trace_id = os.urandom(5 if i >= n else 16)
        sp.span_id = os.urandom(8)
        sp.name = f"span-{start + i}"
        sp.kind = 2
        sp.start_time_unix_nano = 1_700_000_000_000_000_000 + i
        sp.end_time_unix_nano = 1_700_000_000_100_000_000 + i
        a = sp.attributes.add()
        a.key, a.value.int_value = "index", start + i
        a = sp.attributes.add()
        a.key, a.value.string_value = "http.route", "/api/ü"
    return req


def logs(n: int = 2, *, bad: int = 0) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    kv = rl.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "billing"
    sl = rl.scope_logs.add()
    for i in range(n + bad):
        lr = sl.log_records.add()
        lr.time_unix_nano = 1_700_000_000_000_000_000 + i
        lr.severity_number = 9
        lr.body.string_value = f"line {i}"
        if i % 2 == 0:  # half of them carry ids; none is fine for logs
            lr.trace_id = os.urandom(16)
            lr.span_id = os.urandom(4 if i >= n else 8)
        elif i >= n:
            lr.span_id = os.urandom(3)
        a = lr.attributes.add()
        a.key, a.value.string_value = "user", f"u{i}"
    return req


def metrics(points: int = 3) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    kv = rm.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "api"
    sm = rm.scope_metrics.add()
    g = sm.metrics.add(name="queue.depth")
    for i in range(points):
        dp = g.gauge.data_points.add(time_unix_nano=1_700_000_000_000_000_000 + i, as_int=i)
        a = dp.attributes.add()
        a.key, a.value.string_value = "queue", f"q{i}"
    s = sm.metrics.add(name="requests")
    s.sum.is_monotonic = True
    s.sum.aggregation_temporality = 2
    s.sum.data_points.add(time_unix_nano=1_700_000_000_000_000_000, as_double=12.5)
    return req


REQUESTS: dict[Signal, Any] = {Signal.TRACES: traces, Signal.LOGS: logs, Signal.METRICS: metrics}
RESPONSES: dict[Signal, type[Message]] = {
    Signal.TRACES: ExportTraceServiceResponse, Signal.LOGS: ExportLogsServiceResponse,
    Signal.METRICS: ExportMetricsServiceResponse}
COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress, "deflate": zlib.compress,
    "zstd": zstandard.ZstdCompressor().compress}


def spans_of(sink: Sink) -> list[Any]:
    return [sp for b in sink.batches for rs in b.message.resource_spans
            for ss in rs.scope_spans for sp in ss.spans]


def records_of(sink: Sink) -> list[Any]:
    return [lr for b in sink.batches for rl in b.message.resource_logs
            for sl in rl.scope_logs for lr in sl.log_records]


# Fixtures -------------------------------------------------------------------------------

@dataclass
class Env:
    receiver: Any
    sinks: dict[Signal, Sink]
    telemetry: Telemetry
    grpc_port: int
    http_port: int
    channel: grpc.aio.Channel
    http: aiohttp.ClientSession

    def url(self, signal: Signal) -> str:
        return f"http://127.0.0.1:{self.http_port}{PATHS[signal]}"

    async def grpc_export(self, signal: Signal, raw: bytes, **kw: Any) -> bytes:
        call = self.channel.unary_unary(GRPC_METHODS[signal], request_serializer=None,
                                        response_deserializer=None)
        answer: bytes = await call(raw, timeout=10, **kw)
        return answer

    async def post(self, signal: Signal, body: Any, content_type: str | None = PB,
                   **headers: str) -> tuple[int, CIMultiDictProxy[str], bytes]:
        hdrs = dict(headers)
        if content_type is not None:
            hdrs["Content-Type"] = content_type
        async with self.http.post(self.url(signal), data=body, headers=hdrs) as resp:
            return resp.status, resp.headers, await resp.read()

    def counter(self, name: str, transport: str, signal: Signal) -> float:
        v = self.telemetry.registry.get_sample_value(
            f"otelpipe_receiver_{name}_items_total",
            {"receiver": "otlp", "transport": transport, "signal": signal.value})
        return v or 0.0

    def failed(self, transport: str, reason: str) -> float:
        v = self.telemetry.registry.get_sample_value(
            "otelpipe_receiver_failed_requests_total",
            {"receiver": "otlp", "transport": transport, "reason": reason})
        return v or 0.0


async def start_receiver(telemetry: Telemetry, signals: tuple[Signal, ...] = tuple(Signal),
                         sinks: dict[Signal, Sink] | None = None,
                         ) -> tuple[Any, dict[Signal, Sink], int, int]:
    sinks = sinks or {s: Sink() for s in signals}
    gport, hport = free_port(), free_port()
    cfg = OTLPReceiverConfig.model_validate({"protocols": {
        "grpc": {"endpoint": f"127.0.0.1:{gport}", "max_recv_msg_size_mib": 1},
        "http": {"endpoint": f"127.0.0.1:{hport}", "max_request_body_size": HTTP_LIMIT},
    }})
    settings = receiver_settings("otlp", telemetry, consumers=dict(sinks))
    receiver = factory.create(settings, cfg)
    await receiver.start(None)  # type: ignore[arg-type]
    return receiver, sinks, gport, hport


@pytest.fixture
async def env(telemetry: Telemetry) -> AsyncIterator[Env]:
    receiver, sinks, gport, hport = await start_receiver(telemetry)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{gport}")
    session = aiohttp.ClientSession(auto_decompress=False)
    try:
        yield Env(receiver, sinks, telemetry, gport, hport, channel, session)
    finally:
        await session.close()
        await channel.close()
        await receiver.shutdown()


# Config ---------------------------------------------------------------------------------

def test_config_defaults_and_null_protocols() -> None:
    cfg = OTLPReceiverConfig.model_validate({"protocols": {"grpc": None}})
    assert cfg.protocols.grpc is not None
    assert cfg.protocols.http is None
    assert cfg.protocols.grpc.endpoint == "localhost:4317"
    assert cfg.protocols.grpc.max_recv_msg_size_mib == 4
    cfg = OTLPReceiverConfig.model_validate({"protocols": {"grpc": None, "http": {}}})
    assert cfg.protocols.http is not None
    assert cfg.protocols.http.endpoint == "localhost:4318"
    assert cfg.protocols.http.traces_url_path == "/v1/traces"
    assert cfg.protocols.http.max_request_body_size == 20 * 1024 * 1024


@pytest.mark.parametrize(("raw", "error"), [
    ({}, "protocols\n  Field required"),
    ({"protocols": None}, "at least one protocol"),
    ({"protocols": {}}, "at least one protocol"),
    ({"protocols": {"grpc": {"endpont": "x:1"}}}, "Extra inputs are not permitted"),
    ({"protocols": {"thrift": {}}}, "Extra inputs are not permitted"),
    ({"protocols": {"grpc": {"endpoint": "4317"}}}, "invalid endpoint"),
    ({"protocols": {"http": {"traces_url_path": "v1/traces"}}}, "must start with '/'"),
    ({"protocols": {"http": {"logs_url_path": "/v1/traces"}}}, "must differ"),
    ({"protocols": {"grpc": {"max_recv_msg_size_mib": 0}}}, "greater than 0"),
])
def test_config_errors(raw: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError) as info:
        OTLPReceiverConfig.model_validate(raw)
    assert error in str(info.value)


def test_factory() -> None:
    assert factory.type == "otlp"
    assert factory.signals == frozenset(Signal)


# Happy paths ----------------------------------------------------------------------------

@pytest.mark.parametrize("compression", [None, grpc.Compression.Gzip, grpc.Compression.Deflate])
async def test_grpc_all_signals(env: Env, compression: grpc.Compression | None) -> None:
    t, lg, m = traces(3), logs(2), metrics(3)
    for signal, req in ((Signal.TRACES, t), (Signal.LOGS, lg), (Signal.METRICS, m)):
        raw = req.SerializeToString()
        resp = await env.grpc_export(signal, raw, compression=compression)
        assert resp == b""  # an empty Export*ServiceResponse: full success
        [batch] = env.sinks[signal].batches
        assert batch.to_bytes() == raw  # pass-through: the bytes that arrived
        assert batch.message == req
    assert [sp.trace_id for sp in spans_of(env.sinks[Signal.TRACES])] == \
        [sp.trace_id for sp in t.resource_spans[0].scope_spans[0].spans]
    assert env.sinks[Signal.TRACES].items == 3
    assert env.sinks[Signal.LOGS].items == 2
    assert env.sinks[Signal.METRICS].items == 4  # data points
    assert env.counter("accepted", "grpc", Signal.TRACES) == 3
    assert env.counter("accepted", "grpc", Signal.LOGS) == 2
    assert env.counter("accepted", "grpc", Signal.METRICS) == 4


@pytest.mark.parametrize("encoding", [None, "gzip", "deflate", "zstd"])
@pytest.mark.parametrize("signal", list(Signal))
async def test_http_protobuf(env: Env, signal: Signal, encoding: str | None) -> None:
    req = REQUESTS[signal]()
    raw = req.SerializeToString()
    body, headers = raw, {}
    if encoding:
        body = COMPRESS[encoding](raw)
        headers["Content-Encoding"] = encoding
    status, hdrs, resp = await env.post(signal, body, **headers)
    assert status == 200, resp
    assert hdrs["Content-Type"] == PB
    assert RESPONSES[signal].FromString(resp) == RESPONSES[signal]()
    [batch] = env.sinks[signal].batches
    assert batch.message == req
    assert batch.to_bytes() == raw
    assert env.counter("accepted", "http", signal) == batch.items > 0


@pytest.mark.parametrize("encoding", [None, "gzip"])
@pytest.mark.parametrize("signal", list(Signal))
async def test_http_json(env: Env, signal: Signal, encoding: str | None) -> None:
    req = REQUESTS[signal]()
    body = encode_request(req)
    headers = {}
    if encoding:
        body = gzip.compress(body)
        headers["Content-Encoding"] = encoding
    status, hdrs, resp = await env.post(
        signal, body, content_type="application/json; charset=utf-8", **headers)
    assert status == 200, resp
    assert hdrs["Content-Type"].startswith(JSON)
    assert orjson.loads(resp) == {}
    [batch] = env.sinks[signal].batches
    assert batch.message == req  # ids, attributes, timestamps all survive


async def test_http_json_as_written_by_hand(env: Env) -> None:
    """The example shape of the OTLP specification: hex ids, camelCase, int64 as strings."""
    body = orjson.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name",
                                     "value": {"stringValue": "my.service"}}]},
        "scopeSpans": [{"scope": {"name": "my.library", "version": "1.0.0"}, "spans": [{
            "traceId": "5B8EFFF798038103D269B633813FC60C",
            "spanId": "EEE19B7EC3C1B174",
            "parentSpanId": "EEE19B7EC3C1B173",
            "name": "I'm a server span",
            "startTimeUnixNano": "1544712660000000000",
            "endTimeUnixNano": 1544712661000000000,
            "kind": 2,
            "attributes": [{"key": "my.span.attr", "value": {"stringValue": "some value"}},
                           {"key": "n", "value": {"intValue": "42"}}],
            "unknownFieldFromTheFuture": {"x": 1},
        }]}],
    }]})
    status, _, resp = await env.post(Signal.TRACES, body, content_type=JSON)
    assert status == 200, resp
    [sp] = spans_of(env.sinks[Signal.TRACES])
    assert sp.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert sp.span_id.hex() == "eee19b7ec3c1b174"
    assert sp.parent_span_id.hex() == "eee19b7ec3c1b173"
    assert sp.start_time_unix_nano == 1544712660000000000
    assert sp.end_time_unix_nano == 1544712661000000000
    assert sp.kind == 2
    assert [(a.key, a.value.WhichOneof("value")) for a in sp.attributes] == \
        [("my.span.attr", "string_value"), ("n", "int_value")]
    assert sp.attributes[1].value.int_value == 42


async def test_empty_request_is_ok_and_delivers_nothing(env: Env) -> None:
    assert await env.grpc_export(Signal.TRACES, b"") == b""
    status, _, _ = await env.post(Signal.LOGS, b"")
    assert status == 200
    assert not env.sinks[Signal.TRACES].batches
    assert not env.sinks[Signal.LOGS].batches


# Partial success -------------------------------------------------------------------------

async def test_grpc_partial_success_for_malformed_ids(env: Env) -> None:
    req = traces(3, bad=2)
    good = [sp.trace_id for sp in req.resource_spans[0].scope_spans[0].spans[:3]]
    resp = ExportTraceServiceResponse.FromString(
        await env.grpc_export(Signal.TRACES, req.SerializeToString()))
    assert resp.partial_success.rejected_spans == 2
    assert resp.partial_success.error_message == (
        "2 spans with malformed ids were dropped "
        "(a span needs a 16-byte trace id and an 8-byte span id)")
    assert [sp.trace_id for sp in spans_of(env.sinks[Signal.TRACES])] == good
    assert env.sinks[Signal.TRACES].items == 3
    assert env.counter("accepted", "grpc", Signal.TRACES) == 3
    assert env.counter("rejected", "grpc", Signal.TRACES) == 2


async def test_http_partial_success_protobuf_and_json(env: Env) -> None:
    status, _, body = await env.post(Signal.TRACES, traces(2, bad=1).SerializeToString())
    assert status == 200
    assert ExportTraceServiceResponse.FromString(body).partial_success.rejected_spans == 1
    status, _, body = await env.post(Signal.LOGS, encode_request(logs(4, bad=2)),
                                     content_type=JSON)
    assert status == 200
    ps = orjson.loads(body)["partialSuccess"]
    assert int(ps["rejectedLogRecords"]) == 2
    assert "log record's trace id must be empty or 16 bytes" in ps["errorMessage"]
    assert env.sinks[Signal.TRACES].items == 2
    assert [lr.body.string_value for lr in records_of(env.sinks[Signal.LOGS])] == \
        ["line 0", "line 1", "line 2", "line 3"]
    assert env.counter("rejected", "http", Signal.TRACES) == 1
    assert env.counter("rejected", "http", Signal.LOGS) == 2


async def test_all_items_malformed_delivers_nothing(env: Env) -> None:
    resp = ExportTraceServiceResponse.FromString(
        await env.grpc_export(Signal.TRACES, traces(0, bad=4).SerializeToString()))
    assert resp.partial_success.rejected_spans == 4
    assert env.sinks[Signal.TRACES].batches == []


# Bad input -------------------------------------------------------------------------------

@pytest.fixture
async def env_with_data(env: Env) -> Env:
    """`env` after one good trace request of 3 spans over each transport."""
    await env.grpc_export(Signal.TRACES, traces(3).SerializeToString())
    status, _, _ = await env.post(Signal.TRACES, traces(3).SerializeToString())
    assert status == 200
    return env


def assert_kept(env: Env) -> None:
    """What was accepted before a bad request is still there, and nothing else arrived."""
    assert len(env.sinks[Signal.TRACES].batches) == 2
    assert env.sinks[Signal.TRACES].items == 6
    assert not env.sinks[Signal.LOGS].batches


def status_of(body: bytes, ctype: str = PB) -> tuple[int, str]:
    if ctype == JSON:
        d = orjson.loads(body)
        return d["code"], d["message"]
    st = status_pb2.Status.FromString(body)
    return st.code, st.message


GARBAGE = b"\x0a\xff\xff\xff\xff\x0f"  # field 1, length-delimited, length far past the end
MALFORMED_MSG = ("malformed protobuf: Error parsing message with type "
                 "'opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest' "
                 "(invalid wire format, or a string field that is not valid UTF-8)")


def invalid_utf8_request() -> bytes:
    req = traces(1)
    req.resource_spans[0].scope_spans[0].spans[0].name = "ABCD"
    raw: bytes = req.SerializeToString()
    assert raw.count(b"ABCD") == 1
    return raw.replace(b"ABCD", b"AB\xff\xfe")


@pytest.mark.parametrize("body", [GARBAGE, invalid_utf8_request()], ids=["garbage", "utf8"])
async def test_malformed_protobuf(env_with_data: Env, body: bytes) -> None:
    env = env_with_data
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await env.grpc_export(Signal.TRACES, body)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == MALFORMED_MSG
    status, hdrs, resp = await env.post(Signal.TRACES, body)
    assert status == 400
    assert hdrs["Content-Type"] == PB
    assert status_of(resp) == (code_pb2.INVALID_ARGUMENT, MALFORMED_MSG)
    assert_kept(env)
    assert env.failed("grpc", "malformed") == 1
    assert env.failed("http", "malformed") == 1


async def test_truncated_gzip(env_with_data: Env) -> None:
    env = env_with_data
    body = gzip.compress(traces(50).SerializeToString())[:-40]
    status, _, resp = await env.post(Signal.TRACES, body, **{"Content-Encoding": "gzip"})
    assert status == 400
    assert status_of(resp) == (code_pb2.INVALID_ARGUMENT, "truncated gzip body")
    status, _, resp = await env.post(Signal.TRACES, b"not gzip at all",
                                     **{"Content-Encoding": "gzip"})
    assert status == 400
    assert status_of(resp)[1].startswith("invalid gzip body: Error -3")
    assert_kept(env)


async def test_unsupported_content_encoding(env_with_data: Env) -> None:
    status, _, resp = await env_with_data.post(Signal.TRACES, b"x", **{"Content-Encoding": "br"})
    assert status == 415
    assert "unsupported Content-Encoding 'br'" in status_of(resp)[1]
    assert_kept(env_with_data)


@pytest.mark.parametrize("encoding", ["gzip", "zstd", "deflate"])
async def test_compression_bomb(env_with_data: Env, encoding: str) -> None:
    env = env_with_data
    inflated = b"\x00" * (20 * HTTP_LIMIT)
    body = COMPRESS[encoding](inflated)
    assert len(body) < HTTP_LIMIT // 10
    status, _, resp = await env.post(Signal.TRACES, body, **{"Content-Encoding": encoding})
    assert status == 413
    assert status_of(resp) == (code_pb2.RESOURCE_EXHAUSTED,
                               f"decompressed body exceeds the limit of {HTTP_LIMIT} bytes")
    assert_kept(env)
    assert env.failed("http", "too_large") == 1


async def test_oversized_http_body(env_with_data: Env) -> None:
    env = env_with_data
    big = traces(1)
    big.resource_spans[0].scope_spans[0].spans[0].attributes.add(key="blob").value \
        .bytes_value = b"x" * (HTTP_LIMIT + 10)
    raw = big.SerializeToString()
    expected = (code_pb2.RESOURCE_EXHAUSTED,
                f"request body exceeds the limit of {HTTP_LIMIT} bytes")
    # With Content-Length: refused before reading.
    status, hdrs, resp = await env.post(Signal.TRACES, raw)
    assert status == 413
    assert hdrs["Content-Type"] == PB
    assert status_of(resp) == expected
    # Chunked, no Content-Length: refused while reading.

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(raw), 65536):
            yield raw[i:i + 65536]

    status, _, resp = await env.post(Signal.TRACES, chunks())
    assert status == 413
    assert status_of(resp) == expected
    # JSON clients get the Status as JSON.
    status, hdrs, resp = await env.post(Signal.TRACES, b"[" * (HTTP_LIMIT + 1), content_type=JSON)
    assert status == 413
    assert hdrs["Content-Type"].startswith(JSON)
    assert status_of(resp, JSON) == expected
    assert_kept(env)
    assert env.failed("http", "too_large") == 3


async def test_oversized_grpc_message(env_with_data: Env) -> None:
    env = env_with_data
    big = traces(1)
    big.resource_spans[0].scope_spans[0].spans[0].attributes.add(key="blob").value \
        .bytes_value = b"x" * (1024 * 1024 + 10)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await env.grpc_export(Signal.TRACES, big.SerializeToString())
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Received message larger than max" in (info.value.details() or "")
    # The connection still works.
    await env.grpc_export(Signal.TRACES, traces(1).SerializeToString())
    assert env.sinks[Signal.TRACES].items == 7


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/octet-stream",
                                   "application/grpc"])
async def test_wrong_content_type(env_with_data: Env, ctype: str | None) -> None:
    body = traces(1).SerializeToString()
    async with env_with_data.http.post(env_with_data.url(Signal.TRACES), data=body,
                                       headers={"Content-Type": ctype} if ctype else {},
                                       skip_auto_headers=["Content-Type"]) as r:
        status, text = r.status, await r.text()
    assert status == 415
    assert "unsupported media type" in text
    assert "supported: [application/json, application/x-protobuf]" in text
    assert_kept(env_with_data)


async def test_method_not_allowed(env: Env) -> None:
    async with env.http.get(env.url(Signal.TRACES)) as r:
        assert r.status == 405
        assert r.headers["Allow"] == "POST"
    async with env.http.put(env.url(Signal.TRACES), data=b"") as r:
        assert r.status == 405


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "invalid JSON: "),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "\xff\xfe"}]}]}]}',
     "invalid JSON: "),
    (b"[1, 2]", "an OTLP JSON request must be a JSON object"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz-not-hex"}]}]}]}',
     "traceId 'xyz-not-hex' is not a hex string"),
    (b'{"resourceSpans": "oops"}', "invalid OTLP JSON: "),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
     "invalid OTLP JSON: "),
], ids=["syntax", "utf8", "array", "hex", "shape", "int64"])
async def test_bad_json(env_with_data: Env, body: bytes, message: str) -> None:
    status, hdrs, resp = await env_with_data.post(Signal.TRACES, body, content_type=JSON)
    assert status == 400
    assert hdrs["Content-Type"].startswith(JSON)
    code, text = status_of(resp, JSON)
    assert code == code_pb2.INVALID_ARGUMENT
    assert text.startswith(message), text
    assert_kept(env_with_data)


def nested_kvlist(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"stringValue": "leaf"}
    for _ in range(depth):
        value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    return value


@pytest.mark.parametrize(("body", "message"), [
    (orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
        "attributes": [{"key": "deep", "value": nested_kvlist(40)}]}]}]}]}),
     "JSON nested deeper than 64 levels"),
    (b"[" * 100_000 + b"]" * 100_000, "invalid JSON: "),
    (b'{"a":' * 5000 + b"1" + b"}" * 5000, "invalid JSON: "),
], ids=["kvlist", "arrays", "objects"])
async def test_deeply_nested_json(env_with_data: Env, body: bytes, message: str) -> None:
    status, _, resp = await env_with_data.post(Signal.TRACES, body, content_type=JSON)
    assert status == 400
    code, text = status_of(resp, JSON)
    assert (code, text[:len(message)]) == (code_pb2.INVALID_ARGUMENT, message)
    assert_kept(env_with_data)


# Backpressure and permanent errors ----------------------------------------------------------

async def test_retryable_error_grpc(env_with_data: Env) -> None:
    env = env_with_data
    env.sinks[Signal.TRACES].refuse = RetryableError("queue full", retry_after=7.5)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await env.grpc_export(Signal.TRACES, traces(4).SerializeToString())
    err = info.value
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert err.details() == "queue full"
    details = dict(err.trailing_metadata() or ())["grpc-status-details-bin"]
    st = status_pb2.Status.FromString(details)
    assert (st.code, st.message) == (code_pb2.UNAVAILABLE, "queue full")
    info_msg = error_details_pb2.RetryInfo()
    assert st.details[0].Unpack(info_msg)
    assert (info_msg.retry_delay.seconds, info_msg.retry_delay.nanos) == (7, 500_000_000)
    assert env.counter("refused", "grpc", Signal.TRACES) == 4
    env.sinks[Signal.TRACES].refuse = None
    assert_kept(env)


async def test_retryable_error_http(env_with_data: Env) -> None:
    env = env_with_data
    env.sinks[Signal.TRACES].refuse = RetryableError("memory limit reached", retry_after=7)
    status, hdrs, resp = await env.post(Signal.TRACES, traces(2).SerializeToString())
    assert status == 503
    assert hdrs["Retry-After"] == "7"
    st = status_pb2.Status.FromString(resp)
    assert (st.code, st.message) == (code_pb2.UNAVAILABLE, "memory limit reached")
    env.sinks[Signal.TRACES].refuse = RetryableError("slow down", retry_after=2, throttle=True)
    status, hdrs, resp = await env.post(Signal.TRACES, encode_request(traces(2)),
                                        content_type=JSON)
    assert status == 429
    assert hdrs["Retry-After"] == "2"
    assert status_of(resp, JSON) == (code_pb2.RESOURCE_EXHAUSTED, "slow down")
    assert env.counter("refused", "http", Signal.TRACES) == 4
    assert_kept(env)


async def test_permanent_error(env_with_data: Env) -> None:
    env = env_with_data
    env.sinks[Signal.TRACES].refuse = PermanentError("spans too old", rejected=3)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await env.grpc_export(Signal.TRACES, traces(3).SerializeToString())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "spans too old"
    status, _, resp = await env.post(Signal.TRACES, traces(3).SerializeToString())
    assert status == 400
    assert status_of(resp) == (code_pb2.INVALID_ARGUMENT, "spans too old")
    assert env.counter("rejected", "grpc", Signal.TRACES) == 3
    assert env.counter("rejected", "http", Signal.TRACES) == 3
    assert_kept(env)


LEAKY = "http://alice:pw-S3cr3t@backend:4318/v1/traces?api_key=K3y"


async def test_an_exporters_error_never_reaches_the_sender(
        env_with_data: Env, caplog: pytest.LogCaptureFixture) -> None:
    env = env_with_data
    env.sinks[Signal.TRACES].refuse = RetryableError(
        f"{LEAKY}: HTTP 503: busy", retry_after=1).from_origin("exporter otlphttp/backend")
    generic = "exporter otlphttp/backend unavailable: retry later"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await env.grpc_export(Signal.TRACES, traces(1).SerializeToString())
    assert (info.value.code(), info.value.details()) == (grpc.StatusCode.UNAVAILABLE, generic)
    status, _, resp = await env.post(Signal.TRACES, traces(1).SerializeToString())
    assert (status, status_of(resp)) == (503, (code_pb2.UNAVAILABLE, generic))
    status, _, resp = await env.post(Signal.TRACES, encode_request(traces(1)), content_type=JSON)
    assert (status, status_of(resp, JSON)) == (503, (code_pb2.UNAVAILABLE, generic))
    assert b"S3cr3t" not in resp

    env.sinks[Signal.TRACES].refuse = PermanentError(
        f"{LEAKY}: HTTP 400: bad").from_origin("exporter otlphttp/backend")
    rejected = "exporter otlphttp/backend rejected the data: do not retry"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await env.grpc_export(Signal.TRACES, traces(1).SerializeToString())
    assert (info.value.code(), info.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                         rejected)
    status, _, resp = await env.post(Signal.TRACES, traces(1).SerializeToString())
    assert (status, status_of(resp)) == (400, (code_pb2.INVALID_ARGUMENT, rejected))
    # The full text is logged (rate-limited per exporter), masked.
    logged = [r for r in caplog.records if r.getMessage().startswith("refused a request")]
    assert logged
    assert logged[0].error == ("http://alice:***@backend:4318/v1/traces?api_key=***: "  # type: ignore[attr-defined]
                               "HTTP 503: busy")
    assert "S3cr3t" not in caplog.text
    assert "K3y" not in caplog.text
    assert_kept(env)


async def test_a_processors_refusal_keeps_its_message_with_urls_masked(
        env_with_data: Env) -> None:
    env = env_with_data
    env.sinks[Signal.TRACES].refuse = RetryableError(f"lookup {LEAKY} failed")
    status, _, resp = await env.post(Signal.TRACES, traces(1).SerializeToString())
    assert (status, status_of(resp)) == (503, (
        code_pb2.UNAVAILABLE,
        "lookup http://alice:***@backend:4318/v1/traces?api_key=*** failed"))


async def test_pipeline_bug_is_retryable(env_with_data: Env) -> None:
    env = env_with_data
    env.sinks[Signal.TRACES].refuse = ZeroDivisionError("oops")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await env.grpc_export(Signal.TRACES, traces(1).SerializeToString())
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    status, hdrs, _ = await env.post(Signal.TRACES, traces(1).SerializeToString())
    assert status == 503
    assert hdrs["Retry-After"] == "1"
    assert_kept(env)


async def test_signal_without_pipeline(telemetry: Telemetry) -> None:
    receiver, sinks, gport, hport = await start_receiver(telemetry, (Signal.TRACES,))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gport}") as ch:
            call = ch.unary_unary(GRPC_METHODS[Signal.LOGS])
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(logs(1).SerializeToString(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        expected = ("receiver otlp is in no logs pipeline; "
                    "add it to a logs pipeline's receivers to accept logs")
        assert info.value.details() == expected
        async with aiohttp.ClientSession() as s, s.post(
                f"http://127.0.0.1:{hport}/v1/metrics", data=metrics().SerializeToString(),
                headers={"Content-Type": PB}) as r:
            assert r.status == 404
            st = status_pb2.Status.FromString(await r.read())
        assert (st.code, st.message) == (
            code_pb2.UNIMPLEMENTED, expected.replace("logs", "metrics"))
        assert not sinks[Signal.TRACES].batches
    finally:
        await receiver.shutdown()


# Lifecycle ---------------------------------------------------------------------------------

class SlowSink(Sink):
    def __init__(self) -> None:
        super().__init__()
        self.waiting = 0
        self.release = asyncio.Event()

    async def consume(self, batch: Any) -> None:
        self.waiting += 1
        await self.release.wait()
        await super().consume(batch)


async def test_shutdown_drains_in_flight_requests(telemetry: Telemetry) -> None:
    slow = SlowSink()
    receiver, _, gport, hport = await start_receiver(telemetry, sinks={Signal.TRACES: slow})
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gport}") as ch, \
            aiohttp.ClientSession() as http:
        call = ch.unary_unary(GRPC_METHODS[Signal.TRACES])
        grpc_req = asyncio.ensure_future(call(traces(2).SerializeToString(), timeout=10))
        http_req = asyncio.ensure_future(http.post(
            f"http://127.0.0.1:{hport}/v1/traces", data=traces(3).SerializeToString(),
            headers={"Content-Type": PB}))
        await aeventually(lambda: slow.waiting == 2, what="both requests waiting")
        assert slow.waiting == 2
        stopping = asyncio.ensure_future(receiver.shutdown())
        await asyncio.sleep(0.3)
        assert not stopping.done()  # waiting for the two requests in flight
        slow.release.set()
        assert await grpc_req == b""
        resp = await http_req
        assert resp.status == 200
        resp.release()
        await asyncio.wait_for(stopping, 15)
    assert slow.items == 5
    # Nothing listens any more.
    for port in (gport, hport):
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)


async def test_port_in_use(telemetry: Telemetry) -> None:
    receiver, _, gport, _ = await start_receiver(telemetry)
    try:
        cfg = OTLPReceiverConfig.model_validate(
            {"protocols": {"http": {"endpoint": f"127.0.0.1:{free_port()}"},
                           "grpc": {"endpoint": f"127.0.0.1:{gport}"}}})
        other = factory.create(receiver_settings("otlp/2", Telemetry()), cfg)
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{gport}"):
            await other.start(None)  # type: ignore[arg-type]
    finally:
        await receiver.shutdown()
