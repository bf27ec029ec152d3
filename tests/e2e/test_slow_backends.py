"""Bounded memory behind slow or dead backends, against a real `otelpipe run`.

1. A backend that accepts TCP and never answers, `otlphttp` without a sending
   queue: 200 clients post 1 MB OTLP requests at once and hang up after 2 s.
   Each export runs in its client's request handler, so the hang-up cancels
   it and its retries (`retry_on_failure` would otherwise retry for 5
   minutes); beyond `max_in_flight_bytes` (32 MiB here) clients are refused
   at once with 503. Asserted: peak RSS under idle + 150 MiB and back near idle
   afterwards, every client either refused (503) or hung up, no export left
   in flight within seconds (`otelpipe_exporter_in_flight_requests` 0) and
   every hung-up export counted as cancelled; a gRPC deadline cancels as a
   hang-up does.
2. A backend answering after 10 s, a memory queue bounded at 8 MiB: clients
   (HTTP and gRPC) post 1 MB requests for a few seconds. Asserted: RSS under
   idle + 120 MiB, the excess refused with 503 / UNAVAILABLE (nothing else),
   the queue never above its bound, and once the backend answers at once,
   every acknowledged request delivered exactly once and nothing else.

Loopback only; each test takes well under 60 s.
"""

from __future__ import annotations

import asyncio
import collections
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.builders import spans_request
from tests.support import OtelpipeProcess, eventually, free_port, http_get

MIB = 1024 * 1024
SPANS = 250  # x one 4 KB attribute: a request of about 1 MB
METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def request_bytes(seq: int) -> bytes:
    """A 1 MB trace request whose spans all carry the trace id of `seq`; each span has
    its own random 4 KB attribute (data that compresses like real data: about 2:1)."""
    req = spans_request(seq.to_bytes(16, "big"), SPANS, service="slow", scope="slow",
                        attributes={"blob": ""})
    for span in req.resource_spans[0].scope_spans[0].spans:
        span.attributes[0].value.string_value = random.randbytes(2000).hex()
    raw: bytes = req.SerializeToString()
    return raw


# The otelpipe process -----------------------------------------------------------------------

def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class RSSSampler(threading.Thread):
    """The RSS of a process every 50 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[int] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.samples.append(rss(self.pid))
            except (OSError, AssertionError):  # gone: the test says so
                return
            self.stopped.wait(0.05)

    def stop(self) -> int:
        self.stopped.set()
        self.join()
        return max(self.samples)


def metric(health_port: int, name: str, labels: dict[str, str] | None = None) -> float:
    status, body = http_get(f"http://127.0.0.1:{health_port}/metrics")
    assert status == 200
    want = [f'{k}="{v}"' for k, v in (labels or {}).items()]
    for line in body.decode().splitlines():
        if line.startswith(name + "{") and all(w in line for w in want):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def pipeline_config(http_port: int, grpc_port: int, health_port: int,
                    exporter: dict[str, Any]) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {
            "grpc": {"endpoint": f"127.0.0.1:{grpc_port}", "max_recv_msg_size_mib": 4},
            "http": {"endpoint": f"127.0.0.1:{http_port}"},
        }}},
        # As in production, a memory_limiter first; its limit is never reached here: it
        # only sets glibc's thresholds so that freed request buffers leave the process.
        "processors": {"memory_limiter": {"limit_mib": 2000, "check_interval": "1s"}},
        "exporters": {"otlphttp": exporter},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health_port}"}},
        "service": {"extensions": ["health"], "pipelines": {"traces": {
            "receivers": ["otlp"], "processors": ["memory_limiter"],
            "exporters": ["otlphttp"]}}},
    }


@contextmanager
def running_pipeline(tmp_path: Path, exporter: dict[str, Any]
                     ) -> Iterator[tuple[OtelpipeProcess, int, int, int]]:
    """(process, HTTP port, gRPC port, health port) of a started pipeline."""
    http_port, grpc_port, health_port = free_port(), free_port(), free_port()
    proc = OtelpipeProcess(pipeline_config(http_port, grpc_port, health_port, exporter),
                           tmp_path, wait_ports=(http_port, grpc_port, health_port))
    with proc:
        eventually(lambda: http_get(f"http://127.0.0.1:{health_port}/health/readiness")[0]
                   == 200, what="otelpipe to be ready")
        yield proc, http_port, grpc_port, health_port


def settled_rss(pid: int) -> int:
    """The RSS once it stops moving (idle, or after a load)."""
    time.sleep(0.5)
    last = rss(pid)
    for _ in range(20):
        time.sleep(0.25)
        now = rss(pid)
        if abs(now - last) < MIB:
            return now
        last = now
    return last


# Backends (a thread with its own event loop) ---------------------------------------------

class LoopThread:
    """An event loop in a daemon thread, for servers the test talks to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], object]) -> None:
        self.loop.call_soon_threadsafe(fn)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Blackhole:
    """Accepts connections, reads everything, never answers."""

    def __init__(self, loop: LoopThread):
        self.loop = loop
        self.port = free_port()
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await reader.read(1 << 16):
                pass
        finally:
            writer.close()

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    def start(self) -> Blackhole:
        self.loop.run(self._start())
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()


