"""Receiver authentication and TLS: otlp (gRPC, HTTP) and jsonlogs over real sockets."""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import grpc.aio
import orjson
import pytest
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pydantic import ValidationError

from pipeline.component import Component, Signal
from pipeline.config.tls import ServerAuthSettings
from pipeline.receiverhelper.auth import INVALID, MISSING
from pipeline.receivers import jsonlogs, otlp
from pipeline.receivers.otlp.config import OTLPReceiverConfig
from pipeline.telemetry.metrics import Telemetry
from tests.certs import Certs, make_certs
from tests.support import Sink, free_port, receiver_settings

TOKEN = "s3cr3t-t0ken-value"
OTHER = "an0ther-t0ken"
TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PB = "application/x-protobuf"


def spans(n: int = 2) -> bytes:
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    for i in range(n):
        sp = ss.spans.add(trace_id=os.urandom(16), span_id=os.urandom(8), name=f"s{i}")
        sp.start_time_unix_nano = 1
    raw: bytes = req.SerializeToString()
    return raw


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


class Env:
    def __init__(self, receiver: Component, sink: Sink, telemetry: Telemetry, grpc_port: int,
                 http_port: int):
        self.receiver = receiver
        self.sink = sink
        self.telemetry = telemetry
        self.grpc_port = grpc_port
        self.http_port = http_port

    def failed(self, transport: str, receiver: str = "otlp") -> float:
        return self.telemetry.registry.get_sample_value(
            "otelpipe_receiver_failed_requests_total",
            {"receiver": receiver, "transport": transport, "reason": "unauthenticated"}) or 0.0


Starter = Callable[..., Awaitable[Env]]


@pytest.fixture
async def start_otlp() -> AsyncIterator[Starter]:
    started: list[Component] = []

    async def _start(grpc_extra: dict[str, Any] | None = None,
                     http_extra: dict[str, Any] | None = None) -> Env:
        tel, sink = Telemetry(), Sink()
        gport, hport = free_port(), free_port()
        cfg = OTLPReceiverConfig.model_validate({"protocols": {
            "grpc": {"endpoint": f"127.0.0.1:{gport}", **(grpc_extra or {})},
            "http": {"endpoint": f"127.0.0.1:{hport}", **(http_extra or {})}}})
        settings = receiver_settings("otlp", telemetry=tel,
                                     consumers={s: sink for s in Signal})
        rcv = otlp.factory.create(settings, cfg)
        await rcv.start(None)  # type: ignore[arg-type]
        started.append(rcv)
        return Env(rcv, sink, tel, gport, hport)

    yield _start
    for r in started:
        await r.shutdown()


AUTH = {"auth": {"bearer_token": TOKEN}}


async def grpc_call(port: int, metadata: tuple[tuple[str, str], ...] = (),
                    creds: grpc.ChannelCredentials | None = None,
                    target: str = "127.0.0.1") -> tuple[grpc.StatusCode, str]:
    addr = f"{target}:{port}"
    channel = grpc.aio.secure_channel(addr, creds) if creds else grpc.aio.insecure_channel(addr)
    async with channel:
        try:
            await channel.unary_unary(TRACES)(spans(), metadata=metadata, timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


# gRPC -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("metadata", "expected", "reason"), [
    ((("authorization", f"Bearer {TOKEN}"),), grpc.StatusCode.OK, None),
    ((("authorization", f"bearer   {TOKEN} "),), grpc.StatusCode.OK, None),  # scheme any case
    ((("authorization", f"Bearer {TOKEN}x"),), grpc.StatusCode.UNAUTHENTICATED, INVALID),
    ((("authorization", f"Basic {TOKEN}"),), grpc.StatusCode.UNAUTHENTICATED, INVALID),
    ((("authorization", TOKEN),), grpc.StatusCode.UNAUTHENTICATED, INVALID),
    ((), grpc.StatusCode.UNAUTHENTICATED, MISSING),
])
async def test_grpc_bearer(start_otlp: Starter, metadata: Any, expected: grpc.StatusCode,
                           reason: str | None) -> None:
    env = await start_otlp(grpc_extra=AUTH)
    code, details = await grpc_call(env.grpc_port, metadata)
    assert code == expected
    if reason is None:
        assert env.sink.items == 2
        assert env.failed("grpc") == 0
    else:
        assert details == reason
        assert env.sink.items == 0
        assert env.failed("grpc") == 1


async def test_grpc_without_auth_config_accepts_anyone(start_otlp: Starter) -> None:
    env = await start_otlp()
    assert (await grpc_call(env.grpc_port))[0] == grpc.StatusCode.OK


