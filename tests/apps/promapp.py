"""A small app exposing its vital signs with prometheus_client, for scrape tests.

    python tests/apps/promapp.py --port 8000

GET /metrics serves the registry (OpenMetrics when the scraper asks for it,
else the text format 0.0.4, gzip when accepted: prometheus_client's own
negotiation). POST /control with a JSON object sets values, so tests know
exactly what a scrape must find:

    {"pool_size": 10, "pool_checked_out": 9, "pool_overflow": 1,
     "cache_hits": 90, "cache_misses": 10,          # added to the counters
     "requests": 100, "rate_limited": 2,            # added to the counters
     "observe": [0.05, 0.3, 2.0]}                   # request_duration_seconds

Metrics (the seed's pool / cache / rate-limit signs):
  db_pool_size, db_pool_checked_out, db_pool_overflow      gauges {pool="main"}
  cache_hits_total, cache_misses_total                     counters {cache="redis"}
  http_requests_total, rate_limit_rejections_total         counters {route="/api"}
  request_duration_seconds                                 histogram, buckets 0.1 0.25 0.5 1
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder, gzip_accepted

REGISTRY = CollectorRegistry()
POOL_SIZE = Gauge("db_pool_size", "Connections in the pool", ["pool"], registry=REGISTRY)
POOL_OUT = Gauge("db_pool_checked_out", "Connections checked out", ["pool"],
                 registry=REGISTRY)
POOL_OVERFLOW = Gauge("db_pool_overflow", "Overflow connections", ["pool"], registry=REGISTRY)
CACHE_HITS = Counter("cache_hits", "Cache hits", ["cache"], registry=REGISTRY)
CACHE_MISSES = Counter("cache_misses", "Cache misses", ["cache"], registry=REGISTRY)
REQUESTS = Counter("http_requests", "Requests", ["route"], registry=REGISTRY)
RATE_LIMITED = Counter("rate_limit_rejections", "Requests rejected by the rate limiter",
                       ["route"], registry=REGISTRY)
DURATION = Histogram("request_duration_seconds", "Request duration", ["route"],
                     buckets=(0.1, 0.25, 0.5, 1.0), registry=REGISTRY)


def control(body: dict[str, Any]) -> None:
    if "pool_size" in body:
        POOL_SIZE.labels("main").set(body["pool_size"])
    if "pool_checked_out" in body:
        POOL_OUT.labels("main").set(body["pool_checked_out"])
    if "pool_overflow" in body:
        POOL_OVERFLOW.labels("main").set(body["pool_overflow"])
    if "cache_hits" in body:
        CACHE_HITS.labels("redis").inc(body["cache_hits"])
    if "cache_misses" in body:
        CACHE_MISSES.labels("redis").inc(body["cache_misses"])
    if "requests" in body:
        REQUESTS.labels("/api").inc(body["requests"])
    if "rate_limited" in body:
        RATE_LIMITED.labels("/api").inc(body["rate_limited"])
    for v in body.get("observe", []):
        DURATION.labels("/api").observe(v)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.split("?")[0] not in ("/metrics", "/health/metrics"):
            self.send_error(404)
            return
        encoder, ctype = choose_encoder(self.headers.get("Accept", ""))
        body = encoder(REGISTRY)
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        if gzip_accepted(self.headers.get("Accept-Encoding", "")):
            import gzip

            body = gzip.compress(body)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        if self.path != "/control":
            self.send_error(404)
            return
        n = int(self.headers.get("Content-Length", "0"))
        control(json.loads(self.rfile.read(n) or b"{}"))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()
    POOL_SIZE.labels("main").set(10)
    POOL_OUT.labels("main").set(0)
    POOL_OVERFLOW.labels("main").set(0)
    for c, label in ((CACHE_HITS, "redis"), (CACHE_MISSES, "redis"), (REQUESTS, "/api"),
                     (RATE_LIMITED, "/api")):
        c.labels(label)
    DURATION.labels("/api")
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
