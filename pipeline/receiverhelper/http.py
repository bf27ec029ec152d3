"""An aiohttp server on one endpoint, its settings, and shared HTTP answers."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping

from aiohttp import web
from pydantic import Field

from pipeline.component import ComponentConfig
from pipeline.config.tls import ServerAuthSettings, TLSServerSettings
from pipeline.config.types import Endpoint, split_endpoint
from pipeline.errors import RetryableError

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


class HTTPServer:
    """An aiohttp server on one endpoint, stopped gracefully.

    Pass `auto_decompress=False` when the handlers inflate bodies themselves
    with `receiverhelper.body.decompress` (aiohttp would otherwise inflate
    gzip/deflate first, without our size limit, and answer zstd with a
    plain-text 400).
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
        # handler_cancellation: a client that disconnects cancels its handler, and with it
        # the export it waits for (and that export's retries) -- aiohttp >= 3.9 no longer
        # does by default.
        self._runner = web.AppRunner(self.app, access_log=None,
                                     shutdown_timeout=self.shutdown_timeout,
                                     auto_decompress=self.auto_decompress,
                                     handler_cancellation=True)
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
