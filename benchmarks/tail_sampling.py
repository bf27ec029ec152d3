"""Tail sampling: `otlp → tail_sampling → nop` in otelpipe vs the Go Collector's
`tail_sampling` (the `sampling` peer of scripts/otelcol.sh, contrib v0.161.0), same
load, same session.

Policies on both (decision_wait 5s): latency (threshold 1500 ms), status_code ERROR,
probabilistic 10%, string_attribute (http.route /api/cart). Load: requests of 100
spans × 10 attributes, ~8 spans per trace (12 traces a request), every request with
fresh trace ids (the load generator patches the ids of a few templates), sent over gRPC
from a separate process (`python -m benchmarks.tail_sampling load …`).

Two figures per target:

- throughput: spans per CPU-second of the target, over the load and the decisions
  that follow it (CPU read after `decision_wait` + 3 s, when every trace is decided);
- memory: RSS growth with 100,000 traces in flight (decision_wait 10 min so none is
  decided), per trace in flight, and the peak RSS.

    python -m benchmarks.tail_sampling [--requests 3000] [--traces 100000] [--no-peer]
        [--skip memory|throughput]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from benchmarks.harness import (
    REPO,
    cpu_seconds,
    free_port,
    peak_rss_mib,
    start_target,
    write_result,
)
from benchmarks.loadgen import TRACE_METHOD, make_request

SPANS = 100  # per request: loadgen's make_request, 3 services, a new trace id every 10
# spans of a service: 12 traces of 10, 10, 10 and 3-4 spans


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def policies() -> list[dict]:
    return [
        {"name": "slow", "type": "latency", "latency": {"threshold_ms": 1500}},
        {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
        {"name": "baseline", "type": "probabilistic",
         "probabilistic": {"sampling_percentage": 10}},
        {"name": "cart", "type": "string_attribute",
         "string_attribute": {"key": "http.route", "values": ["/api/cart"]}},
    ]


def config(kind: str, grpc_port: int, http_port: int, decision_wait: str,
           num_traces: int) -> dict:
    cfg: dict = {
        "receivers": {"otlp": {"protocols": {
            "grpc": {"endpoint": f"127.0.0.1:{grpc_port}", "max_recv_msg_size_mib": 16},
            "http": {"endpoint": f"127.0.0.1:{http_port}"}}}},
        "processors": {"tail_sampling": {"decision_wait": decision_wait,
                                         "num_traces": num_traces,
                                         "policies": policies()}},
        "exporters": {"nop": None},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"],
                                             "processors": ["tail_sampling"],
                                             "exporters": ["nop"]}}},
    }
    if kind == "otelcol":
        cfg["service"]["telemetry"] = {"metrics": {"level": "none"}}
    return cfg


def peer_binary() -> str:
    out = subprocess.run([str(REPO / "scripts" / "otelcol.sh"), "path", "sampling"],
                         capture_output=True, text=True, check=True).stdout.strip()
    if not Path(out).exists():
        raise SystemExit(f"sampling peer not built: run scripts/otelcol.sh build sampling ({out})")
    return out


# The load generator (its own process) ---------------------------------------------------

def templates(n: int, seed: int) -> list[tuple[bytes, list[int]]]:
    """Requests and the offsets of their trace ids (each id is 16 random bytes that occur
    only where the id is)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        body = make_request(SPANS, 10, rng=rng)
        req = ExportTraceServiceRequest.FromString(body)
        ids = {sp.trace_id for rs in req.resource_spans for ss in rs.scope_spans
               for sp in ss.spans}
        offsets = []
        for tid in ids:
            i = body.find(tid)
            while i >= 0:
                offsets.append(i)
                i = body.find(tid, i + 1)
        out.append((body, sorted(offsets)))
    return out


