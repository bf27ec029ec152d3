"""`prometheus` exporter and the OTLP → Prometheus translation it shares."""

from __future__ import annotations

import gzip
import math
from typing import Any

import aiohttp
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from pydantic import ValidationError

from pipeline.component import Signal
from pipeline.exporters.prometheus import PrometheusConfig, PrometheusExporter, factory
from pipeline.pdata.batch import Batch
from pipeline.pdata.prometheus.names import label_name, metric_name
from pipeline.pdata.prometheus.translate import exponential_to_explicit
from pipeline.registry import default_registry
from pipeline.telemetry.metrics import Telemetry
from tests.promdata import (
    DELTA,
    gauge_metric,
    histogram_metric,
    parse_text,
    request,
    sample,
    sum_metric,
)
from tests.support import exporter_settings, free_port

TS = 1_700_000_000_000_000_000
SECOND = 1_000_000_000
TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
SPAN = bytes.fromhex("b7ad6b7169203331")
RESOURCE = {"service.name": "checkout", "service.namespace": "shop",
            "service.instance.id": "i-1", "host.name": "h1"}
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(telemetry: Telemetry | None = None, clock: FakeClock | None = None,
         **cfg: Any) -> PrometheusExporter:
    config = PrometheusConfig.model_validate(cfg)
    return PrometheusExporter(exporter_settings("prometheus", telemetry=telemetry),
                              config, clock=clock or FakeClock())


def scrape(exp: PrometheusExporter, accept: str = "") -> dict[Any, float]:
    body, _ = exp.render(accept)
    return parse_text(body.decode())


def red_request(calls: int = 7, errors: int = 2, counts: list[int] | None = None,
                ts: int = TS, temporality: int = 2) -> Any:
    base = {"service.name": "checkout", "span.name": "GET /cart", "span.kind": "SPAN_KIND_SERVER"}
    return request([
        sum_metric("traces.span.metrics.calls",
                   [({**base, "status.code": "STATUS_CODE_UNSET"}, calls - errors),
                    ({**base, "status.code": "STATUS_CODE_ERROR"}, errors)],
                   ts=ts, temporality=temporality, exemplar=(0.12, TRACE, SPAN)),
        histogram_metric("traces.span.metrics.duration",
                         [({**base, "status.code": "STATUS_CODE_UNSET"},
                           counts or [3, 1, 1, 0], 0.9)],
                         bounds=[0.1, 0.2, 0.5], ts=ts, temporality=temporality,
                         exemplars=[(0.15, TRACE, SPAN), (0.05, TRACE, SPAN)]),
    ], resource=RESOURCE, scope="otelpipe/redmetrics", scope_version="1.0")


# --- naming -----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "unit", "kind", "expected"), [
    ("traces.span.metrics.calls", "", "counter", "traces_span_metrics_calls"),
    ("traces.span.metrics.calls", "{call}", "counter", "traces_span_metrics_calls"),
    ("traces.span.metrics.duration", "s", "histogram", "traces_span_metrics_duration_seconds"),
    ("http.server.duration", "ms", "histogram", "http_server_duration_milliseconds"),
    ("http.server.request.size", "By", "histogram", "http_server_request_size_bytes"),
    ("db.replication.lag", "s", "gauge", "db_replication_lag_seconds"),
    ("db.replication.lag_bytes", "By", "gauge", "db_replication_lag_bytes"),
    ("request_duration_seconds", "s", "histogram", "request_duration_seconds"),
    ("throughput", "m/s", "gauge", "throughput_meters_per_second"),
    ("rate", "1/s", "gauge", "rate_per_second"),
    ("requests_total", "", "counter", "requests"),
    ("2xx.responses", "", "gauge", "_2xx_responses"),
    ("temp", "Cel", "gauge", "temp_celsius"),
    ("weird", "foo.bar", "gauge", "weird_foo_bar"),
])
def test_metric_names(name: str, unit: str, kind: str, expected: str) -> None:
    assert metric_name(name, unit, kind) == expected


def test_gauge_of_unit_one_is_a_ratio_and_namespace_prefixes() -> None:
    assert metric_name("system.cpu.utilization", "1", "gauge", gauge_ratio=True) == \
        "system_cpu_utilization_ratio"
    assert metric_name("calls", "", "counter", namespace="otel.pipe") == "otel_pipe_calls"


