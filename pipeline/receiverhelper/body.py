"""Request bodies: inflated per Content-Encoding, never beyond a size limit."""

from __future__ import annotations

import asyncio
import zlib

#: Output inflated per event-loop step by `decompress_async` (≈ 1-2 ms of zlib on an idle
#: core, ≈ 10 ms on a loaded one).
INFLATE_STEP = 1024 * 1024


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
    if encoding in ("gzip", "x-gzip", "deflate"):
        return _inflate(body, encoding, limit)
    if encoding == "zstd":
        return _unzstd(body, limit)
    raise BodyError(415, f"unsupported Content-Encoding {encoding!r} "
                         "(supported: gzip, deflate, zstd, identity)")


async def decompress_async(body: bytes, encoding: str, limit: int) -> bytes:
    """`decompress`, a MiB of output per event-loop step.

    Not a thread: zlib releases the GIL around each `inflate` call but takes it back
    to grow its output, so a thread inflating a bomb to the 20 MiB limit starved the
    loop for up to 0.7 s on a loaded machine (`benchmarks/hostile.py`, gzip_bomb)."""
    encoding = encoding.strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        return await _inflate_async(body, encoding, limit)
    if encoding == "zstd":
        return await _unzstd_async(body, limit)
    return decompress(body, encoding, limit)  # identity, or the 415


def _wbits(body: bytes, encoding: str) -> int:
    # wbits: 16+ = gzip header; 0 (deflate) auto-detects zlib-wrapped streams,
    # and raw deflate is tried when the zlib header is missing.
    if encoding == "deflate":
        return zlib.MAX_WBITS if body[:1] == b"\x78" else -zlib.MAX_WBITS
    return 16 + zlib.MAX_WBITS


async def _inflate_async(body: bytes, encoding: str, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    try:
        d = zlib.decompressobj(_wbits(body, encoding))
        data = body
        while True:
            chunk = d.decompress(data, INFLATE_STEP)
            data = d.unconsumed_tail
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            parts.append(chunk)
            if d.eof or (not data and len(chunk) < INFLATE_STEP):
                break
            await asyncio.sleep(0)
        tail = d.flush()
    except zlib.error as exc:
        raise BodyError(400, f"invalid {encoding} body: {exc}") from None
    if size + len(tail) > limit:
        raise _too_large(limit)
    if not d.eof:
        raise BodyError(400, f"truncated {encoding} body")
    parts.append(tail)
    return b"".join(parts)


async def _unzstd_async(body: bytes, limit: int) -> bytes:
    import zstandard

    parts: list[bytes] = []
    size = 0
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(body, read_across_frames=True)
        while True:
            chunk = reader.read(INFLATE_STEP)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            parts.append(chunk)
            await asyncio.sleep(0)
    except zstandard.ZstdError as exc:
        raise BodyError(400, f"invalid zstd body: {exc}") from None
    return b"".join(parts)


def _too_large(limit: int) -> BodyError:
    return BodyError(413, f"decompressed body exceeds the limit of {limit} bytes")


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    try:
        d = zlib.decompressobj(_wbits(body, encoding))
        out = d.decompress(body, limit + 1)
        if len(out) > limit or d.unconsumed_tail:
            raise _too_large(limit)
        out += d.flush()
    except zlib.error as exc:
        raise BodyError(400, f"invalid {encoding} body: {exc}") from None
    if not d.eof:
        raise BodyError(400, f"truncated {encoding} body")
    if len(out) > limit:
        raise _too_large(limit)
    return out


def _unzstd(body: bytes, limit: int) -> bytes:
    import zstandard  # loaded by the first zstd body, not with every receiver

    try:
        reader = zstandard.ZstdDecompressor().stream_reader(body, read_across_frames=True)
        out = reader.read(limit + 1)
    except zstandard.ZstdError as exc:
        raise BodyError(400, f"invalid zstd body: {exc}") from None
    if len(out) > limit:
        raise _too_large(limit)
    return out
