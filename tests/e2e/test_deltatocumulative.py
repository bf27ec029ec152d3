"""`deltatocumulative` in a real `otelpipe run`: OTLP/HTTP delta metrics in, a scrape of
the `prometheus` exporter out. The same requests also go, in a second pipeline, straight
to another `prometheus` exporter (which adds up deltas itself, but every one it gets):
a retried request and a late delta show the difference."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from tests.promdata import histogram_metric, parse_text, request, sample, sum_metric
from tests.support import OtelpipeProcess, free_port, http_get

DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
T0 = 1_700_000_000_000_000_000
S = 1_000_000_000  # one second in ns
BOUNDS = [0.1, 1.0]


def delta_request(k: int, calls: dict[str, int], buckets: list[int]) -> bytes:
    """The k-th delta window [T0 + k s, T0 + (k + 1) s]."""
    start, end = T0 + k * S, T0 + (k + 1) * S
    raw: bytes = request([
        sum_metric("calls", [({"route": r}, n) for r, n in calls.items()], ts=end,
                   start=start, temporality=DELTA),
        histogram_metric("latency", [({"route": "/a"}, buckets, 0.5 * sum(buckets))],
                         bounds=BOUNDS, ts=end, start=start, temporality=DELTA),
    ], resource={"service.name": "shop"}).SerializeToString()
    return raw


def post(port: int, body: bytes) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/metrics", data=body,
                                 headers={"Content-Type": "application/x-protobuf"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200


def test_deltas_become_cumulative_and_a_retry_or_late_delta_counts_once(
        tmp_path: Path) -> None:
    otlp, prom, raw_prom, health = free_port(), free_port(), free_port(), free_port()
    cfg = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{otlp}"}}}},
        "processors": {"deltatocumulative": {"max_stale": "5m"}},
        "exporters": {
            "prometheus": {"endpoint": f"127.0.0.1:{prom}",
                           "target_info": {"enabled": False}},
            "prometheus/raw": {"endpoint": f"127.0.0.1:{raw_prom}",
                               "target_info": {"enabled": False}}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"extensions": ["health"], "pipelines": {
            "metrics": {"receivers": ["otlp"], "processors": ["deltatocumulative"],
                        "exporters": ["prometheus"]},
            "metrics/raw": {"receivers": ["otlp"], "exporters": ["prometheus/raw"]}}},
    }
    first = delta_request(0, {"/a": 3, "/b": 1}, [1, 2, 0])
    second = delta_request(1, {"/a": 4}, [0, 1, 3])
    late = delta_request(0, {"/a": 100}, [50, 0, 0])  # a window already passed
    with OtelpipeProcess(cfg, tmp_path, wait_ports=(otlp, prom, raw_prom, health)):
        post(otlp, first)
        post(otlp, second)
        post(otlp, second)  # a client retry: the same request again
        post(otlp, late)
        got = parse_text(http_get(f"http://127.0.0.1:{prom}/metrics")[1].decode())
        raw = parse_text(http_get(f"http://127.0.0.1:{raw_prom}/metrics")[1].decode())
        own = parse_text(http_get(f"http://127.0.0.1:{health}/metrics")[1].decode())

    assert sample(got, "calls_total", route="/a") == 3 + 4
    assert sample(got, "calls_total", route="/b") == 1
    assert sample(got, "latency_seconds_count", route="/a") == 3 + 4
    buckets = {le: sample(got, "latency_seconds_bucket", route="/a", le=le)
               for le in ("0.1", "1.0", "+Inf")}
    assert buckets == {"0.1": 1, "1.0": 1 + 2 + 1, "+Inf": 7}
    assert sample(got, "latency_seconds_sum", route="/a") == 0.5 * 7
    # Without the processor every request is added, the retry and the late one too.
    assert sample(raw, "calls_total", route="/a") == 3 + 4 + 4 + 100

    def points(outcome: str) -> float | None:
        return sample(own, "otelpipe_processor_deltatocumulative_datapoints_total",
                      outcome=outcome)

    assert points("started") == 3          # /a, /b calls; /a latency
    assert points("accumulated") == 2      # second: /a calls, /a latency
    assert points("out_of_order") == 2 + 2  # the retry's two points, the late two
    assert sample(own, "otelpipe_processor_deltatocumulative_streams") == 3
