"""Normal OTLP traffic at a fixed rate while hostile clients attack a real `otelpipe run`.

One target process (otlp gRPC + HTTP → memory_limiter, batch → nop for traces;
jsonlogs → memory_limiter, logstruct grok `%{COMBINEDAPACHELOG}` → nop for logs;
the health extension for `/metrics` and `/health/detailed`), all on loopback and
with the default budgets. Three kinds of processes:

- the *normal clients* (`python -m benchmarks.hostile normal …`): open loop, a
  request every 1/rate seconds whatever the answers (200 requests/s of 100 spans
  × 10 attributes, alternately OTLP/HTTP and OTLP/gRPC), no retries; each
  request is recorded with its start time, latency and outcome (`ok`,
  `refused` = HTTP 503/429 or gRPC UNAVAILABLE/RESOURCE_EXHAUSTED, `error` =
  anything else, a timeout included);
- one *attacker* per phase (`python -m benchmarks.hostile attack NAME …`), each
  bounded in time (`ATTACK_SECONDS`, or one request for the grok line), connecting
  from 127.0.0.2 (`ATTACKER_ADDRESS`; gRPC through a relay in its process) while the
  normal clients connect from 127.0.0.1: two hosts as far as the target's per-peer
  error budget can tell;
- this controller: runs the phases in turn (a quiet baseline first), and per
  phase resets the target's peak RSS (`/proc/<pid>/clear_refs`), scrapes the
  loop-lag histogram before and after, polls `/health/detailed` for the largest
  recent lag, waits until liveness answers again after the attack and then
  `SETTLE` seconds (so a stall that ends late is still this phase's, and the
  10 s lag window is clean for the next one).

Per phase: the normal clients' p50/p99/max latency (all requests started in the
phase, whatever their outcome), refusals, errors, the loop-lag histogram's
highest bucket reached and the largest lag seen, peak RSS, and what the
attacker saw. Target: p99 < 200 ms and no loop stall over 100 ms.

    python -m benchmarks.hostile [--rate 200] [--only slowloris,grok_line]

Writes benchmarks/results/hostile.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO, cpu_seconds, free_port, start_target, write_result

MIB = 1024 * 1024
ATTACK_SECONDS = 10.0
WARM_UP = 12.0
SETTLE = 10.5  # > the 10 s window of /health/detailed's event_loop_lag_max_seconds
REQUEST_TIMEOUT = 60.0
TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PB = "application/x-protobuf"
LAG_BUCKETS = ("0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0",
               "2.5", "5.0", "10.0", "+Inf")
TARGET_P99_MS = 200.0
TARGET_LAG_S = 0.1


# The target ------------------------------------------------------------------------------

def target_config(http_port: int, grpc_port: int, logs_port: int, health_port: int) -> dict:
    return {
        "receivers": {
            "otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                                   "http": {"endpoint": f"127.0.0.1:{http_port}"}}},
            "jsonlogs": {"endpoint": f"127.0.0.1:{logs_port}"}},
        "processors": {
            # The embedded default config's values.
            "memory_limiter": {"check_interval": "1s", "limit_mib": 512, "spike_limit_mib": 128},
            "batch": {"send_batch_size": 8192, "timeout": "200ms"},
            "logstruct": {"parsers": [{"type": "grok", "pattern": "%{COMBINEDAPACHELOG}"}]}},
        "exporters": {"nop": None},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health_port}"}},
        "service": {"extensions": ["health"], "pipelines": {
            "traces": {"receivers": ["otlp"], "processors": ["memory_limiter", "batch"],
                       "exporters": ["nop"]},
            "logs": {"receivers": ["jsonlogs"], "processors": ["memory_limiter", "logstruct"],
                     "exporters": ["nop"]}}},
    }


# Protobuf by hand (fast to build at any size) ------------------------------------------

def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def ld(field: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def trace_request(spans: bytes) -> bytes:
    """ExportTraceServiceRequest{resource_spans{scope_spans{<spans>}}}."""
    return ld(1, ld(2, spans))


def span(attributes: bytes = b"", name: bytes = b"op") -> bytes:
    return ld(1, b"\x01" * 16) + ld(2, b"\x02" * 8) + ld(5, name) + attributes


def million_attributes() -> bytes:
    """A legal 9 MB request: one span with 1,000,000 attributes `k=1`."""
    kv = ld(1, b"k") + ld(2, b"\x18\x01")  # key "k", AnyValue{int_value: 1}
    return trace_request(ld(2, span(ld(9, kv) * 1_000_000, b"big")))


def big_json(limit: int = 20 * 1000 * 1000) -> bytes:
    """An OTLP JSON trace request just under 20 MB (the default body limit is 20 MiB)."""
    one = ('{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708",'
           '"name":"GET /api/orders","kind":2,"startTimeUnixNano":"1700000000000000000",'
           '"endTimeUnixNano":"1700000000100000000","attributes":['
           + ",".join(f'{{"key":"attr{i}","value":{{"stringValue":"value-{i}"}}}}'
                      for i in range(10)) + "]}")
    head = '{"resourceSpans":[{"resource":{},"scopeSpans":[{"scope":{},"spans":['
    tail = "]}]}]}"
    n = (limit - len(head) - len(tail)) // (len(one) + 1)
    return (head + ",".join([one] * n) + tail).encode()


def gzip_bomb(size: int = 64 * MIB) -> bytes:
    """gzip of `size` zero bytes (≈ 65 KB for 64 MiB; the limit is 20 MiB)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MIB)
    return b"".join([*(c.compress(zeros) for _ in range(size // MIB)), c.flush()])


# The attackers' own address ----------------------------------------------------------
# The attackers connect from 127.0.0.2, the normal clients from 127.0.0.1: two hosts, as
# far as the target can tell. (A per-peer budget cannot tell apart two clients on one
# address; with both on 127.0.0.1 the normal clients would share the attackers' budget.)
ATTACKER_ADDRESS = "127.0.0.2"


async def attacker_connection(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port,
                                         local_addr=(ATTACKER_ADDRESS, 0))


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(256 * 1024):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def grpc_relay(target_port: int) -> tuple[asyncio.Server, int]:
    """A TCP relay in the attacker's process: gRPC's client cannot bind a source
    address, so its channel connects here and the relay connects to the target from
    ATTACKER_ADDRESS. Returns the relay's server and port."""

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await attacker_connection(target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


# Raw HTTP/1.1 over asyncio streams ---------------------------------------------------

async def read_status(reader: asyncio.StreamReader, wait: float) -> str:
    """The status code of the answer (within `wait` seconds), or what happened instead."""
    try:
        line = await asyncio.wait_for(reader.readline(), wait)
    except TimeoutError:
        return "no answer"
    except ConnectionError:
        return "reset"
    parts = line.split()
    return parts[1].decode() if len(parts) > 1 else "closed"


def request_head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in
                                                         headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> str:
    """One POST on a fresh connection; the answer's status."""
    try:
        reader, writer = await attacker_connection(port)
    except OSError as exc:
        return f"connect {type(exc).__name__}"
    try:
        writer.write(request_head(path, {**headers, "Content-Length": str(len(body))}) + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        return await read_status(reader, REQUEST_TIMEOUT)
    finally:
        writer.close()


async def until(deadline: float, work: Callable[[], Awaitable[str]], seen: Counter[str]) -> None:
    while time.monotonic() < deadline:
        seen[await work()] += 1


async def flood(workers: int, seconds: float, work: Callable[[], Awaitable[str]]
                ) -> dict[str, int]:
    """`workers` loops doing `work` back to back for `seconds`; the answers seen."""
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(until(deadline, work, seen) for _ in range(workers)))
    return dict(seen)


# Attacks (run in the attacker process) ---------------------------------------------------

SLOWLORIS_HEADERS = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/x-protobuf\r\nContent-Length: 10\r\nX-Padding: "
                     + b"a" * 4000)


async def _slowloris_one(port: int, deadline: float, seen: Counter[str]) -> None:
    """Headers one byte a second; reconnect when the server closes, until `deadline`."""
    while time.monotonic() < deadline:
        try:
            reader, writer = await attacker_connection(port)
        except OSError as exc:
            seen[f"connect {type(exc).__name__}"] += 1
            await asyncio.sleep(1)
            continue
        seen["opened"] += 1
        closed = asyncio.ensure_future(reader.read())
        try:
            for b in SLOWLORIS_HEADERS:
                if closed.done() or time.monotonic() >= deadline:
                    break
                writer.write(bytes([b]))
                await asyncio.sleep(1.0)
            seen["closed by server" if closed.done() else "still open at the end"] += 1
        except ConnectionError:
            seen["closed by server"] += 1
        finally:
            closed.cancel()
            writer.close()


async def slowloris(a: argparse.Namespace) -> dict[str, int]:
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + ATTACK_SECONDS + 3  # past read_header_timeout (10 s)
    await asyncio.gather(*(_slowloris_one(a.http_port, deadline, seen) for _ in range(1000)))
    return dict(seen)


async def _trickle_one(port: int, deadline: float, seen: Counter[str]) -> None:
    """Announce a 19 MB body and send it at 1 MB/s; on an answer, start over."""
    chunk = bytes(64 * 1024)
    head = request_head("/v1/traces", {"Content-Type": PB, "Content-Length": str(19_000_000)})
    while time.monotonic() < deadline:
        try:
            reader, writer = await attacker_connection(port)
        except OSError as exc:
            seen[f"connect {type(exc).__name__}"] += 1
            await asyncio.sleep(0.5)
            continue
        answer = asyncio.ensure_future(read_status(reader, ATTACK_SECONDS * 3))
        try:
            writer.write(head)
            while not answer.done() and time.monotonic() < deadline:
                writer.write(chunk)
                await writer.drain()
                await asyncio.sleep(0.064)
        except ConnectionError:
            pass
        finally:
            writer.close()
        seen[await answer if answer.done() else "still sending at the end"] += 1
        answer.cancel()


async def tricklers(a: argparse.Namespace) -> dict[str, int]:
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + ATTACK_SECONDS
    await asyncio.gather(*(_trickle_one(a.http_port, deadline, seen) for _ in range(40)))
    return dict(seen)


async def idle_flood(a: argparse.Namespace) -> dict[str, int]:
    """2,000 connections that never send a byte, held for ATTACK_SECONDS."""
    seen: Counter[str] = Counter()
    conns = []
    for _ in range(2000):
        try:
            reader, writer = await attacker_connection(a.http_port)
        except OSError as exc:
            seen[f"connect {type(exc).__name__}"] += 1
            continue
        seen["opened"] += 1
        conns.append((asyncio.ensure_future(reader.read()), writer))
    await asyncio.sleep(ATTACK_SECONDS)
    for closed, writer in conns:
        # A refused connection is answered "503 too many connections" and closed at once.
        seen["closed by server" if closed.done() else "held open"] += 1
        closed.cancel()
        writer.close()
    return dict(seen)


def _garbage(rng: random.Random) -> bytes:
    """Random bytes, or a valid request with bytes flipped, cut or inserted."""
    valid = trace_request(ld(2, span(ld(9, ld(1, b"k") + ld(2, ld(1, b"v"))) * 20)) * 20)
    kind = rng.randrange(3)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 64 * 1024))
    body = bytearray(valid)
    if kind == 1:
        for _ in range(rng.randrange(1, 20)):
            body[rng.randrange(len(body))] = rng.randrange(256)
        return bytes(body)
    cut = rng.randrange(1, len(body))
    return bytes(body[:cut]) + rng.randbytes(rng.randrange(0, 16))


async def malformed(a: argparse.Namespace) -> dict[str, int]:
    import aiohttp
    import grpc
    import grpc.aio

    rng = random.Random(7)
    bodies = [_garbage(rng) for _ in range(256)]
    relay, relay_port = await grpc_relay(a.grpc_port)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(
        limit=16, local_addr=(ATTACKER_ADDRESS, 0)))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{relay_port}")
    call = channel.unary_unary(TRACE_METHOD, request_serializer=None, response_deserializer=None)
    url = f"http://127.0.0.1:{a.http_port}/v1/traces"

    async def http_one() -> str:
        try:
            async with session.post(url, data=rng.choice(bodies),
                                    headers={"Content-Type": PB}) as r:
                await r.read()
                return f"http {r.status}"
        except aiohttp.ClientError as exc:
            return f"http {type(exc).__name__}"

    async def grpc_one() -> str:
        try:
            await call(rng.choice(bodies), timeout=REQUEST_TIMEOUT)
            return "grpc OK"
        except grpc.aio.AioRpcError as exc:
            return f"grpc {exc.code().name}"

    try:
        results = await asyncio.gather(flood(16, ATTACK_SECONDS, http_one),
                                       flood(16, ATTACK_SECONDS, grpc_one))
    finally:
        await session.close()
        await channel.close()
        relay.close()
    return {**results[0], **results[1]}


async def gzip_bombs(a: argparse.Namespace) -> dict[str, int]:
    bomb = gzip_bomb()
    headers = {"Content-Type": PB, "Content-Encoding": "gzip"}
    return await flood(4, ATTACK_SECONDS, lambda: post(a.http_port, "/v1/traces", bomb, headers))


async def _chunked_oversized(port: int) -> str:
    """A chunked body of 25 MB (no Content-Length): cut off at the limit."""
    try:
        reader, writer = await attacker_connection(port)
    except OSError as exc:
        return f"connect {type(exc).__name__}"
    answer = asyncio.ensure_future(read_status(reader, REQUEST_TIMEOUT))
    chunk = bytes(MIB)
    try:
        writer.write(request_head("/v1/traces", {"Content-Type": PB,
                                                 "Transfer-Encoding": "chunked"}))
        for _ in range(25):
            if answer.done():
                break
            writer.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        return f"chunked {await answer}"
    except ConnectionError:
        return f"chunked {await answer}"
    finally:
        answer.cancel()
        writer.close()


async def oversized(a: argparse.Namespace) -> dict[str, int]:
    """Bodies over the limits: 100 MB announced (HTTP), 25 MB chunked (HTTP), 5 MiB (gRPC)."""
    import grpc
    import grpc.aio

    relay, relay_port = await grpc_relay(a.grpc_port)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{relay_port}",
                                        options=[("grpc.max_send_message_length", 64 * MIB)])
    call = channel.unary_unary(TRACE_METHOD, request_serializer=None, response_deserializer=None)
    big = bytes(5 * MIB)

    async def announced() -> str:
        try:
            reader, writer = await attacker_connection(a.http_port)
        except OSError as exc:
            return f"connect {type(exc).__name__}"
        try:
            writer.write(request_head("/v1/traces", {"Content-Type": PB,
                                                     "Content-Length": str(100_000_000)}))
            writer.write(bytes(MIB))
            return f"announced {await read_status(reader, REQUEST_TIMEOUT)}"
        finally:
            writer.close()

    async def grpc_big() -> str:
        try:
            await call(big, timeout=REQUEST_TIMEOUT)
            return "grpc OK"
        except grpc.aio.AioRpcError as exc:
            return f"grpc {exc.code().name}"

    try:
        results = await asyncio.gather(
            flood(2, ATTACK_SECONDS, announced),
            flood(2, ATTACK_SECONDS, lambda: _chunked_oversized(a.http_port)),
            flood(1, ATTACK_SECONDS, grpc_big))
    finally:
        await channel.close()
        relay.close()
    return {k: v for r in results for k, v in r.items()}


