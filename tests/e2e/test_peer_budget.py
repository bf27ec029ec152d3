"""Per-peer error budgets against a real `otelpipe run` (issue 11: fairness under floods).

otlp (HTTP + gRPC, default `peer_error_budget`: 10 errors a second, burst 100) → file.
An attacker connects from 127.0.0.2 (gRPC through a relay bound there: gRPC's client
cannot choose its source address), a normal client from 127.0.0.1, both at once:

- malformed protobuf over HTTP and gRPC, back to back: the attacker gets 400 /
  INVALID_ARGUMENT for about its budget (burst + rate × time), then 429 +
  Retry-After / RESOURCE_EXHAUSTED + RetryInfo, answered before its body is read;
  the normal client gets 200 / OK for every request and every one of its spans is
  in the file; the refusals are in `otelpipe_receiver_peer_refused_total`;
- gzip bombs (64 MiB of zeros, 65 KB gzipped) from 4 senders back to back: each
  costs 21 tokens (1 + 20 MiB inflated), so at most about (burst + rate × time) / 21
  + the senders in flight are inflated (one at a time); the rest are refused (429
  before being read, or 503 + Retry-After while waiting their inflation turn).

Counts, not latencies, are asserted (the machine running the tests is shared); the
target's CPU seconds during each flood are printed.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from google.rpc import error_details_pb2, status_pb2

from tests.builders import spans_request
from tests.support import OtelpipeProcess, free_port

ATTACKER = "127.0.0.2"
METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PB = "application/x-protobuf"
BURST, RATE = 100, 10.0  # the defaults
MIB = 1024 * 1024


def config(tmp_path: Path, http_port: int, grpc_port: int, health_port: int) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {
            "http": {"endpoint": f"127.0.0.1:{http_port}"},
            "grpc": {"endpoint": f"127.0.0.1:{grpc_port}"}}}},
        "exporters": {"file": {"path": str(tmp_path / "traces.jsonl")}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health_port}"}},
        "service": {"extensions": ["health"], "pipelines": {
            "traces": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def scrape(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def raw_post(port: int, body: bytes, headers: dict[str, str], source: str = ATTACKER
                   ) -> tuple[int, dict[str, str], bytes]:
    """One POST on a fresh connection from `source`: status, headers, body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    head = "".join(f"{k}: {v}\r\n" for k, v in {
        **headers, "Host": "x", "Connection": "close", "Content-Length": str(len(body))}.items())
    writer.write(f"POST /v1/traces HTTP/1.1\r\n{head}\r\n".encode() + body)
    try:
        answer = await asyncio.wait_for(reader.read(), 30)
    except ConnectionResetError:
        return 0, {}, b""
    finally:
        writer.close()
    head_bytes, _, rest = answer.partition(b"\r\n\r\n")
    lines = head_bytes.decode().split("\r\n")
    hdrs = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), hdrs, rest


async def relay(target_port: int) -> tuple[asyncio.Server, int]:
    """A TCP relay connecting to the target from ATTACKER (for the gRPC client)."""

    async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except ConnectionError:
            pass
        finally:
            w.close()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", target_port,
                                               local_addr=(ATTACKER, 0))
        await asyncio.gather(pump(r, uw), pump(ur, w))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


