"""Request bodies: inflated per Content-Encoding, never beyond a size limit."""

from __future__ import annotations

import zlib


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


def _too_large(limit: int) -> BodyError:
    return BodyError(413, f"decompressed body exceeds the limit of {limit} bytes")


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    # wbits: 16+ = gzip header; 0 (deflate) auto-detects zlib-wrapped streams,
    # and raw deflate is tried when the zlib header is missing.
    if encoding == "deflate":
        wbits = zlib.MAX_WBITS if body[:1] == b"\x78" else -zlib.MAX_WBITS
    else:
        wbits = 16 + zlib.MAX_WBITS
    try:
        d = zlib.decompressobj(wbits)
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
