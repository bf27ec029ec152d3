"""Who may send: server-side authentication (`Authenticator`, `auth_middleware` for
aiohttp, per-call checks for gRPC) and gRPC server credentials."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pipeline.component import CreateSettings
from pipeline.config.tls import ServerAuthSettings, TLSServerSettings
from pipeline.receiverhelper.obs import FAILED_REQUESTS
from pipeline.receiverhelper.peers import note_failure

if TYPE_CHECKING:
    from aiohttp import web
    from aiohttp.typedefs import Handler, Middleware

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
        self._failed = create.telemetry.counter(FAILED_REQUESTS).labels(
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
        values: list[bytes] = []
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
        note_failure("unauthenticated")
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


Unauthorized = Callable[["web.Request", str], "web.Response"]


def auth_middleware(auth: Authenticator, unauthorized: Unauthorized) -> Middleware:
    """An aiohttp middleware answering 401 (`WWW-Authenticate`) before any handler
    runs, and before the body is read. `unauthorized(request, reason)` builds the
    body in the receiver's own error format."""
    from aiohttp import web

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


# gRPC server credentials ---------------------------------------------------------------


def grpc_server_credentials(tls: TLSServerSettings) -> Any:
    """grpc.ssl_server_credentials for a TLS config (client CA: client certs required).

    gRPC core negotiates TLS 1.2 or 1.3; `min_version` is not configurable there.
    """
    import grpc

    key, cert, ca = tls.pem()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                       require_client_auth=ca is not None)
