"""Connection and request budgets against a real `otelpipe run` (issue 11, item 1).

Each test starts otelpipe (otlp HTTP + gRPC → memory_limiter → file, and the
health extension), attacks a data port from this process over loopback, and
meanwhile probes `/health/liveness` every 200 ms on a fresh connection (as a
kubelet does), asserting it answers throughout:

- slowloris: 200 connections sending request headers byte by byte are closed
  by the server after `read_header_timeout`, and a normal request then passes;
- trickled big bodies: 40 connections announcing 19 MB bodies and trickling
  them; the in-flight budget admits a few, the others are answered 503 +
  Retry-After before their bodies are read, RSS stays within idle + 100 MB,
  normal clients get 200 or 503 + Retry-After (never a hang), and readiness
  says not-ready while the memory limiter refuses;
- idle connections: 2,000 opened against `max_connections: 1000`: the rest are
  answered 503 and closed at once, the 1,000 are closed after `idle_timeout`;
- gRPC: an idle connection is closed (GOAWAY) after `max_connection_idle`.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import orjson

from tests.builders import spans_request
from tests.support import OtelpipeProcess, eventually, free_port

MIB = 1024 * 1024
# The attackers connect from their own address, the normal clients and probes from
# 127.0.0.1: the per-peer error budget (receiverhelper/peers.py) refuses a peer whose
# requests keep failing (slowloris connections closed at the header timeout count), and
# cannot tell apart two clients on one address.
ATTACKER = "127.0.0.2"
PROBE_EVERY = 0.2
# While the data ports are attacked, a liveness probe on a fresh connection must be
# answered before otelpipe's event loop (its main thread) has run this much CPU time:
# what the attack makes the loop do meanwhile. Not the probe's wall time: on a loaded
# 2-core CI machine that adds whatever else ran (0.67-0.70 s seen at load 8-26, of which
# the loop ran a fraction), and the probing thread shares this process's GIL with the
# attackers. The target is 200 ms; a single probe is allowed a little more.
PROBE_BOUND = 0.5
# A probe not answered within this much wall time is a failure (a hang).
PROBE_TIMEOUT = 20.0


def loop_cpu(pid: int) -> float:
    """CPU seconds run so far by `pid`'s main thread (where `otelpipe run` runs its
    event loop): the first field of schedstat, in ns."""
    with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def config(tmp_path: Path, http_port: int, grpc_port: int, health_port: int, *,
           http: dict[str, Any] | None = None, grpc_: dict[str, Any] | None = None,
           limit_mib: int = 4096, spike_mib: int = 100) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {
            "http": {"endpoint": f"127.0.0.1:{http_port}", **(http or {})},
            "grpc": {"endpoint": f"127.0.0.1:{grpc_port}", **(grpc_ or {})}}}},
        "processors": {"memory_limiter": {"check_interval": "100ms", "limit_mib": limit_mib,
                                          "spike_limit_mib": spike_mib}},
        "exporters": {"file": {"path": str(tmp_path / "traces.jsonl")}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health_port}"}},
        "service": {"extensions": ["health"], "shutdown_timeout": "5s", "pipelines": {
            "traces": {"receivers": ["otlp"], "processors": ["memory_limiter"],
                       "exporters": ["file"]}}},
    }


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def post_spans(port: int, n: int = 5, timeout: float = 10.0) -> tuple[int, dict[str, str]]:
    body = spans_request(b"\x01" * 16, n, service="budgets").SerializeToString()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, dict(resp.getheaders())
    finally:
        conn.close()


@dataclass
class Sampler:
    """A thread probing liveness (and optionally readiness, RSS, a normal client)."""

    health_port: int
    pid: int
    http_port: int | None = None
    latencies: list[float] = field(default_factory=list)  # wall time per probe (reported)
    cpu_during: list[float] = field(default_factory=list)  # the loop's CPU per probe (bounded)
    failures: list[str] = field(default_factory=list)
    readiness: Counter[str] = field(default_factory=Counter)
    reasons: set[str] = field(default_factory=set)
    peak_rss: int = 0
    normal: Counter[str] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            started, cpu = time.monotonic(), loop_cpu(self.pid)
            try:
                status, _, _ = get(self.health_port, "/health/liveness", PROBE_TIMEOUT)
                self.cpu_during.append(loop_cpu(self.pid) - cpu)
                self.latencies.append(time.monotonic() - started)
                if status != 200:
                    self.failures.append(f"liveness {status}")
            except OSError as exc:
                self.failures.append(f"liveness {exc!r} after {time.monotonic() - started:.2f}s")
            self.peak_rss = max(self.peak_rss, rss(self.pid))
            if self.http_port is not None:
                self._ready()
                self._normal()
            self._stop.wait(max(0.0, PROBE_EVERY - (time.monotonic() - started)))

    def _ready(self) -> None:
        status, _, body = get(self.health_port, "/health/readiness", PROBE_TIMEOUT)
        self.readiness[str(status)] += 1
        if status == 503:
            self.reasons.add(str(orjson.loads(body).get("reason")))

    def _normal(self) -> None:
        assert self.http_port is not None
        try:
            status, headers = post_spans(self.http_port, timeout=PROBE_TIMEOUT)
        except OSError as exc:
            self.normal[f"error {type(exc).__name__}"] += 1
            return
        if status == 503 and "Retry-After" not in headers:
            self.normal["503 without Retry-After"] += 1
        else:
            self.normal[str(status)] += 1

    @contextlib.contextmanager
    def running(self) -> Iterator[Sampler]:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(10)

    def assert_alive(self) -> None:
        assert not self.failures, self.failures[:5]
        assert self.cpu_during, "no liveness probe ran"
        assert max(self.cpu_during) < PROBE_BOUND, (
            f"the event loop ran {max(self.cpu_during) * 1000:.0f} ms of CPU before answering "
            f"a liveness probe (bound {PROBE_BOUND * 1000:.0f} ms); {self.summary()}")

    def summary(self) -> str:
        lat, cpu = sorted(self.latencies), sorted(self.cpu_during)
        return (f"liveness probes {len(lat)}, p50 {lat[len(lat) // 2] * 1000:.1f} ms, "
                f"max {lat[-1] * 1000:.1f} ms (loop CPU meanwhile: p50 "
                f"{cpu[len(cpu) // 2] * 1000:.1f} ms, max {cpu[-1] * 1000:.1f} ms); "
                f"peak RSS {self.peak_rss / MIB:.0f} MiB; "
                f"readiness {dict(self.readiness)}; normal clients {dict(self.normal)}")


def otelpipe(tmp_path: Path, **kw: Any) -> tuple[OtelpipeProcess, int, int, int]:
    http_port, grpc_port, health_port = free_port(), free_port(), free_port()
    proc = OtelpipeProcess(config(tmp_path, http_port, grpc_port, health_port, **kw),
                           tmp_path, wait_ports=(http_port, grpc_port, health_port))
    return proc, http_port, grpc_port, health_port  # started by `with proc`


async def closed_within(reader: asyncio.StreamReader, wait: float) -> bytes | None:
    """What the server sent before closing, or None if it stayed open for `wait` s."""
    try:
        return await asyncio.wait_for(reader.read(), wait)
    except TimeoutError:
        return None
    except ConnectionError:
        return b""


# Slowloris ----------------------------------------------------------------------------

SLOWLORIS = 200
HEADERS = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
           b"Content-Length: 10\r\nX-Padding: " + b"a" * 200)


async def slowloris(port: int, byte_every: float, give_up: float) -> float | None:
    """Send headers one byte at a time; the seconds until the server closed, or None."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                   local_addr=(ATTACKER, 0))
    started = time.monotonic()
    closed = asyncio.ensure_future(reader.read())
    try:
        for b in HEADERS:
            if closed.done() or time.monotonic() - started > give_up:
                break
            writer.write(bytes([b]))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            await asyncio.wait({closed}, timeout=byte_every)
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(closed), max(0.0, give_up -
                                                               (time.monotonic() - started)))
        return time.monotonic() - started if closed.done() else None
    finally:
        closed.cancel()
        writer.close()


