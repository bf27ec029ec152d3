"""What every receiver shares: counting outcomes, request bodies, HTTP servers,
and server-side authentication (`Authenticator`, `auth_middleware`)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import ssl
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import zstandard
from aiohttp import web
from pydantic import Field

from pipeline.component import ComponentConfig, Consumer, CreateSettings, Signal
from pipeline.config.tls import ServerAuthSettings, TLSServerSettings
from pipeline.config.types import Endpoint, split_endpoint
from pipeline.errors import PermanentError, RetryableError
from pipeline.pdata.batch import Batch

DEFAULT_MAX_BODY = 20 * 1024 * 1024  # the Collector's confighttp default


class HTTPServerSettings(ComponentConfig):
    endpoint: Endpoint
    max_request_body_size: int = Field(
        DEFAULT_MAX_BODY, gt=0,
        description="Largest accepted body in bytes, before and after decompression (413 above).")
    tls: TLSServerSettings | None = Field(
        None, description="Serve HTTPS with this certificate (client_ca_file: mutual TLS).")
    auth: ServerAuthSettings | None = Field(
        None, description="Require `Authorization: Bearer <token>` (or Basic); 401 otherwise.")


class BodyError(Exception):
    """A request body that cannot be read; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Inflate per Content-Encoding, refusing output beyond `limit` (gzip bombs)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    try:
        if encoding in ("gzip", "x-gzip", "deflate"):
            # wbits: 16+ = gzip header; 0 (deflate) auto-detects zlib-wrapped streams,
            # and raw deflate is tried when the zlib header is missing.
            if encoding == "deflate":
                wbits = zlib.MAX_WBITS if body[:1] == b"\x78" else -zlib.MAX_WBITS
            else:
                wbits = 16 + zlib.MAX_WBITS
            d = zlib.decompressobj(wbits)
            out = d.decompress(body, limit + 1)
            if len(out) > limit or d.unconsumed_tail:
                raise BodyError(413, f"decompressed body exceeds the limit of {limit} bytes")
            out += d.flush()
            if not d.eof:
                raise BodyError(400, f"truncated {encoding} body")
            if len(out) > limit:
                raise BodyError(413, f"decompressed body exceeds the limit of {limit} bytes")
            return out
        if encoding == "zstd":
            reader = zstandard.ZstdDecompressor().stream_reader(body, read_across_frames=True)
            out = reader.read(limit + 1)
            if len(out) > limit:
                raise BodyError(413, f"decompressed body exceeds the limit of {limit} bytes")
            return out
    except zlib.error as exc:
        raise BodyError(400, f"invalid {encoding} body: {exc}") from None
    except zstandard.ZstdError as exc:
        raise BodyError(400, f"invalid zstd body: {exc}") from None
    raise BodyError(415, f"unsupported Content-Encoding {encoding!r} "
                         "(supported: gzip, deflate, zstd, identity)")


class ReceiverObs:
    """Counts what a receiver accepted, refused and rejected, per signal."""

    def __init__(self, settings: CreateSettings, transport: str):
        t = settings.telemetry
        rid = str(settings.id)
        self._accepted = {s: t.receiver_accepted.labels(rid, transport, s.value) for s in Signal}
        self._refused = {s: t.receiver_refused.labels(rid, transport, s.value) for s in Signal}
        self._rejected = {s: t.receiver_rejected.labels(rid, transport, s.value) for s in Signal}
        self._failed = t.receiver_failed_requests
        self._rid = rid
        self._transport = transport
        self.log = settings.logger

    def accepted(self, signal: Signal, n: int) -> None:
        self._accepted[signal].inc(n)

    def refused(self, signal: Signal, n: int) -> None:
        self._refused[signal].inc(n)

    def rejected(self, signal: Signal, n: int) -> None:
        self._rejected[signal].inc(n)

    def failed_request(self, reason: str) -> None:
        self._failed.labels(self._rid, self._transport, reason).inc()

    async def deliver(self, consumer: Consumer, batch: Batch) -> None:
        """Hand a batch to the pipeline and count the outcome; errors propagate."""
        n = batch.items
        try:
            await consumer.consume(batch)
        except RetryableError:
            self.refused(batch.signal, n)
            raise
        except PermanentError as exc:
            self.rejected(batch.signal, exc.rejected or n)
            raise
        except Exception:
            # A bug downstream: refuse (retryable) rather than lose acknowledged data.
            self.refused(batch.signal, n)
            self.log.exception("pipeline failed while consuming a batch")
            raise
        self.accepted(batch.signal, n)