async def sequential(a: argparse.Namespace, port: int, path: str, body: bytes,
                     ctype: str) -> dict[str, int]:
    """The same request over and over, one at a time, for ATTACK_SECONDS."""
    return await flood(1, ATTACK_SECONDS, lambda: post(port, path, body, {"Content-Type": ctype}))


async def attributes_9mb(a: argparse.Namespace) -> dict[str, int]:
    return await sequential(a, a.http_port, "/v1/traces", million_attributes(), PB)


async def json_20mb(a: argparse.Namespace) -> dict[str, int]:
    return await sequential(a, a.http_port, "/v1/traces", big_json(), "application/json")


def alternating_ids(spans: int = 160_000) -> bytes:
    """3.4 MB of spans alternating valid and missing trace ids (under gRPC's 4 MiB)."""
    good = ld(2, ld(1, b"\x01" * 16) + ld(2, b"\x02" * 8))
    bad = ld(2, ld(2, b"\x02" * 8))
    return trace_request((good + bad) * (spans // 2))


async def malformed_ids(a: argparse.Namespace) -> dict[str, int]:
    return await sequential(a, a.http_port, "/v1/traces", alternating_ids(), PB)


async def grok_line(a: argparse.Namespace) -> dict[str, int]:
    """One 40 KB line `'a.' * 20000 + '!'` through grok %{COMBINEDAPACHELOG}."""
    line = b"a." * 20000 + b"!"
    status = await post(a.logs_port, "/logs", line, {"Content-Type": "text/plain"})
    return {status: 1}


ATTACKS: dict[str, tuple[str, Callable[[argparse.Namespace], Awaitable[dict[str, int]]]]] = {
    "slowloris": ("1,000 connections sending headers byte by byte (1 B/s), reconnecting, "
                  "13 s", slowloris),
    "big_body_tricklers": ("40 connections announcing 19 MB bodies, 1 MB/s each, "
                           "reconnecting, 10 s", tricklers),
    "idle_flood": ("2,000 connections that send nothing, held 10 s", idle_flood),
    "malformed_protobuf": ("random and mutated protobuf, 16 HTTP + 16 gRPC senders back to "
                           "back, 10 s", malformed),
    "gzip_bomb": ("64 MiB of zeros gzipped (≈ 65 KB), 4 senders back to back, 10 s",
                  gzip_bombs),
    "oversized_body": ("100 MB announced and 25 MB chunked over HTTP, 5 MiB over gRPC, "
                       "back to back, 10 s", oversized),
    "protobuf_9mb_1m_attributes": ("a legal 9 MB request, one span with 1,000,000 "
                                   "attributes, one at a time, 10 s", attributes_9mb),
    "otlp_json_20mb": ("a 20 MB OTLP JSON request (≈ 38,000 spans), one at a time, 10 s",
                       json_20mb),
    "malformed_ids_3mb": ("found by tests/unit/receivers/test_otlp_fuzz.py: 3.4 MB, 160,000 "
                          "spans alternating valid and invalid trace ids, one at a time, 10 s",
                          malformed_ids),
    "grok_line_40kb": ("one 40 KB line 'a.'*20000+'!' into jsonlogs → logstruct grok "
                       "%{COMBINEDAPACHELOG}", grok_line),
}


# Normal clients (their own process) ------------------------------------------------------

async def _normal(a: argparse.Namespace, stop: asyncio.Event) -> dict[str, Any]:
    import aiohttp
    import grpc
    import grpc.aio

    from benchmarks.loadgen import make_request

    rng = random.Random(1)
    bodies = [make_request(100, 10, rng=rng) for _ in range(32)]
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{a.grpc_port}")
    call = channel.unary_unary(TRACE_METHOD, request_serializer=None, response_deserializer=None)
    url = f"http://127.0.0.1:{a.http_port}/v1/traces"
    records: list[tuple[float, str, float, str]] = []
    details: Counter[str] = Counter()

    async def http_send(body: bytes) -> str:
        async with session.post(url, data=body, headers={"Content-Type": PB}) as r:
            answer = await r.read()
            if r.status == 200:
                return "ok"
            what = "refused" if r.status in (429, 503) else "error"
            return f"{what} HTTP {r.status} {_status_message(answer)}"

    async def grpc_send(body: bytes) -> str:
        try:
            await call(body, timeout=REQUEST_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            what = "refused" if code in (grpc.StatusCode.UNAVAILABLE,
                                         grpc.StatusCode.RESOURCE_EXHAUSTED) else "error"
            return f"{what} gRPC {code.name} {(exc.details() or '')[:100]}"
        return "ok"

    async def one(proto: str, body: bytes) -> None:
        t0 = time.monotonic()
        try:
            outcome = await (http_send(body) if proto == "http" else grpc_send(body))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            outcome = f"error {type(exc).__name__}"
        records.append((t0, proto, time.monotonic() - t0, outcome))
        if outcome != "ok":
            details[outcome] += 1

    tasks: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    i = 0
    while not stop.is_set():
        delay = start + i / a.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one("http" if i % 2 == 0 else "grpc", bodies[i % 32]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    if tasks:
        await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT + 5)
    await session.close()
    await channel.close()
    return {"records": records, "not_ok": dict(details)}


def _status_message(answer: bytes) -> str:
    """The message of a google.rpc.Status answer (protobuf), shortened."""
    from google.protobuf.message import DecodeError
    from google.rpc import status_pb2

    try:
        return status_pb2.Status.FromString(answer).message[:100]
    except DecodeError:  # not a Status: the start of the answer
        return answer[:100].decode(errors="replace")


async def normal_main(a: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # The controller closes our stdin to stop us.
    threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)),
                     daemon=True).start()
    return await _normal(a, stop)


# The controller -------------------------------------------------------------------------

def http_get(port: int, path: str, timeout: float) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def lag_histogram(health_port: int) -> dict[str, float]:
    """Cumulative bucket counts of otelpipe_event_loop_lag_seconds, by `le`."""
    _, body = http_get(health_port, "/metrics", REQUEST_TIMEOUT)
    out = {}
    for line in body.decode().splitlines():
        if line.startswith("otelpipe_event_loop_lag_seconds_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[le] = float(line.rsplit(" ", 1)[1])
    return out


def highest_bucket(before: dict[str, float], after: dict[str, float]) -> str:
    """The smallest `le` holding every lag sample taken between the two scrapes."""
    total = after.get("+Inf", 0) - before.get("+Inf", 0)
    for le in LAG_BUCKETS:
        if after.get(le, 0) - before.get(le, 0) >= total:
            return le
    return "+Inf"


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


class LagWatcher:
    """Polls /health/detailed every second; the largest recent lag seen, per window."""

    def __init__(self, health_port: int):
        self.port = health_port
        self.samples: list[tuple[float, float]] = []
        self.probe_max = 0.0  # slowest answer of the health endpoint (it waits out stalls)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            with contextlib.suppress(OSError, ValueError):
                _, body = http_get(self.port, "/health/detailed", REQUEST_TIMEOUT)
                lag = json.loads(body).get("event_loop_lag_max_seconds") or 0.0
                self.samples.append((time.monotonic(), float(lag)))
            self._stop.wait(max(0.0, 1.0 - (time.monotonic() - t0)))

    def max_between(self, t0: float, t1: float) -> float:
        return max((lag for t, lag in self.samples if t0 <= t <= t1), default=0.0)

    def __enter__(self) -> LagWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(REQUEST_TIMEOUT)


def wait_recovered(health_port: int, deadline: float) -> float:
    """Block until liveness answers within 100 ms twice in a row; seconds waited."""
    t0 = time.monotonic()
    good = 0
    while good < 2 and time.monotonic() < deadline:
        started = time.monotonic()
        with contextlib.suppress(OSError):
            status, _ = http_get(health_port, "/health/liveness", REQUEST_TIMEOUT)
            good = good + 1 if status == 200 and time.monotonic() - started < 0.1 else 0
        time.sleep(0.2)
    return time.monotonic() - t0


def run_attack(name: str, ports: dict[str, int]) -> dict[str, int]:
    cmd = [sys.executable, "-m", "benchmarks.hostile", "attack", name,
           *(f"--{k.replace('_', '-')}={v}" for k, v in ports.items())]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                         timeout=ATTACK_SECONDS * 3 + REQUEST_TIMEOUT)
    if out.returncode != 0:
        return {f"attacker failed: {out.stderr.strip().splitlines()[-1:]}": 1}
    seen: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return seen


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] if values else 0.0