async def test_grpc_tls(start_otlp: Starter, certs: Certs) -> None:
    env = await start_otlp(grpc_extra={
        "tls": {"cert_file": str(certs.server_cert), "key_file": str(certs.server_key)}, **AUTH})
    creds = grpc.ssl_channel_credentials(root_certificates=certs.ca.read_bytes())
    md = (("authorization", f"Bearer {TOKEN}"),)
    assert (await grpc_call(env.grpc_port, md, creds, "localhost"))[0] == grpc.StatusCode.OK
    assert (await grpc_call(env.grpc_port, (), creds, "localhost"))[0] == \
        grpc.StatusCode.UNAUTHENTICATED
    # A plaintext client cannot talk to the TLS port.
    assert (await grpc_call(env.grpc_port, md))[0] == grpc.StatusCode.UNAVAILABLE
    assert env.sink.items == 2


async def test_grpc_mutual_tls(start_otlp: Starter, certs: Certs) -> None:
    env = await start_otlp(grpc_extra={"tls": {
        "cert_file": str(certs.server_cert), "key_file": str(certs.server_key),
        "client_ca_file": str(certs.ca)}})
    ca = certs.ca.read_bytes()
    with_cert = grpc.ssl_channel_credentials(ca, certs.client_key.read_bytes(),
                                             certs.client_cert.read_bytes())
    assert (await grpc_call(env.grpc_port, (), with_cert, "localhost"))[0] == grpc.StatusCode.OK
    without = grpc.ssl_channel_credentials(ca)
    assert (await grpc_call(env.grpc_port, (), without, "localhost"))[0] == \
        grpc.StatusCode.UNAVAILABLE
    assert env.sink.items == 2


# HTTP -------------------------------------------------------------------------------------

async def http_post(url: str, headers: dict[str, str] | None = None, body: bytes | None = None,
                    ctype: str = PB, ssl_ctx: Any = None) -> tuple[int, Any, bytes]:
    async with aiohttp.ClientSession() as s, s.post(
            url, data=spans() if body is None else body,
            headers={"Content-Type": ctype, **(headers or {})}, ssl=ssl_ctx) as resp:
        return resp.status, resp.headers, await resp.read()


@pytest.mark.parametrize(("headers", "status", "reason"), [
    ({"Authorization": f"Bearer {TOKEN}"}, 200, None),
    ({"authorization": f"Bearer {OTHER}"}, 200, None),  # bearer_tokens: either is accepted
    ({"Authorization": f"Bearer {TOKEN[:-1]}"}, 401, INVALID),
    ({"Authorization": "Bearer "}, 401, INVALID),
    ({}, 401, MISSING),
])
async def test_http_bearer(start_otlp: Starter, headers: dict[str, str], status: int,
                           reason: str | None) -> None:
    env = await start_otlp(http_extra={"auth": {"bearer_token": TOKEN, "bearer_tokens": [OTHER]}})
    code, resp_headers, body = await http_post(
        f"http://127.0.0.1:{env.http_port}/v1/traces", headers)
    assert code == status
    if reason is None:
        assert env.sink.items == 2
        return
    assert env.sink.items == 0
    assert env.failed("http") == 1
    assert resp_headers["WWW-Authenticate"].startswith('Bearer realm="otelpipe"')
    assert ('error="invalid_token"' in resp_headers["WWW-Authenticate"]) == (reason == INVALID)
    st = status_pb2.Status.FromString(body)
    assert (st.code, st.message) == (code_pb2.UNAUTHENTICATED, reason)


async def test_http_401_json_and_unknown_paths(start_otlp: Starter) -> None:
    env = await start_otlp(http_extra=AUTH)
    base = f"http://127.0.0.1:{env.http_port}"
    code, headers, body = await http_post(f"{base}/v1/logs", body=b"{}", ctype="application/json")
    assert code == 401
    assert headers["Content-Type"].startswith("application/json")
    assert orjson.loads(body) == {"code": code_pb2.UNAUTHENTICATED, "message": MISSING}
    # Nothing about the server is revealed before authentication: not even a 404.
    assert (await http_post(f"{base}/nope"))[0] == 401
    assert (await http_post(f"{base}/nope", {"Authorization": f"Bearer {TOKEN}"}))[0] == 404


