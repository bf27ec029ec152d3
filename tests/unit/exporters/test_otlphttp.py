"""The otlphttp exporter against real HTTP servers: our own otlp receiver and a scripted
aiohttp server for statuses, Retry-After, partial success and TLS."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from pydantic import ValidationError

from pipeline.component import Signal
from pipeline.errors import PermanentError, RetryableError
from pipeline.exporters.otlphttp import (
    OTLPHTTPExporter,
    OTLPHTTPExporterConfig,
    factory,
)
from pipeline.receivers.otlp import factory as receiver_factory
from pipeline.receivers.otlp.config import OTLPReceiverConfig
from pipeline.telemetry.metrics import Telemetry
from tests.builders import logs, traces
from tests.secretsdata import API_KEY, assert_no_secret, basic, leaky_backend
from tests.support import Sink, exporter_settings, free_port, receiver_settings
from tests.unit.exporters.test_otlp import make_ca_and_server_cert


def exporter(config: dict[str, Any], tel: Telemetry | None = None) -> OTLPHTTPExporter:
    cfg = OTLPHTTPExporterConfig.model_validate({
        "timeout": "2s", "sending_queue": {"enabled": False},
        "retry_on_failure": {"enabled": False}, **config})
    exp = factory.create(exporter_settings("otlphttp/test",
                                           telemetry=tel or Telemetry()), cfg)
    assert isinstance(exp, OTLPHTTPExporter)
    return exp


def sample(tel: Telemetry, name: str, signal: str = "traces") -> float | None:
    return tel.registry.get_sample_value(name, {"exporter": "otlphttp/test", "signal": signal})


@dataclass
class Scripted:
    answers: list[web.Response] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.headers), await request.read()))
        if self.answers:
            return self.answers.pop(0)
        return web.Response(body=b"", content_type="application/x-protobuf")


async def serve(app: web.Application, ssl_context: ssl.SSLContext | None = None
                ) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
    return runner, port


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    s = Scripted()
    app = web.Application()
    app.router.add_post("/{tail:.*}", s.handle)
    runner, port = await serve(app)
    s.url = f"http://127.0.0.1:{port}"
    yield s
    await runner.cleanup()


@pytest.mark.parametrize("encoding", ["proto", "json"])
@pytest.mark.parametrize("compression", ["gzip", "none"])
async def test_delivers_to_an_otelpipe_receiver(encoding: str, compression: str) -> None:
    sink = Sink()
    port = free_port()
    rcfg = OTLPReceiverConfig.model_validate(
        {"protocols": {"http": {"endpoint": f"127.0.0.1:{port}"}}})
    receiver = receiver_factory.create(
        receiver_settings("otlp", consumers={Signal.TRACES: sink, Signal.LOGS: sink}), rcfg)
    await receiver.start(None)  # type: ignore[arg-type]
    tel = Telemetry()
    exp = exporter({"endpoint": f"http://127.0.0.1:{port}/", "encoding": encoding,
                    "compression": compression}, tel)
    await exp.start(None)  # type: ignore[arg-type]
    try:
        b = traces(4)
        await exp.consume(b)
        await exp.consume(logs(3))
        assert [x.items for x in sink.batches] == [4, 3]
        assert sink.batches[0].message == b.message
        assert sample(tel, "otelpipe_exporter_sent_items_total") == 4.0
    finally:
        await exp.shutdown()
        await receiver.shutdown()


async def test_raw_bytes_headers_auth_and_per_signal_url(scripted: Scripted) -> None:
    exp = exporter({"endpoint": scripted.url, "traces_endpoint": scripted.url + "/custom/t",
                    "headers": {"X-Scope-OrgID": "tenant-a", "Authorization": "ignored"},
                    "auth": {"basic": {"username": "u", "password": "p"}}})
    await exp.start(None)  # type: ignore[arg-type]
    b = traces(2)
    await exp.send(b)
    await exp.send(logs(1))
    await exp.shutdown()
    (path, headers, body), (path2, _, _) = scripted.requests
    assert path == "/custom/t"
    assert path2 == "/v1/logs"
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"] == "application/x-protobuf"
    assert body == b.to_bytes()  # aiohttp decompressed it (Content-Encoding: gzip)
    assert headers["X-Scope-OrgID"] == "tenant-a"
    assert headers["Authorization"] == "Basic dTpw"


@pytest.mark.parametrize(("status", "headers", "kind", "retry_after"), [
    (429, {"Retry-After": "3"}, RetryableError, 3.0),
    (502, {}, RetryableError, None),
    (503, {"Retry-After": "1.5"}, RetryableError, 1.5),
    (504, {}, RetryableError, None),
    (400, {}, PermanentError, None),
    (401, {}, PermanentError, None),
    (403, {}, PermanentError, None),
    (404, {}, PermanentError, None),
    (413, {}, PermanentError, None),
    (500, {}, PermanentError, None),
])
async def test_statuses_map_per_the_otlp_spec(scripted: Scripted, status: int,
                                              headers: dict[str, str], kind: type[Exception],
                                              retry_after: float | None) -> None:
    scripted.answers = [web.Response(status=status, headers=headers,
                                     body=orjson.dumps({"code": 3, "message": "why not"}),
                                     content_type="application/json")]
    exp = exporter({"endpoint": scripted.url})
    await exp.start(None)  # type: ignore[arg-type]
    with pytest.raises(kind) as exc:
        await exp.send(traces(1))
    await exp.shutdown()
    assert f"HTTP {status}: why not" in str(exc.value)
    if isinstance(exc.value, RetryableError):
        assert exc.value.retry_after == retry_after
        assert exc.value.throttle == (status == 429)


async def test_400_dropped_counted_not_retried_rest_delivered(scripted: Scripted) -> None:
    scripted.answers = [web.Response(status=400, text="bad"), web.Response(status=200),
                        web.Response(status=400, text="bad")]
    tel = Telemetry()
    exp = exporter({"endpoint": scripted.url, "retry_on_failure": {"initial_interval": "1ms"},
                    "sending_queue": {"num_consumers": 1}}, tel)
    await exp.start(None)  # type: ignore[arg-type]
    for i in range(4):
        await exp.consume(traces(i + 1, start=10 * i))
    await asyncio.wait_for(exp.shutdown(), 5)
    assert len(scripted.requests) == 4
    assert sample(tel, "otelpipe_exporter_send_failed_items_total") == 1.0 + 3.0
    assert sample(tel, "otelpipe_exporter_sent_items_total") == 2.0 + 4.0
    assert exp.health().healthy


async def test_retry_after_then_success(scripted: Scripted) -> None:
    scripted.answers = [web.Response(status=503, headers={"Retry-After": "0.2"})]
    exp = exporter({"endpoint": scripted.url, "retry_on_failure": {"initial_interval": "1ms"}})
    await exp.start(None)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await exp.consume(traces(1))
    assert loop.time() - t0 >= 0.2
    assert len(scripted.requests) == 2
    await exp.shutdown()


@pytest.mark.parametrize("as_json", [False, True])
async def test_partial_success(scripted: Scripted, as_json: bool) -> None:
    if as_json:
        resp = web.Response(body=orjson.dumps({"partialSuccess": {
            "rejectedSpans": "2", "errorMessage": "too old"}}), content_type="application/json")
    else:
        pb = ExportTraceServiceResponse()
        pb.partial_success.rejected_spans = 2
        resp = web.Response(body=pb.SerializeToString(), content_type="application/x-protobuf")
    scripted.answers = [resp]
    tel = Telemetry()
    exp = exporter({"endpoint": scripted.url, "encoding": "json" if as_json else "proto"}, tel)
    await exp.start(None)  # type: ignore[arg-type]
    await exp.consume(traces(5))
    await exp.shutdown()
    assert sample(tel, "otelpipe_exporter_sent_items_total") == 3.0
    assert sample(tel, "otelpipe_exporter_send_failed_items_total") == 2.0
    if as_json:
        body = orjson.loads(scripted.requests[0][2])
        assert body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] == "01" * 16


async def test_connection_refused_is_retryable() -> None:
    exp = exporter({"endpoint": f"http://127.0.0.1:{free_port()}"})
    await exp.start(None)  # type: ignore[arg-type]
    with pytest.raises(RetryableError, match="ClientConnectorError"):
        await exp.send(traces(1))
    await exp.shutdown()


async def test_tls_custom_ca_and_skip_verify(tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_server_cert(tmp_path)
    s = Scripted()
    app = web.Application()
    app.router.add_post("/{tail:.*}", s.handle)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    runner, port = await serve(app, ctx)
    try:
        for tls in ({"ca_file": str(ca)}, {"insecure_skip_verify": True},
                    {"ca_file": str(ca), "min_version": "1.3"}):
            exp = exporter({"endpoint": f"https://localhost:{port}", "tls": tls})
            await exp.start(None)  # type: ignore[arg-type]
            await exp.send(traces(1))
            await exp.shutdown()
        assert len(s.requests) == 3
        untrusted = exporter({"endpoint": f"https://localhost:{port}"})
        await untrusted.start(None)  # type: ignore[arg-type]
        with pytest.raises(RetryableError, match="certificate"):
            await untrusted.send(traces(1))
        await untrusted.shutdown()
        assert len(s.requests) == 3
    finally:
        await runner.cleanup()


def test_config() -> None:
    with pytest.raises(ValidationError, match="give endpoint"):
        OTLPHTTPExporterConfig.model_validate({})
    with pytest.raises(ValidationError, match="expected an http"):
        OTLPHTTPExporterConfig.model_validate({"endpoint": "localhost:4318"})
    c = OTLPHTTPExporterConfig.model_validate({"logs_endpoint": "http://l/push"})
    assert c.url(Signal.LOGS) == "http://l/push"
    assert c.url(Signal.TRACES) is None


@pytest.mark.parametrize(("status", "error"), [(400, PermanentError), (503, RetryableError)])
async def test_credentials_in_the_url_are_basic_auth_and_never_in_errors(
        status: int, error: type[Exception], caplog: pytest.LogCaptureFixture) -> None:
    async with leaky_backend(status) as backend:
        exp = exporter({"traces_endpoint": backend.with_credentials(
            f"/v1/traces?api_key={API_KEY}")})
        await exp.start(None)  # type: ignore[arg-type]
        try:
            with pytest.raises(error) as exc:
                await exp.send(traces(1))
        finally:
            await exp.shutdown()
    assert backend.authorizations == [basic()]
    assert backend.paths == [f"/v1/traces?api_key={API_KEY}"]  # the query is sent as is
    assert str(exc.value).startswith(
        f"http://127.0.0.1:{backend.port}/v1/traces?api_key=***: HTTP {status}: bad request "
        f"to http://alice:***@127.0.0.1:{backend.port}")
    assert_no_secret(str(exc.value), caplog.text)
