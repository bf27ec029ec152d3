"""Agent -> Kafka -> gateway: spans per CPU-second of each otelpipe process, the Go
Collector peer on the same broker in the same session, and end-to-end latency.

Needs the broker (`scripts/kafka.sh start`) and, for the peer, `scripts/otelcol.sh build`.
Every run writes to its own topics (`bench-<run>-...`, 4 partitions) and consumer groups.

(a) agent: OTLP/gRPC receiver -> `kafka` exporter (otlp_proto, acks=all, no compression,
    linger 5 ms, no queue). Load from `benchmarks.loadgen` in its own process (100 spans x
    10 attributes per request, as fast as `--concurrency` allows). CPU of the agent only.
(b) gateway: `kafka` receiver -> `nop`, reading a pre-filled topic. The gateway is started
    on the empty topic and, once its consumer group is stable, stopped with SIGSTOP; the
    topic is filled with `--records` records of one request each (aiokafka, directly);
    CPU is read and the gateway resumed with SIGCONT; the run ends when the group's
    committed offsets reach the end of the topic. So the figure holds consumption only:
    no interpreter start-up, no group join, and every fetch finds a full topic.
(c) latency: loadgen-shaped requests at a fixed offered load (`--rate` requests/s of 100
    spans) through agent -> Kafka -> gateway -> a sink exporter inside the gateway process.
    The sender (own process) writes its wall clock (time.time_ns) into a resource attribute
    `bench.send_ns` of each request right before handing it to gRPC (the templates are
    pre-serialized with a fixed-width placeholder that is replaced in the bytes). The sink
    (`bench_latency_sink`, registered only in the benchmark's gateway process) reads the
    clock as the first thing when the pipeline hands it the batch, finds the stamp in the
    raw bytes (nothing decoded) and appends `send_ns arrival_ns` to a file. Same host, same
    clock. Latency = arrival - send, over the requests sent after the warm-up.

    python -m benchmarks.kafka_pipeline [--requests 3000] [--records 5000] [--no-peer]
        [--rate 200] [--duration 30] [--only agent,gateway,latency]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from benchmarks.harness import (
    REPO,
    cpu_seconds,
    free_port,
    peak_rss_mib,
    peer_binary,
    run_loadgen,
    wait_port,
    write_result,
)

BROKER = os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092")
PARTITIONS = 4
STAMP_KEY = "bench.send_ns"
PLACEHOLDER = b"9" * 19  # time.time_ns() has 19 digits until 2286
STAMP_RE = re.compile(re.escape(STAMP_KEY.encode()) + rb"[\s\S]{1,8}?(\d{19})")


# Configs -----------------------------------------------------------------------------------
def agent_config(kind: str, grpc_port: int, topic: str) -> dict:
    receivers = {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}",
                                                  "max_recv_msg_size_mib": 16}}}}
    if kind == "otelpipe":
        kafka: dict = {"brokers": [BROKER], "topic": topic, "encoding": "otlp_proto",
                       "producer": {"required_acks": "all", "compression": "none",
                                    "linger_ms": 5}}
    else:
        # Same semantics: acknowledge the client only after the broker did (no queue).
        kafka = {"brokers": [BROKER], "traces": {"topic": topic, "encoding": "otlp_proto"},
                 "producer": {"required_acks": -1, "compression": "none", "linger": "5ms"},
                 "sending_queue": {"enabled": False}, "retry_on_failure": {"enabled": False}}
    cfg: dict = {"receivers": receivers, "exporters": {"kafka": kafka},
                 "service": {"pipelines": {"traces": {"receivers": ["otlp"],
                                                      "exporters": ["kafka"]}}}}
    if kind == "otelcol":
        cfg["service"]["telemetry"] = {"metrics": {"level": "none"}}
    return cfg


def gateway_config(kind: str, topic: str, group: str, exporter: str = "nop",
                   exporter_config: dict | None = None) -> dict:
    if kind == "otelpipe":
        kafka: dict = {"brokers": [BROKER], "group_id": group, "initial_offset": "earliest",
                       "encoding": "otlp_proto", "traces": {"topics": [topic]},
                       "session_timeout": "30s"}
    else:
        # message_marking.after: commit only what the pipeline accepted, as otelpipe does.
        kafka = {"brokers": [BROKER], "group_id": group, "initial_offset": "earliest",
                 "traces": {"topics": [topic], "encoding": "otlp_proto"},
                 "message_marking": {"after": True}, "session_timeout": "30s"}
    cfg: dict = {"receivers": {"kafka": kafka}, "exporters": {exporter: exporter_config},
                 "service": {"pipelines": {"traces": {"receivers": ["kafka"],
                                                      "exporters": [exporter]}}}}
    if kind == "otelcol":
        cfg["service"]["telemetry"] = {"metrics": {"level": "none"}}
    return cfg


# Processes ---------------------------------------------------------------------------------
@contextlib.contextmanager
def start(kind: str, config: dict, ports: list[int], sink: bool = False
          ) -> Iterator[subprocess.Popen[bytes]]:
    """Like harness.start_target; `sink=True` runs otelpipe with the latency sink registered."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-kafka-{kind}-"))
    cfg = workdir / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    if kind == "otelpipe":
        cmd = [sys.executable, "-m", "benchmarks.kafka_pipeline" if sink else "pipeline",
               *(["_gateway"] if sink else []), "run", "-c", str(cfg)]
    else:
        cmd = [peer_binary(), "--config", str(cfg)]
    log_path = workdir / "out.log"
    with open(log_path, "wb") as log:
        # The agent runs from its work directory, so that PYTHONPATH decides which
        # checkout it imports (benchmarks.grpc_routes --before); the sink gateway needs REPO.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                cwd=REPO if sink else workdir)
    try:
        for p in ports:
            wait_port(p)
        time.sleep(0.2)
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited: {log_path.read_text()[-3000:]}")
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.returncode not in (0, -signal.SIGTERM):
            print(f"{kind} exit {proc.returncode}; log tail:\n"
                  f"{log_path.read_text(errors='replace')[-2000:]}", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)