@pytest.mark.parametrize(("key", "expected"), [
    ("service.name", "service_name"), ("http.response.status_code", "http_response_status_code"),
    ("0day", "key_0day"), ("_private", "key_private"), ("__reserved", "__reserved"),
    ("ünïcode-key", "key_n_code_key"), ("", "key_"),
])
def test_label_names(key: str, expected: str) -> None:
    assert label_name(key) == expected


# --- exposition -------------------------------------------------------------------


def test_text_format_counters_histograms_and_target_info() -> None:
    exp = make()
    exp.consume_request(red_request())
    s = scrape(exp)
    common = {"job": "shop/checkout", "instance": "i-1", "service_name": "checkout",
              "span_name": "GET /cart", "span_kind": "SPAN_KIND_SERVER",
              "otel_scope_name": "otelpipe/redmetrics", "otel_scope_version": "1.0"}
    assert sample(s, "traces_span_metrics_calls_total", **common,
                  status_code="STATUS_CODE_ERROR") == 2
    assert sample(s, "traces_span_metrics_calls_total", status_code="STATUS_CODE_UNSET") == 5
    h = "traces_span_metrics_duration_seconds"
    assert [sample(s, f"{h}_bucket", le=le) for le in ("0.1", "0.2", "0.5", "+Inf")] == \
        [3, 4, 5, 5]
    assert sample(s, f"{h}_count", **common) == 5
    assert sample(s, f"{h}_sum") == pytest.approx(0.9)
    # host.name is not identifying: it goes to target_info, not onto every series.
    assert sample(s, "target_info", job="shop/checkout", instance="i-1", host_name="h1") == 1
    assert not any("host_name" in dict(ls) for (n, ls) in s if n != "target_info")


def test_openmetrics_has_exemplars_on_buckets_and_counters() -> None:
    exp = make()
    exp.consume_request(red_request())
    body, content_type = exp.render(OPENMETRICS)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    text = body.decode()
    assert text.endswith("# EOF\n")
    assert "# TYPE traces_span_metrics_duration_seconds histogram" in text
    assert "# UNIT traces_span_metrics_duration_seconds seconds" in text
    assert "# TYPE target info" in text
    lines = {ln.split("{")[0] + "|" + ln.split('le="')[1].split('"')[0]: ln
             for ln in text.splitlines() if "_bucket{" in ln}
    # 0.15 lands in (0.1, 0.2], 0.05 in (-inf, 0.1]; buckets without one have none.
    assert f'trace_id="{TRACE.hex()}"' in lines["traces_span_metrics_duration_seconds_bucket|0.2"]
    assert f'trace_id="{TRACE.hex()}"}} 0.15' in \
        lines["traces_span_metrics_duration_seconds_bucket|0.2"]
    assert "} 0.05 " in lines["traces_span_metrics_duration_seconds_bucket|0.1"]
    assert " # " not in lines["traces_span_metrics_duration_seconds_bucket|0.5"]
    counter = next(ln for ln in text.splitlines()
                   if ln.startswith("traces_span_metrics_calls_total{"))
    assert f'# {{span_id="{SPAN.hex()}",trace_id="{TRACE.hex()}"}} 0.12' in counter
    # The plain text format carries no exemplars.
    assert " # {" not in exp.render("text/plain")[0].decode()


def test_cumulative_points_replace_and_older_points_are_ignored(telemetry: Telemetry) -> None:
    exp = make(telemetry)
    exp.consume_request(red_request(calls=7, ts=TS))
    exp.consume_request(red_request(calls=10, ts=TS + SECOND))
    exp.consume_request(red_request(calls=3, ts=TS - SECOND))  # late: ignored
    s = scrape(exp)
    assert sample(s, "traces_span_metrics_calls_total", status_code="STATUS_CODE_UNSET") == 8
    dropped = telemetry.registry.get_sample_value(
        "otelpipe_prometheus_exporter_dropped_points_total", {"exporter": "prometheus"})
    assert dropped == 4  # 2 sums + 1 histogram + target_info of the late request


def test_delta_sums_and_histograms_accumulate() -> None:
    exp = make()
    exp.consume_request(red_request(calls=7, errors=2, counts=[1, 1, 0, 0], temporality=DELTA))
    exp.consume_request(red_request(calls=3, errors=1, counts=[0, 2, 1, 1],
                                    ts=TS + SECOND, temporality=DELTA))
    s = scrape(exp)
    assert sample(s, "traces_span_metrics_calls_total", status_code="STATUS_CODE_ERROR") == 3
    assert sample(s, "traces_span_metrics_calls_total", status_code="STATUS_CODE_UNSET") == 7
    h = "traces_span_metrics_duration_seconds"
    assert [sample(s, f"{h}_bucket", le=le) for le in ("0.1", "0.2", "0.5", "+Inf")] == \
        [1, 4, 5, 6]
    assert sample(s, f"{h}_count") == 6
    assert sample(s, f"{h}_sum") == pytest.approx(1.8)


