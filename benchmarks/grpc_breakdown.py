"""Where a 100-span OTLP/gRPC request's CPU goes on a real `otelpipe run`, route by route:
the differences between variants of the same process under the same load name the cost
of each part, with nothing timed from inside the hot path but `prepare()`.

Variants (alternated in rotating order, round by round):

- `nop`: otlp → nop (benchmarks.otlp_ingest);
- `redmetrics`: otlp → redmetrics → nop (benchmarks.redmetrics);
- `redmetrics-free`: the same route with the connector's `consume()` doing nothing, so
  `redmetrics − redmetrics-free` is the connector's whole cost in the process and
  `redmetrics-free − nop` what the route costs besides it (fanout, consumer chain);
- `redmetrics-parse`: the connector only parses its projection (the second parse).

Per variant: CPU µs per request of the process, of its main thread (event loop: grpc.aio's
Python side, the receiver, the pipeline) and of its other threads (gRPC's poller and
event engine), the receiver's `prepare()` (timed in process), and minor page faults.

    python -m benchmarks.grpc_breakdown [--rounds 6] [--requests 3000]
        [--variants nop,redmetrics,redmetrics-free,redmetrics-parse]

The target runs as `python -m benchmarks.grpc_breakdown --serve VARIANT CONFIG OUT`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks import otlp_ingest, redmetrics
from benchmarks.harness import free_port, run_loadgen, wait_port, write_result

VARIANTS = ("nop", "redmetrics", "redmetrics-free", "redmetrics-parse")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def serve(variant: str, config: str, out: str) -> int:
    """Run otelpipe on `config`, patched for `variant`; SIGUSR1 writes the in-process
    timings to `out`."""
    from pipeline.cli import main as cli_main
    from pipeline.connectors import redmetrics as rm
    from pipeline.receivers._otlpdecode import prepare
    from pipeline.receivers.otlp import grpcservice

    if variant == "redmetrics-free":
        async def free(self: Any, batch: Any) -> None:
            return None
        rm.RedMetricsConnector.consume = free  # type: ignore[method-assign]
    elif variant == "redmetrics-parse":
        async def parse(self: Any, batch: Any) -> None:
            rm.TracesProjection.FromString(batch.to_bytes())
        rm.RedMetricsConnector.consume = parse  # type: ignore[method-assign]
    timed = {"calls": 0, "ns": 0}
    clock = time.thread_time_ns

    def timed_prepare(*args: Any, **kwargs: Any) -> Any:
        t = clock()
        try:
            return prepare(*args, **kwargs)
        finally:
            timed["ns"] += clock() - t
            timed["calls"] += 1

    grpcservice.prepare = timed_prepare  # type: ignore[attr-defined]

    def dump(*_: object) -> None:
        Path(out).write_text(json.dumps(timed))

    signal.signal(signal.SIGUSR1, dump)
    return cli_main(["run", "-c", config])


def _threads(pid: int) -> tuple[float, float, int]:
    """CPU seconds of the main thread, of the other threads, and minor faults."""
    main = other = 0.0
    faults = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a thread that just ended
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
        faults += int(fields[7])
        if task.name == str(pid):
            main += cpu
        else:
            other += cpu
    return main, other, faults


def _prepare_ns(proc: subprocess.Popen[bytes], out: Path) -> dict[str, int]:
    out.unlink(missing_ok=True)
    proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not out.exists() or not out.read_text():
        if time.monotonic() > deadline:
            raise RuntimeError("the target did not write its timings")
        time.sleep(0.05)
    timings: dict[str, int] = json.loads(out.read_text())
    return timings


def measure(variant: str, requests: int, concurrency: int) -> dict[str, float]:
    """µs per request of one variant: process, main thread, other threads, prepare(),
    and minor faults per request."""
    grpc_port, http_port = free_port(), free_port()
    if variant == "nop":
        cfg = otlp_ingest.config("otelpipe", grpc_port, http_port, False)
    else:
        cfg = redmetrics.config("otelpipe", grpc_port, http_port)
    with tempfile.TemporaryDirectory(prefix="grpc-breakdown-") as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(cfg))
        out = Path(tmp) / "timings.json"
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.grpc_breakdown", "--serve",
                                 variant, str(path), str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(grpc_port)
            wait_port(http_port)
            common = ["--protocol", "grpc", "--endpoint", f"127.0.0.1:{grpc_port}",
                      "--concurrency", str(concurrency)]
            run_loadgen(*common, "--requests", str(max(200, requests // 10)))  # warm-up
            p0 = _prepare_ns(proc, out)
            m0, o0, f0 = _threads(proc.pid)
            load = run_loadgen(*common, "--requests", str(requests))
            m1, o1, f1 = _threads(proc.pid)
            p1 = _prepare_ns(proc, out)
        finally:
            proc.terminate()
            proc.wait()
    if load["errors"]:
        raise RuntimeError(f"{variant}: {load['errors']} errors")
    n = load["requests_sent"]
    return {"process": 1e6 * (m1 - m0 + o1 - o0) / n, "main": 1e6 * (m1 - m0) / n,
            "threads": 1e6 * (o1 - o0) / n,
            "prepare": (p1["ns"] - p0["ns"]) / 1000 / max(1, p1["calls"] - p0["calls"]),
            "faults": (f1 - f0) / n}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--serve", nargs=3, metavar=("VARIANT", "CONFIG", "OUT"),
                   help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        return serve(*args.serve)
    variants = args.variants.split(",")
    if unknown := set(variants) - set(VARIANTS):
        p.error(f"unknown variants: {sorted(unknown)}")
    rows: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    loads: list[float] = []
    for i in range(args.rounds):
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        loads.append(float(load))
        k = i % len(variants)
        for v in variants[k:] + variants[:k]:
            row = measure(v, args.requests, args.concurrency)
            rows[v].append(row)
            print(f"round {i + 1} load {load:>5} {v:17} " + "  ".join(
                f"{key} {val:6.1f}" for key, val in row.items()), flush=True)
    medians = {v: {key: round(statistics.median(r[key] for r in rs), 1) for key in rs[0]}
               for v, rs in rows.items()}
    print("medians, CPU µs per 100-span request:")
    for v, med in medians.items():
        print(f"  {v:17} " + "  ".join(f"{key} {val:6.1f}" for key, val in med.items()))
    out = write_result("grpc_breakdown", {
        "date": dt.datetime.now(dt.UTC).isoformat(), "requests": args.requests,
        "concurrency": args.concurrency, "spans_per_request": 100, "loads": loads,
        "us_per_request": rows, "medians": medians})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