def test_slowloris_is_closed_after_the_header_timeout(tmp_path: Path) -> None:
    proc, http_port, _, health_port = otelpipe(tmp_path)  # read_header_timeout: 10s
    with proc:
        sampler = Sampler(health_port, proc.pid)
        with sampler.running():
            async def attack() -> list[float | None]:
                return await asyncio.gather(*(slowloris(http_port, 0.2, 20.0)
                                              for _ in range(SLOWLORIS)))
            closed_after = asyncio.run(attack())
        assert post_spans(http_port)[0] == 200
        metrics = get(health_port, "/metrics")[2].decode()
    print(f"slowloris: closed after {min(c or 99 for c in closed_after):.1f}-"
          f"{max(c or 99 for c in closed_after):.1f} s; {sampler.summary()}")
    # Closed, and not before the timeout (how much later is the machine's load).
    assert all(c is not None and c >= 9.9 for c in closed_after), sorted(
        closed_after, key=lambda c: c or 99)[-5:]
    sampler.assert_alive()
    assert 'reason="header_timeout"} 200.0' in metrics


# Trickled big bodies --------------------------------------------------------------------

TRICKLERS = 40
ANNOUNCED = 19 * MIB
TRICKLE_CHUNK = 128 * 1024
TRICKLE_EVERY = 0.05  # 2.5 MB/s per connection


