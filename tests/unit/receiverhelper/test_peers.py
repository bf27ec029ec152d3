"""Per-peer error budgets: the bookkeeping, and an HTTPServer refusing a failing peer
over real loopback connections from two addresses (127.0.0.1 and 127.0.0.2)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from pipeline.receiverhelper import peers as peers_module
from pipeline.receiverhelper.body import BodyError
from pipeline.receiverhelper.http import HTTPServer, Refused, ServerLimits, read_body
from pipeline.receiverhelper.httpbody import INLINE_DECOMPRESS_BYTES
from pipeline.receiverhelper.peers import (
    COST_UNIT,
    MAX_DELAYED_BYTES,
    MAX_DELAYED_PER_PEER,
    Attempt,
    PeerBudget,
    PeerErrorBudgetSettings,
    grpc_peer_key,
    note_failure,
    peer_key,
)
from pipeline.telemetry.metrics import Telemetry
from tests.support import free_port

LOG = logging.getLogger("test")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def budget(rate: float = 10.0, burst: int = 5, max_peers: int = 100,
           clock: Clock | None = None) -> PeerBudget:
    return PeerBudget(PeerErrorBudgetSettings(errors_per_second=rate, burst=burst,
                                              max_peers=max_peers),
                      endpoint="e", transport="http", clock=clock or Clock())


# Keys -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("address", "key"), [
    (("127.0.0.2", 5555), "127.0.0.2"),
    (("10.1.2.3", 1, 0, 0), "10.1.2.3"),
    (("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 5555, 0, 0), "2001:db8:1:2::/64"),
    (("2001:db8:1:2::1", 80, 0, 0), "2001:db8:1:2::/64"),  # one host, one /64: one key
    (("::ffff:192.0.2.7", 80, 0, 0), "192.0.2.7"),
    (("fe80::1%eth0", 80, 0, 2), "fe80::/64"),
    ("", None), (None, None), ("/run/otelpipe.sock", None), (("not an ip", 1), None),
])
def test_peer_key(address: object, key: str | None) -> None:
    assert peer_key(address) == key


@pytest.mark.parametrize(("peer", "key"), [
    ("ipv4:127.0.0.2:40000", "127.0.0.2"),
    ("ipv6:[2001:db8::5]:40000", "2001:db8::/64"),
    ("ipv6:[::1]:1", "::/64"),
    ("unix:/tmp/x.sock", None), ("unix-abstract:x", None), ("", None), (None, None),
    ("ipv4:garbage", None),
])
def test_grpc_peer_key(peer: str | None, key: str | None) -> None:
    assert grpc_peer_key(peer) == key


# The bucket -----------------------------------------------------------------------------

def test_a_peer_is_refused_after_burst_failures_and_admitted_again_after_refill() -> None:
    clock = Clock()
    b = budget(rate=2.0, burst=5, clock=clock)
    for _ in range(4):
        b.charge("a", "malformed")
        assert b.refusal("a") is None
    b.charge("a", "malformed")  # the fifth: no token left
    retry = b.refusal("a")
    assert retry == pytest.approx(0.5)  # one token at 2 per second
    assert b.refusal("b") is None  # other peers are not concerned
    assert b.reason("a") == "malformed"
    clock.now += 0.5
    assert b.refusal("a") is None
    clock.now += 10
    assert b.refusal("a") is None
    assert len(b) == 0  # whole again: forgotten


def test_cost_and_debt_cap() -> None:
    clock = Clock()
    b = budget(rate=1.0, burst=10, clock=clock)
    b.charge("a", "too_large", 1 + (20 * COST_UNIT) // COST_UNIT)  # a bomb: 21 tokens
    # The debt is capped at -burst: refused for (1 + 10) / 1 s, not 11 + 11.
    assert b.refusal("a") == pytest.approx(11.0)
    clock.now += 10.9
    assert b.refusal("a") is not None
    clock.now += 0.2
    assert b.refusal("a") is None


def test_memory_is_bounded_by_max_peers_oldest_forgotten_first() -> None:
    b = budget(burst=1, max_peers=3)
    for peer in ("a", "b", "c", "d"):
        b.charge(peer, "malformed")
    assert len(b) == 3
    assert b.refusal("a") is None  # forgotten
    assert all(b.refusal(p) is not None for p in ("b", "c", "d"))
    b.charge("b", "malformed")  # b failed again: now the newest
    b.charge("e", "malformed")
    assert b.refusal("c") is None
    assert b.refusal("b") is not None


def test_requests_in_progress_of_a_peer_on_probation_hold_a_token() -> None:
    clock = Clock()
    b = budget(rate=1.0, burst=3, clock=clock)
    b.charge("a", "malformed")  # 2 tokens left: on probation
    first, second = Attempt(b, "a"), Attempt(b, "a")
    assert b.refusal("a") is not None  # both tokens held by requests in progress
    first.settle()  # succeeded: its token is back
    assert b.refusal("a") is None
    second.reason = "malformed"
    second.settle()
    assert b.refusal("a") is None  # 1 token left
    fresh = Attempt(b, "new")  # a peer without failures holds nothing
    assert fresh.peer is None
    fresh.settle()
    assert len(b) == 1


def test_only_the_senders_faults_are_charged() -> None:
    b = budget(burst=1)
    for reason, charged in (("memory_limiter", False), ("in_flight_bytes", False),
                            ("no_pipeline", False), ("decode_worker", False),
                            ("malformed", True)):
        attempt = Attempt(b, reason)
        token = peers_module.CURRENT.set(attempt)
        try:
            note_failure(reason)
        finally:
            peers_module.CURRENT.reset(token)
        attempt.settle()
        assert (b.refusal(reason) is not None) is charged, reason
    note_failure("malformed")  # outside a request: nothing to charge, no error


def test_delayed_refusals_are_bounded_per_peer_and_in_bytes() -> None:
    b = budget(burst=1)
    b.charge("a", "malformed")
    assert all(b.try_delay("a") for _ in range(MAX_DELAYED_PER_PEER))
    assert not b.try_delay("a")
    b.undelay("a")
    assert b.try_delay("a")
    b.charge("b", "malformed")
    assert b.try_delay("b", MAX_DELAYED_BYTES)
    assert not b.try_delay("b", 1)
    b.undelay("b", MAX_DELAYED_BYTES)
    assert b.delayed_bytes == 0
    assert not b.try_delay("unknown")


# Over real connections ----------------------------------------------------------------

LIMITS = ServerLimits(read_header_timeout=2.0, read_timeout=2.0, idle_timeout=5.0,
                      max_connections=100, max_in_flight_bytes=10_000_000,
                      peer_error_budget=PeerErrorBudgetSettings(
                          errors_per_second=1.0, burst=3))


async def fail(request: web.Request) -> web.Response:
    try:
        await read_body(request, 1000)
    except BodyError as exc:
        note_failure("too_large")
        return web.Response(status=exc.status)
    note_failure("malformed")  # as the otlp receiver counts a body it cannot decode
    return web.Response(status=400)


async def fail_big(request: web.Request) -> web.Response:
    try:
        await read_body(request, 2 * COST_UNIT)
    except Refused as exc:  # as the receivers answer it: not the sender's fault
        return web.Response(status=503, text=str(exc), headers=exc.headers)
    except BodyError as exc:
        note_failure("too_large")
        return web.Response(status=exc.status)
    return web.Response(text="ok")


async def ok(request: web.Request) -> web.Response:
    await read_body(request, 1000)
    return web.Response(text="ok")


@asynccontextmanager
async def serving(limits: ServerLimits = LIMITS) -> AsyncIterator[tuple[int, Telemetry]]:
    app = web.Application()
    app.router.add_post("/fail", fail)
    app.router.add_post("/ok", ok)
    app.router.add_post("/big", fail_big)
    port = free_port()
    telemetry = Telemetry()
    server = HTTPServer(app, f"127.0.0.1:{port}", LOG, auto_decompress=False, limits=limits,
                        telemetry=telemetry)
    await server.start()
    try:
        yield port, telemetry
    finally:
        await server.stop()


async def exchange(port: int, source: str, raw: bytes, wait: float = 5.0
                   ) -> tuple[bytes, float]:
    """Send `raw` from `source` on a fresh connection: the whole answer, and how long
    it took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    started = time.monotonic()
    writer.write(raw)
    try:
        return await asyncio.wait_for(reader.read(), wait), time.monotonic() - started
    except ConnectionResetError:  # closed at once, before reading what was sent
        return b"", time.monotonic() - started
    finally:
        writer.close()


