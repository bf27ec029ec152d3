"""Reading an HTTP request body within its listener's budgets (`read_body`), and the
503 answer of a request refused before its body is read (`Refused`).

`HTTPServer`'s middleware (receiverhelper.http) puts the listener's `read_timeout`
and the request's byte `Reservation` on each request; `read_body` uses them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiohttp import web

from pipeline.errors import RetryableError
from pipeline.receiverhelper import pressure
from pipeline.receiverhelper.body import BodyError, decompress, decompress_async
from pipeline.receiverhelper.budget import Reservation
from pipeline.receiverhelper.peers import current, note_bytes, refusal_message

DEFAULT_READ_TIMEOUT = 30.0
# Compressed bodies larger than this are inflated a MiB per loop step. Deflate inflates at
# most ~1,032:1, so a body this small yields at most ~4 MB (a few ms); a bomb is larger.
INLINE_DECOMPRESS_BYTES = 4 * 1024

READ_TIMEOUT = web.RequestKey("otelpipe_read_timeout", float)
RESERVATION = web.RequestKey("otelpipe_reservation", Reservation)


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
    reservation = request.get(RESERVATION)
    if reservation is not None and length and not reservation.take(length):
        raise _over_budget()
    read_timeout = request.get(READ_TIMEOUT, DEFAULT_READ_TIMEOUT)
    counted = reservation if length is None else None  # chunked: count as read
    try:
        async with asyncio.timeout(read_timeout):
            body = await _read(request, limit, counted)
    except TimeoutError:
        raise BodyError(408, "request body not received within "
                             f"{read_timeout:g}s (read_timeout)") from None
    note_bytes(len(body))
    encoding = request.headers.get("Content-Encoding", "")
    if encoding:
        # A big body (a bomb inflating to the limit takes a few hundred ms) is inflated
        # a MiB per loop step (a thread held the GIL too often: see decompress_async).
        try:
            if len(body) > INLINE_DECOMPRESS_BYTES:
                attempt = current()
                if attempt is None:
                    inflated = await decompress_async(body, encoding, limit)
                else:  # one big inflation per peer at a time (receiverhelper.peers)
                    async with attempt.budget.inflating(attempt.key):
                        # Its peer may have run out while this one waited its turn.
                        retry_after = attempt.budget.exhausted(attempt.key)
                        if retry_after is not None:
                            attempt.budget.refused()
                            raise Refused(refusal_message(attempt.budget, attempt.key,
                                                          retry_after), retry_after,
                                          "peer_error_budget")
                        inflated = await decompress_async(body, encoding, limit)
            else:
                inflated = decompress(body, encoding, limit)
        except BodyError as exc:
            if exc.status == 413:
                note_bytes(limit)  # inflated up to the limit before refusing
            raise
        if inflated is not body:
            note_bytes(len(inflated))
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
                note_bytes(size)
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
