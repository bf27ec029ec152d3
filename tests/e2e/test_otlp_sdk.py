"""OpenTelemetry SDKs' own OTLP exporters → `otelpipe run` (otlp receiver) → file exporters.

Each test runs a real `python -m pipeline run` process, sends traces, logs and
metrics with a real SDK client, stops the process (which drains), then reads
the OTLP JSON lines the file exporters wrote and checks that every span, log
record and data point the SDK exported arrived exactly once, field for field
(ids, attributes, timestamps, resource, scope).

- Python SDK: OTLP/gRPC and OTLP/HTTP protobuf, plain and gzip.
- OTLP/HTTP JSON: the Python SDK has no JSON exporter (opentelemetry-exporter-
  otlp-proto-http sends protobuf only), so the JavaScript SDK's OTLP/HTTP
  exporters, which send JSON, are the client: `scripts/js-sdk.sh` installs them
  into a cache outside the repo (scripts/test.sh runs it); the test fails when
  node or that cache is missing: a green run means the JSON client really ran.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.component import Signal
from pipeline.pdata.otlpjson import decode_request
from tests.support import REPO, OtelpipeProcess, free_port

JS_DIR = Path(os.environ.get("OTELPIPE_CACHE", Path.home() / ".cache" / "otelpipe")) / "js-sdk"
JS_SCRIPT = Path(__file__).parent / "js" / "send.cjs"


def pipeline_config(tmp_path: Path, grpc_port: int, http_port: int,
                    processors: Sequence[str]) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {
            "grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
            "http": {"endpoint": f"127.0.0.1:{http_port}"},
        }}},
        "processors": {"batch": {"send_batch_size": 64, "timeout": "50ms"}},
        "exporters": {f"file/{s}": {"path": str(tmp_path / f"{s}.jsonl"), "format": "otlp_json"}
                      for s in Signal},
        "service": {"pipelines": {
            s.value: {"receivers": ["otlp"], "processors": list(processors),
                      "exporters": [f"file/{s}"]}
            for s in Signal}},
    }


def run_pipeline(tmp_path: Path, processors: Sequence[str]) -> tuple[OtelpipeProcess, int, int]:
    gport, hport = free_port(), free_port()
    proc = OtelpipeProcess(pipeline_config(tmp_path, gport, hport, processors), tmp_path,
                           wait_ports=(gport, hport))
    return proc.start(), gport, hport


def written(tmp_path: Path, signal: Signal) -> list[Any]:
    """The requests the file exporter wrote, decoded from OTLP JSON lines."""
    path = tmp_path / f"{signal}.jsonl"
    return [decode_request(signal, line) for line in path.read_bytes().splitlines() if line]


def item_keys(signal: Signal, requests: Iterable[Any]) -> Counter[tuple[bytes, bytes, bytes]]:
    """(resource, scope, item) of every span / log record / data point, serialized.

    Equal counters mean: every item arrived, with every field equal, exactly once.
    """
    keys: Counter[tuple[bytes, bytes, bytes]] = Counter()
    det = {"deterministic": True}
    for req in requests:
        if signal is Signal.METRICS:
            for rm in req.resource_metrics:
                res = rm.resource.SerializeToString(**det) + rm.schema_url.encode()
                for sm in rm.scope_metrics:
                    scope = sm.scope.SerializeToString(**det)
                    for m in sm.metrics:
                        kind = m.WhichOneof("data")
                        shape = type(m)()
                        shape.CopyFrom(m)
                        del getattr(shape, kind).data_points[:]
                        for dp in getattr(m, kind).data_points:
                            keys[(res, scope, shape.SerializeToString(**det)
                                  + b"|" + dp.SerializeToString(**det))] += 1
            continue
        resources = req.resource_spans if signal is Signal.TRACES else req.resource_logs
        for r in resources:
            res = r.resource.SerializeToString(**det) + r.schema_url.encode()
            for s in (r.scope_spans if signal is Signal.TRACES else r.scope_logs):
                scope = s.scope.SerializeToString(**det)
                for it in (s.spans if signal is Signal.TRACES else s.log_records):
                    keys[(res, scope, it.SerializeToString(**det))] += 1
    return keys


def assert_delivered_exactly_once(tmp_path: Path, sent: dict[Signal, list[Any]]) -> None:
    for signal in Signal:
        expected = item_keys(signal, sent[signal])
        got = item_keys(signal, written(tmp_path, signal))
        assert sum(expected.values()) > 0
        missing, extra = expected - got, got - expected
        counts = (f"{signal}: {sum(missing.values())} items missing, "
                  f"{sum(extra.values())} unexpected (of {sum(expected.values())} sent)")
        assert not missing, counts
        assert not extra, counts


def spans_written(tmp_path: Path) -> list[Any]:
    return [sp for req in written(tmp_path, Signal.TRACES) for rs in req.resource_spans
            for ss in rs.scope_spans for sp in ss.spans]


def logs_written(tmp_path: Path) -> list[tuple[Any, Any]]:
    return [(rl.resource, lr) for req in written(tmp_path, Signal.LOGS)
            for rl in req.resource_logs for sl in rl.scope_logs for lr in sl.log_records]


# Python SDK -----------------------------------------------------------------------------

def _recording(cls: type, encode: Any) -> type:
    """The SDK exporter class, also keeping the request it encoded for every export."""

    # The base is an SDK class picked at run time, which mypy cannot check as a base.
    class Recording(cls):  # type: ignore[misc]
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.sent: list[Any] = []
            self.results: list[Any] = []
            self.items: list[Any] = []

        def export(self, batch: Any, *a: Any, **kw: Any) -> Any:
            result = super().export(batch, *a, **kw)
            self.sent.append(encode(batch))
            self.results.append(result)
            if isinstance(batch, Sequence):
                self.items.extend(batch)
            return result

    return Recording


def send_with_python_sdk(transport: str, grpc_port: int, http_port: int
                         ) -> tuple[dict[Signal, list[Any]], list[Any], list[Any]]:
    """Traces, logs and metrics through the SDK's OTLP exporters.

    Returns the requests the SDK encoded per signal, the spans and log records.
    """
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricExportResult, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode

    gzip = transport.endswith("+gzip")
    exporters: tuple[Any, Any, Any]
    if transport.startswith("grpc"):
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc import _log_exporter as grpc_logs
        from opentelemetry.exporter.otlp.proto.grpc import metric_exporter as grpc_metrics
        from opentelemetry.exporter.otlp.proto.grpc import trace_exporter as grpc_traces

        exporters = (grpc_traces.OTLPSpanExporter, grpc_logs.OTLPLogExporter,
                     grpc_metrics.OTLPMetricExporter)
        common: dict[str, Any] = {"insecure": True, "timeout": 10,
                                  "compression": grpc.Compression.Gzip if gzip else None}
        urls = {s: f"127.0.0.1:{grpc_port}" for s in Signal}
    else:
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http import _log_exporter as http_logs
        from opentelemetry.exporter.otlp.proto.http import metric_exporter as http_metrics
        from opentelemetry.exporter.otlp.proto.http import trace_exporter as http_traces

        exporters = (http_traces.OTLPSpanExporter, http_logs.OTLPLogExporter,
                     http_metrics.OTLPMetricExporter)
        common = {"timeout": 10,
                  "compression": Compression.Gzip if gzip else Compression.NoCompression}
        urls = {s: f"http://127.0.0.1:{http_port}/v1/{s}" for s in Signal}
    OTLPSpanExporter, OTLPLogExporter, OTLPMetricExporter = exporters

    resource = Resource.create({"service.name": "py-client", "service.version": "2.0.0",
                                "test.case": transport, "host.cores": 4})

    # Traces: 6 traces of 8 spans with 10 attributes, events, a link, error statuses.
    span_exporter = _recording(OTLPSpanExporter, encode_spans)(endpoint=urls[Signal.TRACES],
                                                              **common)
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter, max_export_batch_size=13))
    tracer = tracer_provider.get_tracer("e2e-py", "0.1.0",
                                        schema_url="https://opentelemetry.io/schemas/1.21.0")
    previous = None
    for t in range(6):
        links: list[Link] = ([Link(previous.get_span_context(), {"link.kind": "previous"})]
                             if previous else [])
        with tracer.start_as_current_span(f"GET /orders/{t}", kind=SpanKind.SERVER,
                                          links=links) as root:
            root.set_attributes({"http.method": "GET", "http.status_code": 200, "t": t})
            previous = root
            for c in range(7):
                with tracer.start_as_current_span(f"db query {c}", kind=SpanKind.CLIENT) as sp:
                    for a in range(10):
                        sp.set_attribute(f"attr.{a}", f"v{t}.{c}.{a}" if a % 2 else a * 1.5)
                    sp.set_attribute("ids", [t, c])
                    sp.set_attribute("ok", c != 6)
                    sp.add_event("rows", {"n": c * 10, "unicode": "ünïcødé ✓"})
                    if c == 6:
                        sp.set_status(Status(StatusCode.ERROR, "deadline exceeded"))
    tracer_provider.force_flush()
    tracer_provider.shutdown()
    assert all(r is SpanExportResult.SUCCESS for r in span_exporter.results)

    # Logs: 30 records, every third inside a span.
    log_exporter = _recording(OTLPLogExporter, encode_logs)(endpoint=urls[Signal.LOGS], **common)
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(log_exporter, max_export_batch_size=11))
    logger = logger_provider.get_logger("e2e-py-logs", "0.1.0")
    span_ctx_tracer = TracerProvider(resource=resource).get_tracer("ctx")
    for i in range(30):
        kw: dict[str, Any] = {}
        if i % 3 == 0:
            span = span_ctx_tracer.start_span(f"log parent {i}")
            kw["context"] = trace.set_span_in_context(span)
        from opentelemetry._logs import SeverityNumber

        logger.emit(timestamp=1_700_000_200_000_000_000 + i * 1_000_003,
                    observed_timestamp=1_700_000_200_500_000_000 + i,
                    severity_number=SeverityNumber.WARN if i % 4 else SeverityNumber.INFO,
                    severity_text="WARN" if i % 4 else "INFO",
                    body={"msg": f"request {i} done", "bytes": i * 100} if i % 5 == 0
                    else f"request {i} done",
                    attributes={"user.id": f"u{i}", "attempt": i % 4, "ratio": i / 7},
                    **kw)
    logger_provider.force_flush()
    logger_provider.shutdown()
    assert all(r is LogRecordExportResult.SUCCESS for r in log_exporter.results)

    # Metrics: counter, histogram, up-down counter, observable gauge; one collection.
    metric_exporter = _recording(OTLPMetricExporter, encode_metrics)(
        endpoint=urls[Signal.METRICS], **common)
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3_600_000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = meter_provider.get_meter("e2e-py-metrics", "0.1.0")
    requests = meter.create_counter("http.server.requests", unit="1")
    latency = meter.create_histogram("http.server.duration", unit="ms")
    active = meter.create_up_down_counter("http.server.active_requests")

    def queue_depth(options: CallbackOptions) -> list[Observation]:
        return [Observation(q * 3, {"queue": f"q{q}"}) for q in range(4)]

    meter.create_observable_gauge("queue.depth", callbacks=[queue_depth])
    for i in range(50):
        attrs = {"http.route": f"/r{i % 3}", "http.status_code": 500 if i % 7 == 0 else 200}
        requests.add(1, attrs)
        latency.record(i * 3.7, attrs)
        active.add(1 if i % 2 else -1, {"http.route": f"/r{i % 3}"})
    meter_provider.force_flush()
    meter_provider.shutdown()
    assert metric_exporter.results
    assert all(r is MetricExportResult.SUCCESS for r in metric_exporter.results)

    sent = {Signal.TRACES: span_exporter.sent, Signal.LOGS: log_exporter.sent,
            Signal.METRICS: metric_exporter.sent}
    return sent, span_exporter.items, log_exporter.items


@pytest.mark.parametrize(("transport", "processors"), [
    ("grpc", ()),
    ("grpc+gzip", ("batch",)),
    ("http/protobuf", ("batch",)),
    ("http/protobuf+gzip", ()),
])
def test_python_sdk(tmp_path: Path, transport: str, processors: tuple[str, ...]) -> None:
    proc, gport, hport = run_pipeline(tmp_path, processors)
    try:
        sent, spans, records = send_with_python_sdk(transport, gport, hport)
    finally:
        code = proc.stop()
    assert code == 0, proc.logs()
    assert '"level":"error"' not in proc.logs(), proc.logs()
    assert_delivered_exactly_once(tmp_path, sent)

    # The same, checked against the SDK's own span and log objects (not its encoder).
    out = {(sp.trace_id.hex(), sp.span_id.hex()): sp for sp in spans_written(tmp_path)}
    assert len(spans) == len(out) == 48
    for s in spans:
        ctx = s.get_span_context()
        sp = out[(f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")]
        assert sp.name == s.name
        assert (sp.start_time_unix_nano, sp.end_time_unix_nano) == (s.start_time, s.end_time)
        assert sp.parent_span_id.hex() == (f"{s.parent.span_id:016x}" if s.parent else "")
        attrs = {kv.key: kv.value for kv in sp.attributes}
        assert set(attrs) == set(s.attributes)
        for key, value in s.attributes.items():
            v = attrs[key]
            kind = v.WhichOneof("value")
            got = ([getattr(x, x.WhichOneof("value")) for x in v.array_value.values]
                   if kind == "array_value" else getattr(v, kind))
            assert got == (list(value) if isinstance(value, tuple) else value), key
    logs = logs_written(tmp_path)
    assert len(logs) == len(records) == 30
    by_time = {lr.time_unix_nano: (res, lr) for res, lr in logs}
    for r in records:
        res, lr = by_time[r.log_record.timestamp]
        assert lr.trace_id.hex() == (f"{r.log_record.trace_id:032x}"
                                     if r.log_record.trace_id else "")
        assert lr.span_id.hex() == (f"{r.log_record.span_id:016x}"
                                    if r.log_record.span_id else "")
        assert lr.observed_time_unix_nano == r.log_record.observed_timestamp
        assert {kv.key: kv.value.string_value for kv in res.attributes}["test.case"] == transport
    assert sum(1 for _, lr in logs if lr.trace_id) == 10


# JavaScript SDK (OTLP/HTTP JSON) ------------------------------------------------------------

def js_sdk() -> Path:
    if shutil.which("node") is None:
        pytest.fail("node is not installed")
    modules = JS_DIR / "node_modules"
    if not (modules / "@opentelemetry" / "exporter-trace-otlp-http").is_dir():
        pytest.fail(f"the JS SDK is not installed in {JS_DIR}: run scripts/js-sdk.sh")
    return modules


@pytest.mark.parametrize("processors", [(), ("batch",)])
def test_js_sdk_http_json(tmp_path: Path, processors: tuple[str, ...]) -> None:
    modules = js_sdk()
    proc, _, hport = run_pipeline(tmp_path, processors)
    sent_path = tmp_path / "sent.jsonl"
    try:
        run = subprocess.run(
            ["node", str(JS_SCRIPT), f"http://127.0.0.1:{hport}", str(sent_path)],
            env={**os.environ, "NODE_PATH": str(modules)}, cwd=REPO,
            capture_output=True, text=True, timeout=120)
    finally:
        code = proc.stop()
    assert run.returncode == 0, run.stderr
    assert code == 0, proc.logs()
    assert '"level":"error"' not in proc.logs(), proc.logs()

    sent: dict[Signal, list[Any]] = {s: [] for s in Signal}
    for line in sent_path.read_bytes().splitlines():
        export = orjson.loads(line)
        assert export["code"] == 0, export  # ExportResultCode.SUCCESS
        sent[Signal(export["signal"])].append(decode_request(Signal(export["signal"]),
                                                             export["body"].encode()))
    assert_delivered_exactly_once(tmp_path, sent)

    # Values the script fixed, checked without going through any decoder on the sending side.
    spans = spans_written(tmp_path)
    assert len(spans) == 20
    assert {sp.trace_id.hex() for sp in spans} == {f"5b8efff798038103d269b633{t:08x}"
                                                    for t in range(4)}
    assert len({sp.span_id for sp in spans}) == 20
    assert all(sp.span_id.hex().startswith("eee19b7e") for sp in spans)
    roots = sorted((sp for sp in spans if not sp.parent_span_id), key=lambda s: s.name)
    assert [r.start_time_unix_nano for r in roots] == [1_700_000_000_123_456_789 + t * 10**9
                                                       for t in range(4)]
    assert [r.end_time_unix_nano for r in roots] == [1_700_000_000_900_000_000 + t * 10**9
                                                     for t in range(4)]
    child = next(sp for sp in spans if sp.name == "db query 3")
    attrs = {kv.key: kv.value for kv in child.attributes}
    assert attrs["attr.1"].string_value == "v0.3.1"
    assert attrs["attr.2"].double_value == 3.0 or attrs["attr.2"].int_value == 3
    assert attrs["attr.3"].string_value == "v0.3.3"
    assert attrs["flag"].bool_value is False
    assert [v.string_value for v in attrs["list"].array_value.values] == ["a", "b", "3"]
    assert child.status.code == 2
    assert child.status.message == "timeout"
    assert child.events[0].name == "rows"
    assert child.events[0].time_unix_nano == 1_700_000_000_250_000_003

    logs = logs_written(tmp_path)
    assert len(logs) == 25
    assert sorted(lr.time_unix_nano for _, lr in logs) == [1_700_000_100_000_000_000 + i * 1000
                                                           for i in range(25)]
    with_ids = [lr for _, lr in logs if lr.trace_id]
    assert len(with_ids) == 13
    assert {(lr.trace_id.hex(), lr.span_id.hex()) for lr in with_ids} == {
        ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")}
    for res, _ in logs:
        assert {kv.key: kv.value.string_value for kv in res.attributes} == {
            "service.name": "js-client", "service.version": "1.2.3", "test.case": "js-json"}

    names = {m.name for req in written(tmp_path, Signal.METRICS) for rm in req.resource_metrics
             for sm in rm.scope_metrics for m in sm.metrics}
    assert names == {"http.server.requests", "http.server.duration",
                     "http.server.active_requests"}