def test_delta_histogram_with_new_bounds_restarts() -> None:
    exp = make()

    def mk(bounds: list[float], counts: list[int], ts: int) -> ExportMetricsServiceRequest:
        return request([histogram_metric("lat", [({}, counts, 1.0)], bounds=bounds, ts=ts,
                                         temporality=DELTA)])
    exp.consume_request(mk([1.0], [1, 1], TS))
    exp.consume_request(mk([1.0, 2.0], [1, 0, 0], TS + SECOND))
    s = scrape(exp)
    assert sample(s, "lat_seconds_count") == 1
    assert sample(s, "lat_seconds_bucket", le="2.0") == 1


def test_series_expire_after_metric_expiration(telemetry: Telemetry) -> None:
    clock = FakeClock()
    exp = make(telemetry, clock, metric_expiration="1m")
    exp.consume_request(red_request())
    clock.now += 30
    exp.consume_request(request([gauge_metric("queue.depth", [({}, 4.0)], ts=TS)]))
    assert sample(scrape(exp), "traces_span_metrics_calls_total",
                  status_code="STATUS_CODE_ERROR") == 2
    clock.now += 31  # the RED series are 61 s old, the gauge 31 s
    s = scrape(exp)
    assert sample(s, "traces_span_metrics_calls_total", status_code="STATUS_CODE_ERROR") is None
    assert sample(s, "target_info") is None
    assert sample(s, "queue_depth") == 4
    assert "traces_span_metrics" not in exp.render(OPENMETRICS)[0].decode()
    expired = telemetry.registry.get_sample_value(
        "otelpipe_prometheus_exporter_expired_series_total", {"exporter": "prometheus"})
    assert expired == 4
    assert telemetry.registry.get_sample_value(
        "otelpipe_prometheus_exporter_series", {"exporter": "prometheus"}) == 1
    # An update brings a series back.
    exp.consume_request(red_request(ts=TS + 60 * SECOND))
    assert sample(scrape(exp), "traces_span_metrics_calls_total",
                  status_code="STATUS_CODE_ERROR") == 2


def test_no_recorded_value_removes_the_series() -> None:
    exp = make()
    exp.consume_request(request([gauge_metric("up", [({"db": "a"}, 1.0), ({"db": "b"}, 1.0)],
                                              ts=TS)]))
    exp.consume_request(request([gauge_metric("up", [({"db": "a"}, 0.0)], ts=TS + SECOND,
                                              stale=True)]))
    s = scrape(exp)
    assert sample(s, "up", db="a") is None
    assert sample(s, "up", db="b") == 1


def test_resource_to_telemetry_conversion_namespace_and_const_labels() -> None:
    exp = make(namespace="otelpipe", const_labels={"env": "test"},
               resource_to_telemetry_conversion={"enabled": True}, add_scope_labels=False)
    exp.consume_request(red_request())
    s = scrape(exp)
    v = sample(s, "otelpipe_traces_span_metrics_calls_total", status_code="STATUS_CODE_ERROR",
               host_name="h1", service_namespace="shop", service_instance_id="i-1",
               env="test", job="shop/checkout")
    assert v == 2
    assert sample(s, "target_info") is None
    assert not any("otel_scope_name" in dict(ls) for (_, ls) in s)


def test_point_attributes_win_and_colliding_keys_are_joined() -> None:
    exp = make(target_info={"enabled": False})
    exp.consume_request(request([gauge_metric(
        "g", [({"a.b": "1", "a_b": "2", "job": "mine"}, 1.0)], ts=TS)],
        resource={"service.name": "svc"}))
    ((name, labels),) = scrape(exp).keys()
    assert name == "g"
    assert dict(labels) == {"a_b": "1;2", "job": "mine"}


def test_type_conflict_keeps_the_first_type(telemetry: Telemetry) -> None:
    exp = make(telemetry)
    exp.consume_request(request([gauge_metric("x", [({"k": "1"}, 1.0)], ts=TS)]))
    exp.consume_request(request([sum_metric("x", [({"k": "2"}, 5)], ts=TS, monotonic=False,
                                            temporality=2),
                                 histogram_metric("x", [({}, [1, 1], 1.0)], bounds=[1.0],
                                                  ts=TS, unit="")]))
    s = scrape(exp)
    assert sample(s, "x", k="1") == 1
    assert sample(s, "x", k="2") == 5  # a non-monotonic sum is a gauge too
    assert sample(s, "x_bucket") is None


