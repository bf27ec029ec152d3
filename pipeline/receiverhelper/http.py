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
  Retry-After) while the memory_limiter refuses (`receiverhelper.pressure`).

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import Field

from pipeline.component import ComponentConfig
from pipeline.config.tls import ServerAuthSettings, TLSServerSettings
from pipeline.config.types import Duration, Endpoint, split_endpoint
from pipeline.errors import RetryableError
from pipeline.receiverhelper import pressure
from pipeline.receiverhelper.body import BodyError, decompress, decompress_async
from pipeline.receiverhelper.budget import (
    DEFAULT_MAX_IN_FLIGHT_BYTES,
    ListenerBudget,
    Reservation,
)
from pipeline.telemetry.metrics import CounterSpec, GaugeSpec, Telemetry

DEFAULT_MAX_BODY = 20 * 1024 * 1024  # the Collector's confighttp default
# Compressed bodies larger than this are inflated a MiB per loop step. Deflate inflates at
# most ~1,032:1, so a body this small yields at most ~4 MB (a few ms); a bomb is larger.
INLINE_DECOMPRESS_BYTES = 4 * 1024
DEFAULT_READ_HEADER_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 30.0
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
    """A listener's budgets; `max_in_flight_bytes` None: it reads no bodies."""

    read_header_timeout: float = DEFAULT_READ_HEADER_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_in_flight_bytes: int | None = None

    @classmethod
    def of(cls, config: _LimitsConfig) -> ServerLimits:
        in_flight = getattr(config, "max_in_flight_bytes", None)
        return cls(config.read_header_timeout, config.read_timeout, config.idle_timeout,
                   config.max_connections, in_flight if isinstance(in_flight, int) else None)


_IDLE, _HEADERS, _ACTIVE, _REFUSED = 0, 1, 2, 3
_LIMITS = web.RequestKey("otelpipe_limits", ServerLimits)
_RESERVATION = web.RequestKey("otelpipe_reservation", Reservation)


class _Listener:
    """The connections of one listener: how many, and which one serves a transport."""

    def __init__(self, limits: ServerLimits, endpoint: str, telemetry: Telemetry | None):
        self.limits = limits
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

    __slots__ = ("_inner", "_listener", "_make", "_state", "_timer", "_transport")

    def __init__(self, listener: _Listener, make: Callable[[], asyncio.Protocol]):
        self._listener = listener
        self._make = make
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._state = _IDLE
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        listener = self._listener
        transport = cast(asyncio.Transport, base)  # uvloop's are not subclasses
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

    def connection_lost(self, exc: Exception | None) -> None:
        if self._state == _REFUSED:
            self._state = _IDLE
            self._cancel()
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
        self._listener.closed(reason)
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

    @web.middleware
    async def budgets(request: web.Request, handler: Handler) -> web.StreamResponse:
        guard = guards.get(request.transport) if request.transport is not None else None
        if guard is not None:
            guard.request_started()
        request[_LIMITS] = limits
        reservation = Reservation(budget) if budget is not None else None
        if reservation is not None:
            request[_RESERVATION] = reservation
        try:
            return await handler(request)
        finally:
            if reservation is not None:
                reservation.release()
            if guard is not None:
                guard.request_done()

    return budgets


# Request bodies ---------------------------------------------------------------------


class Refused(BodyError):
    """A body not read now (memory limiter, bytes in flight): 503 with a retry delay."""

    def __init__(self, message: str, retry_after: float, reason: str):
        super().__init__(503, message)
        self.retry_after = retry_after
        self.reason = reason  # failed_requests reason: memory_limiter, in_flight_bytes

    @property
    def headers(self) -> Mapping[str, str]:
        return {"Retry-After": str(max(1, round(self.retry_after)))}


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, inflated per Content-Encoding, within the listener's budgets.

    Raises `BodyError`: 413 above `limit` (announced, read or inflated), 408 when
    the body does not arrive within `read_timeout`, 400 when it is cut short or
    badly encoded, 415 for an unknown encoding, and `Refused` (503) when the
    memory limiter refuses or the bytes do not fit in the in-flight budget, which
    is checked before anything is read when `Content-Length` is known.
    """
    length = request.content_length
    if length is not None and length > limit:
        raise BodyError(413, f"request body of {length} bytes exceeds the limit of "
                             f"{limit} bytes")
    refusal = pressure.MEMORY.refusal()
    if refusal is not None:
        raise Refused(f"memory limit: {refusal.reason}", refusal.retry_after, "memory_limiter")
    reservation = request.get(_RESERVATION)
    if reservation is not None and length and not reservation.take(length):
        raise _over_budget()
    limits = request.get(_LIMITS) or ServerLimits()
    counted = reservation if length is None else None  # chunked: count as read
    try:
        async with asyncio.timeout(limits.read_timeout):
            body = await _read(request, limit, counted)
    except TimeoutError:
        raise BodyError(408, "request body not received within "
                             f"{limits.read_timeout:g}s (read_timeout)") from None
    encoding = request.headers.get("Content-Encoding", "")
    if encoding:
        # A big body (a bomb inflating to the limit takes a few hundred ms) is inflated
        # a MiB per loop step (a thread held the GIL too often: see decompress_async).
        if len(body) > INLINE_DECOMPRESS_BYTES:
            inflated = await decompress_async(body, encoding, limit)
        else:
            inflated = decompress(body, encoding, limit)
        if inflated is not body:
            del body
            if reservation is not None and not reservation.take(len(inflated)):
                raise _over_budget()
            return inflated
    return body


async def _read(request: web.Request, limit: int, counted: Reservation | None) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise BodyError(413, f"request body exceeds the limit of {limit} bytes")
            if counted is not None and not counted.take(len(chunk)):
                raise _over_budget()
            chunks.append(chunk)
    except BaseException as exc:
        # Drop what was read now: this frame lives on in the traceback, which an
        # asyncio task can keep in a reference cycle until the next full collection.
        chunks.clear()
        if isinstance(exc, (BodyError, asyncio.CancelledError)) or \
                not isinstance(exc, Exception):
            raise
        # The peer went away or sent a broken chunked encoding (aiohttp's payload errors).
        raise BodyError(400, f"request body cut short: {type(exc).__name__}") from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _over_budget() -> Refused:
    return Refused("too many request bytes in flight (max_in_flight_bytes); retry later", 1.0,
                   "in_flight_bytes")


def retry_after_header(err: RetryableError) -> Mapping[str, str]:
    return {"Retry-After": str(max(1, round(err.retry_after or 1)))}