class Normal:
    """A normal client on 127.0.0.1: a request every 50 ms, alternately HTTP and gRPC."""

    def __init__(self, http_port: int, grpc_port: int):
        self.http_port = http_port
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
        self.call = self.channel.unary_unary(METHOD)
        self.outcomes: Counter[str] = Counter()
        self.spans = 0
        self.i = 0

    async def run(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.i += 1
            body = spans_request(self.i.to_bytes(16, "big"), 5,
                                 service="normal").SerializeToString()
            if self.i % 2:
                status, _, _ = await raw_post(self.http_port, body, {"Content-Type": PB},
                                              source="127.0.0.1")
                outcome = f"http {status}"
            else:
                try:
                    await self.call(body, timeout=30)
                    outcome = "grpc OK"
                except grpc.aio.AioRpcError as exc:
                    outcome = f"grpc {exc.code().name}"
            self.outcomes[outcome] += 1
            if outcome in ("http 200", "grpc OK"):
                self.spans += 5
            await asyncio.sleep(0.05)


def retry_delay(exc: grpc.aio.AioRpcError) -> float | None:
    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return None


def spans_in(path: Path, service: str) -> int:
    n = 0
    for line in path.read_text().splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            attrs = {a["key"]: a["value"].get("stringValue") for a in
                     rs["resource"].get("attributes", [])}
            if attrs.get("service.name") == service:
                n += sum(len(ss["spans"]) for ss in rs["scopeSpans"])
    return n


async def test_a_peer_flooding_malformed_requests_is_refused_normal_clients_are_served(
        tmp_path: Path) -> None:
    http_port, grpc_port, health_port = free_port(), free_port(), free_port()
    proc = OtelpipeProcess(config(tmp_path, http_port, grpc_port, health_port), tmp_path,
                           wait_ports=(http_port, grpc_port, health_port)).start()
    assert proc.proc is not None
    server, relay_port = await relay(grpc_port)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{relay_port}")
    bad_call = channel.unary_unary(METHOD)
    normal = Normal(http_port, grpc_port)
    seen: Counter[str] = Counter()
    delays: list[float] = []
    retry_after: set[str] = set()
    garbage = b"\x0a\xff\xff\xff\xff\x0f" + b"\x00" * 100  # a field longer than the body

    async def http_attacker(deadline: float) -> None:
        while time.monotonic() < deadline:
            status, hdrs, _ = await raw_post(http_port, garbage, {"Content-Type": PB})
            seen[f"http {status}"] += 1
            if status == 429:
                retry_after.add(hdrs.get("Retry-After", "missing"))

    async def grpc_attacker(deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                await bad_call(garbage, timeout=30)
                seen["grpc OK"] += 1
            except grpc.aio.AioRpcError as exc:
                seen[f"grpc {exc.code().name}"] += 1
                if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    delay = retry_delay(exc)
                    delays.append(-1.0 if delay is None else delay)

    try:
        cpu0, started = cpu_seconds(proc.proc.pid), time.monotonic()
        deadline = started + 6.0
        await asyncio.gather(normal.run(6.0), *(http_attacker(deadline) for _ in range(8)),
                             *(grpc_attacker(deadline) for _ in range(8)))
        elapsed, cpu = time.monotonic() - started, cpu_seconds(proc.proc.pid) - cpu0
        print(f"attacker saw {dict(seen)}; normal client {dict(normal.outcomes)}; "
              f"target CPU {cpu:.2f}s in {elapsed:.1f}s")
        # The normal client, on its own address, is never refused.
        assert set(normal.outcomes) <= {"http 200", "grpc OK"}, normal.outcomes
        # Each listener has its own budget: per listener at most burst + rate × time
        # failures (+ the requests in flight when the budget ran out).
        allowed = BURST + RATE * elapsed + 8
        assert BURST <= seen["http 400"] <= allowed, seen
        assert BURST <= seen["grpc INVALID_ARGUMENT"] <= allowed, seen
        assert seen["http 429"] > 0, seen
        assert seen["grpc RESOURCE_EXHAUSTED"] > 0, seen
        assert set(seen) <= {"http 400", "http 429", "http 0", "grpc INVALID_ARGUMENT",
                             "grpc RESOURCE_EXHAUSTED"}, seen
        assert retry_after
        assert all(v.isdigit() and int(v) >= 1 for v in retry_after), retry_after
        assert delays
        assert all(d > 0 for d in delays), delays[:5]
        text = scrape(health_port)
        refused = sample(text, "otelpipe_receiver_peer_refused_total")
        assert refused >= seen["http 429"] + seen["grpc RESOURCE_EXHAUSTED"], refused
        assert sample(text, "otelpipe_receiver_peer_blocked_total", transport="http") >= 1
        assert sample(text, "otelpipe_receiver_peer_blocked_total", transport="grpc") >= 1
    finally:
        await channel.close()
        await normal.channel.close()
        server.close()
        assert proc.stop() == 0, proc.logs()
    assert spans_in(tmp_path / "traces.jsonl", "normal") == normal.spans


def gzip_bomb(size: int = 64 * MIB) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MIB)
    return b"".join([*(c.compress(zeros) for _ in range(size // MIB)), c.flush()])


async def test_gzip_bombs_from_one_peer_are_inflated_only_within_its_budget(
        tmp_path: Path) -> None:
    http_port, grpc_port, health_port = free_port(), free_port(), free_port()
    proc = OtelpipeProcess(config(tmp_path, http_port, grpc_port, health_port), tmp_path,
                           wait_ports=(http_port, grpc_port, health_port)).start()
    assert proc.proc is not None
    bomb = gzip_bomb()
    headers = {"Content-Type": PB, "Content-Encoding": "gzip"}
    seen: Counter[int] = Counter()
    normal = Normal(http_port, grpc_port)

    async def sender(deadline: float) -> None:
        # Until the deadline, and on until refused (bombs are slow on a loaded machine).
        while time.monotonic() < deadline or (not seen[429] and
                                              time.monotonic() < deadline + 30):
            seen[(await raw_post(http_port, bomb, headers))[0]] += 1

    try:
        cpu0, started = cpu_seconds(proc.proc.pid), time.monotonic()
        await asyncio.gather(normal.run(6.0),
                             *(sender(started + 6.0) for _ in range(4)))
        elapsed, cpu = time.monotonic() - started, cpu_seconds(proc.proc.pid) - cpu0
        print(f"bombs: {dict(seen)}; normal client {dict(normal.outcomes)}; "
              f"target CPU {cpu:.2f}s in {elapsed:.1f}s")
        assert set(normal.outcomes) <= {"http 200", "grpc OK"}, normal.outcomes
        # 21 tokens a bomb; a peer with failures gets one request per token it holds.
        assert 4 <= seen[413] <= (BURST + RATE * elapsed) / 21 + 4, seen
        assert seen[429] > 0, seen
        text = scrape(health_port)
        assert sample(text, "otelpipe_receiver_failed_requests_total",
                      reason="too_large") == seen[413]
    finally:
        await normal.channel.close()
        assert proc.stop() == 0, proc.logs()