def phase_row(name: str, window: tuple[float, float], records: list[list[Any]]) -> dict:
    mine = [r for r in records if window[0] <= r[0] < window[1]]
    lat = [r[2] * 1000 for r in mine]
    outcomes = Counter(r[3].split(" ", 1)[0] for r in mine)
    not_ok = Counter(r[3] for r in mine if r[3] != "ok")
    return {"requests": len(mine), "ok": outcomes["ok"], "refused": outcomes["refused"],
            "errors": outcomes["error"], "not_ok_top": dict(not_ok.most_common(4)),
            "p50_ms": round(pct(lat, 0.5), 1), "p99_ms": round(pct(lat, 0.99), 1),
            "max_ms": round(max(lat, default=0.0), 1)}


def run_phases(names: list[str], t: Any, ports: dict[str, int]) -> list[dict]:
    health = ports["health_port"]
    rows = []
    with LagWatcher(health) as watcher:
        for name in names:
            reset_peak_rss(t.pid)
            before = lag_histogram(health)
            cpu0, host0 = cpu_seconds(t.pid), cpu_sample()
            t0 = time.monotonic()
            if name == "baseline":
                time.sleep(ATTACK_SECONDS)
                seen: dict[str, int] = {}
            else:
                seen = run_attack(name, ports)
            attack_s = time.monotonic() - t0
            recovery_s = wait_recovered(health, time.monotonic() + 120)
            time.sleep(SETTLE)
            t1 = time.monotonic()
            after = lag_histogram(health)
            host1 = cpu_sample()
            rows.append({
                "attack": name, "what": ATTACKS[name][0] if name in ATTACKS else
                "no attack: the normal clients alone",
                "window": (t0, t1), "attack_s": round(attack_s, 1),
                "recovery_s": round(recovery_s, 1), "attacker_saw": seen,
                "loop_lag_max_bucket_le": highest_bucket(before, after),
                "loop_lag_max_s": round(watcher.max_between(t0, t1), 3),
                "peak_rss_mib": round(peak_rss_mib(t.pid), 1),
                "target_cpu_s": round(cpu_seconds(t.pid) - cpu0, 1),
                "host_busy": round(1 - (host1[1] - host0[1]) / max(1, host1[0] - host0[0]), 2)})
            print(f"{name}: attack {attack_s:.1f}s, recovered after {recovery_s:.1f}s, "
                  f"lag bucket le={rows[-1]['loop_lag_max_bucket_le']}, "
                  f"max {rows[-1]['loop_lag_max_s']}s, RSS {rows[-1]['peak_rss_mib']} MiB, "
                  f"attacker saw {seen}", flush=True)
    return rows


