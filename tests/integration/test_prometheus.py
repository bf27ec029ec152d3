"""The `prometheus` and `prometheusremotewrite` exporters against a real Prometheus.

One `otelpipe run` takes known OTLP metrics and a known set of spans (through
`redmetrics`) and hands every metric to both exporters: Prometheus scrapes the
one (target label via="scrape") and receives the other by remote write
(external label via="remote_write"); PromQL over the HTTP API must return the
exact values either way. Every run uses its own service names, so data that
Prometheus kept from earlier runs never matches.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.promdata import (
    PrometheusServer,
    attrs,
    gauge_metric,
    histogram_metric,
    parse_text,
    request,
    sample,
    sum_metric,
)
from tests.support import OtelpipeProcess, eventually, free_port, http_get

MS = 1_000_000
# (duration ms, spans, of which errors). Default redmetrics buckets: … 0.1, 0.2, 0.4, 0.5, 0.8 …
# A first wave creates the series (one per status code), so that `rate()` over the
# window sees the second wave as an increase.
WARMUP = [(50, 1, 0), (700, 1, 1)]
SPANS = [(50, 10, 0), (150, 10, 0), (300, 6, 2), (700, 4, 4)]
TOTAL_SPANS = sum(n for _, n, _ in WARMUP + SPANS)
ERRORS = sum(e for _, _, e in WARMUP + SPANS)
RED_BUCKETS = {"0.1": 11, "0.2": 21, "0.4": 27, "0.5": 27, "0.8": 32, "+Inf": 32}
KNOWN_BUCKETS = {"0.1": 5, "0.5": 8, "1.0": 9, "+Inf": 10}


def post(url: str, body: bytes) -> None:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/x-protobuf"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200, resp.status


def spans_request(service: str, spans: list[tuple[int, int, int]]
                  ) -> tuple[ExportTraceServiceRequest, set[str]]:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(attrs({"service.name": service}))
    ss = rs.scope_spans.add()
    now = time.time_ns()
    trace_ids: set[str] = set()
    for duration_ms, n, errors in spans:
        for k in range(n):
            trace_id = uuid.uuid4().bytes
            trace_ids.add(trace_id.hex())
            span = ss.spans.add(trace_id=trace_id, span_id=uuid.uuid4().bytes[:8],
                                name="GET /cart", kind=Span.SPAN_KIND_SERVER,
                                start_time_unix_nano=now - duration_ms * MS,
                                end_time_unix_nano=now)
            if k < errors:
                span.status.code = Status.STATUS_CODE_ERROR
    return req, trace_ids


def known_metrics(service: str) -> Any:
    now = time.time_ns()
    return request([
        sum_metric("test.requests", [({"route": "/a"}, 42), ({"route": "/b"}, 7)], ts=now,
                   start=now - 60_000 * MS),
        histogram_metric("test.latency", [({"route": "/a"}, [5, 3, 1, 1], 2.5)],
                         bounds=[0.1, 0.5, 1.0], ts=now, start=now - 60_000 * MS),
    ], resource={"service.name": service, "service.instance.id": "i-1", "host.name": "box-1"},
        scope="integration")


@dataclass
class Run:
    red_service: str
    known_service: str
    trace_ids: set[str]
    scrape_url: str
    proc: OtelpipeProcess


@pytest.fixture(scope="module")
def run(prometheus: PrometheusServer, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Run]:
    tag = uuid.uuid4().hex[:8]
    otlp, scrape = free_port(), free_port()
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{otlp}"}}}},
        "connectors": {"redmetrics": {"metrics_flush_interval": "200ms"}},
        "exporters": {
            "prometheus": {"endpoint": f"127.0.0.1:{scrape}"},
            "prometheusremotewrite": {
                "endpoint": prometheus.remote_write_url,
                "external_labels": {"via": "remote_write"},
                "retry_on_failure": {"initial_interval": "100ms"}},
        },
        "service": {"pipelines": {
            "traces": {"receivers": ["otlp"], "exporters": ["redmetrics"]},
            "metrics": {"receivers": ["otlp"],
                        "exporters": ["prometheus", "prometheusremotewrite"]},
            "metrics/red": {"receivers": ["redmetrics"],
                            "exporters": ["prometheus", "prometheusremotewrite"]},
        }},
    }
    proc = OtelpipeProcess(config, tmp_path_factory.mktemp("prom"), wait_ports=(otlp, scrape))
    target = f"otelpipe-{tag}"
    with proc:
        prometheus.add_target(target, scrape, {"via": "scrape"})
        try:
            red, known = f"checkout-{tag}", f"known-{tag}"
            warmup, trace_ids = spans_request(red, WARMUP)
            post(f"http://127.0.0.1:{otlp}/v1/traces", warmup.SerializeToString())
            for via in ("scrape", "remote_write"):
                prometheus.wait_for(
                    f'sum(traces_span_metrics_calls_total{{service_name="{red}",via="{via}"}})',
                    lambda r: bool(r) and r[0]["value"][1] == "2", timeout=30)
            spans, more = spans_request(red, SPANS)
            trace_ids |= more
            post(f"http://127.0.0.1:{otlp}/v1/traces", spans.SerializeToString())
            post(f"http://127.0.0.1:{otlp}/v1/metrics", known_metrics(known).SerializeToString())
            yield Run(red, known, trace_ids, f"http://127.0.0.1:{scrape}/metrics", proc)
        finally:
            prometheus.remove_target(target)
            print(proc.logs())


@pytest.mark.parametrize("via", ["scrape", "remote_write"])
def test_known_metrics_reach_prometheus(prometheus: PrometheusServer, run: Run,
                                        via: str) -> None:
    sel = f'job="{run.known_service}",via="{via}"'
    prometheus.wait_for(f"test_requests_total{{{sel}}}", lambda r: len(r) == 2)
    assert prometheus.values(f"test_requests_total{{{sel}}}", "route") == {"/a": 42, "/b": 7}
    prometheus.wait_for(f"test_latency_seconds_bucket{{{sel}}}", lambda r: len(r) == 4)
    assert prometheus.values(f"test_latency_seconds_bucket{{{sel}}}", "le") == KNOWN_BUCKETS
    assert prometheus.values(f"test_latency_seconds_count{{{sel}}}", "route") == {"/a": 10}
    assert prometheus.values(f"test_latency_seconds_sum{{{sel}}}", "route") == {"/a": 2.5}
    (info,) = prometheus.wait_for(f"target_info{{{sel}}}", lambda r: len(r) == 1)
    assert info["metric"]["host_name"] == "box-1"
    assert info["metric"]["instance"] == "i-1"
    (series,) = prometheus.query(f'test_requests_total{{{sel},route="/a"}}')
    assert series["metric"]["otel_scope_name"] == "integration"


@pytest.mark.parametrize("via", ["scrape", "remote_write"])
def test_red_metrics_from_spans(prometheus: PrometheusServer, run: Run, via: str) -> None:
    sel = f'service_name="{run.red_service}",via="{via}"'
    calls = f"sum by (status_code) (traces_span_metrics_calls_total{{{sel}}})"
    prometheus.wait_for(calls, lambda r: sum(float(x["value"][1]) for x in r) == TOTAL_SPANS)
    assert prometheus.values(calls, "status_code") == {
        "STATUS_CODE_UNSET": TOTAL_SPANS - ERRORS, "STATUS_CODE_ERROR": ERRORS}
    (one,) = prometheus.query(f"traces_span_metrics_calls_total{{{sel},"
                              'status_code="STATUS_CODE_ERROR"}')
    assert one["metric"]["span_name"] == "GET /cart"
    assert one["metric"]["span_kind"] == "SPAN_KIND_SERVER"
    buckets = f"sum by (le) (traces_span_metrics_duration_seconds_bucket{{{sel}}})"
    by_le = prometheus.values(buckets, "le")
    assert {le: by_le[le] for le in RED_BUCKETS} == RED_BUCKETS
    assert prometheus.values(f"sum(traces_span_metrics_duration_seconds_count{{{sel}}})",
                             "") == {"": TOTAL_SPANS}
    # On the raw buckets: the 30.4th of 32 durations lies between 0.5 s and 0.8 s, the
    # median between 0.1 s and 0.2 s.
    (p95,) = prometheus.query(f"histogram_quantile(0.95, {buckets})")
    assert 0.5 < float(p95["value"][1]) <= 0.8
    (p50,) = prometheus.query(f"histogram_quantile(0.5, {buckets})")
    assert 0.1 < float(p50["value"][1]) <= 0.2
    # As a dashboard asks it, over the rate of the second wave (30 spans): the same.
    rated = ("sum by (le) (rate(traces_span_metrics_duration_seconds_bucket"
             f"{{{sel}}}[1m]))")
    (p95,) = prometheus.query(f"histogram_quantile(0.95, {rated})")
    assert 0.5 < float(p95["value"][1]) <= 0.8
    (p50,) = prometheus.query(f"histogram_quantile(0.5, {rated})")
    assert 0.1 < float(p50["value"][1]) <= 0.2
    # The exemplars (OpenMetrics on the scrape, exemplars in the remote-write request)
    # name the traces we sent.
    now = time.time()
    found = prometheus.api("/api/v1/query_exemplars",
                           query=f"traces_span_metrics_duration_seconds_bucket{{{sel}}}",
                           start=str(now - 600), end=str(now + 60))
    exemplar_traces = {e["labels"]["trace_id"] for s in found for e in s["exemplars"]}
    assert exemplar_traces
    assert exemplar_traces <= run.trace_ids


def test_scrape_endpoint_serves_openmetrics_with_exemplars(run: Run) -> None:
    req = urllib.request.Request(run.scrape_url, headers={
        "Accept": "application/openmetrics-text;version=1.0.0"})

    def scraped() -> tuple[str, str]:
        with urllib.request.urlopen(req, timeout=5) as resp:
            text = resp.read().decode()
            content_type = resp.headers["Content-Type"]
        assert run.red_service in text, "not scraped yet"
        return text, content_type

    text, content_type = eventually(scraped, timeout=10, interval=0.1,
                                    what=f"{run.red_service} on the scrape endpoint")
    assert content_type.startswith("application/openmetrics-text")
    assert "# TYPE traces_span_metrics_duration_seconds histogram" in text
    bucket_lines = [ln for ln in text.splitlines()
                    if ln.startswith("traces_span_metrics_duration_seconds_bucket{")
                    and run.red_service in ln]
    assert any(" # {" in ln and "trace_id=" in ln for ln in bucket_lines)


def test_expired_series_disappear(prometheus: PrometheusServer, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    otlp, scrape, health = free_port(), free_port(), free_port()
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{otlp}"}}}},
        "exporters": {"prometheus": {"endpoint": f"127.0.0.1:{scrape}",
                                     "metric_expiration": "2s"}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"extensions": ["health"], "pipelines": {
            "metrics": {"receivers": ["otlp"], "exporters": ["prometheus"]}}},
    }
    service = f"expiring-{tag}"
    target = f"otelpipe-{tag}"
    with OtelpipeProcess(config, tmp_path, wait_ports=(otlp, scrape, health)):
        prometheus.add_target(target, scrape, {"via": "scrape"})
        try:
            sel = f'test_expiring{{job="{service}"}}'

            def send(name: str) -> None:
                post(f"http://127.0.0.1:{otlp}/v1/metrics", request(
                    [gauge_metric(name, [({"k": "v"}, 5.0)], ts=time.time_ns())],
                    resource={"service.name": service}).SerializeToString())

            # New targets take Prometheus up to ~5 s (its scrape manager's reload tick);
            # the series must not expire before the first scrape.
            eventually(lambda: prometheus.scraping(scrape), timeout=20, interval=0.2,
                       what="prometheus to scrape the target")
            send("test.expiring")
            sent = time.monotonic()
            prometheus.wait_for(sel, lambda r: len(r) == 1, timeout=10)
            # Gone from the scrape once 2 s passed without an update, while a series
            # that keeps being updated stays.
            def expired() -> dict[Any, float]:
                send("test.kept")
                status, body = http_get(f"http://127.0.0.1:{scrape}/metrics")
                assert status == 200
                samples = parse_text(body.decode())
                assert sample(samples, "test_expiring", job=service) is None, "still there"
                return samples

            samples = eventually(expired, timeout=max(0.0, sent + 10 - time.monotonic()),
                                 interval=0.2, what="the series to expire within 10s")
            assert time.monotonic() - sent >= 1.9
            assert sample(samples, "test_kept", job=service) == 5
            # Prometheus marks it stale on its next scrape: the instant query is empty.
            prometheus.wait_for(sel, lambda r: r == [], timeout=10)
            _, own = http_get(f"http://127.0.0.1:{health}/metrics")
            assert (sample(parse_text(own.decode()),
                           "otelpipe_prometheus_exporter_expired_series_total",
                           exporter="prometheus") or 0) >= 1
        finally:
            prometheus.remove_target(target)


def test_rejected_remote_write_is_dropped_and_counted_not_retried(
        prometheus: PrometheusServer, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    otlp, health = free_port(), free_port()
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{otlp}"}}}},
        "exporters": {"prometheusremotewrite": {
            "endpoint": prometheus.remote_write_url,
            "retry_on_failure": {"initial_interval": "50ms", "max_interval": "100ms"}}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"extensions": ["health"], "pipelines": {
            "metrics": {"receivers": ["otlp"], "exporters": ["prometheusremotewrite"]}}},
    }
    service = f"dup-{tag}"
    ts = time.time_ns()

    def send(value: float, at: int) -> None:
        post(f"http://127.0.0.1:{otlp}/v1/metrics", request(
            [gauge_metric("test.dup", [({}, value)], ts=at)],
            resource={"service.name": service}).SerializeToString())

    def own_metrics() -> dict[Any, float]:
        status, body = http_get(f"http://127.0.0.1:{health}/metrics")
        assert status == 200
        return parse_text(body.decode())

    def requests_with(status: str) -> float:
        return sample(own_metrics(), "otelpipe_prometheusremotewrite_requests_total",
                      exporter="prometheusremotewrite", status_code=status) or 0

    sel = f'test_dup{{job="{service}"}}'
    with OtelpipeProcess(config, tmp_path, wait_ports=(otlp, health)) as proc:
        send(1.0, ts)
        prometheus.wait_for(sel, lambda r: len(r) == 1 and r[0]["value"][1] == "1")
        # Same series, same timestamp, another value: Prometheus answers 400.
        send(2.0, ts)
        eventually(lambda: requests_with("400") >= 1, timeout=10, interval=0.1,
                   what=lambda: f"a 400 answer:\n{proc.logs()}")
        # The next batch flows; the rejected one was not retried (retries would come
        # every 50-100 ms and show up as more 400s).
        send(3.0, ts + 1000 * MS)
        prometheus.wait_for(sel, lambda r: len(r) == 1 and r[0]["value"][1] == "3")
        own = own_metrics()
        assert sample(own, "otelpipe_prometheusremotewrite_requests_total",
                      status_code="400") == 1
        assert (sample(own, "otelpipe_prometheusremotewrite_requests_total",
                       status_code="204") or 0) + \
            (sample(own, "otelpipe_prometheusremotewrite_requests_total",
                    status_code="200") or 0) == 2
        assert sample(own, "otelpipe_exporter_send_failed_items_total",
                      exporter="prometheusremotewrite", signal="metrics") == 1
        assert sample(own, "otelpipe_prometheusremotewrite_rejected_samples_total",
                      exporter="prometheusremotewrite") == 1
        assert "remote-write endpoint rejected a request" in proc.logs()
