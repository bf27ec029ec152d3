"""The otlp (gRPC) exporter against real gRPC servers: our own otlp receiver, a scripted
server for error codes, and a TLS server with a throw-away CA."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.rpc import code_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from pydantic import ValidationError

from pipeline.component import Signal
from pipeline.errors import PermanentError, RetryableError
from pipeline.exporters.otlp import OTLPExporter, OTLPExporterConfig, factory
from pipeline.receiverhelper.grpcserver import grpc_status_details
from pipeline.receivers.otlp import factory as receiver_factory
from pipeline.receivers.otlp.config import OTLPReceiverConfig
from pipeline.telemetry.metrics import Telemetry
from tests.builders import logs, traces
from tests.certs import make_certs
from tests.support import Sink, exporter_settings, free_port, receiver_settings

METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def exporter(config: dict[str, Any], tel: Telemetry | None = None) -> OTLPExporter:
    cfg = OTLPExporterConfig.model_validate({
        "timeout": "2s", "sending_queue": {"enabled": False},
        "retry_on_failure": {"enabled": False}, **config})
    exp = factory.create(exporter_settings("otlp/test", telemetry=tel or Telemetry()),
                         cfg)
    assert isinstance(exp, OTLPExporter)
    return exp


def sample(tel: Telemetry, name: str, signal: str = "traces") -> float | None:
    return tel.registry.get_sample_value(name, {"exporter": "otlp/test", "signal": signal})


@dataclass
class Scripted:
    """A gRPC server answering Export with scripted results, keeping what it got."""

    answers: list[Any] = field(default_factory=list)  # exceptions tuples or response bytes
    requests: list[bytes] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    port: int = 0
    server: grpc.aio.Server | None = None

    async def handle(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.requests.append(request)
        self.metadata.append({k: v for k, v in context.invocation_metadata() or ()
                              if isinstance(v, str)})
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, tuple):
                code, details, trailers = answer
                await context.abort(code, details, trailing_metadata=trailers)
            return bytes(answer)
        return b""


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    s = Scripted()
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(s.handle)})
    server.add_generic_rpc_handlers((handler,))
    s.port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    s.server = server
    yield s
    await server.stop(0)


async def test_delivers_raw_bytes_to_an_otelpipe_receiver() -> None:
    sink = Sink()
    port = free_port()
    rcfg = OTLPReceiverConfig.model_validate(
        {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{port}"}}})
    receiver = receiver_factory.create(
        receiver_settings("otlp", consumers={Signal.TRACES: sink, Signal.LOGS: sink}), rcfg)
    await receiver.start(None)  # type: ignore[arg-type]
    tel = Telemetry()
    exp = exporter({"endpoint": f"127.0.0.1:{port}", "tls": {"insecure": True}}, tel)
    await exp.start(None)  # type: ignore[arg-type]
    try:
        b = traces(5)
        await exp.consume(b)
        await exp.consume(logs(2))
        assert [x.items for x in sink.batches] == [5, 2]
        assert sink.batches[0].to_bytes() == b.to_bytes()  # byte for byte, gzip or not
        assert sample(tel, "otelpipe_exporter_sent_items_total") == 5.0
        assert sample(tel, "otelpipe_exporter_sent_items_total", "logs") == 2.0
    finally:
        await exp.shutdown()
        await receiver.shutdown()


async def test_headers_auth_and_no_compression(scripted: Scripted) -> None:
    exp = exporter({"endpoint": f"http://127.0.0.1:{scripted.port}", "compression": "none",
                    "headers": {"X-Scope-OrgID": "tenant-a"},
                    "auth": {"bearer_token": "s3cret"}})
    await exp.start(None)  # type: ignore[arg-type]
    await exp.consume(traces(1))
    await exp.shutdown()
    md = scripted.metadata[0]
    assert md["x-scope-orgid"] == "tenant-a"
    assert md["authorization"] == "Bearer s3cret"
    assert "otelpipe/" in md["user-agent"]


@pytest.mark.parametrize(("code", "trailers", "kind", "retry_after"), [
    (grpc.StatusCode.UNAVAILABLE, (), RetryableError, None),
    (grpc.StatusCode.UNAVAILABLE, "info", RetryableError, 1.5),
    (grpc.StatusCode.DEADLINE_EXCEEDED, (), RetryableError, None),
    (grpc.StatusCode.ABORTED, (), RetryableError, None),
    (grpc.StatusCode.OUT_OF_RANGE, (), RetryableError, None),
    (grpc.StatusCode.DATA_LOSS, (), RetryableError, None),
    (grpc.StatusCode.CANCELLED, (), RetryableError, None),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "info", RetryableError, 1.5),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, (), PermanentError, None),
    (grpc.StatusCode.INVALID_ARGUMENT, (), PermanentError, None),
    (grpc.StatusCode.UNAUTHENTICATED, (), PermanentError, None),
    (grpc.StatusCode.PERMISSION_DENIED, (), PermanentError, None),
    (grpc.StatusCode.UNIMPLEMENTED, (), PermanentError, None),
    (grpc.StatusCode.INTERNAL, (), PermanentError, None),
])
async def test_status_codes_map_per_the_otlp_spec(scripted: Scripted, code: grpc.StatusCode,
                                                  trailers: Any, kind: type[Exception],
                                                  retry_after: float | None) -> None:
    if trailers == "info":
        trailers = (("grpc-status-details-bin",
                     grpc_status_details(code_pb2.UNAVAILABLE, "later", 1.5)),)
    scripted.answers = [(code, "nope", trailers)]
    exp = exporter({"endpoint": f"127.0.0.1:{scripted.port}", "tls": {"insecure": True}})
    await exp.start(None)  # type: ignore[arg-type]
    with pytest.raises(kind) as exc:
        await exp.send(traces(1))
    await exp.shutdown()
    assert f"{code.name}: nope" in str(exc.value)
    if isinstance(exc.value, RetryableError):
        assert exc.value.retry_after == retry_after


async def test_invalid_argument_is_dropped_counted_and_not_retried(scripted: Scripted) -> None:
    scripted.answers = [(grpc.StatusCode.INVALID_ARGUMENT, "bad span", ())]
    tel = Telemetry()
    exp = exporter({"endpoint": f"127.0.0.1:{scripted.port}", "tls": {"insecure": True},
                    "retry_on_failure": {"initial_interval": "1ms"},
                    "sending_queue": {"num_consumers": 1}}, tel)
    await exp.start(None)  # type: ignore[arg-type]
    await exp.consume(traces(3))
    await exp.consume(traces(2, start=3))
    await asyncio.wait_for(exp.shutdown(), 5)
    assert len(scripted.requests) == 2
    assert sample(tel, "otelpipe_exporter_send_failed_items_total") == 3.0
    assert sample(tel, "otelpipe_exporter_sent_items_total") == 2.0


async def test_unavailable_is_retried_with_retry_info(scripted: Scripted) -> None:
    trailers = (("grpc-status-details-bin",
                 grpc_status_details(code_pb2.UNAVAILABLE, "later", 0.2)),)
    scripted.answers = [(grpc.StatusCode.UNAVAILABLE, "busy", trailers)]
    exp = exporter({"endpoint": f"127.0.0.1:{scripted.port}", "tls": {"insecure": True},
                    "retry_on_failure": {"initial_interval": "1ms"}})
    await exp.start(None)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await exp.consume(traces(1))
    assert loop.time() - t0 >= 0.2
    assert len(scripted.requests) == 2
    await exp.shutdown()


async def test_partial_success_counts_rejected_items(scripted: Scripted,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    resp = ExportTraceServiceResponse()
    resp.partial_success.rejected_spans = 2
    resp.partial_success.error_message = "2 spans too old"
    scripted.answers = [resp.SerializeToString()]
    tel = Telemetry()
    exp = exporter({"endpoint": f"127.0.0.1:{scripted.port}", "tls": {"insecure": True}}, tel)
    await exp.start(None)  # type: ignore[arg-type]
    await exp.consume(traces(5))
    await exp.shutdown()
    assert sample(tel, "otelpipe_exporter_sent_items_total") == 3.0
    assert sample(tel, "otelpipe_exporter_send_failed_items_total") == 2.0
    assert "rejected part of a request" in caplog.text


async def test_backend_down_is_retryable_fast() -> None:
    exp = exporter({"endpoint": f"127.0.0.1:{free_port()}", "tls": {"insecure": True}})
    await exp.start(None)  # type: ignore[arg-type]
    with pytest.raises(RetryableError, match="UNAVAILABLE"):
        await asyncio.wait_for(exp.send(traces(1)), 3)
    await exp.shutdown()


def test_config_errors() -> None:
    with pytest.raises(ValidationError, match="insecure_skip_verify is not supported"):
        OTLPExporterConfig.model_validate({"endpoint": "x:1",
                                           "tls": {"insecure_skip_verify": True}})
    with pytest.raises(ValidationError, match="expected host:port"):
        OTLPExporterConfig.model_validate({"endpoint": "localhost"})
    with pytest.raises(ValidationError, match="bearer_token or basic, not both"):
        OTLPExporterConfig.model_validate({"endpoint": "x:1", "auth": {
            "bearer_token": "a", "basic": {"username": "u", "password": "p"}}})
    with pytest.raises(ValidationError, match="does not exist"):
        OTLPExporterConfig.model_validate({"endpoint": "x:1", "tls": {"ca_file": "/nope"}})
    cfg = OTLPExporterConfig.model_validate({"endpoint": "x:1", "auth": {"bearer_token": "t0p"},
                                             "headers": {"api-key": "k3y"}})
    assert "t0p" not in repr(cfg)
    assert "k3y" not in repr(cfg)
    assert not cfg.plaintext()
    assert OTLPExporterConfig.model_validate({"endpoint": "http://x:1"}).plaintext()


# TLS ------------------------------------------------------------------------------------


def make_ca_and_server_cert(tmp: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server key) for 127.0.0.1 / localhost."""
    certs = make_certs(tmp / "certs")
    return certs.ca, certs.server_cert, certs.server_key


async def test_tls_with_a_custom_ca(tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_server_cert(tmp_path)
    s = Scripted()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(s.handle)}),))
    creds = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    try:
        good = exporter({"endpoint": f"localhost:{port}", "tls": {"ca_file": str(ca)}})
        await good.start(None)  # type: ignore[arg-type]
        await good.send(traces(1))
        await good.shutdown()
        assert len(s.requests) == 1
        # Without the CA the server certificate is not trusted: retryable (it may be fixed
        # by rotating certificates), never delivered.
        bad = exporter({"endpoint": f"localhost:{port}"})
        await bad.start(None)  # type: ignore[arg-type]
        with pytest.raises(RetryableError):
            await bad.send(traces(1))
        await bad.shutdown()
        assert len(s.requests) == 1
    finally:
        await server.stop(0)
