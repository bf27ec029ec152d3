"""What every receiver shares: counting outcomes, request bodies, HTTP servers."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping

import zstandard
from aiohttp import web
from pydantic import Field

from pipeline.component import ComponentConfig, Consumer, CreateSettings, Signal
from pipeline.config.types import Endpoint, split_endpoint
from pipeline.errors import PermanentError, RetryableError
from pipeline.pdata.batch import Batch

DEFAULT_MAX_BODY = 20 * 1024 * 1024  # the Collector's confighttp default


class HTTPServerSettings(ComponentConfig):
    endpoint: Endpoint
    max_request_body_size: int = Field(
        DEFAULT_MAX_BODY, gt=0,
        description="Largest accepted body in bytes, before and after decompression (413 above).")


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
                 *, shutdown_timeout: float = 5.0, auto_decompress: bool = True):
        self.app = app
        self.endpoint = endpoint
        self.log = logger
        self.shutdown_timeout = shutdown_timeout
        self.auto_decompress = auto_decompress
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        host, port = split_endpoint(self.endpoint)
        self._runner = web.AppRunner(self.app, access_log=None,
                                     shutdown_timeout=self.shutdown_timeout,
                                     auto_decompress=self.auto_decompress)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise OSError(f"cannot listen on {self.endpoint}: {exc.strerror}") from None
        self.log.info("listening", extra={"endpoint": self.endpoint, "protocol": "http"})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()  # stops accepting, waits for in-flight handlers
            self._runner = None


def retry_after_header(err: RetryableError) -> Mapping[str, str]:
    return {"Retry-After": str(max(1, round(err.retry_after or 1)))}
