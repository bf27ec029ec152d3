"""Span and log builders for the connector tests (exact, hand-made telemetry)."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from pipeline.component import Signal
from pipeline.pdata.batch import Batch

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def span_batch(spans: list[dict[str, Any]], *, service: str | None = "checkout",
               resource: dict[str, Any] | None = None) -> Batch:
    """One resource; each span dict: name, ms (duration), kind, status, attrs, trace, span."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    if service is not None:
        rs.resource.attributes.append(kv("service.name", service))
    for k, v in (resource or {}).items():
        rs.resource.attributes.append(kv(k, v))
    ss = rs.scope_spans.add()
    for i, spec in enumerate(spans):
        sp = ss.spans.add()
        sp.trace_id = spec.get("trace", bytes([i % 250 + 1]) * 16)
        sp.span_id = spec.get("span", bytes([i % 250 + 1]) * 8)
        sp.name = spec.get("name", "GET /a")
        sp.kind = spec.get("kind", 2)
        start = spec.get("start", T0)
        sp.start_time_unix_nano = start
        sp.end_time_unix_nano = start + round(spec.get("ms", 1.0) * MS)
        sp.status.code = spec.get("status", 0)
        if "message" in spec:
            sp.status.message = spec["message"]
        for k, v in spec.get("attrs", {}).items():
            sp.attributes.append(kv(k, v))
    return Batch(Signal.TRACES, raw=req.SerializeToString())


def _ld(field: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    n, varint = len(payload), bytearray()
    while n >= 0x80:
        varint.append(n & 0x7F | 0x80)
        n >>= 7
    varint.append(n)
    return bytes([field << 3 | 2]) + bytes(varint) + payload


def named_spans_batch(names: list[str], service: str = "checkout") -> Batch:
    """Many spans that differ only by name, encoded by hand (fast for 100k spans)."""
    resource = _ld(1, _ld(1, _ld(1, b"service.name") + _ld(2, _ld(1, service.encode()))))
    body = b"".join(_ld(2, _ld(5, n.encode()) + b"\x30\x02") for n in names)  # name, kind
    return Batch(Signal.TRACES, raw=_ld(1, resource + _ld(2, body)))


def log_batch(records: list[dict[str, Any]], *, service: str | None = "api",
              resource: dict[str, Any] | None = None) -> Batch:
    """Each record dict: attrs, body, severity (number), severity_text, time, trace, span."""
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    if service is not None:
        rl.resource.attributes.append(kv("service.name", service))
    for k, v in (resource or {}).items():
        rl.resource.attributes.append(kv(k, v))
    sl = rl.scope_logs.add()
    for i, spec in enumerate(records):
        lr = sl.log_records.add()
        lr.time_unix_nano = spec.get("time", T0 + i)
        lr.severity_number = spec.get("severity", 9)
        lr.severity_text = spec.get("severity_text", "")
        if "body" in spec:
            lr.body.string_value = spec["body"]
        if "trace" in spec:
            lr.trace_id = spec["trace"]
            lr.span_id = spec["span"]
        for k, v in spec.get("attrs", {}).items():
            lr.attributes.append(kv(k, v))
    return Batch(Signal.LOGS, raw=req.SerializeToString())


def attrs_of(point: Any) -> dict[str, Any]:
    out = {}
    for a in point.attributes:
        kind = a.value.WhichOneof("value")
        out[a.key] = getattr(a.value, kind) if kind else None
    return out


def metrics(batches: list[Batch]) -> dict[str, list[tuple[dict[str, Any], dict[str, Any], Any]]]:
    """metric name → [(resource attrs, point attrs, point)] over all batches."""
    out: dict[str, list[tuple[dict[str, Any], dict[str, Any], Any]]] = {}
    for b in batches:
        req = ExportMetricsServiceRequest.FromString(b.to_bytes())
        for rm in req.resource_metrics:
            res = attrs_of(rm.resource)
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    for dp in getattr(m, kind).data_points:
                        out.setdefault(m.name, []).append((res, attrs_of(dp), dp))
    return out


def metric_defs(batch: Batch) -> dict[str, Any]:
    req = ExportMetricsServiceRequest.FromString(batch.to_bytes())
    return {m.name: m for rm in req.resource_metrics for sm in rm.scope_metrics
            for m in sm.metrics}


class FakeClock:
    def __init__(self, start: int = T0) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * 1e9)


# Flask under `opentelemetry-instrument` (opentelemetry-instrumentation-flask 0.66b1, WSGI
# middleware), served by Werkzeug on 127.0.0.1:5000, called by python-requests: the server
# span attributes it sets by default (old HTTP conventions) and with
# OTEL_SEMCONV_STABILITY_OPT_IN=http (stable ones), in the order it sets them.
FLASK_REQUESTS = [  # (method, route, target, HTTP status, duration ms)
    ("GET", "/ok", "/ok", 200, 3.0),
    ("GET", "/boom", "/boom", 500, 5.0),
    ("GET", "/slow", "/slow", 200, 300.0),
    ("GET", "/items/<int:item_id>", "/items/42?verbose=1", 200, 4.0),
    ("POST", "/items/<int:item_id>", "/items/7", 201, 6.0),
    ("GET", "/missing", "/missing", 404, 1.0),
]


def flask_span(method: str, route: str, target: str, status: int, ms: float, *,
               stable: bool, client_port: int = 50312) -> dict[str, Any]:
    """One span dict for `span_batch`, shaped as the Flask instrumentation sends it."""
    path, _, query = target.partition("?")
    attrs: dict[str, Any]
    if stable:
        attrs = {"http.request.method": method, "url.scheme": "http",
                 "server.address": "127.0.0.1:5000", "server.port": 5000, "url.path": path}
        if query:
            attrs["url.query"] = query
        attrs |= {"client.address": "127.0.0.1", "client.port": client_port,
                  "user_agent.original": "python-requests/2.32.3",
                  "network.protocol.version": "1.1", "http.route": route,
                  "http.response.status_code": status}
        if status >= 500:
            attrs["error.type"] = str(status)
    else:
        attrs = {"http.method": method, "http.server_name": "127.0.0.1", "http.scheme": "http",
                 "net.host.name": "127.0.0.1:5000", "http.host": "127.0.0.1:5000",
                 "net.host.port": 5000, "http.target": target, "net.peer.ip": "127.0.0.1",
                 "net.peer.port": client_port, "http.user_agent": "python-requests/2.32.3",
                 "http.flavor": "1.1", "http.route": route, "http.status_code": status}
    return {"name": f"{method} {route}", "kind": 2, "ms": ms, "attrs": attrs,
            "status": 2 if status >= 500 else 0}


def flask_batch(*, stable: bool, repeat: int = 1) -> Batch:
    spans = [flask_span(*r, stable=stable, client_port=50000 + i)
             for i, r in enumerate(FLASK_REQUESTS * repeat)]
    return span_batch(spans, service="flask-app",
                      resource={"telemetry.sdk.language": "python",
                                "telemetry.sdk.version": "1.45.1"})
