"""`logmetrics` through a real `otelpipe run` into a real Prometheus.

A known log stream (cache hits and misses per cache, 429 responses per route,
plain noise) goes in as NDJSON on the `jsonlogs` receiver; Prometheus scrapes the
`prometheus` exporter and PromQL must return the exact count per dimension.
"""

from __future__ import annotations

import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest

from tests.promdata import PrometheusServer
from tests.support import OtelpipeProcess, free_port

# (cache.name, event) -> count, 429s per route, and records that match nothing.
CACHE = {("sessions", "cache.hit"): 17, ("sessions", "cache.miss"): 3,
         ("catalog", "cache.hit"): 5, ("catalog", "cache.miss"): 9}
THROTTLED = {"/api/cart": 4, "/api/search": 2}
NOISE = 11


def stream(service: str) -> bytes:
    lines: list[dict[str, str | int]] = []
    for (cache, event), n in CACHE.items():
        lines += [{"msg": "lookup", "service": service, "event": event, "cache.name": cache}] * n
    for route, n in THROTTLED.items():
        lines += [{"msg": "throttled", "service": service, "http.route": route,
                   "http.response.status_code": 429}] * n
    # 200s on a throttled route and unrelated events must not be counted.
    lines += [{"msg": "ok", "service": service, "http.route": "/api/cart",
               "http.response.status_code": 200, "event": "request"}] * NOISE
    return b"\n".join(orjson.dumps(line) for line in lines)


def test_log_stream_counts_per_dimension_in_prometheus(prometheus: PrometheusServer,
                                                       tmp_path: Path) -> None:
    logs_port, scrape = free_port(), free_port()
    service = f"shop-{uuid.uuid4().hex[:8]}"
    config = {
        "receivers": {"jsonlogs": {"endpoint": f"127.0.0.1:{logs_port}"}},
        "connectors": {"logmetrics": {
            "metrics_flush_interval": "200ms",
            "metrics": [
                {"name": "cache.requests", "type": "counter",
                 "when": {"attribute": "event", "in": ["cache.hit", "cache.miss"]},
                 "dimensions": [{"name": "cache.name", "default": "unknown"},
                                {"name": "event"}]},
                {"name": "http.throttled", "type": "counter",
                 "when": {"attribute": "http.response.status_code", "equals": 429},
                 "dimensions": [{"name": "http.route", "default": "unknown"}]},
            ]}},
        "exporters": {"prometheus": {"endpoint": f"127.0.0.1:{scrape}",
                                     "resource_to_telemetry_conversion": {"enabled": True}}},
        "service": {"pipelines": {
            "logs": {"receivers": ["jsonlogs"], "exporters": ["logmetrics"]},
            "metrics": {"receivers": ["logmetrics"], "exporters": ["prometheus"]}}},
    }
    target = f"logmetrics-{service}"
    with OtelpipeProcess(config, tmp_path, wait_ports=(logs_port, scrape)) as proc:
        prometheus.add_target(target, scrape)
        try:
            req = urllib.request.Request(
                f"http://127.0.0.1:{logs_port}/logs", data=stream(service), method="POST",
                headers={"Content-Type": "application/x-ndjson"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                accepted = orjson.loads(resp.read())["accepted"]
            assert accepted == sum(CACHE.values()) + sum(THROTTLED.values()) + NOISE

            sel = f'service_name="{service}"'
            cache_q = f"sum by (cache_name, event) (cache_requests_total{{{sel}}})"
            prometheus.wait_for(cache_q, lambda r: sum(float(x["value"][1]) for x in r)
                                == sum(CACHE.values()), timeout=30)
            got = {(x["metric"]["cache_name"], x["metric"]["event"]): float(x["value"][1])
                   for x in prometheus.query(cache_q)}
            assert got == CACHE

            throttled_q = f"sum by (http_route) (http_throttled_total{{{sel}}})"
            prometheus.wait_for(throttled_q, lambda r: sum(float(x["value"][1]) for x in r)
                                == sum(THROTTLED.values()), timeout=30)
            assert prometheus.values(throttled_q, "http_route") == THROTTLED
            hit_ratio = prometheus.query(
                f'sum(cache_requests_total{{{sel},event="cache.hit"}}) '
                f"/ sum(cache_requests_total{{{sel}}})")
            assert float(hit_ratio[0]["value"][1]) == pytest.approx(22 / 34)
        finally:
            prometheus.remove_target(target)
            print(proc.logs())