class HTTPServer:
    """An aiohttp server on one endpoint, stopped gracefully.

    Pass `auto_decompress=False` when the handlers inflate bodies themselves
    with `decompress` (aiohttp would otherwise inflate gzip/deflate first,
    without our size limit, and answer zstd with a plain-text 400).
    """

    def __init__(self, app: web.Application, endpoint: str, logger: logging.Logger,
                 *, shutdown_timeout: float = 5.0, auto_decompress: bool = True,
                 ssl_context: ssl.SSLContext | None = None):
        self.app = app
        self.endpoint = endpoint
        self.log = logger
        self.shutdown_timeout = shutdown_timeout
        self.auto_decompress = auto_decompress
        self.ssl_context = ssl_context
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        host, port = split_endpoint(self.endpoint)
        self._runner = web.AppRunner(self.app, access_log=None,
                                     shutdown_timeout=self.shutdown_timeout,
                                     auto_decompress=self.auto_decompress)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True,
                           ssl_context=self.ssl_context)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise OSError(f"cannot listen on {self.endpoint}: {exc.strerror}") from None
        self.log.info("listening", extra={
            "endpoint": self.endpoint, "protocol": "https" if self.ssl_context else "http"})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()  # stops accepting, waits for in-flight handlers
            self._runner = None


def retry_after_header(err: RetryableError) -> Mapping[str, str]:
    return {"Retry-After": str(max(1, round(err.retry_after or 1)))}


# Server authentication ------------------------------------------------------------------

MISSING = "missing credential"
INVALID = "invalid credential"
AUTH_LOG_INTERVAL = 10.0  # seconds between two warnings about rejected requests
TOKEN_FILE_CHECK_INTERVAL = 5.0