class SlowBackend:
    """An OTLP/HTTP traces endpoint that answers after `delay` s until told to hurry;
    counts the requests it acknowledged, by trace id."""

    def __init__(self, loop: LoopThread, delay: float):
        self.loop = loop
        self.delay = delay
        self.port = free_port()
        self.received: collections.Counter[int] = collections.Counter()
        self.fast = asyncio.Event()
        self.runner: web.AppRunner | None = None

    async def _export(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self.fast.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(self.fast.wait(), self.delay)
        req = ExportTraceServiceRequest.FromString(body)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                # One count per request: every span of a request has its trace id.
                self.received[int.from_bytes(ss.spans[0].trace_id, "big")] += 1
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * MIB)
        app.router.add_post("/v1/traces", self._export)
        # A request the exporter gave up on is not counted as delivered.
        self.runner = web.AppRunner(app, handler_cancellation=True)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def start(self) -> SlowBackend:
        self.loop.run(self._start())
        return self

    def hurry(self) -> None:
        self.loop.call(self.fast.set)

    def stop(self) -> None:
        if self.runner is not None:
            self.loop.run(self.runner.cleanup())


# Clients ----------------------------------------------------------------------------------

def http_head(port: int, length: int) -> bytes:
    return (f"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/x-protobuf\r\nContent-Length: {length}\r\n\r\n"
            ).encode()


async def post_and_hang_up(port: int, body: bytes, hold: float, after: float = 0.0) -> str:
    """After `after` s, post, wait `hold` s for the status line, then disconnect: the
    status or 'hung up'."""
    await asyncio.sleep(after)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(http_head(port, len(body)) + body)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), hold)
        return line.split()[1].decode() if line else "closed"
    except TimeoutError:
        return "hung up"
    finally:
        writer.close()


async def post(port: int, body: bytes) -> tuple[int, dict[str, str]]:
    """Post on a fresh connection; (status, headers). Callers bound the wait."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(http_head(port, len(body)) + body)
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode().partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, headers
    finally:
        writer.close()


async def grpc_with_deadline(port: int, calls: int, deadline: float) -> list[str]:
    """`calls` concurrent exports with a deadline; the status code of each."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(METHOD)

        async def one(n: int) -> str:
            try:
                await call(request_bytes(n), timeout=deadline)
            except grpc.aio.AioRpcError as exc:
                return str(exc.code().name)
            return "OK"

        return list(await asyncio.gather(*(one(n) for n in range(calls))))


# 1. Dead backend, no queue ----------------------------------------------------------------

CLIENTS = 200
HOLD = 2.0
# The clients start 5 ms apart (all within a second): this test is about what the
# exporter holds. 200 bodies arriving in the same millisecond are the receiver's
# concern (its own bound on body bytes in flight, `max_in_flight_bytes` of the listener).
STAGGER = 0.005


def test_dead_backend_without_queue_frees_abandoned_exports(tmp_path: Path) -> None:
    loop = LoopThread()
    hole = Blackhole(loop).start()
    # retry_on_failure: the default (5 min). No gzip: otlphttp compresses on the event
    # loop (about 0.1 s per MB of random data), which would make this a CPU test.
    # max_in_flight_bytes under the receiver's own bound on bodies in flight (64 MiB), so
    # that the exporter's cap is the one that refuses.
    exporter = {"endpoint": f"http://127.0.0.1:{hole.port}", "compression": "none",
                "sending_queue": {"enabled": False}, "max_in_flight_bytes": "32MiB"}
    try:
        with running_pipeline(tmp_path, exporter) as (proc, http_port, grpc_port, health):
            idle = settled_rss(proc.pid)
            body = request_bytes(1)
            sampler = RSSSampler(proc.pid)
            sampler.start()

            async def clients() -> list[str]:
                return list(await asyncio.gather(
                    *(post_and_hang_up(http_port, body, HOLD, i * STAGGER)
                      for i in range(CLIENTS))))

            started = time.monotonic()
            outcomes = collections.Counter(asyncio.run(clients()))
            hung_up_at = time.monotonic()
            eventually(lambda: metric(health, "otelpipe_exporter_in_flight_requests") == 0,
                       timeout=10, what="no export in flight after the clients hung up")
            gone_after = time.monotonic() - hung_up_at
            peak = sampler.stop()
            after = settled_rss(proc.pid)
            cancelled = metric(health, "otelpipe_exporter_cancelled_items_total",
                               {"signal": "traces"})
            refused = metric(health, "otelpipe_exporter_in_flight_refused_items_total",
                             {"signal": "traces"})
            print(f"idle RSS {idle / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB, after "
                  f"{after / MIB:.0f} MiB; outcomes {dict(outcomes)} in "
                  f"{hung_up_at - started:.1f} s; exports gone {gone_after:.1f} s after the "
                  f"hang-ups; cancelled {cancelled / SPANS:.0f} requests, refused "
                  f"{refused / SPANS:.0f}; backend connections {hole.connections}")
            assert set(outcomes) <= {"503", "hung up"}, outcomes
            assert outcomes["hung up"] >= 1
            # Every export a client hung up on was cancelled (on a busy machine a few may
            # be cancelled before they reach the exporter); the exporter's cap refused.
            assert (outcomes["hung up"] - 5) * SPANS <= cancelled <= outcomes["hung up"] * SPANS
            assert 0 < refused <= outcomes["503"] * SPANS
            assert gone_after < 5.0
            assert peak - idle < 150 * MIB
            assert after - idle < 60 * MIB
            # Still serving: a new request waits for the dead backend, not refused at once.
            assert asyncio.run(post_and_hang_up(http_port, request_bytes(2), 0.5)) == "hung up"
            # gRPC: a deadline that passes cancels the export as a hang-up does.
            before = metric(health, "otelpipe_exporter_cancelled_items_total",
                            {"signal": "traces"})
            codes = asyncio.run(grpc_with_deadline(grpc_port, 5, HOLD))
            assert codes == ["DEADLINE_EXCEEDED"] * 5
            eventually(lambda: metric(health, "otelpipe_exporter_in_flight_requests") == 0,
                       timeout=5, what="no export in flight after the deadlines")
            assert metric(health, "otelpipe_exporter_cancelled_items_total",
                          {"signal": "traces"}) - before >= 5 * SPANS
    finally:
        hole.stop()
        loop.close()