def cpu_sample() -> tuple[int, int]:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields), fields[3] + fields[4]


def controller(a: argparse.Namespace) -> int:
    names = ["baseline", *(a.only.split(",") if a.only else ATTACKS)]
    ports = {"http_port": free_port(), "grpc_port": free_port(), "logs_port": free_port(),
             "health_port": free_port()}
    cfg = target_config(ports["http_port"], ports["grpc_port"], ports["logs_port"],
                        ports["health_port"])
    out_path = Path(f"/tmp/hostile-normal-{os.getpid()}.json")
    cpu0 = cpu_sample()
    with start_target("otelpipe", cfg, list(ports.values())) as t:
        normal = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.hostile", "normal", f"--rate={a.rate}",
             f"--http-port={ports['http_port']}", f"--grpc-port={ports['grpc_port']}",
             f"--out={out_path}"], cwd=REPO, stdin=subprocess.PIPE)
        try:
            # The clients connect, the target warms up, and its start-up leaves the
            # 10 s window of /health/detailed's largest lag.
            time.sleep(WARM_UP)
            rows = run_phases(names, t, ports)
        finally:
            assert normal.stdin is not None
            normal.stdin.close()
            normal.wait(REQUEST_TIMEOUT + 30)
    cpu1 = cpu_sample()
    result = json.loads(out_path.read_text())
    if a.records:
        out_path.replace(a.records)
    else:
        out_path.unlink()
    for row in rows:
        row.update(phase_row(row["attack"], row.pop("window"), result["records"]))
        row["meets_target"] = row["p99_ms"] < TARGET_P99_MS and \
            row["loop_lag_max_s"] <= TARGET_LAG_S and row["errors"] == 0
    busy = 1 - (cpu1[1] - cpu0[1]) / max(1, cpu1[0] - cpu0[0])
    path = write_result("hostile", {
        "date": dt.datetime.now(dt.UTC).isoformat(), "rate_per_s": a.rate,
        "spans_per_request": 100, "attributes_per_span": 10,
        "protocols": "alternately OTLP/HTTP and OTLP/gRPC",
        "target": {"p99_ms_below": TARGET_P99_MS, "loop_lag_s_at_most": TARGET_LAG_S},
        "host_busy": round(busy, 2), "cpus": os.cpu_count(),
        "normal_clients_not_ok": result["not_ok"], "phases": rows})
    print_table(rows)
    print(f"wrote {path}")
    return 0