@dataclass
class Tally:
    answers: Counter[str] = field(default_factory=Counter)
    sent: int = 0


async def trickler(port: int, until: float, tally: Tally) -> None:
    """Announce 19 MB, trickle it; on an answer (or close), start over after a pause."""
    chunk = b"\x00" * TRICKLE_CHUNK
    while time.monotonic() < until:
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       local_addr=(ATTACKER, 0))
        writer.write(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/x-protobuf\r\n"
                     b"Content-Length: %d\r\n\r\n" % ANNOUNCED)
        answer = asyncio.ensure_future(reader.readline())
        try:
            sent = 0
            while sent < ANNOUNCED and not answer.done() and time.monotonic() < until:
                writer.write(chunk[:min(TRICKLE_CHUNK, ANNOUNCED - sent)])
                try:
                    await writer.drain()
                except ConnectionError:
                    break
                sent += TRICKLE_CHUNK
                tally.sent += TRICKLE_CHUNK
                await asyncio.wait({answer}, timeout=TRICKLE_EVERY)
            with contextlib.suppress(Exception):
                line = await asyncio.wait_for(answer, 3.0)
                tally.answers[line.decode(errors="replace").strip() or "closed"] += 1
        finally:
            answer.cancel()
            writer.close()
        await asyncio.sleep(0.5)


def test_trickled_big_bodies_stay_within_the_byte_budget(tmp_path: Path) -> None:
    # The limiter's soft limit sits 40 MiB above the idle process: the few bodies
    # admitted by the 64 MiB budget cross it, so it must refuse for a while.
    probe_port = free_port()
    idle = _idle_rss(tmp_path / "idle", probe_port)
    limit = idle // MIB + 60
    proc, http_port, _, health_port = otelpipe(tmp_path, limit_mib=limit, spike_mib=20)
    with proc:
        sampler = Sampler(health_port, proc.pid, http_port=http_port)
        tally = Tally()
        with sampler.running():
            async def attack() -> None:
                until = time.monotonic() + 15.0
                await asyncio.gather(*(trickler(http_port, until, tally)
                                       for _ in range(TRICKLERS)))
            asyncio.run(attack())
        print(f"trickle: idle RSS {idle / MIB:.0f} MiB, attackers sent "
              f"{tally.sent / MIB:.0f} MiB, answers {dict(tally.answers)}; {sampler.summary()}")
        eventually(lambda: get(health_port, "/health/readiness")[0] == 200, timeout=15,
                   what=lambda: f"readiness after the attack; {proc.logs()[-3000:]}")
        assert post_spans(http_port)[0] == 200
        metrics = get(health_port, "/metrics")[2].decode()
    sampler.assert_alive()
    assert sampler.peak_rss < idle + 100 * MIB, (sampler.peak_rss / MIB, idle / MIB)
    assert tally.answers["HTTP/1.1 503 Service Unavailable"] > TRICKLERS
    assert set(sampler.normal) <= {"200", "503"}, sampler.normal
    assert sampler.normal["200"] > 0
    assert sampler.readiness["503"] > 0
    assert sampler.readiness["200"] > 0
    assert any("memory_limiter refusing data" in r for r in sampler.reasons), sampler.reasons
    assert 'reason="in_flight_bytes"' in metrics


def _idle_rss(tmp_path: Path, port: int) -> int:
    """RSS of an idle otelpipe with this test's config, after it served a request."""
    tmp_path.mkdir()
    proc, http_port, _, _ = otelpipe(tmp_path)
    with proc:
        assert post_spans(http_port)[0] == 200
        time.sleep(0.5)
        return rss(proc.pid)


# Idle connections ------------------------------------------------------------------------