def host_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + vals[4]  # idle + iowait
    total = sum(vals[:8])
    return (total - idle) / os.sysconf("SC_CLK_TCK"), total / os.sysconf("SC_CLK_TCK")


def host_busy_since(start: tuple[float, float]) -> float:
    """Share of the machine's CPUs busy (any process) since `start`."""
    busy, total = host_cpu()
    return round((busy - start[0]) / max(1e-9, total - start[1]), 3)


# Kafka helpers (aiokafka, in this process) ---------------------------------------------------
async def _create_topics(*topics: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=BROKER)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics])
    finally:
        await admin.close()


async def _delete_topics(prefix: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=BROKER)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if topics:
            await admin.delete_topics(topics)
    finally:
        await admin.close()


async def _end_offsets(topic: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=BROKER)
    await c.start()
    try:
        ends = await c.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
        return sum(ends.values())
    finally:
        await c.stop()


async def _committed(group: str) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=BROKER)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return sum(o.offset for o in offsets.values() if o.offset > 0)
    finally:
        await admin.close()


async def _group_stable(group: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=BROKER)
    await admin.start()
    try:
        resp = await admin.describe_consumer_groups([group])
        for r in resp:
            for g in r.groups:
                # (error_code, group_id, state, protocol_type, protocol, members, ...)
                if g[1] == group and g[2] == "Stable" and g[5]:
                    return True
        return False
    finally:
        await admin.close()


async def _fill(topic: str, records: int, seed: int = 7) -> int:
    """Write `records` loadgen requests (64 templates); returns the bytes written."""
    from aiokafka import AIOKafkaProducer

    from benchmarks.loadgen import make_request

    rng = random.Random(seed)
    bodies = [make_request(100, 10, rng=rng) for _ in range(64)]
    producer = AIOKafkaProducer(bootstrap_servers=BROKER, acks=1, linger_ms=20,
                                max_batch_size=1 << 20, max_request_size=2 << 20)
    await producer.start()
    total = 0
    try:
        pending = []
        for i in range(records):
            body = bodies[i % len(bodies)]
            total += len(body)
            pending.append(await producer.send(topic, body, partition=i % PARTITIONS))
            if len(pending) >= 500:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return total


