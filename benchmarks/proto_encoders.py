"""Hand-written protobuf encoders against the generated messages, on the same data.

otelpipe writes three wire formats by hand (varints and length prefixes from
`pipeline.pdata.wire`) instead of filling generated upb messages field by field:

- `remote_write`: the `prometheusremotewrite` exporter's `build()` (OTLP metrics ->
  snappy-compressed `prometheus.WriteRequest`) against the same translation writing
  `pipeline.proto.prompb` messages (`build_generated` below); items are samples.
- `loki`: the `loki` exporter's protobuf `encode()` (OTLP logs -> snappy-compressed
  `logproto.PushRequest`, structured metadata) against the same streams written into
  `pipeline.proto.logproto` messages; items are log records.
- `otlp_logs`: `pdata.logrecords.encode_groups` (native `LogRecord`s -> OTLP
  `ExportLogsServiceRequest` bytes) against the `opentelemetry-proto` messages filled
  from the same records; items are log records.

Each case first checks that both sides produce the same content (parsed with the
generated message), then alternates hand-written and generated rounds in one process
and reports items per CPU-second (`time.process_time`) of the best round of each, and
the ratio. One core; nothing else runs in the process.

    python -m benchmarks.proto_encoders [--rounds 7] [--only remote_write,loki,otlp_logs]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import cramjam
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as PbLogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from benchmarks.harness import write_result
from pipeline.exporters._lokilabels import render_labels
from pipeline.exporters.loki import LokiExporter, LokiExporterConfig
from pipeline.exporters.prometheusremotewrite import RemoteWriteConfig, RemoteWriteExporter
from pipeline.pdata.logrecords import LogGroup, LogRecord, encode_groups
from pipeline.pdata.prometheus.names import HISTOGRAM, SUMMARY
from pipeline.pdata.prometheus.series import STALE_NAN, sample_parts
from pipeline.proto.logproto.push_pb2 import PushRequest
from pipeline.proto.prompb.remote_write_pb2 import WriteRequest
from tests.support import exporter_settings

TS = 1_700_000_000_000_000_000
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
SERVICES = ("checkout", "cart", "payments", "search")
ROUTES = ("GET /cart", "POST /order", "GET /item/{id}", "GET /search", "POST /pay")


# --- remote write -----------------------------------------------------------------------

def metrics_request() -> ExportMetricsServiceRequest:
    """RED metrics as the redmetrics connector emits them: per service, route and status
    a call counter and a 16-bound duration histogram with one exemplar per bucket set."""
    req = ExportMetricsServiceRequest()
    bounds = [0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1, 1.4, 2, 5,
              10, 15]
    for svc in SERVICES:
        rm = req.resource_metrics.add()
        for k, v in (("service.name", svc), ("service.instance.id", f"{svc}-1"),
                     ("host.name", "node-7")):
            rm.resource.attributes.add(key=k).value.string_value = v
        sm = rm.scope_metrics.add()
        sm.scope.name = "redmetrics"
        calls = sm.metrics.add(name="traces.span.metrics.calls")
        calls.sum.is_monotonic = True
        calls.sum.aggregation_temporality = CUMULATIVE
        dur = sm.metrics.add(name="traces.span.metrics.duration", unit="s")
        dur.histogram.aggregation_temporality = CUMULATIVE
        for i, route in enumerate(ROUTES):
            for status in ("STATUS_CODE_UNSET", "STATUS_CODE_ERROR"):
                attrs = [("span.name", route), ("span.kind", "SPAN_KIND_SERVER"),
                         ("status.code", status), ("http.method", route.split()[0])]
                dp = calls.sum.data_points.add(time_unix_nano=TS, start_time_unix_nano=1,
                                               as_int=100 + i)
                for k, v in attrs:
                    dp.attributes.add(key=k).value.string_value = v
                hp = dur.histogram.data_points.add(time_unix_nano=TS, start_time_unix_nano=1,
                                                   count=170, sum=12.5,
                                                   explicit_bounds=bounds,
                                                   bucket_counts=[10] * 17)
                for k, v in attrs:
                    hp.attributes.add(key=k).value.string_value = v
                for b in range(0, 17, 4):
                    hp.exemplars.add(time_unix_nano=TS, as_double=bounds[min(b, 15)] * 0.9,
                                     trace_id=bytes([b + 1]) * 16, span_id=bytes([i + 1]) * 8)
    return req


def build_generated(exp: RemoteWriteExporter, request: Any) -> tuple[list[bytes], int]:
    """`RemoteWriteExporter.build` written with the generated messages (cumulative points
    only; one request, no split): the same translation, labels and samples."""
    import math

    wr = WriteRequest()
    index: dict[tuple[tuple[str, str], ...], Any] = {}
    samples = 0
    for s in exp.translator.series(request):
        ts_ms = s.timestamp_ns // 1_000_000
        base = dict(s.labels)
        for k, v in exp._external:
            base.setdefault(k, v)
        extra_name = "le" if s.kind == HISTOGRAM else "quantile" if s.kind == SUMMARY else None
        base.pop("__name__", None)
        if extra_name:
            base.pop(extra_name, None)
        for name, extra, value, ex in sample_parts(s):
            pairs = [*base.items(), ("__name__", name)]
            if extra:
                pairs.append(extra)
            key = tuple(sorted(pairs))
            ts = index.get(key)
            if ts is None:
                ts = index[key] = wr.timeseries.add()
                for k, v in key:
                    ts.labels.add(name=k, value=v)
            ts.samples.add(value=STALE_NAN if s.stale else value, timestamp=ts_ms)
            samples += 1
            if ex is not None and not s.stale and math.isfinite(ex.value):
                e = ts.exemplars.add(value=ex.value, timestamp=ex.timestamp_ns // 1_000_000)
                for k, v in ex.labels:
                    e.labels.add(name=k, value=v)
    return [bytes(cramjam.snappy.compress_raw(wr.SerializeToString()))], samples


def write_request_content(bodies: list[bytes]) -> list[Any]:
    out = []
    for body in bodies:
        wr = WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
        out += [(tuple((lb.name, lb.value) for lb in ts.labels),
                 [(s.timestamp, s.value) for s in ts.samples],
                 [(tuple((lb.name, lb.value) for lb in e.labels), e.value, e.timestamp)
                  for e in ts.exemplars]) for ts in wr.timeseries]
    return sorted(out)


def remote_write_case() -> tuple[Callable[[], int], Callable[[], int]]:
    exp = RemoteWriteExporter(exporter_settings("prometheusremotewrite"),
                              RemoteWriteConfig(endpoint="http://127.0.0.1:1/api/v1/write"))
    req = metrics_request()
    parts, n = exp.build(req)
    bodies, n2 = build_generated(exp, req)
    assert n == n2, (n, n2)
    assert write_request_content([p.body for p in parts]) == write_request_content(bodies)

    def hand() -> int:
        return exp.build(req)[1]

    def generated() -> int:
        return build_generated(exp, req)[1]

    return hand, generated


# --- loki -------------------------------------------------------------------------------

def logs_request(records: int = 500) -> bytes:
    req = ExportLogsServiceRequest()
    per = records // len(SERVICES)
    for svc in SERVICES:
        rl = req.resource_logs.add()
        for key, text in (("service.name", svc), ("host.name", "node-7"),
                          ("k8s.pod.name", svc + "-x")):
            rl.resource.attributes.add(key=key).value.string_value = text
        sl = rl.scope_logs.add()
        sl.scope.name = "app"
        for i in range(per):
            lr = sl.log_records.add(time_unix_nano=TS + i * 1000, severity_number=9,
                                    severity_text="INFO", trace_id=bytes([i % 250 + 1]) * 16,
                                    span_id=bytes([i % 250 + 1]) * 8)
            lr.body.string_value = f"GET /item/{i} 200 {i * 3} bytes in {i % 97} ms"
            attrs: tuple[tuple[str, str | int], ...] = (
                ("http.method", "GET"), ("http.route", ROUTES[i % 5]),
                ("http.status_code", 200 + (i % 3)), ("user.id", f"u{i % 40}"),
                ("net.peer.ip", f"10.0.0.{i % 200}"), ("thread", "main"))
            for k, v in attrs:
                a = lr.attributes.add(key=k)
                if isinstance(v, int):
                    a.value.int_value = v
                else:
                    a.value.string_value = v
    return bytes(req.SerializeToString())


def push_generated(exp: LokiExporter, raw: bytes) -> int:
    """`LokiExporter.encode` (protobuf) written with the generated messages."""
    streams = exp.streams(raw)
    pr = PushRequest()
    n = 0
    for labels, entries in streams.items():
        st = pr.streams.add(labels=render_labels(labels))
        for ts, line, meta in entries:
            e = st.entries.add(line=line)
            e.timestamp.seconds, e.timestamp.nanos = divmod(ts, 1_000_000_000)
            for k, v in meta:
                e.structuredMetadata.add(name=k, value=v)
            n += 1
    cramjam.snappy.compress_raw(pr.SerializeToString())
    return n


def push_content(body: bytes) -> list[Any]:
    pr = PushRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
    return [(s.labels, [(e.timestamp.seconds, e.timestamp.nanos, e.line,
                         [(m.name, m.value) for m in e.structuredMetadata])
                        for e in s.entries]) for s in pr.streams]


def loki_case() -> tuple[Callable[[], int], Callable[[], int]]:
    exp = LokiExporter(exporter_settings("loki"), LokiExporterConfig(
        endpoint="http://127.0.0.1:1", labels={"resource": ["service.name"],
                                              "attributes": ["http.method"]}))
    raw = logs_request()
    n = sum(len(sl.log_records) for rl in ExportLogsServiceRequest.FromString(raw).resource_logs
            for sl in rl.scope_logs)
    hand_body = exp.encode(raw)
    streams = exp.streams(raw)
    pr = PushRequest()
    for labels, entries in streams.items():
        st = pr.streams.add(labels=render_labels(labels))
        for ts, line, meta in entries:
            e = st.entries.add(line=line)
            e.timestamp.seconds, e.timestamp.nanos = divmod(ts, 1_000_000_000)
            for k, v in meta:
                e.structuredMetadata.add(name=k, value=v)
    assert push_content(hand_body) == push_content(
        bytes(cramjam.snappy.compress_raw(pr.SerializeToString())))

    def hand() -> int:
        exp.encode(raw)
        return n

    def generated() -> int:
        return push_generated(exp, raw)

    return hand, generated


# --- OTLP logs from native records ------------------------------------------------------

def native_groups(records: int = 500) -> list[LogGroup]:
    groups = []
    per = records // len(SERVICES)
    for svc in SERVICES:
        recs = [LogRecord(f'10.0.0.{i % 200} - - "GET /item/{i} HTTP/1.1" 200 {i * 3}',
                          {"http.request.method": "GET", "url.path": f"/item/{i}",
                           "http.response.status_code": 200, "http.response.body.size": i * 3,
                           "client.address": f"10.0.0.{i % 200}", "user_agent.original": "curl/8",
                           "log.file.name": "access.log", "duration": i * 0.25,
                           "cached": i % 2 == 0, "route": ROUTES[i % 5]},
                          TS + i, time_unix_nano=TS + i, severity_number=9,
                          severity_text="INFO") for i in range(per)]
        groups.append(LogGroup(recs, resource={"service.name": svc, "host.name": "node-7"},
                               scope_name="filelog"))
    return groups


def _set_value(av: AnyValue, v: Any) -> None:
    if isinstance(v, bool):
        av.bool_value = v
    elif isinstance(v, int):
        av.int_value = v
    elif isinstance(v, float):
        av.double_value = v
    else:
        av.string_value = v


def _kvs(field: Any, attrs: dict[str, Any]) -> None:
    for k, v in attrs.items():
        kv: KeyValue = field.add(key=k)
        _set_value(kv.value, v)


def groups_generated(groups: list[LogGroup]) -> bytes:
    """`encode_groups` written with the opentelemetry-proto messages (scalar values)."""
    req = ExportLogsServiceRequest()
    for g in groups:
        rl = req.resource_logs.add()
        _kvs(rl.resource.attributes, g.resource)
        sl = rl.scope_logs.add()
        sl.scope.name = g.scope_name
        for r in g.records:
            lr: PbLogRecord = sl.log_records.add(
                time_unix_nano=r.time_unix_nano, observed_time_unix_nano=r.observed_time_unix_nano,
                severity_number=r.severity_number, severity_text=r.severity_text)
            _set_value(lr.body, r.body)
            _kvs(lr.attributes, r.attributes)
    return bytes(req.SerializeToString())


def otlp_logs_case() -> tuple[Callable[[], int], Callable[[], int]]:
    groups = native_groups()
    n = sum(len(g.records) for g in groups)
    assert ExportLogsServiceRequest.FromString(encode_groups(groups)) == \
        ExportLogsServiceRequest.FromString(groups_generated(groups))

    def hand() -> int:
        encode_groups(groups)
        return n

    def generated() -> int:
        groups_generated(groups)
        return n

    return hand, generated


CASES = {"remote_write": remote_write_case, "loki": loki_case, "otlp_logs": otlp_logs_case}


def per_cpu_second(fn: Callable[[], int], min_cpu: float = 0.3) -> float:
    items = 0
    start = time.process_time()
    while True:
        items += fn()
        spent = time.process_time() - start
        if spent >= min_cpu:
            return items / spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--only", default=",".join(CASES))
    args = ap.parse_args()
    result: dict[str, Any] = {"python": platform.python_version(),
                              "loadavg": os.getloadavg(), "cases": {}}
    for name in args.only.split(","):
        hand, generated = CASES[name]()
        best = {"hand": 0.0, "generated": 0.0}
        for _ in range(args.rounds):
            best["hand"] = max(best["hand"], per_cpu_second(hand))
            best["generated"] = max(best["generated"], per_cpu_second(generated))
        ratio = best["hand"] / best["generated"]
        result["cases"][name] = {**{k: round(v) for k, v in best.items()},
                                 "ratio": round(ratio, 2)}
        print(f"{name:13s} hand-written {best['hand']:>10,.0f}/CPU-s   generated "
              f"{best['generated']:>10,.0f}/CPU-s   ratio {ratio:.2f}x", flush=True)
    print(json.dumps(result))
    if args.only == ",".join(CASES):
        write_result("proto_encoders", result)


if __name__ == "__main__":
    main()