IDLE_CONNECTIONS = 2000
MAX_CONNECTIONS = 1000


def test_idle_connections_are_capped_and_closed(tmp_path: Path) -> None:
    proc, http_port, _, health_port = otelpipe(
        tmp_path, http={"max_connections": MAX_CONNECTIONS, "idle_timeout": "5s"})
    with proc:
        sampler = Sampler(health_port, proc.pid)
        with sampler.running():
            outcome = asyncio.run(idle_attack(http_port, health_port))
        assert post_spans(http_port)[0] == 200
    print(f"idle: {outcome}; {sampler.summary()}")
    assert outcome.first == {"open": MAX_CONNECTIONS, "503": IDLE_CONNECTIONS - MAX_CONNECTIONS}
    assert outcome.newcomer == 503
    assert outcome.gauge == MAX_CONNECTIONS
    assert outcome.closed_idle == MAX_CONNECTIONS
    # idle_timeout 5 s from each connect: closed, and not before (later is the load)
    assert outcome.closed_after > 3.0
    sampler.assert_alive()


@dataclass
class IdleOutcome:
    first: Counter[str]  # within 1.5 s of connecting: open, or answered 503 and closed
    newcomer: int  # what a normal client got while the cap was full
    gauge: float  # otelpipe_http_server_connections meanwhile
    closed_idle: int  # of those left open, closed by the server...
    closed_after: float  # ...within this many seconds of connecting


async def idle_attack(http_port: int, health_port: int) -> IdleOutcome:
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for _ in range(IDLE_CONNECTIONS // 100):
        conns += await asyncio.gather(*(asyncio.open_connection(
            "127.0.0.1", http_port, local_addr=(ATTACKER, 0)) for _ in range(100)))
    opened = time.monotonic()
    try:
        first = await asyncio.gather(*(closed_within(r, 1.5) for r, _ in conns))
        held = [r for (r, _), f in zip(conns, first, strict=True) if f is None]
        newcomer = (await asyncio.to_thread(_post_status, http_port))
        metrics = (await asyncio.to_thread(get, health_port, "/metrics"))[2].decode()
        rest = await asyncio.gather(*(closed_within(r, 60.0) for r in held))
        return IdleOutcome(
            first=Counter("open" if f is None else "503" if f.startswith(b"HTTP/1.1 503")
                          else "closed" for f in first),
            newcomer=newcomer,
            gauge=_sample(metrics, "otelpipe_http_server_connections", f":{http_port}"),
            closed_idle=sum(r is not None for r in rest),
            closed_after=time.monotonic() - opened)
    finally:
        for _, w in conns:
            w.close()


def _post_status(port: int) -> int:
    try:
        return post_spans(port)[0]
    except OSError:
        return -1


def _sample(metrics: str, name: str, label_part: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + "{") and label_part in line:
            return float(line.split()[-1])
    raise AssertionError(f"no {name} with {label_part} in /metrics")


# gRPC ---------------------------------------------------------------------------------------


def test_grpc_idle_connection_is_closed_after_max_connection_idle(tmp_path: Path) -> None:
    proc, _, grpc_port, _ = otelpipe(
        tmp_path, grpc_={"keepalive": {"server_parameters": {"max_connection_idle": "2s"}}})
    with proc, grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        states: list[tuple[float, grpc.ChannelConnectivity]] = []
        channel.subscribe(lambda s: states.append((time.monotonic(), s)), try_to_connect=True)
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None, response_deserializer=None)
        export(spans_request(b"\x02" * 16, 1).SerializeToString(), timeout=10)
        done = time.monotonic()
        # No upper bound: a timeout fires not before its time; how much later is the
        # machine's load (a rehearsal on a busy machine missed a 10 s wait).
        idle_at = eventually(lambda: idle_after_ready(states), timeout=60,
                             what=lambda: f"the channel to go idle; states {states}")
        assert idle_at is not None
        went_idle = idle_at - done
    print(f"grpc: connection closed {went_idle:.1f} s after the last RPC")
    assert went_idle > 1.5


def idle_after_ready(states: list[tuple[float, grpc.ChannelConnectivity]]) -> float | None:
    """When the channel went IDLE after having been READY (the connection closed)."""
    ready = False
    for at, state in list(states):  # callbacks append from gRPC's thread
        ready = ready or state == grpc.ChannelConnectivity.READY
        if ready and state == grpc.ChannelConnectivity.IDLE:
            return at
    return None