def post(path: str, body: bytes = b"x", length: int | None = None) -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
            % (path.encode(), len(body) if length is None else length)) + body


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer else 0


def metric(telemetry: Telemetry, name: str) -> float:
    return telemetry.registry.get_sample_value(name, {"endpoint": LIMITS_ENDPOINT[0],
                                                      "transport": "http"}) or 0.0


LIMITS_ENDPOINT: list[str] = [""]


async def test_a_failing_peer_is_refused_before_its_body_is_read_others_are_not() -> None:
    async with serving() as (port, telemetry):
        LIMITS_ENDPOINT[0] = f"127.0.0.1:{port}"
        answers = [status((await exchange(port, "127.0.0.2", post("/fail")))[0])
                   for _ in range(3)]
        assert answers == [400, 400, 400]
        # Out of tokens: a request announcing a body it never sends is answered 429 at
        # once (after the refusal delay), without waiting for the body.
        answer, took = await exchange(port, "127.0.0.2", post("/ok", b"", length=500))
        assert status(answer) == 429, answer
        assert b"Retry-After: 1" in answer
        assert b"(last: malformed)" in answer
        assert b"peer_error_budget" in answer
        assert peers_module.REFUSAL_DELAY - 0.1 <= took < 2.0  # read_timeout is 2 s
        # Another address is not concerned.
        assert status((await exchange(port, "127.0.0.1", post("/ok")))[0]) == 200
        assert metric(telemetry, "otelpipe_receiver_peer_refused_total") == 1
        assert metric(telemetry, "otelpipe_receiver_peer_blocked_total") == 1
        # Refilled (1 token per second): admitted again.
        await asyncio.sleep(1.1)
        assert status((await exchange(port, "127.0.0.2", post("/ok")))[0]) == 200


