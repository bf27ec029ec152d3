"""Tail sampling across gateways: agent (OTLP → kafka exporter, partition_traces_by_id)
→ Kafka → two gateways in one consumer group (kafka receiver → tail_sampling with
storage: disk → file). Real processes, a real broker.

1. Traces whose spans come in two requests a second apart: every kept trace is
   delivered whole, exactly once (all spans of a trace are on one partition, so one
   gateway holds them all).
2. One gateway SIGKILLed while it waits on traces, then restarted on its directory:
   nothing acknowledged is lost (the waiting spans were on disk), every trace is
   delivered whole; records read again after the kill give whole duplicates, counted.

Policies: probabilistic 50% (salt "gw") or an ERROR span; the expected set is computed
here from the trace ids (FNV-1a 64, the Collector's hash).
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import grpc
import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.pdata.sampling import fnv1a64, tail_probabilistic_threshold
from tests.builders import kv
from tests.support import OtelpipeProcess, aeventually, eventually, free_port, with_logs

TRACES_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SPANS = 4  # per trace
CUT = tail_probabilistic_threshold(50)
SALT = fnv1a64(b"gw")


def agent_config(otlp: int, bootstrap: str, topic: str) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{otlp}"}}}},
        "exporters": {"kafka": {"brokers": [bootstrap], "topic": topic,
                                "partition_traces_by_id": True}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["kafka"]}}},
    }


def gateway_config(bootstrap: str, topic: str, out: Path, store: Path) -> dict[str, Any]:
    return {
        "receivers": {"kafka": {
            "brokers": [bootstrap], "group_id": topic, "initial_offset": "earliest",
            "traces": {"topics": [topic]}, "commit_interval": "200ms",
            "session_timeout": "6s", "heartbeat_interval": "1s"}},
        "processors": {"tail_sampling": {
            "decision_wait": "2s", "storage": "disk", "directory": str(store),
            "policies": [
                {"name": "errors", "type": "status_code",
                 "status_code": {"status_codes": ["ERROR"]}},
                {"name": "half", "type": "probabilistic",
                 "probabilistic": {"sampling_percentage": 50, "hash_salt": "gw"}}]}},
        "exporters": {"file": {"path": str(out)}},
        "service": {"pipelines": {"traces": {"receivers": ["kafka"],
                                             "processors": ["tail_sampling"],
                                             "exporters": ["file"]}},
                    "shutdown_timeout": "10s"},
    }


class Traces:
    """Generated traces: id -> spans (trace id, span id, name, error)."""

    def __init__(self, seed: int, n: int, tag: str):
        rng = random.Random(seed)
        self.spans: dict[bytes, list[tuple[bytes, str, int]]] = {}
        for i in range(n):
            tid = rng.randbytes(16)
            error = rng.random() < 0.1
            self.spans[tid] = [(rng.randbytes(8), f"{tag}{i}.{j}",
                                2 if error and j == SPANS - 1 else 0) for j in range(SPANS)]

    def kept(self) -> set[str]:
        return {t.hex() for t, spans in self.spans.items()
                if fnv1a64(t, SALT) <= CUT or any(s[2] == 2 for s in spans)}

    def request(self, ids: list[bytes], part: slice) -> bytes:
        now = time.time_ns()
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.attributes.append(kv("service.name", "gw-test"))
        ss = rs.scope_spans.add()
        for tid in ids:
            for sid, name, status in self.spans[tid][part]:
                sp = ss.spans.add(trace_id=tid, span_id=sid, name=name, kind=2,
                                  start_time_unix_nano=now - 5_000_000,
                                  end_time_unix_nano=now)
                sp.status.code = status
        data: bytes = req.SerializeToString()
        return data


def delivered(*paths: Path) -> tuple[dict[str, list[str]], int]:
    """trace id -> span names written (repeats kept), and lines cut by a SIGKILL."""
    out: dict[str, list[str]] = {}
    broken = 0
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_bytes().splitlines():
            try:
                req = orjson.loads(line)
            except orjson.JSONDecodeError:
                broken += 1
                continue
            for rs in req.get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    for sp in ss["spans"]:
                        out.setdefault(sp["traceId"], []).append(sp["name"])
    return out, broken


def check_whole(got: dict[str, list[str]], traces: Traces) -> int:
    """Every trace delivered whole (k full copies); the number of duplicate copies."""
    names = {t.hex(): sorted(s[1] for s in spans) for t, spans in traces.spans.items()}
    dups = 0
    for tid, spans in got.items():
        want = names[tid]
        copies = len(spans) // SPANS
        assert len(spans) % SPANS == 0, f"trace {tid} partial: {sorted(spans)}"
        assert sorted(spans) == sorted(want * copies), f"trace {tid}: {sorted(spans)}"
        dups += copies - 1
    return dups


def assignments(p: OtelpipeProcess) -> list[int]:
    return [len(orjson.loads(line)["partitions"]) for line in p.logs().splitlines()
            if '"partitions assigned"' in line]


async def send(otlp: int, bodies: list[bytes], per_second: float) -> None:
    def run() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{otlp}") as ch:
            export = ch.unary_unary(TRACES_METHOD)
            for body in bodies:
                export(body, timeout=30)
                time.sleep(1 / per_second)
    await asyncio.to_thread(run)


async def test_two_gateways_decide_each_trace_once_and_whole(
        kafka_bootstrap: str, kafka_topic: Any, tmp_path: Path) -> None:
    topic = await kafka_topic("tailsampling")
    otlp = free_port()
    dirs = {g: tmp_path / g for g in ("agent", "a", "b")}
    for d in dirs.values():
        d.mkdir()
    outs = {g: tmp_path / f"{g}.jsonl" for g in ("a", "b")}

    def gateway(g: str) -> OtelpipeProcess:
        return OtelpipeProcess(gateway_config(kafka_bootstrap, topic, outs[g],
                                              dirs[g] / "store"), dirs[g])

    agent = OtelpipeProcess(agent_config(otlp, kafka_bootstrap, topic), dirs["agent"],
                            wait_ports=(otlp,))
    a, b = gateway("a"), gateway("b")
    started = time.monotonic()
    with agent:
        a.start()
        b.start()
        try:
            await aeventually(lambda: bool(assignments(a)) and bool(assignments(b))
                              and assignments(a)[-1] == 2 and assignments(b)[-1] == 2,
                              timeout=90, what=with_logs("the group to settle", a, b))
            # 1. Traces in two halves, the second half ~1 s after the first (decision_wait
            # is 2 s): 40 requests of 25 half-traces.
            split = Traces(1, 500, "s")
            ids = list(split.spans)
            bodies = []
            for k in range(0, len(ids), 50):
                chunk = ids[k:k + 50]
                bodies += [split.request(chunk[:25], slice(0, 2)),
                           split.request(chunk[25:], slice(0, 2))]
                bodies += [split.request(chunk[:25], slice(2, 4)),
                           split.request(chunk[25:], slice(2, 4))]
            # pairs of halves are 2 requests apart at 4 requests/s: ~0.5-1 s
            await send(otlp, bodies, per_second=4)
            want_split = split.kept()
            await asyncio.to_thread(
                eventually, lambda: set(delivered(*outs.values())[0]) >= want_split,
                timeout=120, what=with_logs("the split traces", a, b))
            await asyncio.sleep(3)  # anything extra would show up by now
            got, _ = delivered(*outs.values())
            assert set(got) == want_split
            assert check_whole(got, split) == 0, "a trace was decided twice without a kill"
            both = [len(delivered(p)[0]) for p in outs.values()]
            assert min(both) > 0, f"one gateway decided nothing: {both}"
            print(f"\nsplit traces: {len(want_split)} of {len(ids)} kept, whole, once; "
                  f"per gateway {both}")

            # 2. One-request traces while gateway A is SIGKILLed mid-wait and restarted.
            burst = Traces(2, 3000, "k")
            ids = list(burst.spans)
            bodies = [burst.request(ids[k:k + 20], slice(0, SPANS))
                      for k in range(0, len(ids), 20)]
            sending = asyncio.create_task(send(otlp, bodies, per_second=15))
            before = {g: len(delivered(p)[0]) for g, p in outs.items()}
            await aeventually(lambda: len(delivered(outs["a"])[0]) > before["a"] + 30
                              or sending.done(), timeout=60, what="A to decide some traces")
            assert not sending.done(), "the load ended before the kill"
            a.kill()
            killed_at = time.monotonic()
            await asyncio.sleep(8)  # B takes the partitions over (session timeout 6 s)
            a2 = gateway("a")
            a2.start()
            await sending
            want = burst.kept() | want_split
            try:
                await asyncio.to_thread(
                    eventually, lambda: set(delivered(*outs.values())[0]) >= want,
                    timeout=180, what=with_logs("every kept trace", a2, b))
                await asyncio.sleep(4)
            finally:
                code_a2 = a2.stop()
        finally:
            if a.proc is not None and a.proc.poll() is None:
                a.kill()
            code_b = b.stop()
    assert code_a2 == 0, a2.logs()[-3000:]
    assert code_b == 0, b.logs()[-3000:]
    got, broken = delivered(*outs.values())
    extra = set(got) - want
    dups = check_whole({t: s for t, s in got.items() if t in {x.hex() for x in burst.spans}},
                       burst)
    print(f"kill: {len(burst.kept())} of {len(ids)} traces kept; delivered "
          f"{len(set(got) & burst.kept())}, duplicates {dups} whole traces, "
          f"cut lines {broken}, unexpected {len(extra)}, A restarted "
          f"{time.monotonic() - killed_at:.0f}s before the end; "
          f"{time.monotonic() - started:.0f}s in all")
    assert not extra, f"traces no policy keeps were delivered: {sorted(extra)[:5]}"
    assert set(got) == want