def _wait(cond: Any, timeout: float, what: str, interval: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if asyncio.run(cond()):
            return
        time.sleep(interval)
    raise TimeoutError(what)


# (a) agent ---------------------------------------------------------------------------------
def measure_agent(kind: str, run: str, requests: int, concurrency: int) -> dict:
    topic = f"bench-{run}-agent-{kind}"
    asyncio.run(_create_topics(topic))
    port = free_port()
    with start(kind, agent_config(kind, port, topic), [port]) as proc:
        common = ["--protocol", "grpc", "--endpoint", f"127.0.0.1:{port}",
                  "--concurrency", str(concurrency)]
        run_loadgen(*common, "--requests", str(max(200, requests // 10)))  # warm-up
        cpu0, host0 = cpu_seconds(proc.pid), host_cpu()
        load = run_loadgen(*common, "--requests", str(requests), "--seed", "2")
        cpu = cpu_seconds(proc.pid) - cpu0
        busy = host_busy_since(host0)
        rss = peak_rss_mib(proc.pid)
    records = asyncio.run(_end_offsets(topic))
    spans = load["requests_sent"] * load["spans_per_request"]
    return {"side": "agent", "target": kind, "topic": topic, "spans": spans,
            "cpu_s": round(cpu, 3), "spans_per_cpu_s": round(spans / cpu) if cpu else None,
            "wall_spans_per_s": round(spans / load["elapsed_s"]),
            "peak_rss_mib": round(rss, 1), "errors": load["errors"],
            "retries": load["retries"], "records_in_topic": records, "host_busy": busy,
            "request_latency_p50_ms": round(load["latency_p50_ms"], 2),
            "request_latency_p99_ms": round(load["latency_p99_ms"], 2)}


# (b) gateway -------------------------------------------------------------------------------
def measure_gateway(kind: str, run: str, records: int) -> dict:
    topic = f"bench-{run}-gw-{kind}"
    group = f"bench-{run}-gw-{kind}"
    asyncio.run(_create_topics(topic))
    with start(kind, gateway_config(kind, topic, group), []) as proc:
        _wait(lambda: _group_stable(group), 60, f"{kind} gateway did not join {group}")
        time.sleep(1.0)  # assignment -> first (empty) fetch
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            nbytes = asyncio.run(_fill(topic, records))
            fill_s = time.monotonic() - t0
            end = asyncio.run(_end_offsets(topic))
            cpu0, host0 = cpu_seconds(proc.pid), host_cpu()
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        t0 = time.monotonic()
        _wait(lambda: _all_committed(group, end), 600, f"{kind} gateway did not finish",
              interval=0.1)
        wall = time.monotonic() - t0
        cpu = cpu_seconds(proc.pid) - cpu0
        busy = host_busy_since(host0)
        rss = peak_rss_mib(proc.pid)
    spans = end * 100
    return {"side": "gateway", "target": kind, "topic": topic, "records": end,
            "record_bytes": round(nbytes / records), "fill_s": round(fill_s, 2),
            "spans": spans, "cpu_s": round(cpu, 3),
            "spans_per_cpu_s": round(spans / cpu) if cpu else None,
            "wall_s_until_committed": round(wall, 2), "peak_rss_mib": round(rss, 1),
            "host_busy": busy}


async def _all_committed(group: str, end: int) -> bool:
    return await _committed(group) >= end


# (d) CPU at the fixed offered load, both targets --------------------------------------------
def measure_fixed_load(kind: str, run: str, rate: float, duration: float) -> dict:
    """Agent and gateway (-> nop) of one kind at `rate` requests/s: CPU per process."""
    topic = f"bench-{run}-fixed-{kind}"
    group = f"bench-{run}-fixed-{kind}"
    asyncio.run(_create_topics(topic))
    port = free_port()
    with start(kind, gateway_config(kind, topic, group), []) as gw, \
            start(kind, agent_config(kind, port, topic), [port]) as agent:
        _wait(lambda: _group_stable(group), 60, f"{kind} gateway did not join {group}")
        common = ["--protocol", "grpc", "--endpoint", f"127.0.0.1:{port}",
                  "--concurrency", "16", "--rate", str(rate)]
        run_loadgen(*common, "--requests", str(int(rate * 2)))  # warm-up
        cpu_a0, cpu_g0, host0 = cpu_seconds(agent.pid), cpu_seconds(gw.pid), host_cpu()
        load = run_loadgen(*common, "--requests", str(int(rate * duration)), "--seed", "4")
        cpu_a = cpu_seconds(agent.pid) - cpu_a0
        end = asyncio.run(_end_offsets(topic))
        _wait(lambda: _all_committed(group, end), 60, f"{kind} gateway did not finish",
              interval=0.1)
        cpu_g = cpu_seconds(gw.pid) - cpu_g0
        busy = host_busy_since(host0)
        rss_a, rss_g = peak_rss_mib(agent.pid), peak_rss_mib(gw.pid)
    spans = load["requests_sent"] * 100
    wall = load["elapsed_s"]
    return {"target": kind, "offered_spans_per_s": rate * 100,
            "achieved_spans_per_s": round(spans / wall), "spans": spans,
            "agent_cpu_s": round(cpu_a, 3), "gateway_cpu_s": round(cpu_g, 3),
            "agent_cpu_utilization": round(cpu_a / wall, 3),
            "gateway_cpu_utilization": round(cpu_g / wall, 3),
            "agent_spans_per_cpu_s": round(spans / cpu_a) if cpu_a else None,
            "gateway_spans_per_cpu_s": round(spans / cpu_g) if cpu_g else None,
            "agent_peak_rss_mib": round(rss_a, 1), "gateway_peak_rss_mib": round(rss_g, 1),
            "errors": load["errors"], "host_busy": busy}


# (c) latency -------------------------------------------------------------------------------
def stamped_templates(n: int, seed: int = 3) -> list[bytes]:
    """loadgen requests with a `bench.send_ns` resource attribute holding PLACEHOLDER."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from benchmarks.loadgen import make_request

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        req = ExportTraceServiceRequest.FromString(make_request(100, 10, rng=rng))
        for rs in req.resource_spans:
            kv = rs.resource.attributes.add()
            kv.key = STAMP_KEY
            kv.value.string_value = PLACEHOLDER.decode()
        out.append(req.SerializeToString())
    return out


def sender_main(argv: list[str]) -> int:
    """`python -m benchmarks.kafka_pipeline _sender ENDPOINT RATE REQUESTS CONCURRENCY`."""
    import orjson

    from benchmarks.loadgen import TRACE_METHOD, _drive

    endpoint, rate, total, concurrency = argv[0], float(argv[1]), int(argv[2]), int(argv[3])
    bodies = stamped_templates(64)

    async def go() -> dict:
        import grpc

        channel = grpc.aio.insecure_channel(endpoint)
        call = channel.unary_unary(TRACE_METHOD, request_serializer=None,
                                   response_deserializer=None)

        async def send(body: bytes) -> None:
            stamped = body.replace(PLACEHOLDER, str(time.time_ns()).encode())
            await call(stamped, timeout=30)

        return await _drive(send, bodies, total, concurrency, rate,
                            retry_codes=("UNAVAILABLE", "RESOURCE_EXHAUSTED"),
                            close=channel.close)

    result = asyncio.run(go())
    print(orjson.dumps(result).decode())
    return 0 if result["errors"] == 0 else 1


def measure_latency(run: str, rate: float, duration: float, warmup: float,
                    concurrency: int) -> dict:
    topic = f"bench-{run}-latency"
    group = f"bench-{run}-latency"
    asyncio.run(_create_topics(topic))
    sink_path = Path(tempfile.mkdtemp(prefix="bench-kafka-sink-")) / "arrivals.txt"
    port = free_port()
    gw_cfg = gateway_config("otelpipe", topic, group, exporter="bench_latency_sink",
                            exporter_config={"path": str(sink_path)})
    gw_cfg["receivers"]["kafka"]["initial_offset"] = "latest"
    with start("otelpipe", gw_cfg, [], sink=True) as gw, \
            start("otelpipe", agent_config("otelpipe", port, topic), [port]) as agent:
        _wait(lambda: _group_stable(group), 60, "latency gateway did not join")
        time.sleep(1.0)
        total = int(rate * (warmup + duration))
        cpu_a0, cpu_g0, host0 = cpu_seconds(agent.pid), cpu_seconds(gw.pid), host_cpu()
        load_avg0 = os.getloadavg()[0]
        t_start = time.time_ns()
        out = subprocess.run([sys.executable, "-m", "benchmarks.kafka_pipeline", "_sender",
                              f"127.0.0.1:{port}", str(rate), str(total), str(concurrency)],
                             cwd=REPO, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"sender failed: {out.stderr[-2000:]}")
        load = json.loads(out.stdout.strip().splitlines()[-1])
        # Wait for the stragglers (bounded).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if sink_path.exists() and len(sink_path.read_text().splitlines()) >= \
                    load["requests_sent"]:
                break
            time.sleep(0.2)
        cpu_a, cpu_g = cpu_seconds(agent.pid) - cpu_a0, cpu_seconds(gw.pid) - cpu_g0
        busy = host_busy_since(host0)
        load_avg1 = os.getloadavg()[0]
        rss_a, rss_g = peak_rss_mib(agent.pid), peak_rss_mib(gw.pid)
    lines = sink_path.read_text().split("\n") if sink_path.exists() else []
    shutil.rmtree(sink_path.parent, ignore_errors=True)
    cut = t_start + int(warmup * 1e9)
    lat, arrived, dup = [], set(), 0
    for line in lines:
        if not line:
            continue
        sent_ns, arrival_ns = (int(x) for x in line.split()[:2])
        if sent_ns in arrived:
            dup += 1
            continue
        arrived.add(sent_ns)
        if sent_ns >= cut:
            lat.append((arrival_ns - sent_ns) / 1e6)
    lat.sort()

    def pct(p: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else None

    sent_spans = load["requests_sent"] * 100
    wall = load["elapsed_s"]
    return {"offered_requests_per_s": rate, "offered_spans_per_s": rate * 100,
            "achieved_spans_per_s": round(sent_spans / wall), "duration_s": duration,
            "warmup_s": warmup, "requests_sent": load["requests_sent"],
            "requests_arrived": len(arrived), "duplicates": dup, "measured": len(lat),
            "latency_p50_ms": pct(0.5), "latency_p90_ms": pct(0.9),
            "latency_p99_ms": pct(0.99), "latency_max_ms": round(lat[-1], 2) if lat else None,
            "agent_cpu_s": round(cpu_a, 3), "gateway_cpu_s": round(cpu_g, 3),
            "agent_cpu_utilization": round(cpu_a / wall, 3),
            "gateway_cpu_utilization": round(cpu_g / wall, 3),
            "agent_peak_rss_mib": round(rss_a, 1), "gateway_peak_rss_mib": round(rss_g, 1),
            "sender_request_latency_p99_ms": round(load["latency_p99_ms"], 2),
            "sender_errors": load["errors"], "sender_retries": load["retries"],
            # Latency depends on what else runs on the machine; CPU per span hardly does.
            "host_busy": busy, "load_avg_1m": [round(load_avg0, 2), round(load_avg1, 2)]}


# The latency sink: an exporter registered only in the benchmark's gateway process ----------
def _sink_factory() -> Any:
    from pydantic import Field

    from pipeline.component import ComponentConfig, Factory, Kind, Signal
    from pipeline.exporterhelper import Exporter

    class SinkConfig(ComponentConfig):
        path: str = Field(description="file to append `send_ns arrival_ns items` lines to")

    class LatencySink(Exporter):
        def __init__(self, settings: Any, config: SinkConfig):
            super().__init__(settings)
            self._f = open(config.path, "a", buffering=1)  # noqa: SIM115 - line-buffered

        async def send(self, batch: Any) -> None:
            arrival = time.time_ns()
            m = STAMP_RE.search(batch.to_bytes())
            if m is not None:
                self._f.write(f"{int(m.group(1))} {arrival} {batch.items}\n")

        async def shutdown_exporter(self) -> None:
            self._f.close()

    return Factory(type="bench_latency_sink", kind=Kind.EXPORTER, config_model=SinkConfig,
                   create=lambda settings, config: LatencySink(settings, config),
                   signals=frozenset({Signal.TRACES}),
                   description="benchmark only: records send -> arrival times")


def gateway_main(argv: list[str]) -> int:
    """otelpipe's CLI with the latency sink registered (this process only).

    `default_registry()` is cached: re-initialise that one instance with the built-ins
    plus the sink, through the public Registry constructor.
    """
    from pipeline.cli import main as cli_main
    from pipeline.registry import default_registry

    reg = default_registry()
    reg.__init__([*reg.factories(), _sink_factory()])  # type: ignore[misc]
    return cli_main(argv)


# Main --------------------------------------------------------------------------------------
def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_sender":
        return sender_main(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "_gateway":
        return gateway_main(sys.argv[2:])
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=3000, help="(a) requests of 100 spans")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--records", type=int, default=5000, help="(b) records of 100 spans")
    p.add_argument("--rate", type=float, default=200.0, help="(c) requests/s of 100 spans")
    p.add_argument("--duration", type=float, default=30.0, help="(c) measured seconds")
    p.add_argument("--warmup", type=float, default=5.0, help="(c) seconds not counted")
    p.add_argument("--no-peer", action="store_true", help="skip the Go Collector")
    p.add_argument("--only", default="agent,gateway,latency,fixed")
    p.add_argument("--keep-topics", action="store_true", help="do not delete this run's topics")
    p.add_argument("--name", default="kafka_pipeline", help="results file name")
    args = p.parse_args()
    only = set(args.only.split(","))
    run = uuid.uuid4().hex[:8]
    kinds = ("otelpipe", *(() if args.no_peer else ("otelcol",)))
    result: dict = {"date": dt.datetime.now(dt.UTC).isoformat(), "run": run,
                    "broker": f"Apache Kafka (scripts/kafka.sh), {BROKER}",
                    "partitions": PARTITIONS, "spans_per_request": 100,
                    "attributes_per_span": 10, "cpus": os.cpu_count(), "rows": [],
                    "ratio_to_peer": {}}
    rows = result["rows"]
    if "agent" in only:
        for kind in kinds:
            row = measure_agent(kind, run, args.requests, args.concurrency)
            rows.append(row)
            print(f"agent    {kind:9} {row['spans_per_cpu_s']:>10,} spans/CPU-s  "
                  f"cpu {row['cpu_s']:.2f}s  peak RSS {row['peak_rss_mib']:.1f} MiB  "
                  f"records {row['records_in_topic']}  errors {row['errors']}  "
                  f"host busy {row['host_busy']:.0%}", flush=True)
    if "gateway" in only:
        for kind in kinds:
            row = measure_gateway(kind, run, args.records)
            rows.append(row)
            print(f"gateway  {kind:9} {row['spans_per_cpu_s']:>10,} spans/CPU-s  "
                  f"cpu {row['cpu_s']:.2f}s  peak RSS {row['peak_rss_mib']:.1f} MiB  "
                  f"wall {row['wall_s_until_committed']}s  host busy {row['host_busy']:.0%}",
                  flush=True)
    for side in ("agent", "gateway"):
        ours = next((r for r in rows if r["side"] == side and r["target"] == "otelpipe"), None)
        peer = next((r for r in rows if r["side"] == side and r["target"] == "otelcol"), None)
        if ours and peer and peer["spans_per_cpu_s"]:
            result["ratio_to_peer"][side] = round(
                ours["spans_per_cpu_s"] / peer["spans_per_cpu_s"], 3)
            print(f"ratio otelpipe/otelcol {side}: {result['ratio_to_peer'][side]}")
    if "latency" in only:
        lat = measure_latency(run, args.rate, args.duration, args.warmup, 16)
        result["latency"] = lat
        print(f"latency  {lat['offered_spans_per_s']:,.0f} spans/s offered: "
              f"p50 {lat['latency_p50_ms']} ms  p99 {lat['latency_p99_ms']} ms  "
              f"max {lat['latency_max_ms']} ms  arrived {lat['requests_arrived']}/"
              f"{lat['requests_sent']}  agent CPU {lat['agent_cpu_utilization']:.0%}  "
              f"gateway CPU {lat['gateway_cpu_utilization']:.0%}  host busy {lat['host_busy']:.0%}",
              flush=True)
    if "fixed" in only:
        result["fixed_load"] = []
        for kind in kinds:
            row = measure_fixed_load(kind, run, args.rate, args.duration)
            result["fixed_load"].append(row)
            print(f"fixed    {kind:9} {row['offered_spans_per_s']:,.0f} spans/s: agent CPU "
                  f"{row['agent_cpu_utilization']:.0%} ({row['agent_spans_per_cpu_s']:,} "
                  f"spans/CPU-s)  gateway CPU {row['gateway_cpu_utilization']:.0%} "
                  f"({row['gateway_spans_per_cpu_s']:,} spans/CPU-s)  host busy "
                  f"{row['host_busy']:.0%}", flush=True)
    if not args.keep_topics:
        asyncio.run(_delete_topics(f"bench-{run}-"))
    path = write_result(args.name, result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