class Authenticator:
    """Checks a request's `Authorization` value against the configured credentials.

    The accepted header values are precomputed (`bearer <token>`, `basic <b64>`,
    scheme lower-cased) as bytes; a check is one partition and one
    `hmac.compare_digest` per accepted credential (every one is compared, so
    the time does not tell which, or whether an early one, matched).

    Rejections are counted (`otelpipe_receiver_failed_requests_total{reason=
    "unauthenticated"}`) and logged at warning level at most once per
    `log_interval` seconds, with the remote address, the reason and how many
    were not logged since, never with the presented or the configured secret.
    """

    def __init__(self, settings: ServerAuthSettings, create: CreateSettings, transport: str,
                 *, log_interval: float = AUTH_LOG_INTERVAL,
                 clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.log = create.logger
        self.transport = transport
        self._failed = create.telemetry.receiver_failed_requests.labels(
            str(create.id), transport, "unauthenticated")
        self.log_interval = log_interval
        self.clock = clock
        self._last_log = -float("inf")
        self._suppressed = 0
        self._expected: tuple[bytes, ...] = ()
        self._file_stat: tuple[float, int] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._load()
        bearer = settings.bearer_token is not None or bool(settings.bearer_tokens) \
            or settings.bearer_token_file is not None
        scheme = "Bearer" if bearer else "Basic"
        self.challenge = f'{scheme} realm="otelpipe"'
        self._challenges = {MISSING: self.challenge,
                            INVALID: self.challenge + (', error="invalid_token"' if bearer
                                                       else "")}

    def _load(self) -> None:
        values = []
        for header in self.settings.expected_headers():
            scheme, _, cred = header.partition(" ")
            values.append(f"{scheme.lower()} {cred}".encode())
        if not values and self.settings.bearer_token_file:
            self.log.warning("no token in the bearer_token_file: every request is rejected",
                             extra={"file": self.settings.bearer_token_file})
        self._expected = tuple(values)
        if self.settings.bearer_token_file:
            st = os.stat(self.settings.bearer_token_file)
            self._file_stat = (st.st_mtime, st.st_size)

    def check(self, authorization: str | None) -> str | None:
        """None if the credential is accepted, else the reason (MISSING or INVALID)."""
        if not authorization:
            return MISSING
        scheme, _, cred = authorization.partition(" ")
        got = f"{scheme.lower()} {cred.strip()}".encode("utf-8", "surrogateescape")
        ok = False
        for expected in self._expected:
            ok |= hmac.compare_digest(got, expected)
        return None if ok else INVALID

    def challenge_for(self, reason: str) -> str:
        """The WWW-Authenticate value to answer a rejection with."""
        return self._challenges.get(reason, self.challenge)

    def rejected(self, reason: str, remote: str | None) -> None:
        """Count a rejected request; log it unless one was logged recently."""
        self._failed.inc()
        now = self.clock()
        if now - self._last_log < self.log_interval:
            self._suppressed += 1
            return
        self.log.warning("rejected an unauthenticated request", extra={
            "reason": reason, "remote": remote or "unknown", "transport": self.transport,
            "suppressed": self._suppressed})
        self._last_log = now
        self._suppressed = 0

    # gRPC: a per-call metadata check (cheaper than a server interceptor).

    def grpc_check(self, context: Any) -> str | None:
        for md in context.invocation_metadata() or ():
            if md[0] == "authorization":
                value = md[1]
                return self.check(value.decode("latin-1") if isinstance(value, bytes)
                                  else value)
        return MISSING

    async def grpc_abort(self, context: Any, reason: str) -> None:
        """Count and log the rejection, then end the call with UNAUTHENTICATED."""
        import grpc  # only receivers that serve gRPC get here

        self.rejected(reason, context.peer())
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    # bearer_token_file: re-read when it changes (mtime or size), off the hot path.

    async def start(self) -> None:
        if self.settings.bearer_token_file and self._watcher is None:
            self._watcher = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

    async def _watch(self, interval: float = TOKEN_FILE_CHECK_INTERVAL) -> None:
        while True:
            await asyncio.sleep(interval)
            self.reload_if_changed()

    def reload_if_changed(self) -> bool:
        """Re-read bearer_token_file if it changed; True if it did. Keeps the old
        tokens (and warns) if the file cannot be read."""
        path = self.settings.bearer_token_file
        if not path:
            return False
        try:
            st = os.stat(path)
            if (st.st_mtime, st.st_size) == self._file_stat:
                return False
            self._load()
        except OSError as exc:
            self.log.warning("cannot re-read bearer_token_file; keeping the tokens read "
                             "before", extra={"file": path, "error": exc.strerror})
            return False
        self.log.info("bearer_token_file changed; tokens reloaded", extra={"file": path})
        return True


Unauthorized = Callable[[web.Request, str], web.Response]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def auth_middleware(auth: Authenticator, unauthorized: Unauthorized) -> Any:
    """An aiohttp middleware answering 401 (`WWW-Authenticate`) before any handler
    runs, and before the body is read. `unauthorized(request, reason)` builds the
    body in the receiver's own error format."""
    check = auth.check

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        reason = check(request.headers.get("Authorization"))
        if reason is None:
            return await handler(request)
        auth.rejected(reason, request.remote)
        response = unauthorized(request, reason)
        response.headers["WWW-Authenticate"] = auth.challenge_for(reason)
        return response

    return authenticate


def grpc_server_credentials(tls: TLSServerSettings) -> Any:
    """grpc.ssl_server_credentials for a TLS config (client CA: client certs required).

    gRPC core negotiates TLS 1.2 or 1.3; `min_version` is not configurable there.
    """
    import grpc

    key, cert, ca = tls.pem()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                       require_client_auth=ca is not None)
