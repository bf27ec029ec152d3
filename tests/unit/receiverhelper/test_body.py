"""Request bodies: every Content-Encoding inflates, within the limit only."""

from __future__ import annotations

import gzip
import zlib

import pytest
import zstandard

from pipeline.receiverhelper.body import BodyError, decompress

DATA = b"otelpipe " * 1000


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize(("encoding", "body"), [
    ("", DATA),
    ("identity", DATA),
    ("gzip", gzip.compress(DATA)),
    (" X-GZIP ", gzip.compress(DATA)),
    ("deflate", zlib.compress(DATA)),
    ("deflate", _raw_deflate(DATA)),
    ("zstd", zstandard.ZstdCompressor().compress(DATA)),
])
def test_inflates(encoding: str, body: bytes) -> None:
    assert decompress(body, encoding, len(DATA)) == DATA


@pytest.mark.parametrize(("encoding", "body", "status", "match"), [
    ("gzip", gzip.compress(DATA), 413, "exceeds the limit"),
    ("zstd", zstandard.ZstdCompressor().compress(DATA), 413, "exceeds the limit"),
    ("gzip", gzip.compress(DATA)[:40], 400, "truncated gzip"),
    ("gzip", b"not gzip", 400, "invalid gzip body"),
    ("zstd", b"not zstd", 400, "invalid zstd body"),
    ("br", b"", 415, "unsupported Content-Encoding 'br'"),
])
def test_refuses(encoding: str, body: bytes, status: int, match: str) -> None:
    with pytest.raises(BodyError, match=match) as info:
        decompress(body, encoding, len(DATA) - 1)
    assert info.value.status == status