# 2. Slow backend, memory queue bounded in bytes -------------------------------------------

QUEUE_BYTES = 8 * MIB
FLOOD_SECONDS = 5.0
HTTP_CLIENTS = 8


class Tally:
    def __init__(self) -> None:
        self.acknowledged: set[int] = set()
        self.refused = 0
        self.other: collections.Counter[str] = collections.Counter()


async def flood(http_port: int, grpc_port: int, until: float, tally: Tally) -> None:
    seq = iter(range(1, 1 << 30))

    async def http_client() -> None:
        while time.monotonic() < until:
            n = next(seq)
            status, headers = await asyncio.wait_for(post(http_port, request_bytes(n)), 30)
            if status == 200:
                tally.acknowledged.add(n)
            elif status == 503 and "retry-after" in headers:
                tally.refused += 1
                await asyncio.sleep(0.05)
            else:
                tally.other[f"http {status}"] += 1

    async def grpc_client() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            call = channel.unary_unary(METHOD)
            while time.monotonic() < until:
                n = next(seq)
                try:
                    await call(request_bytes(n), timeout=30)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() is grpc.StatusCode.UNAVAILABLE:
                        tally.refused += 1
                        await asyncio.sleep(0.05)
                    else:
                        tally.other[f"grpc {exc.code().name}"] += 1
                    continue
                tally.acknowledged.add(n)

    await asyncio.gather(*(http_client() for _ in range(HTTP_CLIENTS)), grpc_client())


def test_slow_backend_with_byte_bounded_queue(tmp_path: Path) -> None:
    loop = LoopThread()
    backend = SlowBackend(loop, delay=10.0).start()
    exporter = {"endpoint": f"http://127.0.0.1:{backend.port}", "compression": "none",
                "timeout": "30s",  # slow, not failing: every answer comes in time
                "sending_queue": {"queue_size": QUEUE_BYTES, "sizer": "bytes",
                                  "num_consumers": 4}}
    try:
        with running_pipeline(tmp_path, exporter) as (proc, http_port, grpc_port, health):
            idle = settled_rss(proc.pid)
            sampler = RSSSampler(proc.pid)
            sampler.start()
            tally = Tally()
            asyncio.run(flood(http_port, grpc_port, time.monotonic() + FLOOD_SECONDS, tally))
            queued = metric(health, "otelpipe_exporter_queue_size")
            capacity = metric(health, "otelpipe_exporter_queue_capacity")
            peak = sampler.stop()
            backend.hurry()
            eventually(lambda: metric(health, "otelpipe_exporter_queue_size") == 0,
                       timeout=20, what="the queue to drain")
            eventually(lambda: sum(backend.received.values()) >= len(tally.acknowledged),
                       timeout=10, what="every acknowledged request at the backend")
            time.sleep(0.5)  # a duplicate would arrive now
            print(f"idle RSS {idle / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB; acknowledged "
                  f"{len(tally.acknowledged)}, refused {tally.refused}, other "
                  f"{dict(tally.other)}; queue {queued / MIB:.1f} of {capacity / MIB:.0f} MiB "
                  f"at the end of the flood")
            assert not tally.other
            assert tally.refused > 0
            assert tally.acknowledged
            assert capacity == QUEUE_BYTES
            assert queued <= QUEUE_BYTES
            assert peak - idle < 120 * MIB
            assert dict(backend.received) == dict.fromkeys(tally.acknowledged, 1)
    finally:
        backend.stop()
        loop.close()