async def load(endpoint: str, requests: int, concurrency: int, seed: int,
               traces_wanted: int = 0) -> dict:
    """Send `requests` requests (or, with `traces_wanted`, until that many traces are
    sent), each with fresh trace ids (same id layout as the template: spans of one trace
    stay together)."""
    import grpc

    pool = templates(16, seed)
    rng = random.Random(seed + 1)
    channel = grpc.aio.insecure_channel(
        endpoint, options=[("grpc.max_send_message_length", 64 << 20)])
    call = channel.unary_unary(TRACE_METHOD, request_serializer=None, response_deserializer=None)
    sent = errors = retries = 0
    traces = 0
    next_i = 0
    start = time.monotonic()

    def body(i: int) -> tuple[bytes, int]:
        tpl, offsets = pool[i % len(pool)]
        buf = bytearray(tpl)
        fresh: dict[bytes, bytes] = {}
        for off in offsets:
            old = bytes(tpl[off:off + 16])
            new = fresh.get(old)
            if new is None:
                new = fresh[old] = rng.randbytes(16)
            buf[off:off + 16] = new
        return bytes(buf), len(fresh)

    async def worker() -> None:
        nonlocal sent, errors, retries, next_i, traces
        while (traces < traces_wanted) if traces_wanted else (next_i < requests):
            i = next_i
            next_i += 1
            data, n = body(i)
            for _ in range(100):
                try:
                    await call(data, timeout=60)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in (grpc.StatusCode.UNAVAILABLE,
                                      grpc.StatusCode.RESOURCE_EXHAUSTED):
                        retries += 1
                        await asyncio.sleep(0.05)
                        continue
                    errors += 1
                    print(f"load: {exc.code()} {exc.details()}", file=sys.stderr)
                    break
                sent += 1
                traces += n
                break

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - start
    await channel.close()
    return {"requests_sent": sent, "traces_sent": traces, "spans_sent": sent * SPANS,
            "errors": errors, "retries": retries, "elapsed_s": round(elapsed, 2),
            "pid": os.getpid()}


def run_load(endpoint: str, requests: int, concurrency: int, seed: int,
             traces: int = 0) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.tail_sampling", "load",
                          "--endpoint", endpoint, "--requests", str(requests),
                          "--traces", str(traces),
                          "--concurrency", str(concurrency), "--seed", str(seed)],
                         cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"load failed: {out.stderr[-2000:]}")
    return orjson.loads(out.stdout.strip().splitlines()[-1])


# Measurements ------------------------------------------------------------------------------

def _start(kind: str, cfg: dict):  # type: ignore[no-untyped-def]
    if kind == "otelcol":
        import benchmarks.harness as h
        h.peer_binary = peer_binary  # the sampling peer, not the main one
    ports = [int(cfg["receivers"]["otlp"]["protocols"][p]["endpoint"].rsplit(":", 1)[1])
             for p in ("grpc", "http")]
    return start_target(kind, cfg, ports)


