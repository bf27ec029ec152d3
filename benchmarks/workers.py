"""Worker processes (`service.workers`): memory per process, and spans per second per
machine against the Go Collector.

    python -m benchmarks.workers rss [--workers 1 2 4] [--idle 5]
    python -m benchmarks.workers throughput [--seconds 10] [--loadgens 2] [--no-peer]
                                            [--generator python|h2load]

`rss`: `otelpipe run --workers N` on OTLP gRPC + HTTP → nop with the health
extension (the primary's only), idle for `--idle` seconds, then VmRSS and RssAnon
of every process (the primary is worker 0), and again after a short load of
`--requests` requests spread over the processes.

`throughput`: the most spans per second the machine sustains over OTLP/gRPC → nop
(100 spans × 10 attributes a request): otelpipe with `workers: 1` and `workers: 2`,
and the Go Collector with GOMAXPROCS=2 (scripts/otelcol.sh), one after the other in
the same minute. The load comes from `--loadgens` separate processes (this module's
`load` command, 4 gRPC channels each, so the kernel spreads the connections over the
workers' SO_REUSEPORT sockets), each as fast as it can for `--seconds`. Reported:
spans/s (wall), the target's CPU seconds (all its processes) and spans per
CPU-second, and the load generators' own CPU (what the machine had left for the
target), with `uptime`.

`--generator h2load` sends the same load with nghttp2's `h2load` (Debian
`nghttp2-client`): one pre-framed gRPC request body, `--connections` HTTP/2
connections of `--streams` concurrent streams each. It costs ≈ 0.6 µs of CPU per span against
≈ 3.2 µs for the Python generator, so more of the two cores is left to the
target. h2load sees only HTTP statuses, not gRPC's: for otelpipe the spans the
receiver accepted (its `/metrics`) are checked against what h2load sent.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmarks.harness import REPO, cpu_seconds, free_port, peer_binary, wait_port, write_result
from benchmarks.loadgen import TRACE_METHOD, make_request

CLK_TCK = os.sysconf("SC_CLK_TCK")


def otelpipe_config(grpc: int, http: int, health: int) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {
            "grpc": {"endpoint": f"127.0.0.1:{grpc}", "max_recv_msg_size_mib": 16},
            "http": {"endpoint": f"127.0.0.1:{http}"}}}},
        "exporters": {"nop": None},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"extensions": ["health"],
                    "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["nop"]}}},
    }


def otelcol_config(grpc: int, http: int) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {
            "grpc": {"endpoint": f"127.0.0.1:{grpc}", "max_recv_msg_size_mib": 16},
            "http": {"endpoint": f"127.0.0.1:{http}"}}}},
        "exporters": {"nop": None},
        "service": {"telemetry": {"metrics": {"level": "none"}},
                    "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["nop"]}}},
    }


@dataclass
class Target:
    name: str
    proc: subprocess.Popen[bytes]
    pids: list[int]
    grpc: int
    log: Path
    health: int | None = None


def _workers(health: int) -> list[dict[str, Any]] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{health}/health/detailed",
                                    timeout=5) as r:
            body = json.loads(r.read())
    except OSError:
        return None
    return body.get("workers") or [{"pid": None, "state": "running"}]


@contextmanager
def otelpipe(workers: int, tmp: Path) -> Iterator[Target]:
    grpc, http, health = free_port(), free_port(), free_port()
    cfg = tmp / f"otelpipe-{workers}.yaml"
    cfg.write_text(yaml.safe_dump(otelpipe_config(grpc, http, health)))
    log = tmp / f"otelpipe-{workers}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "-c", str(cfg),
                                 "--workers", str(workers)], stdout=out,
                                stderr=subprocess.STDOUT, cwd=tmp, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"otelpipe did not start:\n{log.read_text()[-3000:]}")
            states = _workers(health)
            if states is not None and len(states) == workers \
                    and all(w["state"] == "running" for w in states):
                break
            time.sleep(0.2)
        pids = [proc.pid if w["pid"] is None else int(w["pid"]) for w in states]
        yield Target(f"otelpipe workers={workers}", proc, pids, grpc, log, health)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def otelcol(tmp: Path, gomaxprocs: int) -> Iterator[Target]:
    grpc, http = free_port(), free_port()
    cfg = tmp / "otelcol.yaml"
    cfg.write_text(yaml.safe_dump(otelcol_config(grpc, http)))
    log = tmp / "otelcol.log"
    env = {**os.environ, "GOMAXPROCS": str(gomaxprocs)}
    with open(log, "wb") as out:
        proc = subprocess.Popen([peer_binary(), "--config", str(cfg)], stdout=out,
                                stderr=subprocess.STDOUT, cwd=tmp, env=env)
    try:
        wait_port(grpc, 60)
        wait_port(http, 60)
        yield Target(f"otelcol GOMAXPROCS={gomaxprocs}", proc, [proc.pid], grpc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


# The load generator ---------------------------------------------------------------
async def _load(endpoint: str, channels: int, concurrency: int, seconds: float,
                bodies: list[bytes]) -> dict[str, Any]:
    import grpc

    chans = [grpc.aio.insecure_channel(endpoint, options=[
        ("grpc.max_send_message_length", 64 << 20),
        ("grpc.use_local_subchannel_pool", 1)])  # a connection of its own each
        for _ in range(channels)]
    calls = [c.unary_unary(TRACE_METHOD, request_serializer=None, response_deserializer=None)
             for c in chans]
    for c in chans:
        await c.channel_ready()
    sent = errors = 0
    start = time.monotonic()
    deadline = start + seconds

    async def worker(i: int) -> None:
        nonlocal sent, errors
        call = calls[i % channels]
        j = i
        while time.monotonic() < deadline:
            try:
                await call(bodies[j % len(bodies)], timeout=30)
                sent += 1
            except grpc.aio.AioRpcError:
                errors += 1
                await asyncio.sleep(0.01)
            j += 1

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.monotonic() - start
    for c in chans:
        await c.close()
    return {"requests": sent, "errors": errors, "elapsed_s": elapsed}


def cmd_load(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    bodies = [make_request(args.spans, 10, rng=rng) for _ in range(32)]
    result = asyncio.run(_load(args.endpoint, args.channels, args.concurrency, args.seconds,
                               bodies))
    result["spans"] = result["requests"] * args.spans
    print(json.dumps(result))
    return 0


def drive(target: Target, loadgens: int, seconds: float, spans: int) -> dict[str, Any]:
    """`loadgens` load processes for `seconds`: spans/s, target CPU, loadgen CPU."""
    cmd = [sys.executable, "-m", "benchmarks.workers", "load", "--endpoint",
           f"127.0.0.1:{target.grpc}", "--seconds", str(seconds), "--spans", str(spans)]
    cpu0 = [cpu_seconds(p) for p in target.pids]
    t0 = time.monotonic()
    procs = [subprocess.Popen([*cmd, "--seed", str(i)], cwd=REPO, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
             for i in range(loadgens)]
    results, load_cpu = [], 0.0
    for p in procs:
        assert p.stdout is not None
        out = p.stdout.read()
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            raise RuntimeError(f"load generator failed ({p.returncode})")
        load_cpu += usage.ru_utime + usage.ru_stime
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    wall = time.monotonic() - t0
    per_process = [round(cpu_seconds(p) - c0, 2) for p, c0 in zip(target.pids, cpu0,
                                                                    strict=True)]
    cpu = sum(per_process)
    sent = sum(r["spans"] for r in results)
    elapsed = max(r["elapsed_s"] for r in results)
    return {"target": target.name, "spans": sent, "seconds": round(elapsed, 2),
            "spans_per_s": round(sent / elapsed), "target_cpu_s": round(cpu, 2),
            "target_cores_used": round(cpu / elapsed, 2),
            "spans_per_cpu_s": round(sent / cpu) if cpu else None,
            "loadgen_cpu_s": round(load_cpu, 2),
            "loadgen_cores_used": round(load_cpu / wall, 2),
            "errors": sum(r["errors"] for r in results),
            "target_cpu_s_per_process": per_process}


def accepted_spans(target: Target) -> float | None:
    """Spans the otelpipe target's receivers accepted so far (None for the peer)."""
    if target.health is None:
        return None
    with urllib.request.urlopen(f"http://127.0.0.1:{target.health}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("otelpipe_receiver_accepted_items_total{")
               and 'signal="traces"' in line)


def drive_h2load(target: Target, connections: int, streams: int, seconds: float,
                 spans: int, tmp: Path) -> dict[str, Any]:
    """h2load for `seconds` on one pre-framed request: spans/s, target and h2load CPU."""
    body = make_request(spans, 10, rng=random.Random(1))
    frame = tmp / "grpc-body.bin"
    frame.write_bytes(b"\x00" + len(body).to_bytes(4, "big") + body)
    cmd = ["h2load", "-D", str(max(1, round(seconds))), "-c", str(connections),
           "-m", str(streams), "-t", "1",
           "-d", str(frame), "-H", "content-type: application/grpc", "-H", "te: trailers",
           f"http://127.0.0.1:{target.grpc}{TRACE_METHOD}"]
    accepted0 = accepted_spans(target)
    cpu0 = [cpu_seconds(p) for p in target.pids]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"h2load failed:\n{out}")
    per_process = [round(cpu_seconds(p) - c0, 2) for p, c0 in zip(target.pids, cpu0,
                                                                    strict=True)]
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, "
                     r"(\d+) failed, (\d+) errored", out)
    elapsed = re.search(r"finished in ([\d.]+)s", out)
    if done is None or elapsed is None:
        raise RuntimeError(f"h2load's output not understood:\n{out}")
    sent = int(done[1]) * spans
    if accepted0 is not None:
        accepted = (accepted_spans(target) or 0) - accepted0
        if accepted < sent:
            raise RuntimeError(f"h2load counted {sent} spans, otelpipe accepted {accepted}")
    seconds_run = float(elapsed[1])
    cpu = sum(per_process)
    load_cpu = usage.ru_utime + usage.ru_stime
    return {"target": target.name, "generator": "h2load", "spans": sent,
            "seconds": round(seconds_run, 2), "spans_per_s": round(sent / seconds_run),
            "target_cpu_s": round(cpu, 2), "target_cores_used": round(cpu / seconds_run, 2),
            "spans_per_cpu_s": round(sent / cpu) if cpu else None,
            "loadgen_cpu_s": round(load_cpu, 2),
            "loadgen_cores_used": round(load_cpu / wall, 2),
            "errors": int(done[2]) + int(done[3]),
            "target_cpu_s_per_process": per_process}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def cmd_throughput(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    rows: list[dict[str, Any]] = []
    print(uptime(), flush=True)
    for rnd in range(args.rounds):
        targets: list[Any] = [lambda: otelpipe(1, tmp), lambda: otelpipe(2, tmp)]
        if not args.no_peer:
            targets.append(lambda: otelcol(tmp, 2))
        for make in targets:
            with make() as target:
                if args.generator == "h2load":
                    drive_h2load(target, args.connections, args.streams,
                                 min(3.0, args.seconds), args.spans, tmp)  # warm-up
                    row = drive_h2load(target, args.connections, args.streams, args.seconds,
                                       args.spans, tmp)
                else:
                    drive(target, args.loadgens, min(3.0, args.seconds), args.spans)
                    row = drive(target, args.loadgens, args.seconds, args.spans)
            row["round"] = rnd
            rows.append(row)
            print(f"{row['target']:24} {row['spans_per_s']:>9,} spans/s  "
                  f"target {row['target_cores_used']:.2f} cores "
                  f"({row['spans_per_cpu_s']:,} spans/CPU-s)  "
                  f"loadgen {row['loadgen_cores_used']:.2f} cores  errors {row['errors']}  "
                  f"CPU s per process {row['target_cpu_s_per_process']}",
                  flush=True)
    print(uptime(), flush=True)
    best: dict[str, int] = {}
    for r in rows:
        best[r["target"]] = max(best.get(r["target"], 0), r["spans_per_s"])
    one, two = best.get("otelpipe workers=1"), best.get("otelpipe workers=2")
    peer = best.get("otelcol GOMAXPROCS=2")
    summary = {"best_spans_per_s": best,
               "scaling_1_to_2": round(two / one, 2) if one and two else None,
               "workers2_vs_otelcol": round(two / peer, 2) if two and peer else None}
    print(json.dumps(summary))
    write_result("workers_throughput", {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "uptime": uptime(), "rows": rows, **summary})
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def cmd_rss(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    rows = []
    for n in args.workers:
        with otelpipe(n, tmp) as target:
            time.sleep(args.idle)
            idle = [(status_kib(p, "VmRSS"), status_kib(p, "RssAnon")) for p in target.pids]
            drive(target, max(2, n), args.load_seconds, 100)
            loaded = [(status_kib(p, "VmRSS"), status_kib(p, "RssAnon")) for p in target.pids]
        row = {"workers": n,
               "idle_rss_mib": [round(r / 1024, 1) for r, _ in idle],
               "idle_rss_anon_mib": [round(a / 1024, 1) for _, a in idle],
               "loaded_rss_mib": [round(r / 1024, 1) for r, _ in loaded],
               "loaded_rss_anon_mib": [round(a / 1024, 1) for _, a in loaded],
               "total_loaded_rss_mib": round(sum(r for r, _ in loaded) / 1024, 1)}
        rows.append(row)
        print(f"workers={n}: idle RSS per process {row['idle_rss_mib']} MiB "
              f"(anon {row['idle_rss_anon_mib']}), after load {row['loaded_rss_mib']} MiB "
              f"(anon {row['loaded_rss_anon_mib']}), total {row['total_loaded_rss_mib']} MiB",
              flush=True)
    write_result("workers_rss", {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                                 "uptime": uptime(), "rows": rows})
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("rss")
    r.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    r.add_argument("--idle", type=float, default=5.0)
    r.add_argument("--load-seconds", type=float, default=5.0)
    r.set_defaults(func=cmd_rss)
    t = sub.add_parser("throughput")
    t.add_argument("--seconds", type=float, default=10.0)
    t.add_argument("--loadgens", type=int, default=2)
    t.add_argument("--spans", type=int, default=100)
    t.add_argument("--rounds", type=int, default=2)
    t.add_argument("--no-peer", action="store_true")
    t.add_argument("--generator", choices=["python", "h2load"], default="python")
    t.add_argument("--connections", type=int, default=16, help="h2load's connections")
    t.add_argument("--streams", type=int, default=16,
                   help="h2load's concurrent streams per connection (with 4, the Collector "
                        "waited on the client and used under a core)")
    t.set_defaults(func=cmd_throughput)
    lg = sub.add_parser("load", help="(internal) one load generator process")
    lg.add_argument("--endpoint", required=True)
    lg.add_argument("--seconds", type=float, default=10.0)
    lg.add_argument("--channels", type=int, default=4)
    lg.add_argument("--concurrency", type=int, default=16)
    lg.add_argument("--spans", type=int, default=100)
    lg.add_argument("--seed", type=int, default=1)
    lg.set_defaults(func=cmd_load)
    args = p.parse_args()
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
