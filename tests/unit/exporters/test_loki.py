"""`loki` exporter: exact protobuf and JSON payloads, labels, structured metadata, the
cardinality guard, and status mapping against a local aiohttp endpoint."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import cramjam
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from pydantic import ValidationError

from pipeline.component import Signal
from pipeline.errors import PermanentError, RetryableError
from pipeline.exporters._lokilabels import render_labels
from pipeline.exporters.loki import (
    LokiExporter,
    LokiExporterConfig,
    PushRequest,
    factory,
)
from pipeline.pdata.batch import Batch
from pipeline.telemetry.metrics import Telemetry
from tests.secretsdata import API_KEY, assert_no_secret, basic, leaky_backend
from tests.support import exporter_settings, free_port

T0 = 1_700_000_000_000_000_000
TRACE = bytes(range(16))
SPAN = bytes(range(8))


def kv(key: str, value: Any) -> KeyValue:
    out = KeyValue(key=key)
    if isinstance(value, bool):
        out.value.bool_value = value
    elif isinstance(value, int):
        out.value.int_value = value
    elif isinstance(value, float):
        out.value.double_value = value
    elif isinstance(value, dict):
        for k, v in value.items():
            out.value.kvlist_value.values.append(kv(k, v))
    else:
        out.value.string_value = value
    return out


def record(sl: Any, ts: int, body: Any, sev: str = "", attrs: dict[str, Any] | None = None,
           trace: bool = False) -> Any:
    lr = sl.log_records.add()
    lr.time_unix_nano = ts
    if isinstance(body, str):
        lr.body.string_value = body
    elif isinstance(body, AnyValue):
        lr.body.CopyFrom(body)
    if sev:
        lr.severity_text = sev
        lr.severity_number = 9 if sev == "INFO" else 17
    for k, v in (attrs or {}).items():
        lr.attributes.append(kv(k, v))
    if trace:
        lr.trace_id, lr.span_id = TRACE, SPAN
    return lr


def two_services() -> Batch:
    """api: three records out of time order; worker: one record with a map body."""
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend([kv("service.name", "api"), kv("host.name", "h1")])
    sl = rl.scope_logs.add()
    sl.scope.name = "app"
    record(sl, T0 + 30, "third", "INFO", {"http.method": "GET", "status": 200})
    record(sl, T0 + 10, "first", "INFO", {"http.method": "GET", "ok": True}, trace=True)
    record(sl, T0 + 20, "error!", "ERROR", {"http.method": "POST"})
    rl2 = req.resource_logs.add()
    rl2.resource.attributes.append(kv("service.name", "worker"))
    sl2 = rl2.scope_logs.add()
    body = AnyValue()
    body.kvlist_value.values.append(kv("job", "x"))
    record(sl2, T0 + 5, body, "INFO", {"user": {"id": 7}})
    return Batch(Signal.LOGS, raw=req.SerializeToString())


def exporter(tel: Telemetry | None = None, clock: Any = None, **config: Any) -> LokiExporter:
    cfg = LokiExporterConfig.model_validate({
        "endpoint": "http://127.0.0.1:1", "timeout": "2s",
        "sending_queue": {"enabled": False}, "retry_on_failure": {"enabled": False},
        "labels": {"resource": ["service.name"], "severity": "level"}, **config})
    settings = exporter_settings("loki/test", telemetry=tel or Telemetry())
    if clock is not None:
        return LokiExporter(settings, cfg, clock=clock)
    exp = factory.create(settings, cfg)
    assert isinstance(exp, LokiExporter)
    return exp


def decode_protobuf(body: bytes) -> dict[str, list[tuple[int, str, list[tuple[str, str]]]]]:
    req = PushRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
    return {s.labels: [(e.timestamp.seconds * 10**9 + e.timestamp.nanos, e.line,
                        [(p.name, p.value) for p in e.structuredMetadata]) for e in s.entries]
            for s in req.streams}


# --- config ------------------------------------------------------------------


def test_url_from_base_or_full_endpoint() -> None:
    assert exporter(endpoint="http://loki:3100").url == "http://loki:3100/loki/api/v1/push"
    assert exporter(endpoint="http://loki:3100/").url == "http://loki:3100/loki/api/v1/push"
    full = "http://vl:9428/insert/loki/api/v1/push"
    assert exporter(endpoint=full).url == full


def test_config_errors() -> None:
    with pytest.raises(ValidationError, match="http:// or https://"):
        LokiExporterConfig.model_validate({"endpoint": "loki:3100"})
    with pytest.raises(ValidationError, match="both become the label 'service_name'"):
        LokiExporterConfig.model_validate({"endpoint": "http://l", "labels": {
            "resource": ["service.name"], "attributes": ["service_name"]}})
    with pytest.raises(ValidationError, match="unknown_key"):
        LokiExporterConfig.model_validate({"endpoint": "http://l", "unknown_key": 1})


# --- payloads -----------------------------------------------------------------------


def test_protobuf_payload_exact() -> None:
    exp = exporter(labels={"resource": ["service.name"], "attributes": ["http.method"],
                           "severity": "level", "static": {"env": "test"}})
    streams = decode_protobuf(exp.encode(two_services().to_bytes()))
    assert streams == {
        '{env="test", http_method="GET", level="INFO", service_name="api"}': [
            (T0 + 10, "first", [("severity_text", "INFO"), ("severity_number", "9"),
                                ("trace_id", TRACE.hex()), ("span_id", SPAN.hex()),
                                ("scope_name", "app"), ("host_name", "h1"),
                                ("ok", "true")]),
            (T0 + 30, "third", [("severity_text", "INFO"), ("severity_number", "9"),
                                ("scope_name", "app"), ("host_name", "h1"),
                                ("status", "200")]),
        ],
        '{env="test", http_method="POST", level="ERROR", service_name="api"}': [
            (T0 + 20, "error!", [("severity_text", "ERROR"), ("severity_number", "17"),
                                 ("scope_name", "app"), ("host_name", "h1")]),
        ],
        '{env="test", level="INFO", service_name="worker"}': [
            (T0 + 5, '{"job":"x"}', [("severity_text", "INFO"), ("severity_number", "9"),
                                     ("user", '{"id":7}')]),
        ],
    }


def test_hand_written_protobuf_matches_the_protobuf_library() -> None:
    """The hand-written bytes (pre-encoded, cached metadata) equal the protobuf library's
    serialization of the same streams."""
    exp = exporter(labels={"resource": ["service.name"], "attributes": ["http.method"]})
    raw = two_services().to_bytes()
    ref = PushRequest()
    for labels, entries in exp.streams(raw).items():
        s = ref.streams.add(labels=render_labels(labels))
        for ts, line, meta in entries:
            e = s.entries.add(line=line)
            e.timestamp.seconds, e.timestamp.nanos = divmod(ts, 10**9)
            for name, value in meta:
                e.structuredMetadata.add(name=name, value=value)
    want = ref.SerializeToString()
    assert exp.encode_protobuf(exp.streams(raw, encoded_metadata=True)) == want
    # Twice: the second run is served from the caches.
    assert exp.encode_protobuf(exp.streams(raw, encoded_metadata=True)) == want


def test_json_payload_exact_and_gzipped() -> None:
    exp = exporter(encoding="json")
    body = orjson.loads(gzip.decompress(exp.encode(two_services().to_bytes())))
    assert body == {"streams": [
        {"stream": {"level": "INFO", "service_name": "api"}, "values": [
            [str(T0 + 10), "first", {"severity_text": "INFO", "severity_number": "9",
                                     "trace_id": TRACE.hex(), "span_id": SPAN.hex(),
                                     "scope_name": "app", "host_name": "h1",
                                     "http_method": "GET", "ok": "true"}],
            [str(T0 + 30), "third", {"severity_text": "INFO", "severity_number": "9",
                                     "scope_name": "app", "host_name": "h1",
                                     "http_method": "GET", "status": "200"}]]},
        {"stream": {"level": "ERROR", "service_name": "api"}, "values": [
            [str(T0 + 20), "error!", {"severity_text": "ERROR", "severity_number": "17",
                                      "scope_name": "app", "host_name": "h1",
                                      "http_method": "POST"}]]},
        {"stream": {"level": "INFO", "service_name": "worker"}, "values": [
            [str(T0 + 5), '{"job":"x"}', {"severity_text": "INFO", "severity_number": "9",
                                          "user": '{"id":7}'}]]},
    ]}
    plain = exporter(encoding="json", compression="none")
    assert orjson.loads(plain.encode(two_services().to_bytes())) == body


def test_json_line_format_puts_the_record_in_the_line() -> None:
    exp = exporter(encoding="json", compression="none", line_format="json",
                   labels={"resource": ["service.name"]})
    body = orjson.loads(exp.encode(two_services().to_bytes()))
    api = body["streams"][0]
    assert api["stream"] == {"service_name": "api"}
    assert [len(v) for v in api["values"]] == [2, 2, 2]  # no structured metadata
    assert orjson.loads(api["values"][0][1]) == {
        "body": "first", "severity_text": "INFO", "severity_number": 9,
        "trace_id": TRACE.hex(), "span_id": SPAN.hex(), "scope.name": "app",
        "host.name": "h1", "http.method": "GET", "ok": True}
    worker = body["streams"][1]["values"][0]
    assert orjson.loads(worker[1]) == {"body": {"job": "x"}, "severity_text": "INFO",
                                       "severity_number": 9, "user": {"id": 7}}


def test_json_line_format_over_protobuf() -> None:
    """The default encoding with JSON lines: the same lines, no structured metadata (this
    combination raised TypeError on every batch before)."""
    as_json = exporter(encoding="json", compression="none", line_format="json",
                       labels={"resource": ["service.name"]})
    as_proto = exporter(line_format="json", labels={"resource": ["service.name"]})
    raw = two_services().to_bytes()
    Entries = list[tuple[int, str, list[tuple[str, str]]]]
    want: dict[str, Entries] = {
        render_labels(tuple(sorted(s["stream"].items()))):
            [(int(ts), line, []) for ts, line in s["values"]]
        for s in orjson.loads(as_json.encode(raw))["streams"]}
    assert decode_protobuf(as_proto.encode(raw)) == want


def test_stream_without_labels_gets_unknown_service() -> None:
    req = ExportLogsServiceRequest()
    sl = req.resource_logs.add().scope_logs.add()
    record(sl, T0, "no labels")
    lr = sl.log_records.add()  # no time at all: sent with the time of sending
    lr.observed_time_unix_nano = T0 + 1
    exp = exporter(labels={})
    streams = decode_protobuf(exp.encode(req.SerializeToString()))
    assert streams == {'{service_name="unknown_service"}': [(T0, "no labels", []),
                                                            (T0 + 1, "", [])]}


def test_non_ascii_and_long_values_roundtrip() -> None:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.append(kv("service.name", "ünï"))
    sl = rl.scope_logs.add()
    long = "x" * 300
    record(sl, T0, "héllo " + long, attrs={"k": long, "d": 1.5, "e": ""})
    streams = decode_protobuf(exporter().encode(req.SerializeToString()))
    assert streams == {'{service_name="ünï"}': [
        (T0, "héllo " + long, [("k", long), ("d", "1.5"), ("e", "")])]}


# --- cardinality guard --------------------------------------------------------------


def test_cardinality_guard_moves_extra_values_to_metadata() -> None:
    tel = Telemetry()
    exp = exporter(tel, labels={"resource": ["service.name"], "attributes": ["user"]},
                   max_label_values=2)
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.append(kv("service.name", "api"))
    sl = rl.scope_logs.add()
    for i, user in enumerate(["u1", "u2", "u3", "u1", "u4"]):
        record(sl, T0 + i, f"m{i}", attrs={"user": user})
    streams = decode_protobuf(exp.encode(req.SerializeToString()))
    assert streams == {
        '{service_name="api", user="u1"}': [(T0, "m0", []), (T0 + 3, "m3", [])],
        '{service_name="api", user="u2"}': [(T0 + 1, "m1", [])],
        '{service_name="api"}': [(T0 + 2, "m2", [("user", "u3")]),
                                 (T0 + 4, "m4", [("user", "u4")])],
    }
    assert tel.registry.get_sample_value(
        "otelpipe_loki_exporter_label_overflow_records_total",
        {"exporter": "loki/test", "label": "user"}) == 2


def test_both_encodings_carry_the_same_entries() -> None:
    """Protobuf (pre-encoded metadata, id fast paths) and JSON agree, guard included;
    odd-length ids take the generic path."""
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend([kv("service.name", "api"), kv("region", "eu")])
    sl = rl.scope_logs.add()
    for i in range(12):
        lr = record(sl, T0 + (7 * i) % 12, f"m{i}", "INFO" if i % 3 else "ERROR",
                    {"user": f"u{i % 4}", "n": i, "flag": i % 2 == 0}, trace=i % 2 == 0)
        if i == 5:
            lr.trace_id, lr.span_id = b"\x01\x02", b"\x03"
    raw = req.SerializeToString()
    config: dict[str, Any] = {"labels": {"resource": ["service.name"], "attributes": ["user"],
                         "severity": "level"}, "max_label_values": 3}
    proto = decode_protobuf(exporter(**config).encode(raw))
    body = orjson.loads(exporter(encoding="json", compression="none", **config).encode(raw))
    as_json = {render_labels(tuple(s["stream"].items())): [
        (int(v[0]), v[1], list(v[2].items()) if len(v) > 2 else []) for v in s["values"]]
        for s in body["streams"]}
    assert proto == as_json
    assert sum(len(v) for v in proto.values()) == 12
    odd = next(e for v in proto.values() for e in v if e[1] == "m5")
    assert ("trace_id", "0102") in odd[2]
    assert ("span_id", "03") in odd[2]


def test_guard_uses_the_exporter_clock() -> None:
    now = [0.0]
    exp = exporter(clock=lambda: now[0], labels={"attributes": ["pod"]},
                   max_label_values=1, label_values_ttl="1m")
    req = ExportLogsServiceRequest()
    sl = req.resource_logs.add().scope_logs.add()
    record(sl, T0, "x", attrs={"pod": "a"})
    req2 = ExportLogsServiceRequest()
    record(req2.resource_logs.add().scope_logs.add(), T0, "y", attrs={"pod": "b"})
    assert list(exp.streams(req.SerializeToString())) == [(("pod", "a"),)]
    assert list(exp.streams(req2.SerializeToString())) == [(("service_name",
                                                              "unknown_service"),)]
    now[0] = 120.0  # two minutes later "a" has expired
    assert list(exp.streams(req2.SerializeToString())) == [(("pod", "b"),)]


# --- HTTP ---------------------------------------------------------------------------


@dataclass
class Endpoint:
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""


@pytest_asyncio.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    ep = Endpoint()

    async def handle(request: web.Request) -> web.Response:
        ep.requests.append((dict(request.headers), await request.read()))
        status, headers = ep.answers.pop(0) if ep.answers else (204, {})
        return web.Response(status=status, headers=headers,
                            text="" if status < 300 else f"error {status}")

    app = web.Application()
    app.router.add_post("/loki/api/v1/push", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    ep.url = f"http://127.0.0.1:{port}"
    yield ep
    await runner.cleanup()


async def test_headers_and_body_protobuf(endpoint: Endpoint) -> None:
    exp = exporter(endpoint=endpoint.url, tenant_id="team-a",
                   auth={"bearer_token": "s3cret"}, headers={"X-Extra": "1"})
    await exp.start(None)  # type: ignore[arg-type]
    try:
        await exp.consume(two_services())
    finally:
        await exp.shutdown()
    (headers, body), = endpoint.requests
    assert headers["Content-Type"] == "application/x-protobuf"
    assert "Content-Encoding" not in headers
    assert headers["X-Scope-OrgID"] == "team-a"
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["X-Extra"] == "1"
    assert sum(len(v) for v in decode_protobuf(body).values()) == 4


async def test_headers_json_gzip(endpoint: Endpoint) -> None:
    exp = exporter(endpoint=endpoint.url, encoding="json",
                   auth={"basic": {"username": "u", "password": "p"}})
    await exp.start(None)  # type: ignore[arg-type]
    try:
        await exp.consume(two_services())
    finally:
        await exp.shutdown()
    (headers, body), = endpoint.requests
    assert headers["Content-Type"] == "application/json"
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Authorization"] == "Basic dTpw"
    # (the aiohttp server has already undone Content-Encoding: gzip)
    assert len(orjson.loads(body)["streams"]) == 3


@pytest.mark.parametrize(("status", "headers", "retry_after", "throttle"), [
    (429, {"Retry-After": "7"}, 7.0, True),
    (503, {}, None, False),
    (500, {"Retry-After": "2"}, 2.0, False),
])
async def test_retryable_statuses(endpoint: Endpoint, status: int, headers: dict[str, str],
                                  retry_after: float | None, throttle: bool) -> None:
    endpoint.answers.append((status, headers))
    exp = exporter(endpoint=endpoint.url)
    await exp.start(None)  # type: ignore[arg-type]
    try:
        with pytest.raises(RetryableError) as info:
            await exp.send(two_services())
    finally:
        await exp.shutdown()
    assert info.value.retry_after == retry_after
    assert info.value.throttle is throttle
    assert f"HTTP {status}: error {status}" in str(info.value)


@pytest.mark.parametrize("status", [400, 401, 404, 413])
async def test_other_4xx_are_permanent_dropped_and_counted(endpoint: Endpoint,
                                                           status: int) -> None:
    tel = Telemetry()
    endpoint.answers.append((status, {}))
    exp = exporter(tel, endpoint=endpoint.url,
                   retry_on_failure={"enabled": True, "initial_interval": "10ms"})
    await exp.start(None)  # type: ignore[arg-type]
    try:
        with pytest.raises(PermanentError):
            await exp.consume(two_services())
    finally:
        await exp.shutdown()
    assert len(endpoint.requests) == 1  # never retried
    assert tel.registry.get_sample_value("otelpipe_exporter_send_failed_items_total", {
        "exporter": "loki/test", "signal": "logs"}) == 4


async def test_retry_then_success_through_exporterhelper(endpoint: Endpoint) -> None:
    tel = Telemetry()
    endpoint.answers += [(503, {}), (429, {"Retry-After": "0"})]
    exp = exporter(tel, endpoint=endpoint.url,
                   retry_on_failure={"enabled": True, "initial_interval": "10ms",
                                     "max_interval": "20ms"})
    await exp.start(None)  # type: ignore[arg-type]
    try:
        await exp.consume(two_services())
    finally:
        await exp.shutdown()
    assert len(endpoint.requests) == 3
    assert endpoint.requests[0][1] == endpoint.requests[2][1]
    assert tel.registry.get_sample_value("otelpipe_exporter_sent_items_total", {
        "exporter": "loki/test", "signal": "logs"}) == 4


async def test_connection_refused_is_retryable() -> None:
    exp = exporter(endpoint=f"http://127.0.0.1:{free_port()}")
    await exp.start(None)  # type: ignore[arg-type]
    try:
        with pytest.raises(RetryableError, match="ClientConnectorError"):
            await exp.send(two_services())
    finally:
        await exp.shutdown()


async def test_other_signals_are_refused() -> None:
    from tests.builders import traces

    exp = exporter()
    with pytest.raises(PermanentError, match="takes logs"):
        await exp.send(traces(1))
    assert factory.signals == frozenset({Signal.LOGS})


async def test_credentials_in_the_url_are_basic_auth_and_never_in_errors(
        caplog: pytest.LogCaptureFixture) -> None:
    async with leaky_backend(400) as backend:
        exp = exporter(endpoint=backend.with_credentials(f"/loki/api/v1/push?api_key={API_KEY}"))
        await exp.start(None)  # type: ignore[arg-type]
        try:
            with pytest.raises(PermanentError) as exc:
                await exp.send(two_services())
        finally:
            await exp.shutdown()
    assert backend.authorizations == [basic()]
    assert str(exc.value).startswith(
        f"http://127.0.0.1:{backend.port}/loki/api/v1/push?api_key=***: HTTP 400")
    assert_no_secret(str(exc.value), caplog.text)
