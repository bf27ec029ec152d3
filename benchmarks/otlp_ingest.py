"""OTLP/gRPC and OTLP/HTTP trace ingest into a discarding exporter: otelpipe vs the Go
Collector (the peer, built by scripts/otelcol.sh), same load, same session.

Each request holds 100 spans × 10 attributes. Reports spans per CPU-second of
the process under test and its peak RSS, and the otelpipe/peer ratio.

    python -m benchmarks.otlp_ingest [--requests 3000] [--no-peer]
"""

from __future__ import annotations

import argparse
import datetime as dt

from benchmarks.harness import (
    free_port,
    measure_otlp_load,
    write_result,
)


def config(kind: str, grpc_port: int, http_port: int, processors: bool) -> dict:
    receivers = {"otlp": {"protocols": {
        "grpc": {"endpoint": f"127.0.0.1:{grpc_port}", "max_recv_msg_size_mib": 16},
        "http": {"endpoint": f"127.0.0.1:{http_port}"}}}}
    cfg: dict = {"receivers": receivers, "exporters": {"nop": None},
                 "service": {"pipelines": {"traces": {"receivers": ["otlp"],
                                                      "exporters": ["nop"]}}}}
    if processors:
        cfg["processors"] = {"memory_limiter": {"check_interval": "1s", "limit_mib": 1024},
                             "batch": {"send_batch_size": 8192, "timeout": "200ms"}}
        cfg["service"]["pipelines"]["traces"]["processors"] = ["memory_limiter", "batch"]
    if kind == "otelcol":
        cfg["service"]["telemetry"] = {"metrics": {"level": "none"}}
    return cfg


def measure(kind: str, protocol: str, requests: int, concurrency: int, processors: bool) -> dict:
    cfg = config(kind, free_port(), free_port(), processors)
    row = measure_otlp_load(kind, cfg, protocol, requests, concurrency)
    return {**row, "processors": "memory_limiter,batch" if processors else "none"}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--no-peer", action="store_true", help="skip the Go Collector")
    p.add_argument("--processors", action="store_true",
                   help="put memory_limiter and batch in front of nop (both targets)")
    args = p.parse_args()
    rows = []
    for protocol in ("grpc", "http"):
        for kind in ("otelpipe", *(() if args.no_peer else ("otelcol",))):
            row = measure(kind, protocol, args.requests, args.concurrency, args.processors)
            rows.append(row)
            print(f"{kind:9} {protocol:5} {row['spans_per_cpu_s']:>10,} spans/CPU-s  "
                  f"peak RSS {row['peak_rss_mib']:7.1f} MiB  errors {row['errors']}  "
                  f"retries {row['retries']}", flush=True)
    ratios = {}
    for protocol in ("grpc", "http"):
        ours = next(r for r in rows if r["target"] == "otelpipe" and r["protocol"] == protocol)
        peer = next((r for r in rows if r["target"] == "otelcol" and r["protocol"] == protocol),
                    None)
        if peer and peer["spans_per_cpu_s"]:
            ratios[protocol] = round(ours["spans_per_cpu_s"] / peer["spans_per_cpu_s"], 3)
            print(f"ratio otelpipe/otelcol {protocol}: {ratios[protocol]}")
    name = "otlp_ingest_processors" if args.processors else "otlp_ingest"
    path = write_result(name, {"date": dt.datetime.now(dt.UTC).isoformat(),
                                        "spans_per_request": 100, "attributes_per_span": 10,
                               "rows": rows, "ratio_to_peer": ratios})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