def test_summary_and_int_points() -> None:
    m = Metric(name="rpc.latency", unit="ms")
    dp = m.summary.data_points.add(time_unix_nano=TS, count=10, sum=55.0)
    dp.quantile_values.add(quantile=0.5, value=4.0)
    dp.quantile_values.add(quantile=0.99, value=9.5)
    exp = make()
    exp.consume_request(request([m, sum_metric("reqs", [({}, 12)], ts=TS)]))
    s = scrape(exp)
    assert sample(s, "rpc_latency_milliseconds", quantile="0.99") == 9.5
    assert sample(s, "rpc_latency_milliseconds_count") == 10
    assert sample(s, "reqs_total") == 12


def test_exponential_histogram_becomes_classic_buckets() -> None:
    m = Metric(name="latency", unit="s")
    eh = m.exponential_histogram
    eh.aggregation_temporality = 2  # type: ignore[assignment]
    dp = eh.data_points.add(time_unix_nano=TS, scale=0, count=7, sum=10.0, zero_count=1)
    dp.positive.offset = 0  # buckets (1,2], (2,4], (4,8]
    dp.positive.bucket_counts.extend([2, 3, 0])
    dp.negative.offset = 1  # bucket [-4,-2)
    dp.negative.bucket_counts.extend([1])
    bounds, counts = exponential_to_explicit(dp)
    assert bounds == (-2.0, 0.0, 2.0, 4.0, 8.0)
    assert counts == [1, 1, 2, 3, 0, 0]
    exp = make()
    exp.consume_request(request([m]))
    s = scrape(exp)
    assert [sample(s, "latency_seconds_bucket", le=le) for le in ("-2.0", "0.0", "2.0", "4.0",
                                                                   "8.0", "+Inf")] == \
        [1, 2, 4, 7, 7, 7]
    assert sample(s, "latency_seconds_count") == 7


def test_exponential_histogram_huge_scale_stays_finite() -> None:
    m = Metric(name="h")
    dp = m.exponential_histogram.data_points.add(scale=-10, count=3)
    dp.positive.offset = 0
    dp.positive.bucket_counts.extend([1, 2])  # upper edges 2**1024, 2**2048: inf
    bounds, counts = exponential_to_explicit(dp)
    assert all(math.isfinite(b) for b in bounds)
    assert bounds == (0.0,)
    assert counts == [0, 3]


# --- component ----------------------------------------------------------------------


def test_config_defaults_and_errors() -> None:
    c = PrometheusConfig()
    assert c.endpoint == "localhost:8889"
    assert c.path == "/metrics"
    assert c.metric_expiration == 300
    with pytest.raises(ValidationError, match="path must start with /"):
        PrometheusConfig(path="metrics")
    with pytest.raises(ValidationError, match="extra"):
        PrometheusConfig.model_validate({"enable_open_metrics": True})
    assert PrometheusConfig.model_validate({"metric_expiration": "90s"}).metric_expiration == 90
    assert default_registry().get(factory.kind, "prometheus") is factory
    assert factory.supports(Signal.METRICS)
    assert not factory.supports(Signal.TRACES)


async def test_scrape_endpoint_negotiates_format_and_gzip(telemetry: Telemetry) -> None:
    port = free_port()
    exp = make(telemetry, endpoint=f"127.0.0.1:{port}")
    await exp.start(None)  # type: ignore[arg-type]
    try:
        await exp.consume(Batch(Signal.METRICS, raw=red_request().SerializeToString()))
        async with aiohttp.ClientSession(auto_decompress=False) as http:
            url = f"http://127.0.0.1:{port}/metrics"
            async with http.get(url, headers={"Accept-Encoding": "identity"}) as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                text = await r.text()
            assert "traces_span_metrics_calls_total{" in text
            async with http.get(url, headers={"Accept": OPENMETRICS,
                                              "Accept-Encoding": "gzip"}) as r:
                assert r.headers["Content-Type"].startswith("application/openmetrics-text")
                assert r.headers["Content-Encoding"] == "gzip"
                text = gzip.decompress(await r.read()).decode()
            assert text.endswith("# EOF\n")
            assert f'trace_id="{TRACE.hex()}"' in text
            async with http.get(f"http://127.0.0.1:{port}/other") as r:
                assert r.status == 404
    finally:
        await exp.shutdown()
    assert telemetry.registry.get_sample_value(
        "otelpipe_exporter_sent_items_total",
        {"exporter": "prometheus", "signal": "metrics"}) == 3


