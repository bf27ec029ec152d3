"""Log exporters against a real VictoriaLogs: items per CPU-second of the otelpipe process.

Needs VictoriaLogs (`scripts/victorialogs.sh start`; this script starts it if it is not
running). For each case an `otelpipe run` process gets OTLP/HTTP logs requests
(`--records` records per request, 10 attributes each, 3 services, pre-serialized) from a
sender in its own process, and delivers them through

    otlp receiver -> batch (1000 records, 200 ms) -> <exporter>

Cases: `nop` (the same pipeline with the nop exporter: receiver + batch cost, the
baseline), `loki` protobuf (+ snappy), `loki` json (+ gzip), `elasticsearch` bulk with the
otel and the ecs mapping (VictoriaLogs' /insert/elasticsearch), and the loki protobuf and
elasticsearch otel cases again with the disk sending queue (`storage: disk`, segment
engine, fsync) instead of the memory queue. `otlphttp` sends the same records as OTLP/HTTP
protobuf (+ gzip) to VictoriaLogs' /insert/opentelemetry/v1/logs.

`--peer` adds the same cases run by the OpenTelemetry Collector v0.165 built by
scripts/otelcol.sh (otlp(http) receiver -> batch(1000, 200 ms) -> exporter, sending queue of
1000 batches with 4 consumers like ours): `peer_otlphttp` (the `otlp_http` exporter to the
same VictoriaLogs OTLP endpoint). contrib's elasticsearchexporter has no peer case: the Go
module proxy refuses it (403 for v0.165.1 and v0.165.0, 404 for its version list), so it
cannot be built into the peer. The peer's sent items are read from its own Prometheus
telemetry (`otelcol_exporter_sent_log_records`).

Figures: pipeline items per CPU-second of the otelpipe process (user + system, from /proc,
from when the warm-up was delivered until the exporter's `otelpipe_exporter_sent_items`
reached the total), wall items/s, and the exporter's own cost per item estimated by
subtracting the nop baseline (`exporter_us_per_item`). The items VictoriaLogs holds for
each run are counted with LogsQL and must equal what was sent.

    python -m benchmarks.log_exporters [--requests 600] [--records 100] [--concurrency 8]
        [--only nop,loki_protobuf,...] [--repeat 1] [--peer]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    REPO,
    cpu_seconds,
    free_port,
    peak_rss_mib,
    start_target,
    write_result,
)

VL_PORT = int(os.environ.get("VICTORIALOGS_PORT", "9428"))
VL = f"http://127.0.0.1:{VL_PORT}"
SERVICES = ("checkout", "cart", "payments")
ROUTES = ("/api/orders", "/api/users/{id}", "/api/cart", "/health", "/api/search")
LEVELS = (("INFO", 9), ("INFO", 9), ("INFO", 9), ("WARN", 13), ("ERROR", 17))


# --- the sender (runs in its own process) -------------------------------------------------


def make_request(records: int, rng: random.Random) -> bytes:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    def kv(key: str, value: Any) -> KeyValue:
        out = KeyValue(key=key)
        if isinstance(value, int):
            out.value.int_value = value
        else:
            out.value.string_value = value
        return out

    req = ExportLogsServiceRequest()
    now = time.time_ns()
    per = records // len(SERVICES)
    for s, service in enumerate(SERVICES):
        rl = req.resource_logs.add()
        rl.resource.attributes.extend([kv("service.name", service), kv("host.name", "bench-1"),
                                       kv("deployment.environment", "prod")])
        sl = rl.scope_logs.add()
        sl.scope.name = "app.http"
        n = per if s < len(SERVICES) - 1 else records - per * (len(SERVICES) - 1)
        for _ in range(n):
            lr = sl.log_records.add()
            lr.time_unix_nano = now - rng.randrange(10**9)
            lr.severity_text, lr.severity_number = rng.choice(LEVELS)
            route = rng.choice(ROUTES)
            status = rng.choice((200, 200, 200, 201, 404, 500))
            ms = rng.randrange(1, 900)
            user = f"user-{rng.randrange(500)}"
            lr.body.string_value = f"GET {route} {status} {ms}ms user={user}"
            lr.trace_id, lr.span_id = rng.randbytes(16), rng.randbytes(8)
            lr.attributes.extend([
                kv("http.route", route), kv("http.request.method", "GET"),
                kv("http.response.status_code", status), kv("duration_ms", ms),
                kv("user.id", user), kv("client.address", f"10.0.{rng.randrange(4)}.7"),
                kv("user_agent.original", "curl/8.5.0"), kv("url.scheme", "https"),
                kv("server.address", "shop.example"), kv("thread.name", "worker-3")])
    return bytes(req.SerializeToString())


async def send(url: str, requests: int, records: int, concurrency: int, seed: int) -> None:
    import aiohttp

    rng = random.Random(seed)
    templates = [make_request(records, rng) for _ in range(32)]
    todo = iter(range(requests))
    async with aiohttp.ClientSession(headers={"Content-Type": "application/x-protobuf"}) as s:
        async def worker() -> None:
            for i in todo:
                body = templates[i % len(templates)]
                while True:
                    async with s.post(url, data=body) as resp:
                        await resp.read()
                        if resp.status == 200:
                            break
                        if resp.status not in (429, 503):
                            raise SystemExit(f"receiver answered {resp.status}")
                    await asyncio.sleep(0.05)  # pushed back: try again
        await asyncio.gather(*(worker() for _ in range(concurrency)))


def run_sender(port: int, requests: int, records: int, concurrency: int, seed: int) -> None:
    subprocess.run([sys.executable, "-m", "benchmarks.log_exporters", "--send",
                    f"http://127.0.0.1:{port}/v1/logs", "--requests", str(requests),
                    "--records", str(records), "--concurrency", str(concurrency),
                    "--seed", str(seed)], cwd=REPO, check=True)


# --- VictoriaLogs ---------------------------------------------------------------------


def ensure_victorialogs() -> str:
    proc = subprocess.run([str(REPO / "scripts" / "victorialogs.sh"), "start"],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"scripts/victorialogs.sh start failed:\n{proc.stderr}")
    return subprocess.run([str(REPO / "scripts" / "victorialogs.sh"), "status"],
                          capture_output=True, text=True).stdout.strip()


def vl_count(run: str) -> int:
    q = urllib.parse.urlencode({"query": f"run:={run} | stats count() as n"}).encode()
    with urllib.request.urlopen(VL + "/select/logsql/query", data=q, timeout=30) as resp:
        rows = [json.loads(x) for x in resp.read().splitlines() if x.strip()]
    return int(rows[0]["n"]) if rows else 0


def wait_vl_count(run: str, expected: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    n = vl_count(run)
    while n < expected and time.monotonic() < deadline:
        time.sleep(0.5)
        n = vl_count(run)
    return n


# --- cases ------------------------------------------------------------------------------


def exporter_config(case: str, run: str, queue_dir: Path) -> tuple[str, dict[str, Any]]:
    disk = case.endswith("_disk")
    base = case.removesuffix("_disk")
    queue: dict[str, Any] = {"queue_size": 1000, "sizer": "requests", "num_consumers": 4}
    if disk:
        queue.update(storage="disk", directory=str(queue_dir))
    helper = {"sending_queue": queue, "timeout": "30s"}
    if base == "nop":
        return "nop", {}
    if base == "otlphttp":
        return "otlphttp", {"endpoint": f"{VL}/insert/opentelemetry", "encoding": "proto",
                            "compression": "gzip", "headers": {"VL-Extra-Fields": f"run={run}"},
                            **helper}
    if base.startswith("loki"):
        enc = "json" if base == "loki_json" else "protobuf"
        return "loki", {"endpoint": f"{VL}/insert/loki/api/v1/push", "encoding": enc,
                        "labels": {"resource": ["service.name"], "severity": "level",
                                   "static": {"run": run}}, **helper}
    mapping = "ecs" if base == "es_ecs" else "otel"
    stream = "service.name" if mapping == "ecs" else "resource.attributes.service.name"
    return "elasticsearch", {"endpoint": f"{VL}/insert/elasticsearch", "mapping": mapping,
                             "victorialogs": {"stream_fields": [stream],
                                              "extra_fields": {"run": run}}, **helper}


def sent_items(health: int, exporter: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{health}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("otelpipe_exporter_sent_items_total{") and \
                f'exporter="{exporter}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_sent(health: int, exporter: str, expected: float, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while sent_items(health, exporter) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{exporter}: only {sent_items(health, exporter)} of "
                               f"{expected} items delivered after {timeout}s")
        time.sleep(0.05)


def peer_sent_items(metrics: int, exporter: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("otelcol_exporter_sent_log_records") and \
                f'exporter="{exporter}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_peer_sent(metrics: int, exporter: str, expected: float,
                   timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while peer_sent_items(metrics, exporter) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"peer {exporter}: only {peer_sent_items(metrics, exporter)} of "
                               f"{expected} items delivered after {timeout}s")
        time.sleep(0.05)


def peer_exporter_config(case: str, run: str) -> tuple[str, dict[str, Any]]:
    """The Collector's config for a peer case; same queue shape as ours (memory)."""
    helper = {"sending_queue": {"enabled": True, "queue_size": 1000, "num_consumers": 4},
              "timeout": "30s"}
    if case == "peer_otlphttp":
        return "otlp_http", {"endpoint": f"{VL}/insert/opentelemetry", "encoding": "proto",
                             "compression": "gzip", "headers": {"VL-Extra-Fields": f"run={run}"},
                             **helper}
    raise SystemExit(f"no peer case {case!r} (contrib elasticsearchexporter is not served by "
                     "the Go module proxy, so the peer has no elasticsearch exporter)")


