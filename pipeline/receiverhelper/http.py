"""An aiohttp server on one endpoint with connection and request budgets, its settings,
reading a request body within them, and shared HTTP answers.

Every listener (otlp HTTP, jsonlogs, health, the prometheus exporter) gets:

- `read_header_timeout`: from the first byte of a request to the end of its headers;
  the connection is closed after it (slowloris);
- `read_timeout`: for reading the body (`read_body`); 408 after it;
- `idle_timeout`: a connection with no request in progress and no byte of a new one;
  closed after it (so is a connection that never sends anything);
- `max_connections`: open connections of this listener; one more is answered
  `503` with `Retry-After: 1` and closed at once, before anything is read;
- (listeners that read bodies) `max_in_flight_bytes`: see `receiverhelper.budget`;
  `read_body` reserves a request's bytes before reading them and refuses it (503 +
  Retry-After) while the memory_limiter refuses (`receiverhelper.pressure`);
- (listeners that read bodies) `peer_error_budget`: see `receiverhelper.peers`; a
  remote address whose requests keep failing is answered 429 + Retry-After when it
  connects or starts a request, before anything of it is read.

How: the aiohttp protocol of each connection sits behind a thin `asyncio.Protocol`
(`_Guard`) that counts the connection, arms one timer per state (idle, reading
headers) and forwards everything else; an outermost middleware tells it when a
request is in its handler, and holds the request's byte reservation until the
handler returns.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import Field

from pipeline.component import ComponentConfig
from pipeline.config.tls import ServerAuthSettings, TLSServerSettings
from pipeline.config.types import Duration, Endpoint, split_endpoint
from pipeline.receiverhelper.budget import (
    DEFAULT_MAX_IN_FLIGHT_BYTES,
    ListenerBudget,
    Reservation,
)
from pipeline.receiverhelper.httpbody import DEFAULT_READ_TIMEOUT, READ_TIMEOUT, RESERVATION
from pipeline.receiverhelper.httpbody import Refused as Refused  # re-exported
from pipeline.receiverhelper.httpbody import read_body as read_body  # re-exported
from pipeline.receiverhelper.httpbody import (
    retry_after_header as retry_after_header,  # re-exported
)
from pipeline.receiverhelper.peers import (
    CURRENT,
    REFUSAL_DELAY,
    Attempt,
    PeerBudget,
    PeerErrorBudgetSettings,
    peer_key,
    refusal_message,
)
from pipeline.telemetry.metrics import CounterSpec, GaugeSpec, Telemetry

DEFAULT_MAX_BODY = 20 * 1024 * 1024  # the Collector's confighttp default
DEFAULT_READ_HEADER_TIMEOUT = 10.0
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_MAX_CONNECTIONS = 1000
# After an answer sent before the body was read, aiohttp reads and drops the rest for
# at most this long (so the client sees the answer rather than a reset), then closes.
LINGERING_TIME = 2.0
# A connection refused over max_connections reads (and drops) for at most this long.
REFUSAL_LINGER = 0.5
BACKLOG = 512  # a burst of connections waits in the kernel rather than failing

CONNECTIONS = GaugeSpec(
    "otelpipe_http_server_connections", "Open connections of an HTTP listener.",
    ("endpoint",))
CLOSED_CONNECTIONS = CounterSpec(
    "otelpipe_http_server_closed_connections",
    "Connections an HTTP listener refused or closed on its own, by reason "
    "(max_connections, header_timeout, idle_timeout).", ("endpoint", "reason"))

_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 22\r\nConnection: close\r\n\r\n"
            b"too many connections\r\n")


def _peer_refusal(message: str, retry_after: float) -> bytes:
    """A whole `429` answer for a connection refused by its peer's error budget."""
    body = message.encode() + b"\r\n"
    return (b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: %d\r\n"
            b"Content-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            % (max(1, round(retry_after)), len(body))) + body


def read_header_timeout_field(default: float = DEFAULT_READ_HEADER_TIMEOUT) -> Any:
    return Field(default, gt=0, description=(
        "Time to receive a request's headers from its first byte; the connection is "
        "closed after it."))


def read_timeout_field(default: float = DEFAULT_READ_TIMEOUT) -> Any:
    return Field(default, gt=0, description=(
        "Time to receive a request body once its headers are in; 408 after it."))


def idle_timeout_field(default: float = DEFAULT_IDLE_TIMEOUT) -> Any:
    return Field(default, gt=0, description=(
        "An open connection with no request in progress is closed after this time."))


def max_connections_field(default: int = DEFAULT_MAX_CONNECTIONS) -> Any:
    return Field(default, gt=0, description=(
        "Open connections of this listener; one more is answered 503 (Retry-After) "
        "and closed at once."))


def max_in_flight_bytes_field() -> Any:
    return Field(DEFAULT_MAX_IN_FLIGHT_BYTES, gt=0, description=(
        "Body bytes this listener holds at once (all listeners together: at most the "
        "largest of these); a request beyond it is answered 503 / UNAVAILABLE with a "
        "retry delay before its body is read."))


class HTTPServerSettings(ComponentConfig):
    endpoint: Endpoint
    max_request_body_size: int = Field(
        DEFAULT_MAX_BODY, gt=0,
        description="Largest accepted body in bytes, before and after decompression (413 above).")
    max_in_flight_bytes: int = max_in_flight_bytes_field()
    read_header_timeout: Duration = read_header_timeout_field()
    read_timeout: Duration = read_timeout_field()
    idle_timeout: Duration = idle_timeout_field()
    max_connections: int = max_connections_field()
    peer_error_budget: PeerErrorBudgetSettings = Field(
        default_factory=PeerErrorBudgetSettings, description=(
            "Per remote address: enabled, errors_per_second, burst, max_peers. A peer whose "
            "requests keep failing (malformed, too large, bad encoding, unauthenticated) "
            "is answered 429 + Retry-After before its requests are read."))
    tls: TLSServerSettings | None = Field(
        None, description="Serve HTTPS with this certificate (client_ca_file: mutual TLS).")
    auth: ServerAuthSettings | None = Field(
        None, description="Require `Authorization: Bearer <token>` (or Basic); 401 otherwise.")


class _LimitsConfig(Protocol):
    @property
    def read_header_timeout(self) -> float: ...
    @property
    def read_timeout(self) -> float: ...
    @property
    def idle_timeout(self) -> float: ...
    @property
    def max_connections(self) -> int: ...


@dataclass(frozen=True)
class ServerLimits:
    """A listener's budgets; `max_in_flight_bytes` None: it reads no bodies;
    `peer_error_budget` None (or not enabled): no per-peer budget."""

    read_header_timeout: float = DEFAULT_READ_HEADER_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_in_flight_bytes: int | None = None
    peer_error_budget: PeerErrorBudgetSettings | None = None

    @classmethod
    def of(cls, config: _LimitsConfig) -> ServerLimits:
        in_flight = getattr(config, "max_in_flight_bytes", None)
        peers = getattr(config, "peer_error_budget", None)
        return cls(config.read_header_timeout, config.read_timeout, config.idle_timeout,
                   config.max_connections, in_flight if isinstance(in_flight, int) else None,
                   peers if isinstance(peers, PeerErrorBudgetSettings) else None)


_IDLE, _HEADERS, _ACTIVE, _REFUSED = 0, 1, 2, 3


class _Listener:
    """The connections of one listener: how many, and which one serves a transport."""

    def __init__(self, limits: ServerLimits, endpoint: str, telemetry: Telemetry | None):
        self.limits = limits
        peers = limits.peer_error_budget
        self.peers = PeerBudget(peers, endpoint=endpoint, transport="http",
                                telemetry=telemetry) \
            if peers is not None and peers.enabled else None
        self.open = 0
        self.lingering = 0  # refused connections not closed yet
        self.guards: dict[asyncio.BaseTransport, _Guard] = {}
        self.loop = asyncio.get_running_loop()
        self._gauge = telemetry.gauge(CONNECTIONS).labels(endpoint) if telemetry else None
        closed = telemetry.counter(CLOSED_CONNECTIONS) if telemetry else None
        self._closed = {r: closed.labels(endpoint, r) for r in
                        ("max_connections", "header_timeout", "idle_timeout")} if closed else {}

    def factory(self, make: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guard(self, make)

    def count(self, delta: int) -> None:
        self.open += delta
        if self._gauge is not None:
            self._gauge.set(self.open)

    def closed(self, reason: str) -> None:
        counter = self._closed.get(reason)
        if counter is not None:
            counter.inc()


class _Guard(asyncio.Protocol):
    """One connection: counted, timed per state; the aiohttp protocol does the rest."""

    __slots__ = ("_delayed", "_inner", "_listener", "_make", "_state", "_timer",
                 "_transport", "key")

    def __init__(self, listener: _Listener, make: Callable[[], asyncio.Protocol]):
        self._listener = listener
        self._make = make
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._state = _IDLE
        self._timer: asyncio.TimerHandle | None = None
        self.key: str | None = None  # the peer's budget key (None: not tracked)
        self._delayed = False

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        listener = self._listener
        transport = cast(asyncio.Transport, base)  # uvloop's are not subclasses
        peers = listener.peers
        if peers is not None:
            key = self.key = peer_key(transport.get_extra_info("peername"))
            retry_after = peers.refusal(key)
            if retry_after is not None:
                assert key is not None
                self._refuse_peer(transport, peers, key, retry_after)
                return
        if listener.open >= listener.limits.max_connections:
            self._refuse(transport)
            return
        listener.count(1)
        listener.guards[transport] = self
        self._transport = transport
        self._inner = inner = self._make()
        self._arm(listener.limits.idle_timeout, "idle_timeout")
        inner.connection_made(transport)

    def _refuse(self, transport: asyncio.Transport) -> None:
        """Answer 503 and close; linger a moment reading (and dropping) what the client
        still sends, so that it reads the answer rather than a reset. At most
        `max_connections` refused connections linger at once."""
        listener = self._listener
        listener.closed("max_connections")
        transport.write(_REFUSAL)
        if listener.lingering >= listener.limits.max_connections or \
                not transport.can_write_eof():
            transport.close()
            return
        listener.lingering += 1
        self._state = _REFUSED
        self._transport = transport
        transport.write_eof()
        self._timer = listener.loop.call_later(REFUSAL_LINGER, transport.close)

    def _refuse_peer(self, transport: asyncio.Transport, peers: PeerBudget, key: str,
                     retry_after: float) -> None:
        """A connection of a peer out of its error budget: nothing of it is read; the
        429 is written after REFUSAL_DELAY so that a flooding client waits rather than
        reconnects at once (see `receiverhelper.peers`); or at once and closed when
        `max_connections` refused connections wait already."""
        listener = self._listener
        peers.refused()
        answer = _peer_refusal(refusal_message(peers, key, retry_after), retry_after)
        limit = listener.limits.max_connections  # waiting connections hold no body
        if listener.lingering >= limit or not transport.can_write_eof() or \
                not peers.try_delay(key, limit=limit):
            transport.write(answer)
            transport.close()
            return
        listener.lingering += 1
        self._state = _REFUSED
        self._transport = transport
        self._delayed = True
        transport.pause_reading()
        self._timer = listener.loop.call_later(REFUSAL_DELAY, self._answer_peer, answer)

    def _answer_peer(self, answer: bytes) -> None:
        self._undelay()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(answer)
        transport.write_eof()
        transport.resume_reading()  # read and drop what the client still sends
        self._timer = self._listener.loop.call_later(REFUSAL_LINGER, transport.close)

    def _undelay(self) -> None:
        if self._delayed:
            self._delayed = False
            peers = self._listener.peers
            if peers is not None and self.key is not None:
                peers.undelay(self.key)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._state == _REFUSED:
            self._state = _IDLE
            self._cancel()
            self._undelay()
            self._listener.lingering -= 1
            return
        inner = self._inner
        if inner is None:
            return
        self._inner = None
        self._cancel()
        listener = self._listener
        listener.count(-1)
        if self._transport is not None:
            listener.guards.pop(self._transport, None)
        inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        inner = self._inner
        if inner is None:
            return
        if self._state == _IDLE:
            self._state = _HEADERS
            self._arm(self._listener.limits.read_header_timeout, "header_timeout")
        inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._inner is None:
            return False  # refused and lingering: the client is done, close
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    # The middleware's view ----------------------------------------------------------
    @property
    def busy(self) -> bool:
        """A request has begun on this connection and not finished (nor the connection)."""
        return self._inner is not None and self._state in (_HEADERS, _ACTIVE)

    def request_started(self) -> None:
        self._state = _ACTIVE
        self._cancel()

    def request_done(self) -> None:
        if self._inner is not None:
            self._state = _IDLE
            self._arm(self._listener.limits.idle_timeout, "idle_timeout")

    # Timers -------------------------------------------------------------------------
    def _arm(self, delay: float, reason: str) -> None:
        self._cancel()
        self._timer = self._listener.loop.call_later(delay, self._expire, reason)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self, reason: str) -> None:
        self._timer = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        listener = self._listener
        listener.closed(reason)
        if reason == "header_timeout" and listener.peers is not None and self.key is not None:
            listener.peers.charge(self.key, reason)
        # Nothing is owed to the peer in these states; an unread answer is dropped.
        if transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()


class _GuardedSite(web.TCPSite):
    """A TCPSite whose connections go through the listener's `_Guard`."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, listener: _Listener,
                 ssl_context: ssl.SSLContext | None, reuse_port: bool = False):
        super().__init__(runner, host, port, reuse_address=True, reuse_port=reuse_port,
                         ssl_context=ssl_context, backlog=BACKLOG)
        self._listener = listener

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        ssl_context = self._ssl_context
        self._server = await loop.create_server(
            self._listener.factory(server), self._host, self._port, ssl=ssl_context,
            backlog=self._backlog, reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
            ssl_handshake_timeout=self._listener.limits.read_header_timeout
            if ssl_context is not None else None)
        if self._server.sockets:
            self._bound_port = self._server.sockets[0].getsockname()[1]


class HTTPServer:
    """An aiohttp server on one endpoint with its budgets, stopped gracefully.

    `reuse_port`: bind with SO_REUSEPORT, so that worker processes share the port
    (the kernel spreads connections among them).

    Pass `auto_decompress=False` when the handlers inflate bodies themselves
    with `read_body` (aiohttp would otherwise inflate gzip/deflate first,
    without our size limit, and answer zstd with a plain-text 400).
    """

    def __init__(self, app: web.Application, endpoint: str, logger: logging.Logger,
                 *, shutdown_timeout: float = 5.0, auto_decompress: bool = True,
                 ssl_context: ssl.SSLContext | None = None,
                 limits: ServerLimits | None = None, telemetry: Telemetry | None = None,
                 reuse_port: bool = False):
        self.app = app
        self.reuse_port = reuse_port
        self.endpoint = endpoint
        self.log = logger
        self.shutdown_timeout = shutdown_timeout
        self.auto_decompress = auto_decompress
        self.ssl_context = ssl_context
        self.limits = limits or ServerLimits()
        self.telemetry = telemetry
        self.budget = ListenerBudget(self.limits.max_in_flight_bytes) \
            if self.limits.max_in_flight_bytes is not None else None
        self._runner: web.AppRunner | None = None
        self._listener: _Listener | None = None

    async def start(self) -> None:
        from aiohttp import web

        host, port = split_endpoint(self.endpoint)
        limits = self.limits
        listener = self._listener = _Listener(limits, self.endpoint, self.telemetry)
        self.app.middlewares.insert(0, _budget_middleware(listener, self.budget))
        self._runner = web.AppRunner(self.app, access_log=None,
                                     shutdown_timeout=self.shutdown_timeout,
                                     auto_decompress=self.auto_decompress,
                                     # aiohttp's own idle timer: a backstop to ours
                                     keepalive_timeout=limits.idle_timeout + 1.0,
                                     lingering_time=LINGERING_TIME,
                                     # a client that disconnects cancels its handler, and
                                     # with it the export it waits for (and its retries)
                                     handler_cancellation=True)
        await self._runner.setup()
        site = _GuardedSite(self._runner, host, port, listener, self.ssl_context,
                            self.reuse_port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise OSError(f"cannot listen on {self.endpoint}: {exc.strerror}") from None
        if self.budget is not None:
            self.budget.open()
        self.log.info("listening", extra={
            "endpoint": self.endpoint, "protocol": "https" if self.ssl_context else "http"})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._finish_requests(self._runner)
            await self._runner.cleanup()  # waits for in-flight handlers
            self._runner = None
        if self.budget is not None:
            self.budget.close()

    async def _finish_requests(self, runner: web.AppRunner) -> None:
        """Stop accepting, then let the requests already begun (headers or body still
        arriving, or being handled) finish, up to `shutdown_timeout`. aiohttp's own
        graceful shutdown closes every connection first and from then on drops what a
        closing connection receives, the rest of a body included: a request caught
        mid-body waited for it until the whole drain ran out."""
        for site in list(runner.sites):
            await site.stop()
        listener = self._listener
        if listener is None:
            return
        busy = [g for g in listener.guards.values() if g.busy]
        deadline = asyncio.get_running_loop().time() + self.shutdown_timeout
        while busy and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)  # polling the connections' state
            busy = [g for g in busy if g.busy]


def _budget_middleware(listener: _Listener, budget: ListenerBudget | None) -> Any:
    limits = listener.limits
    guards = listener.guards
    peers = listener.peers

    @web.middleware
    async def budgets(request: web.Request, handler: Handler) -> web.StreamResponse:
        guard = guards.get(request.transport) if request.transport is not None else None
        if guard is not None:
            guard.request_started()
        key = guard.key if guard is not None else None
        attempt = token = None
        if peers is not None and key is not None:
            retry_after = peers.refusal(key)
            if retry_after is not None:
                if guard is not None:
                    guard.request_done()
                return _refuse_request(peers, key, retry_after)
            attempt = Attempt(peers, key)
            token = CURRENT.set(attempt)
        request[READ_TIMEOUT] = limits.read_timeout
        reservation = Reservation(budget) if budget is not None else None
        if reservation is not None:
            request[RESERVATION] = reservation
        try:
            return await handler(request)
        finally:
            if reservation is not None:
                reservation.release()
            if attempt is not None:
                assert token is not None
                CURRENT.reset(token)
                attempt.settle()
            if guard is not None:
                guard.request_done()

    return budgets


def _refuse_request(peers: PeerBudget, key: str, retry_after: float) -> web.Response:
    """429 for a request of a peer out of its error budget; the connection is closed
    after it (its next one is refused when it connects, delayed)."""
    peers.refused()
    response = web.Response(status=429, text=refusal_message(peers, key, retry_after),
                            headers={"Retry-After": str(max(1, round(retry_after)))})
    response.force_close()
    return response