def test_rendering_is_cached_until_series_change() -> None:
    exp = make()
    exp.consume_request(red_request())
    first, _ = exp.render_chunks()
    assert exp.render_chunks()[0] is first
    exp.consume_request(red_request(calls=9, ts=TS + SECOND))
    second, _ = exp.render_chunks()
    assert second is not first
    assert b"} 7.0" in b"".join(second)


def test_exemplars_survive_points_without_them() -> None:
    """A connector flushes cumulative points every interval; only the flush that saw
    new spans carries exemplars. The scrape keeps the last exemplar per bucket."""
    exp = make()
    exp.consume_request(red_request())
    later = red_request(ts=TS + SECOND)
    for rm in later.resource_metrics:
        for m in rm.scope_metrics[0].metrics:
            for dp in getattr(m, m.WhichOneof("data")).data_points:
                del dp.exemplars[:]
    exp.consume_request(later)
    text = exp.render(OPENMETRICS)[0].decode()
    assert text.count(f'trace_id="{TRACE.hex()}"') == 4  # two buckets, two counters


async def test_large_scrapes_render_in_chunks() -> None:
    exp = make()
    exp.consume_request(request([gauge_metric("g", [({"i": i}, float(i)) for i in range(6000)],
                                              ts=TS)]))
    chunks, _ = await exp.render_async()
    assert len(chunks) > 5
    assert chunks is exp.render_chunks()[0]  # cached: the same chunks until something changes
    s = parse_text(b"".join(chunks).decode())
    assert len(s) == 6000
    assert sample(s, "g", i="5999") == 5999


def test_reserved_label_attributes_do_not_break_histograms() -> None:
    exp = make()
    exp.consume_request(request([histogram_metric("h", [({"le": "x", "quantile": "q"},
                                                         [1, 1], 1.0)], bounds=[1.0], ts=TS)]))
    body, _ = exp.render()
    assert 'le="x"' not in body.decode()
    assert sample(parse_text(body.decode()), "h_seconds_bucket", le="1.0") == 1


def test_series_expire_on_the_data_path_without_scrapes(telemetry: Telemetry) -> None:
    clock = FakeClock()
    exp = make(telemetry, clock, metric_expiration="10s")
    exp.consume_request(request([gauge_metric("a", [({"i": i}, 1.0) for i in range(50)],
                                              ts=TS)]))
    clock.now += 11
    exp.consume_request(request([gauge_metric("b", [({}, 1.0)], ts=TS)]))
    assert len(exp.acc) == 1
    assert telemetry.registry.get_sample_value(
        "otelpipe_prometheus_exporter_expired_series_total", {"exporter": "prometheus"}) == 50


def test_max_series_caps_the_scrape_with_one_overflow_series_per_metric(
        telemetry: Telemetry, caplog: pytest.LogCaptureFixture) -> None:
    assert PrometheusConfig().max_series == 100_000
    exp = make(telemetry, max_series=100, target_info={"enabled": False})
    for start in range(0, 1000, 250):
        exp.consume_request(request([
            sum_metric("requests", [({"user": str(i)}, 1) for i in range(start, start + 250)],
                       ts=TS)]))
    exp.consume_request(request([gauge_metric("late", [({}, 1.0)], ts=TS)]))  # no room
    s = scrape(exp)
    regular = [k for k in s if ("otel_metric_overflow", "true") not in k[1]]
    assert len(regular) == 100
    assert sample(s, "requests_total", otel_metric_overflow="true") == 900
    assert len(s) == 101

    def metric(name: str) -> float | None:
        return telemetry.registry.get_sample_value(name, {"exporter": "prometheus"})
    assert metric("otelpipe_prometheus_exporter_overflow_points_total") == 901
    assert not metric("otelpipe_prometheus_exporter_dropped_points_total")
    assert metric("otelpipe_prometheus_exporter_series") == 101
    assert caplog.text.count("max_series reached") == 1


def test_max_series_zero_means_no_limit() -> None:
    exp = make(max_series=0, target_info={"enabled": False})
    exp.consume_request(request([sum_metric("r", [({"u": str(i)}, 1) for i in range(500)],
                                            ts=TS)]))
    assert len(scrape(exp)) == 500
