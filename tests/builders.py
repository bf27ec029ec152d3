"""OTLP requests for tests: the one set of builders for unit, integration and e2e tests.

- `traces_request` / `logs_request` / `metrics_request`: small deterministic requests
  (span i has trace id bytes([i+1])*16); `traces` / `logs` wrap them in a Batch.
- `spans_request`: n spans of one given trace id, for tests that send one request per
  trace id and count what arrived by id (e2e: shutdown, readiness, memory flood).
- `tagged_traces_request` / `tagged_logs_request`: every span name / log body unique
  (`<tag>r<i>t<j>s<k>`, `<tag>r<i>l<j>`), random ids, for at-least-once counting through
  Kafka or a real process; `span_names` / `log_bodies` read them back.

Metric points for the Prometheus tests are in tests/promdata.py.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from pipeline.component import Signal
from pipeline.pdata.batch import Batch

T0 = 1_700_000_000_000_000_000


def kv(key: str, value: str | int | float | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


# --- small deterministic requests ------------------------------------------------------


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


def traces(n: int, *, service: str = "checkout", start: int = 0, resources: int = 1) -> Batch:
    req = traces_request(n, service=service, start=start, resources=resources)
    return Batch(Signal.TRACES, raw=req.SerializeToString())


def logs(n: int, *, start: int = 0) -> Batch:
    return Batch(Signal.LOGS, raw=logs_request(n, start=start).SerializeToString())


# --- one request per trace id -------------------------------------------------------------


def spans_request(trace_id: bytes, n: int, *, service: str = "test", scope: str = "",
                  attributes: Mapping[str, str | int | float | bool] | None = None,
                  ) -> ExportTraceServiceRequest:
    """`n` spans `op<i>` of trace `trace_id` (span ids 1..n), with `attributes` on each."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(kv("service.name", service))
    ss = rs.scope_spans.add()
    if scope:
        ss.scope.name = scope
    extra = [kv(k, v) for k, v in (attributes or {}).items()]
    for i in range(n):
        sp = ss.spans.add()
        sp.trace_id, sp.span_id, sp.name = trace_id, (i + 1).to_bytes(8, "big"), f"op{i}"
        sp.start_time_unix_nano = T0 + i
        sp.end_time_unix_nano = sp.start_time_unix_nano + 1000
        sp.attributes.extend(extra)
    return req


# --- uniquely named items, for counting deliveries -----------------------------------------


def tagged_traces_request(resources: int = 1, traces_per_resource: int = 2,
                          spans_per_trace: int = 3, *, service: str = "svc", attrs: int = 2,
                          tag: str = "", resource_attrs: Mapping[str, str] | None = None,
                          ) -> ExportTraceServiceRequest:
    """A request whose span names are unique: `<tag>r<i>t<j>s<k>` (random ids)."""
    req = ExportTraceServiceRequest()
    for r in range(resources):
        rs = req.resource_spans.add()
        rs.resource.attributes.append(kv("service.name", f"{service}-{r}"))
        for k, v in (resource_attrs or {}).items():
            rs.resource.attributes.append(kv(k, v))
        ss = rs.scope_spans.add()
        ss.scope.name = "test"
        for t in range(traces_per_resource):
            tid = os.urandom(16)
            for s in range(spans_per_trace):
                sp = ss.spans.add()
                sp.trace_id = tid
                sp.span_id = os.urandom(8)
                sp.name = f"{tag}r{r}t{t}s{s}"
                sp.kind = 2
                sp.start_time_unix_nano = T0
                sp.end_time_unix_nano = T0 + 100_000_000
                for a in range(attrs):
                    sp.attributes.append(kv(f"attr{a}", "x" * 20))
    return req


def tagged_logs_request(resources: int = 1, records: int = 5, *, tag: str = "",
                        resource_attrs: list[dict[str, str]] | None = None,
                        ) -> ExportLogsServiceRequest:
    """A request whose log bodies are unique: `<tag>r<i>l<j>`."""
    req = ExportLogsServiceRequest()
    for r in range(resources):
        rl = req.resource_logs.add()
        attrs = (resource_attrs[r] if resource_attrs else {"service.name": f"svc-{r}"})
        for k, v in attrs.items():
            rl.resource.attributes.append(kv(k, v))
        sl = rl.scope_logs.add()
        for i in range(records):
            lr = sl.log_records.add()
            lr.time_unix_nano = T0 + i
            lr.body.string_value = f"{tag}r{r}l{i}"
            lr.severity_text = "INFO"
    return req


def span_names(spans: Batch | ExportTraceServiceRequest) -> list[str]:
    req = spans.message if isinstance(spans, Batch) else spans
    return [sp.name for rs in req.resource_spans for ss in rs.scope_spans for sp in ss.spans]


def log_bodies(records: Batch | ExportLogsServiceRequest) -> list[str]:
    req = records.message if isinstance(records, Batch) else records
    return [lr.body.string_value for rl in req.resource_logs for sl in rl.scope_logs
            for lr in sl.log_records]
