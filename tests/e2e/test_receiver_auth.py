"""Wrong credentials on a receiver: 401 / UNAUTHENTICATED, nothing accepted, the secret
not in the logs — with a real `otelpipe run` and the Python SDK's own OTLP exporters.

The otlp receiver serves gRPC over TLS (a throwaway CA and server certificate made with
openssl) and HTTP, both requiring a bearer token that comes from the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import orjson
from prometheus_client.parser import text_string_to_metric_families

from pipeline.component import Signal
from pipeline.pdata.otlpjson import decode_request
from tests.certs import make_certs
from tests.support import OtelpipeProcess, free_port, http_get

TOKEN = "e2e-ingest-t0ken-4f9c2b7a"
WRONG = "e2e-wr0ng-t0ken-81d3aa0c"


def finished_spans(n: int) -> list[Any]:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "auth-e2e"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("auth-e2e")
    for i in range(n):
        with tracer.start_as_current_span(f"op-{i}"):
            pass
    return list(memory.get_finished_spans())


def metric_samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_wrong_credentials_are_refused_and_never_logged(tmp_path: Path) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GRPCSpanExporter,
    )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HTTPSpanExporter,
    )
    from opentelemetry.sdk.trace.export import SpanExportResult

    certs = make_certs(tmp_path / "certs")
    gport, hport, health = free_port(), free_port(), free_port()
    out = tmp_path / "traces.jsonl"
    config = {
        "receivers": {"otlp": {"protocols": {
            "grpc": {"endpoint": f"127.0.0.1:{gport}",
                     "tls": {"cert_file": str(certs.server_cert),
                             "key_file": str(certs.server_key)},
                     "auth": {"bearer_token": "${env:INGEST_TOKEN}"}},
            "http": {"endpoint": f"127.0.0.1:{hport}",
                     "auth": {"bearer_token": "${env:INGEST_TOKEN}"}},
        }}},
        "exporters": {"file": {"path": str(out), "format": "otlp_json"}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"extensions": ["health"], "pipelines": {
            "traces": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }
    proc = OtelpipeProcess(config, tmp_path, env={"INGEST_TOKEN": TOKEN},
                           wait_ports=(gport, hport, health))
    creds = grpc.ssl_channel_credentials(root_certificates=certs.ca.read_bytes())
    spans = finished_spans(5)
    with proc:
        # Wrong token, and none at all, over gRPC (TLS) and HTTP: refused.
        for token in (WRONG, None):
            headers = {"authorization": f"Bearer {token}"} if token else None
            grpc_exp = GRPCSpanExporter(endpoint=f"localhost:{gport}", credentials=creds,
                                        headers=headers, timeout=5)
            assert grpc_exp.export(spans) is SpanExportResult.FAILURE
            grpc_exp.shutdown()
            http_exp = HTTPSpanExporter(endpoint=f"http://127.0.0.1:{hport}/v1/traces",
                                        headers=headers, timeout=5)
            assert http_exp.export(spans) is SpanExportResult.FAILURE
            http_exp.shutdown()

        samples = metric_samples(health)
        for transport in ("grpc", "http"):
            assert sample(samples, "otelpipe_receiver_failed_requests_total", receiver="otlp",
                          transport=transport, reason="unauthenticated") == 2
            assert sample(samples, "otelpipe_receiver_accepted_items_total", receiver="otlp",
                          transport=transport, signal="traces") == 0
        assert not out.exists() or out.read_bytes() == b""

        # The right token over each transport: delivered.
        auth = {"authorization": f"Bearer {TOKEN}"}
        grpc_exp = GRPCSpanExporter(endpoint=f"localhost:{gport}", credentials=creds,
                                    headers=auth, timeout=5)
        assert grpc_exp.export(spans) is SpanExportResult.SUCCESS
        grpc_exp.shutdown()
        http_exp = HTTPSpanExporter(endpoint=f"http://127.0.0.1:{hport}/v1/traces",
                                    headers=auth, timeout=5)
        assert http_exp.export(spans) is SpanExportResult.SUCCESS
        http_exp.shutdown()

        samples = metric_samples(health)
        assert sample(samples, "otelpipe_receiver_accepted_items_total", receiver="otlp",
                      transport="grpc", signal="traces") == 5
        assert sample(samples, "otelpipe_receiver_accepted_items_total", receiver="otlp",
                      transport="http", signal="traces") == 5
        pages = [http_get(f"http://127.0.0.1:{health}{p}")[1]
                 for p in ("/metrics", "/health", "/health/detailed")]
    assert proc.stop() == 0

    names = [sp.name for line in out.read_bytes().splitlines() if line
             for rs in decode_request(Signal.TRACES, line).resource_spans
             for ss in rs.scope_spans for sp in ss.spans]
    assert sorted(names) == sorted([f"op-{i}" for i in range(5)] * 2)

    logs = proc.logs()
    warnings = [orjson.loads(line) for line in logs.splitlines()
                if line.startswith("{") and '"rejected an unauthenticated request"' in line]
    assert warnings, logs
    assert {w["reason"] for w in warnings} <= {"invalid credential", "missing credential"}
    assert all(w["level"] == "warning" and "127.0.0.1" in w["remote"] for w in warnings)
    for secret in (TOKEN, WRONG):
        assert secret not in logs
        for page in pages:
            assert secret.encode() not in page
    assert TOKEN not in (tmp_path / "config.yaml").read_text()
