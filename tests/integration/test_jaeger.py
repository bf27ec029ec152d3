"""Python SDK → otelpipe (otlp receiver → otlp / otlphttp exporter) → a real Jaeger v2.

Every span is looked up in Jaeger's query API by trace id, with its attributes.
The outage test stops a private Jaeger for JAEGER_OUTAGE_SECONDS (default 30, the
issue's figure): readiness is 503 meanwhile and everything queued on disk is
delivered once Jaeger is back.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.conftest import Jaeger
from tests.support import OtelpipeProcess, eventually, free_port, http_get, with_logs

pytestmark = pytest.mark.integration

OUTAGE_SECONDS = float(os.environ.get("JAEGER_OUTAGE_SECONDS", "30"))


def exporter_config(kind: str, jaeger: Jaeger, queue: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
    if kind == "otlp":
        cfg: dict[str, Any] = {"endpoint": f"127.0.0.1:{jaeger.grpc_port}",
                               "tls": {"insecure": True}}
    else:
        cfg = {"endpoint": f"http://127.0.0.1:{jaeger.http_port}"}
    if queue is not None:
        cfg["sending_queue"] = queue
        cfg["retry_on_failure"] = {"initial_interval": "200ms", "max_interval": "1s",
                                   "max_elapsed_time": 0}
    return cfg


# {trace id hex: {span id hex: {"name", "attributes"}}}
Sent = dict[str, dict[str, dict[str, Any]]]


def send_sdk_traces(port: int, service: str, traces: int) -> Sent:
    """Traces of a root and two children through the SDK's gRPC exporter.

    Returns {trace id hex: {span id hex: {"name", "attributes"}}}.
    """
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True),
        max_export_batch_size=64, schedule_delay_millis=100))
    tracer = provider.get_tracer("otelpipe-it")
    sent: Sent = {}

    def note(span: Any, name: str, attrs: dict[str, Any]) -> None:
        ctx = span.get_span_context()
        sent.setdefault(f"{ctx.trace_id:032x}", {})[f"{ctx.span_id:016x}"] = {
            "name": name, "attributes": attrs}

    for i in range(traces):
        root_attrs: dict[str, Any] = {"http.route": f"/orders/{i}", "order.id": i,
                                      "vip": i % 2 == 0, "amount": i * 1.5}
        with tracer.start_as_current_span(f"GET /orders/{i}", attributes=root_attrs) as root:
            note(root, f"GET /orders/{i}", root_attrs)
            for j in range(2):
                attrs: dict[str, Any] = {"db.statement": f"SELECT {j} FROM orders WHERE id = {i}",
                         "db.rows": j}
                with tracer.start_as_current_span(f"query-{j}", attributes=attrs) as child:
                    note(child, f"query-{j}", attrs)
    assert provider.force_flush(30_000)
    provider.shutdown()
    return sent


def otlp_value(v: dict[str, Any]) -> Any:
    for key, conv in (("stringValue", str), ("intValue", int), ("boolValue", bool),
                      ("doubleValue", float)):
        if key in v:
            return conv(v[key])
    return v


def missing_in_jaeger(jaeger: Jaeger, sent: Sent, service: str) -> list[str]:
    """What Jaeger does not have (yet), as readable lines; [] when all is there."""
    problems = []
    for tid, spans in sent.items():
        got = {sp["spanId"]: sp for sp in jaeger.trace(tid)}
        for sid, want in spans.items():
            sp = got.get(sid)
            if sp is None:
                problems.append(f"trace {tid}: span {sid} ({want['name']}) missing")
                continue
            attrs = {a["key"]: otlp_value(a["value"]) for a in sp.get("attributes", [])}
            if sp["name"] != want["name"] or sp["service"] != service:
                problems.append(f"span {sid}: name/service {sp['name']}/{sp['service']}")
            for k, v in want["attributes"].items():
                if attrs.get(k) != v:
                    problems.append(f"span {sid}: attribute {k}={attrs.get(k)!r}, want {v!r}")
    return problems


@pytest.mark.parametrize("kind", ["otlp", "otlphttp"])
def test_every_sdk_span_is_in_jaeger_with_attributes(jaeger: Jaeger, tmp_path: Path,
                                                     kind: str) -> None:
    port = free_port()
    cfg = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{port}"}}}},
        "processors": {"batch": {"timeout": "100ms"}},
        "exporters": {f"{kind}/jaeger": exporter_config(kind, jaeger)},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                             "exporters": [f"{kind}/jaeger"]}}},
    }
    service = f"it-{kind}-{uuid.uuid4().hex[:8]}"
    with OtelpipeProcess(cfg, tmp_path, wait_ports=(port,)) as proc:
        sent = send_sdk_traces(port, service, traces=50)
        assert sum(len(s) for s in sent.values()) == 150
        eventually(lambda: not missing_in_jaeger(jaeger, sent, service),
                   what=with_logs("every span in Jaeger", proc), interval=0.2)
    print(f"\n{kind}: 150 spans in 50 traces found in Jaeger by trace id, with attributes")


def readiness(port: int) -> tuple[int, dict[str, Any]]:
    status, body = http_get(f"http://127.0.0.1:{port}/health/readiness")
    return status, orjson.loads(body)


@pytest.mark.parametrize(("kind", "engine"), [("otlp", "segment"), ("otlphttp", "sqlite")])
def test_outage_readiness_503_then_everything_delivered(private_jaeger: Jaeger, tmp_path: Path,
                                                        kind: str, engine: str) -> None:
    jaeger = private_jaeger
    jaeger.start()
    port, health = free_port(), free_port()
    cfg = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{port}"}}}},
        "exporters": {f"{kind}/jaeger": exporter_config(kind, jaeger, {
            "storage": "disk", "directory": str(tmp_path / "queue"), "engine": engine,
            "num_consumers": 4})},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"extensions": ["health"],
                    "pipelines": {"traces": {"receivers": ["otlp"],
                                             "exporters": [f"{kind}/jaeger"]}}},
    }
    service = f"outage-{kind}-{uuid.uuid4().hex[:8]}"
    with OtelpipeProcess(cfg, tmp_path, wait_ports=(port, health)) as proc:
        before = send_sdk_traces(port, service, traces=5)
        eventually(lambda: not missing_in_jaeger(jaeger, before, service),
                   what=with_logs("spans sent before the outage", proc), interval=0.2)
        assert readiness(health)[0] == 200

        jaeger.stop()
        down_at = time.monotonic()
        during = send_sdk_traces(port, service, traces=100)  # accepted: queued on disk
        eventually(lambda: readiness(health)[0] == 503, timeout=15,
                   what=with_logs("readiness 503", proc), interval=0.2)
        _, body = readiness(health)
        assert body["failing"][0]["component"].startswith(f"exporter {kind}/jaeger")
        # Not ready for the whole outage.
        while time.monotonic() - down_at < OUTAGE_SECONDS:
            assert readiness(health)[0] == 503
            time.sleep(1.0)
        _, detail = http_get(f"http://127.0.0.1:{health}/health/detailed")
        queued = next(c for c in orjson.loads(detail)["components"]
                      if c["id"] == f"{kind}/jaeger")["queue_size"]
        assert queued > 0

        jaeger.start()  # in-memory storage: empty again, only the queue can fill it
        up_at = time.monotonic()
        eventually(lambda: not missing_in_jaeger(jaeger, during, service), timeout=60,
                   what=with_logs("every span queued during the outage", proc), interval=0.2)
        delivered_in = time.monotonic() - up_at
        eventually(lambda: readiness(health)[0] == 200, timeout=15,
                   what=with_logs("readiness 200", proc), interval=0.2)
    print(f"\n{kind}/{engine}: Jaeger down {OUTAGE_SECONDS:.0f}s; {queued} requests queued; "
          f"300 spans delivered {delivered_in:.1f}s after it returned")