async def test_http_tls_and_mutual_tls(start_otlp: Starter, certs: Certs) -> None:
    env = await start_otlp(http_extra={"tls": {
        "cert_file": str(certs.server_cert), "key_file": str(certs.server_key),
        "client_ca_file": str(certs.ca)}, **AUTH})
    url = f"https://localhost:{env.http_port}/v1/traces"
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    ctx.load_cert_chain(str(certs.client_cert), str(certs.client_key))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert (await http_post(url, auth, ssl_ctx=ctx))[0] == 200
    assert (await http_post(url, {}, ssl_ctx=ctx))[0] == 401
    no_client_cert = ssl.create_default_context(cafile=str(certs.ca))
    with pytest.raises(aiohttp.ClientError):
        await http_post(url, auth, ssl_ctx=no_client_cert)
    with pytest.raises(aiohttp.ClientError):  # plaintext to the TLS port
        await http_post(f"http://127.0.0.1:{env.http_port}/v1/traces", auth)
    assert env.sink.items == 2


async def test_jsonlogs_auth_and_tls(certs: Certs) -> None:
    tel, sink = Telemetry(), Sink()
    port = free_port()
    cfg = jsonlogs.JsonLogsConfig.model_validate({
        "endpoint": f"127.0.0.1:{port}", "auth": {"bearer_token": TOKEN},
        "tls": {"cert_file": str(certs.server_cert), "key_file": str(certs.server_key)}})
    rcv = jsonlogs.factory.create(
        receiver_settings("jsonlogs", telemetry=tel, consumers={Signal.LOGS: sink}), cfg)
    await rcv.start(None)  # type: ignore[arg-type]
    try:
        ctx = ssl.create_default_context(cafile=str(certs.ca))
        url = f"https://localhost:{port}/logs"
        line = b'{"msg": "hi"}\n'
        code, headers, body = await http_post(url, {"Authorization": f"Bearer {OTHER}"}, line,
                                              "application/x-ndjson", ctx)
        assert (code, orjson.loads(body)) == (401, {"error": INVALID})
        assert headers["WWW-Authenticate"].startswith("Bearer")
        code, _, body = await http_post(url, {"Authorization": f"Bearer {TOKEN}"}, line,
                                        "application/x-ndjson", ctx)
        assert (code, orjson.loads(body)) == (200, {"accepted": 1})
        assert sink.items == 1
        assert tel.registry.get_sample_value(
            "otelpipe_receiver_failed_requests_total",
            {"receiver": "jsonlogs", "transport": "http", "reason": "unauthenticated"}) == 1
    finally:
        await rcv.shutdown()


# Logging, config --------------------------------------------------------

async def test_rejections_logged_rate_limited_without_secrets(
        start_otlp: Starter, caplog: pytest.LogCaptureFixture) -> None:
    env = await start_otlp(grpc_extra=AUTH, http_extra=AUTH)
    caplog.set_level(logging.INFO, logger="otelpipe")
    wrong = "wr0ng-pr3sented-secret"
    for _ in range(3):
        await grpc_call(env.grpc_port, (("authorization", f"Bearer {wrong}"),))
        await http_post(f"http://127.0.0.1:{env.http_port}/v1/traces",
                        {"Authorization": f"Bearer {wrong}"})
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    # One warning per transport within the interval; the rest are only counted.
    assert sorted(r.__dict__["transport"] for r in warnings) == ["grpc", "http"]
    for r in warnings:
        assert r.getMessage() == "rejected an unauthenticated request"
        assert r.__dict__["reason"] == INVALID
        assert "127.0.0.1" in r.__dict__["remote"]
    text = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    assert wrong not in text
    assert TOKEN not in text
    assert env.failed("grpc") == 3
    assert env.failed("http") == 3
    assert wrong.encode() not in env.telemetry.render()
    assert TOKEN.encode() not in \
        env.telemetry.render()


def test_auth_config_errors_do_not_leak(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="give bearer_token"):
        ServerAuthSettings.model_validate({})
    with pytest.raises(ValidationError, match="cannot be empty"):
        ServerAuthSettings.model_validate({"bearer_tokens": [" "]})
    with pytest.raises(ValidationError, match="does not exist"):
        ServerAuthSettings.model_validate({"bearer_token_file": str(tmp_path / "nope")})
    with pytest.raises(ValidationError) as info:
        OTLPReceiverConfig.model_validate({"protocols": {"grpc": {
            "auth": {"bearer_token": TOKEN, "extra": 1}}}})
    assert TOKEN not in str(info.value)
    cfg = OTLPReceiverConfig.model_validate({"protocols": {"grpc": AUTH}})
    assert TOKEN not in repr(cfg)
    assert TOKEN not in cfg.model_dump_json()