async def test_a_request_on_an_open_connection_is_refused_and_the_connection_closed() -> None:
    async with serving() as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       local_addr=("127.0.0.2", 0))
        keep = (b"POST /fail HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
        try:
            for _ in range(3):
                writer.write(keep)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                assert head.startswith(b"HTTP/1.1 400")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
            writer.write(keep)
            rest = await asyncio.wait_for(reader.read(), 5)  # answered, then closed
            assert rest.startswith(b"HTTP/1.1 429"), rest
            assert b"Retry-After" in rest
        finally:
            writer.close()


async def test_a_refused_peer_flooding_connections_waits_for_its_answers() -> None:
    """Each refused connection is answered after the delay, so concurrent refused
    connections take about one delay each, not answers back to back at full speed (a
    flooding client reconnects when answered); past max_connections waiting ones they
    are answered at once."""
    cap = LIMITS.max_connections
    async with serving() as (port, telemetry):
        LIMITS_ENDPOINT[0] = f"127.0.0.1:{port}"
        for _ in range(3):
            await exchange(port, "127.0.0.2", post("/fail"))
        results = await asyncio.gather(*(exchange(port, "127.0.0.2", post("/fail"))
                                         for _ in range(cap + 10)))
        statuses = [status(a) for a, _ in results]
        delays = sorted(t for _, t in results)
        assert statuses.count(429) >= cap, statuses
        assert set(statuses) <= {0, 429}  # 0: reset, closed at once beyond the cap
        assert delays[-cap] >= peers_module.REFUSAL_DELAY - 0.1
        assert delays[0] < peers_module.REFUSAL_DELAY  # beyond the cap: at once
        assert metric(telemetry, "otelpipe_receiver_peer_refused_total") == cap + 10


async def test_a_gzip_bomb_costs_its_inflated_mebibytes() -> None:
    import zlib

    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = c.compress(bytes(3 * COST_UNIT)) + c.flush()
    limits = ServerLimits(max_in_flight_bytes=10_000_000, peer_error_budget=
                          PeerErrorBudgetSettings(errors_per_second=0.1, burst=5))
    async with serving(limits) as (port, _):
        raw = (b"POST /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Encoding: "
               b"gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb)) + bomb
        # Refused at the 2 MiB limit: 1 + 2 MiB inflated = 3 tokens of 5.
        assert status((await exchange(port, "127.0.0.2", raw))[0]) == 413
        assert status((await exchange(port, "127.0.0.2", raw))[0]) == 413  # -1 left
        assert status((await exchange(port, "127.0.0.2", raw))[0]) == 429


async def test_disabled_budget_never_refuses() -> None:
    limits = ServerLimits(max_in_flight_bytes=10_000_000, peer_error_budget=
                          PeerErrorBudgetSettings(enabled=False, burst=1))
    async with serving(limits) as (port, _):
        for _ in range(5):
            assert status((await exchange(port, "127.0.0.2", post("/fail")))[0]) == 400


async def test_a_peers_big_inflations_run_one_at_a_time() -> None:
    """Four bombs sent at once by a peer with a full budget (5 tokens, 3 a bomb): inflated
    one after the other, so after the second failure the peer is out and the last two
    are refused (503 + Retry-After) without being inflated. Another peer's bomb is not
    kept waiting by them."""
    import zlib

    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = c.compress(bytes(20 * COST_UNIT)) + c.flush()
    assert len(bomb) > INLINE_DECOMPRESS_BYTES  # inflated a MiB per step, not inline
    head = (b"POST /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Encoding: "
            b"gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb))
    limits = ServerLimits(max_in_flight_bytes=100_000_000, peer_error_budget=
                          PeerErrorBudgetSettings(errors_per_second=0.1, burst=5))

    async def bomber(source: str, started: asyncio.Event) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       local_addr=(source, 0))
        try:
            writer.write(head)  # all admitted first (the peer has not failed yet) …
            await started.wait()
            writer.write(bomb)  # … then all bodies at once
            return await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()

    async with serving(limits) as (port, _):
        go = asyncio.Event()
        tasks = [asyncio.ensure_future(bomber(src, go)) for src in ["127.0.0.2"] * 4 +
                 ["127.0.0.3"]]
        await asyncio.sleep(0.3)
        go.set()
        answers = [(a, 0.0) for a in await asyncio.gather(*tasks)]
        statuses = [status(a) for a, _ in answers]
        assert sorted(statuses[:4]) == [413, 413, 503, 503], statuses
        assert statuses[4] == 413
        refused = [a for a, _ in answers if status(a) == 503]
        assert all(b"Retry-After: " in a and b"(last: too_large)" in a for a in refused)
