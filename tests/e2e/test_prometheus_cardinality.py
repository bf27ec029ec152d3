"""The prometheus exporter's series cap against a real `otelpipe run` (issue 11, item 7).

300k distinct series in, `max_series: 10000`: a scrape has exactly 10,000
series plus one overflow series per metric, which counts the rest; memory
and the scrape body stay bounded."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

from tests.promdata import parse_text, request, sum_metric
from tests.support import OtelpipeProcess, free_port, http_get

MAX_SERIES = 10_000
METRICS = ("requests", "errors", "bytes")
PER_METRIC = 3_334  # points per metric per request
REQUESTS = 30  # 30 x 3 x 3,334 = 300,060 distinct series
TS = 1_700_000_000_000_000_000
RSS_GROWTH_MIB = 60  # measured: 14 MiB; 300k held series would need about 240 MB


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def body(n: int) -> bytes:
    base = n * PER_METRIC
    raw: bytes = request([
        sum_metric(name, [({"user": f"u{base + i}"}, 1) for i in range(PER_METRIC)], ts=TS)
        for name in METRICS]).SerializeToString()
    return raw


def test_300k_series_are_capped_at_max_series_plus_overflow(tmp_path: Path) -> None:
    otlp, prom, health = free_port(), free_port(), free_port()
    cfg = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{otlp}"}}}},
        "exporters": {"prometheus": {"endpoint": f"127.0.0.1:{prom}", "max_series": MAX_SERIES,
                                     "target_info": {"enabled": False}}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"extensions": ["health"], "pipelines": {"metrics": {
            "receivers": ["otlp"], "exporters": ["prometheus"]}}},
    }
    bodies = [body(n) for n in range(REQUESTS)]
    with OtelpipeProcess(cfg, tmp_path, wait_ports=(otlp, prom, health)) as proc:
        # Warm up (first request, first scrape), then measure from there.
        http_get(f"http://127.0.0.1:{prom}/metrics")
        baseline = rss_mib(proc.pid)
        for raw in bodies:
            req = urllib.request.Request(f"http://127.0.0.1:{otlp}/v1/metrics", data=raw,
                                         headers={"Content-Type": "application/x-protobuf"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                assert resp.status == 200
        start = time.monotonic()
        status, scrape = http_get(f"http://127.0.0.1:{prom}/metrics", timeout=30)
        scrape_seconds = time.monotonic() - start
        grown = rss_mib(proc.pid) - baseline
        own = http_get(f"http://127.0.0.1:{health}/metrics")[1]
        logs = proc.logs()
    assert status == 200
    samples = parse_text(scrape.decode())
    overflow = {name: v for (name, labels), v in samples.items()
                if ("otel_metric_overflow", "true") in labels}
    regular = [k for k in samples if ("otel_metric_overflow", "true") not in k[1]]
    total = REQUESTS * len(METRICS) * PER_METRIC
    assert len(regular) == MAX_SERIES
    assert set(overflow) == {f"{m}_total" for m in METRICS}
    assert sum(overflow.values()) == total - MAX_SERIES
    assert len(scrape) < 2 * 1024 * 1024, len(scrape)
    assert scrape_seconds < 5.0
    assert grown < RSS_GROWTH_MIB, f"RSS grew {grown:.0f} MiB"
    own_samples = parse_text(own.decode())
    assert own_samples[("otelpipe_prometheus_exporter_overflow_points_total",
                        frozenset({("exporter", "prometheus")}))] == total - MAX_SERIES
    assert own_samples[("otelpipe_prometheus_exporter_series",
                        frozenset({("exporter", "prometheus")}))] == MAX_SERIES + len(METRICS)
    assert logs.count("max_series reached") == 1