def throughput(kind: str, requests: int, concurrency: int) -> dict:
    grpc_port = free_port()
    cfg = config(kind, grpc_port, free_port(), "5s", 200_000)
    with _start(kind, cfg) as t:
        endpoint = f"127.0.0.1:{grpc_port}"
        run_load(endpoint, max(100, requests // 10), concurrency, seed=7)  # warm-up
        time.sleep(6)  # the warm-up's traces decided
        cpu0 = cpu_seconds(t.pid)
        res = run_load(endpoint, requests, concurrency, seed=11)
        time.sleep(5 + 3)  # every trace of the run decided
        cpu = cpu_seconds(t.pid) - cpu0
        spans = res["spans_sent"]
        return {"target": kind, "phase": "throughput", "spans": spans,
                "traces": res["traces_sent"], "cpu_s": round(cpu, 3),
                "spans_per_cpu_s": round(spans / cpu) if cpu else None,
                "load_elapsed_s": res["elapsed_s"], "peak_rss_mib": round(peak_rss_mib(t.pid), 1),
                "errors": res["errors"], "retries": res["retries"]}


def memory(kind: str, traces: int, concurrency: int) -> dict:
    grpc_port = free_port()
    cfg = config(kind, grpc_port, free_port(), "600s", traces * 2)
    with _start(kind, cfg) as t:
        endpoint = f"127.0.0.1:{grpc_port}"
        time.sleep(2)
        base = rss_mib(t.pid)
        cpu0 = cpu_seconds(t.pid)
        res = run_load(endpoint, 0, concurrency, seed=23, traces=traces)
        time.sleep(2)
        held = rss_mib(t.pid)
        cpu = cpu_seconds(t.pid) - cpu0
        return {"target": kind, "phase": "memory", "traces_in_flight": res["traces_sent"],
                "spans_in_flight": res["spans_sent"], "rss_before_mib": round(base, 1),
                "rss_after_mib": round(held, 1),
                "kib_per_trace": round((held - base) * 1024 / max(1, res["traces_sent"]), 2),
                "peak_rss_mib": round(peak_rss_mib(t.pid), 1),
                "ingest_spans_per_cpu_s": round(res["spans_sent"] / cpu) if cpu else None,
                "errors": res["errors"], "retries": res["retries"]}


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd")
    lp = sub.add_parser("load")
    lp.add_argument("--endpoint", required=True)
    lp.add_argument("--requests", type=int, required=True)
    lp.add_argument("--concurrency", type=int, default=8)
    lp.add_argument("--seed", type=int, default=1)
    lp.add_argument("--traces", type=int, default=0, help="send until this many traces")
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--traces", type=int, default=100_000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--no-peer", action="store_true")
    p.add_argument("--skip", choices=["memory", "throughput"])
    args = p.parse_args()
    if args.cmd == "load":
        print(orjson.dumps(asyncio.run(load(args.endpoint, args.requests, args.concurrency,
                                            args.seed, args.traces))).decode())
        return 0
    kinds = ("otelpipe", *(() if args.no_peer else ("otelcol",)))
    rows = []
    print(f"load average: {os.getloadavg()}", flush=True)
    if args.skip != "throughput":
        for kind in kinds:
            row = throughput(kind, args.requests, args.concurrency)
            rows.append(row)
            print(f"{kind:9} throughput {row['spans_per_cpu_s']:>9,} spans/CPU-s "
                  f"({row['spans']} spans, {row['cpu_s']} CPU-s)  peak RSS "
                  f"{row['peak_rss_mib']} MiB  errors {row['errors']} retries {row['retries']}",
                  flush=True)
    if args.skip != "memory":
        for kind in kinds:
            row = memory(kind, args.traces, args.concurrency)
            rows.append(row)
            print(f"{kind:9} memory {row['traces_in_flight']} traces in flight: "
                  f"{row['kib_per_trace']} KiB/trace (RSS {row['rss_before_mib']} -> "
                  f"{row['rss_after_mib']} MiB, peak {row['peak_rss_mib']} MiB)  "
                  f"errors {row['errors']}", flush=True)
    ratios: dict[str, float] = {}

    def pick(kind: str, phase: str) -> dict | None:
        return next((r for r in rows if r["target"] == kind and r["phase"] == phase), None)
    ours, peer = pick("otelpipe", "throughput"), pick("otelcol", "throughput")
    if ours and peer and peer["spans_per_cpu_s"]:
        ratios["spans_per_cpu_s"] = round(ours["spans_per_cpu_s"] / peer["spans_per_cpu_s"], 3)
    ours, peer = pick("otelpipe", "memory"), pick("otelcol", "memory")
    if ours and peer and peer["kib_per_trace"] > 0:
        ratios["memory_per_trace"] = round(ours["kib_per_trace"] / peer["kib_per_trace"], 3)
    for k, v in ratios.items():
        print(f"ratio otelpipe/otelcol {k}: {v}")
    print(f"load average: {os.getloadavg()}", flush=True)
    # Only a full run (both phases, with the peer) replaces the recorded result.
    name = "tail_sampling" if not args.skip and not args.no_peer else "tail_sampling-partial"
    path = write_result(name, {
        "date": dt.datetime.now(dt.UTC).isoformat(), "spans_per_request": SPANS,
        "spans_per_trace": "10 (and 3-4 at the end of each service)",
        "attributes_per_span": 10, "policies": policies(),
        "rows": rows, "ratio_to_peer": ratios,
        "target": {"spans_per_cpu_s_ratio": ">= 1.0", "memory_per_trace_ratio": "<= 1.0"}})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