def print_table(rows: list[dict]) -> None:
    print(f"{'attack':28} {'p50':>7} {'p99':>8} {'refused':>7} {'errors':>6} "
          f"{'lag le':>6} {'lag max':>8} {'RSS':>7}  target")
    for r in rows:
        print(f"{r['attack']:28} {r['p50_ms']:7.1f} {r['p99_ms']:8.1f} {r['refused']:7} "
              f"{r['errors']:6} {r['loop_lag_max_bucket_le']:>6} {r['loop_lag_max_s']:8.3f} "
              f"{r['peak_rss_mib']:7.1f}  {'met' if r['meets_target'] else 'MISSED'}")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("mode", nargs="?", default="run", choices=["run", "normal", "attack"])
    p.add_argument("attack", nargs="?")
    p.add_argument("--rate", type=float, default=200.0, help="normal requests per second")
    p.add_argument("--only", help="comma-separated attacks (default: all)")
    for port in ("http", "grpc", "logs", "health"):
        p.add_argument(f"--{port}-port", type=int)
    p.add_argument("--out")
    p.add_argument("--records", help="keep every normal request (start, protocol, latency, "
                                     "outcome) in this JSON file")
    a = p.parse_args()
    if a.mode == "normal":
        Path(a.out).write_text(json.dumps(asyncio.run(normal_main(a))))
        return 0
    if a.mode == "attack":
        seen = asyncio.run(ATTACKS[a.attack][1](a))
        print(json.dumps(seen))
        return 0
    return controller(a)


if __name__ == "__main__":
    raise SystemExit(main())