def run_peer_case(case: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    run = f"bench-{uuid.uuid4().hex[:10]}"
    port, metrics = free_port(), free_port()
    exp_type, exp_cfg = peer_exporter_config(case, run)
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{port}"}}}},
        "processors": {"batch": {"send_batch_size": 1000, "timeout": "200ms"}},
        "exporters": {exp_type: exp_cfg},
        "service": {
            "telemetry": {"logs": {"level": "warn"}, "metrics": {"level": "normal", "readers": [
                {"pull": {"exporter": {"prometheus": {"host": "127.0.0.1",
                                                      "port": metrics}}}}]}},
            "pipelines": {"logs": {"receivers": ["otlp"], "processors": ["batch"],
                                   "exporters": [exp_type]}}},
    }
    warm = max(20, args.requests // 10)
    with start_target("otelcol", config, [port, metrics]) as target:
        run_sender(port, warm, args.records, args.concurrency, seed)
        wait_peer_sent(metrics, exp_type, warm * args.records)
        cpu0, wall0 = cpu_seconds(target.pid), time.monotonic()
        run_sender(port, args.requests, args.records, args.concurrency, seed + 1)
        total = (warm + args.requests) * args.records
        wait_peer_sent(metrics, exp_type, total)
        cpu = cpu_seconds(target.pid) - cpu0
        wall = time.monotonic() - wall0
        rss = peak_rss_mib(target.pid)
    items = args.requests * args.records
    stored = wait_vl_count(run, total)
    return {
        "case": case, "target": "otelcol", "exporter": exp_type, "queue": "memory",
        "items": items, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
        "items_per_cpu_s": round(items / cpu), "items_per_wall_s": round(items / wall),
        "us_cpu_per_item": round(cpu / items * 1e6, 2), "peak_rss_mib": round(rss, 1),
        "victorialogs_items": stored, "delivered_exactly": stored == total}


def run_case(case: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    if case.startswith("peer_"):
        return run_peer_case(case, args, seed)
    run = f"bench-{uuid.uuid4().hex[:10]}"
    queue_dir = Path(tempfile.mkdtemp(prefix="bench-queue-", dir="/var/tmp"))
    port, health = free_port(), free_port()
    exp_type, exp_cfg = exporter_config(case, run, queue_dir)
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{port}"}}}},
        "processors": {"batch": {"send_batch_size": 1000, "timeout": "200ms"}},
        "exporters": {exp_type: exp_cfg},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"extensions": ["health"], "telemetry": {"logs": {"level": "warning"}},
                    "pipelines": {"logs": {"receivers": ["otlp"], "processors": ["batch"],
                                           "exporters": [exp_type]}}},
    }
    warm = max(20, args.requests // 10)
    try:
        with start_target("otelpipe", config, [port, health]) as target:
            run_sender(port, warm, args.records, args.concurrency, seed)
            wait_sent(health, exp_type, warm * args.records)
            cpu0, wall0 = cpu_seconds(target.pid), time.monotonic()
            run_sender(port, args.requests, args.records, args.concurrency, seed + 1)
            total = (warm + args.requests) * args.records
            wait_sent(health, exp_type, total)
            cpu = cpu_seconds(target.pid) - cpu0
            wall = time.monotonic() - wall0
            rss = peak_rss_mib(target.pid)
    finally:
        shutil.rmtree(queue_dir, ignore_errors=True)
    items = args.requests * args.records
    out: dict[str, Any] = {
        "case": case, "target": "otelpipe", "exporter": exp_type,
        "queue": "disk" if case.endswith("_disk") else "memory",
        "items": items, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
        "items_per_cpu_s": round(items / cpu), "items_per_wall_s": round(items / wall),
        "us_cpu_per_item": round(cpu / items * 1e6, 2), "peak_rss_mib": round(rss, 1)}
    if exp_type != "nop":
        stored = wait_vl_count(run, total)
        out["victorialogs_items"] = stored
        out["delivered_exactly"] = stored == total
    return out


CASES = ("nop", "loki_protobuf", "loki_json", "es_otel", "es_ecs", "otlphttp",
         "loki_protobuf_disk", "es_otel_disk")
# Collector cases (--peer), each with the otelpipe case it is the peer of.
PEER_CASES = {"peer_otlphttp": "otlphttp"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=600)
    p.add_argument("--records", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--repeat", type=int, default=1, help="runs per case; the best is kept")
    p.add_argument("--only", default=",".join(CASES))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--peer", action="store_true",
                   help="also run the Collector peer cases (scripts/otelcol.sh build)")
    p.add_argument("--send", help=argparse.SUPPRESS)  # sender mode (own process)
    p.add_argument("--name", default="log_exporters")
    args = p.parse_args()
    if args.send:
        asyncio.run(send(args.send, args.requests, args.records, args.concurrency, args.seed))
        return
    status = ensure_victorialogs()
    cases = [c.strip() for c in args.only.split(",") if c.strip()]
    if args.peer:
        cases += [p for p, ours in PEER_CASES.items() if ours in cases and p not in cases]
    results: list[dict[str, Any]] = []
    for case in cases:
        best: dict[str, Any] | None = None
        for rep in range(args.repeat):
            res = run_case(case, args, args.seed + 10 * rep)
            if best is None or res["items_per_cpu_s"] > best["items_per_cpu_s"]:
                best = res
        assert best is not None
        results.append(best)
        print(json.dumps(best), flush=True)
    nop = next((r for r in results if r["case"] == "nop"), None)
    memory = {r["case"]: r for r in results if r["queue"] == "memory"}
    for r in results:
        if r["target"] == "otelcol":
            ours = memory.get(PEER_CASES.get(r["case"], ""))
            if ours is not None:
                ours["peer_items_per_cpu_s"] = r["items_per_cpu_s"]
                ours["ratio_to_peer"] = round(ours["items_per_cpu_s"] / r["items_per_cpu_s"], 2)
            continue
        if nop is not None and r is not nop:
            r["exporter_us_per_item"] = round(r["us_cpu_per_item"] - nop["us_cpu_per_item"], 2)
            r["exporter_items_per_cpu_s"] = round(1e6 / r["exporter_us_per_item"]) \
                if r["exporter_us_per_item"] > 0 else None
        if r["queue"] == "disk" and r["case"].removesuffix("_disk") in memory:
            mem = memory[r["case"].removesuffix("_disk")]
            r["cpu_vs_memory_queue"] = round(r["us_cpu_per_item"] / mem["us_cpu_per_item"], 3)
    result = {
        "benchmark": "log_exporters",
        "backend": status,
        "records_per_request": args.records, "attributes_per_record": 10,
        "requests": args.requests, "concurrency": args.concurrency,
        "pipeline": "otlp(http) -> batch(1000, 200ms) -> exporter",
        "peer": "OpenTelemetry Collector v0.165.0 (scripts/otelcol.sh); contrib "
                "elasticsearchexporter not built: the Go module proxy answers 403 for "
                "v0.165.1 and v0.165.0",
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "results": results,
    }
    path = write_result(args.name, result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
