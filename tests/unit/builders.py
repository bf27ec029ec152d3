"""Small OTLP requests for unit tests."""

from __future__ import annotations

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from pipeline.component import Signal
from pipeline.pdata.batch import Batch

T0 = 1_700_000_000_000_000_000


def kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def traces_request(n: int, *, service: str = "checkout", start: int = 0,
                   resources: int = 1) -> ExportTraceServiceRequest:
    """`n` spans per resource; span i has trace id bytes([i+1])*16, span id bytes([i+1])*8."""
    req = ExportTraceServiceRequest()
    for r in range(resources):
        rs = req.resource_spans.add()
        rs.resource.attributes.append(kv("service.name", f"{service}{r or ''}"))
        ss = rs.scope_spans.add()
        ss.scope.name = "test-scope"
        for i in range(start, start + n):
            sp = ss.spans.add()
            sp.trace_id = bytes([i % 255 + 1]) * 16
            sp.span_id = bytes([i % 255 + 1]) * 8
            sp.name = f"span-{i}"
            sp.kind = 2
            sp.start_time_unix_nano = T0 + i
            sp.end_time_unix_nano = T0 + i + 1_500_000
            sp.status.code = 2
            sp.attributes.append(kv("http.route", f"/r/{i}"))
    return req


def logs_request(n: int, *, start: int = 0) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.append(kv("service.name", "api"))
    sl = rl.scope_logs.add()
    for i in range(start, start + n):
        lr = sl.log_records.add()
        lr.time_unix_nano = T0 + i
        lr.severity_number = 9
        lr.severity_text = "INFO"
        lr.body.string_value = f"message {i}"
        lr.attributes.append(kv("n", i))
    return req


def metrics_request(points_per_metric: list[int]) -> ExportMetricsServiceRequest:
    """One metric per entry, alternating gauge / sum / histogram, with that many points."""
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.append(kv("service.name", "api"))
    sm = rm.scope_metrics.add()
    for i, points in enumerate(points_per_metric):
        m = sm.metrics.add()
        m.name = f"metric-{i}"
        kind = ("gauge", "sum", "histogram")[i % 3]
        container = getattr(m, kind)
        for p in range(points):
            dp = container.data_points.add()
            dp.time_unix_nano = T0 + p
            if kind == "histogram":
                dp.count = p
            else:
                dp.as_int = p
    return req


def traces(n: int, **kw: object) -> Batch:
    return Batch(Signal.TRACES, raw=traces_request(n, **kw).SerializeToString())  # type: ignore[arg-type]


def logs(n: int, **kw: object) -> Batch:
    return Batch(Signal.LOGS, raw=logs_request(n, **kw).SerializeToString())  # type: ignore[arg-type]


def span_names(batch: Batch) -> list[str]:
    return [sp.name for rs in batch.message.resource_spans for ss in rs.scope_spans
            for sp in ss.spans]
