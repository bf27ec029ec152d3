"""The OTLP/gRPC routes of issue 16 item 2, in alternated rounds: otelpipe (this checkout,
and optionally a `--before` checkout) and the Go Collector, same load, same minutes.

Routes: `redmetrics` (otlp → redmetrics → nop, as benchmarks.redmetrics), `nop` (otlp →
nop, as benchmarks.otlp_ingest) and `kafka` (the agent: otlp → kafka, as
benchmarks.kafka_pipeline (a); needs the broker of scripts/kafka.sh). Each round measures
every route on every target, the targets in a rotating order; reports spans per CPU-second
of the process under test per round, the medians, the otelpipe/Collector ratio of the
medians and the load average (`/proc/loadavg`) at the start of each round.

    python -m benchmarks.grpc_routes --rounds 5 [--routes redmetrics,nop,kafka]
        [--before /path/to/other/checkout] [--requests 3000]

`--before` runs a second otelpipe from another checkout (its directory is put first on
PYTHONPATH of the target process), e.g. `git archive <commit> | tar -x -C /tmp/base`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import statistics
import uuid
from collections.abc import Callable, Iterator

from benchmarks import kafka_pipeline, otlp_ingest, redmetrics
from benchmarks.harness import free_port, measure_otlp_load, write_result


@contextlib.contextmanager
def _pythonpath(path: str | None) -> Iterator[None]:
    """Target processes inherit the environment: point PYTHONPATH at `path`."""
    if path is None:
        yield
        return
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = path
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def _measure(route: str, kind: str, requests: int, concurrency: int) -> float:
    if route == "redmetrics":
        row = measure_otlp_load(kind, redmetrics.config(kind, free_port(), free_port()),
                                "grpc", requests, concurrency)
    elif route == "nop":
        row = measure_otlp_load(kind, otlp_ingest.config(kind, free_port(), free_port(), False),
                                "grpc", requests, concurrency)
    else:
        run = uuid.uuid4().hex[:8]
        try:
            row = kafka_pipeline.measure_agent(kind, run, requests, concurrency)
        finally:
            asyncio.run(kafka_pipeline._delete_topics(f"bench-{run}-"))
        if row["records_in_topic"] != requests + max(200, requests // 10):
            raise RuntimeError(f"kafka {kind}: {row['records_in_topic']} records in the topic")
    if row["errors"]:
        raise RuntimeError(f"{route} {kind}: {row['errors']} errors")
    return float(row["spans_per_cpu_s"])


def _load() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--routes", default="redmetrics,nop,kafka")
    p.add_argument("--before", help="another checkout to measure as `before`")
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--name", default="grpc_routes", help="results file name")
    args = p.parse_args()
    routes = args.routes.split(",")
    targets: list[tuple[str, str, str | None]] = [("after", "otelpipe", None),
                                                  ("otelcol", "otelcol", None)]
    if args.before:
        targets.insert(0, ("before", "otelpipe", args.before))
    figures: dict[str, dict[str, list[float]]] = {r: {t[0]: [] for t in targets}
                                                  for r in routes}
    loads: list[float] = []
    for i in range(args.rounds):
        loads.append(_load())
        order = targets[i % len(targets):] + targets[:i % len(targets)]
        for route in routes:
            for label, kind, path in order:
                with _pythonpath(path):
                    v = _measure(route, kind, args.requests, args.concurrency)
                figures[route][label].append(v)
                print(f"round {i + 1} load {loads[-1]:5.2f} {route:10} {label:8} "
                      f"{v:>10,.0f} spans/CPU-s", flush=True)
    summary: dict[str, dict[str, float]] = {}
    fmt: Callable[[float], str] = lambda v: f"{v / 1000:.0f}k"  # noqa: E731
    for route in routes:
        med = {label: statistics.median(v) for label, v in figures[route].items()}
        summary[route] = {f"median_{k}": round(v) for k, v in med.items()}
        summary[route]["ratio_after"] = round(med["after"] / med["otelcol"], 3)
        line = f"{route:10} " + "  ".join(f"{k} {fmt(v)}" for k, v in med.items())
        line += f"  after/otelcol {summary[route]['ratio_after']}"
        if "before" in med:
            summary[route]["ratio_before"] = round(med["before"] / med["otelcol"], 3)
            line += f"  before/otelcol {summary[route]['ratio_before']}"
        print(line)
    print(f"load average at the rounds' starts: {min(loads):.1f}-{max(loads):.1f}")
    out = write_result(args.name, {
        "date": dt.datetime.now(dt.UTC).isoformat(), "requests": args.requests,
        "concurrency": args.concurrency, "spans_per_request": 100,
        "attributes_per_span": 10, "loads": loads, "before": args.before,
        "spans_per_cpu_s": figures, "summary": summary})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
