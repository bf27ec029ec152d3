"""RED metrics from spans: `otlp → redmetrics` (only metrics leave, into `nop`) in
otelpipe vs `otlp → spanmetrics → nop` in the Go Collector (the peer, built by
scripts/otelcol.sh), same load, same session.

Each request holds 100 spans x 10 attributes (benchmarks.loadgen); both targets
use the same three extra dimensions (http.route, http.request.method,
http.response.status_code), the same 17 explicit buckets in seconds, exemplars
on, a 15 s flush and a cardinality limit of 5000. Reports spans per CPU-second
of the process under test, its peak RSS, and the otelpipe/peer ratio.

    python -m benchmarks.redmetrics [--requests 3000] [--protocol grpc] [--no-peer]
"""

from __future__ import annotations

import argparse
import datetime as dt

from benchmarks.harness import (
    free_port,
    measure_otlp_load,
    write_result,
)

BUCKETS_S = [0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.5, 0.8, 1, 1.4, 2, 5,
             10, 15]
DIMENSIONS = [{"name": "http.route"}, {"name": "http.request.method"},
              {"name": "http.response.status_code"}]


def config(kind: str, grpc_port: int, http_port: int) -> dict:
    receivers = {"otlp": {"protocols": {
        "grpc": {"endpoint": f"127.0.0.1:{grpc_port}", "max_recv_msg_size_mib": 16},
        "http": {"endpoint": f"127.0.0.1:{http_port}"}}}}
    connector = {
        "histogram": {"unit": "s",
                      "explicit": {"buckets": [f"{round(b * 1000)}ms" for b in BUCKETS_S]}},
        "dimensions": DIMENSIONS,
        "exemplars": {"enabled": True},
        "metrics_flush_interval": "15s",
        "aggregation_cardinality_limit": 5000,
    }
    name = "redmetrics" if kind == "otelpipe" else "spanmetrics"
    cfg: dict = {
        "receivers": receivers,
        "connectors": {name: connector},
        "exporters": {"nop": None},
        "service": {"pipelines": {
            "traces": {"receivers": ["otlp"], "exporters": [name]},
            "metrics": {"receivers": [name], "exporters": ["nop"]}}},
    }
    if kind == "otelcol":
        cfg["service"]["telemetry"] = {"metrics": {"level": "none"}}
    return cfg


def measure(kind: str, protocol: str, requests: int, concurrency: int) -> dict:
    return measure_otlp_load(kind, config(kind, free_port(), free_port()), protocol, requests,
                             concurrency)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--protocol", choices=["grpc", "http", "both"], default="both")
    p.add_argument("--no-peer", action="store_true", help="skip the Go Collector")
    args = p.parse_args()
    protocols = ("grpc", "http") if args.protocol == "both" else (args.protocol,)
    rows = []
    for protocol in protocols:
        for kind in ("otelpipe", *(() if args.no_peer else ("otelcol",))):
            row = measure(kind, protocol, args.requests, args.concurrency)
            rows.append(row)
            print(f"{kind:9} {protocol:5} {row['spans_per_cpu_s']:>10,} spans/CPU-s  "
                  f"peak RSS {row['peak_rss_mib']:7.1f} MiB  errors {row['errors']}  "
                  f"retries {row['retries']}", flush=True)
    ratios = {}
    for protocol in protocols:
        ours = next(r for r in rows if r["target"] == "otelpipe" and r["protocol"] == protocol)
        peer = next((r for r in rows if r["target"] == "otelcol" and r["protocol"] == protocol),
                    None)
        if peer and peer["spans_per_cpu_s"]:
            ratios[protocol] = round(ours["spans_per_cpu_s"] / peer["spans_per_cpu_s"], 3)
            print(f"ratio otelpipe/otelcol {protocol}: {ratios[protocol]}")
    path = write_result("redmetrics", {
        "date": dt.datetime.now(dt.UTC).isoformat(), "spans_per_request": 100,
        "attributes_per_span": 10, "dimensions": [d["name"] for d in DIMENSIONS],
        "buckets_s": BUCKETS_S, "target_spans_per_cpu_s": 100_000,
        "rows": rows, "ratio_to_peer": ratios})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
