"""`decompress_async`: the same bodies and errors as `decompress`, a MiB of output per
loop step (a gzip bomb inflated in a thread starved the loop up to 0.7 s)."""

from __future__ import annotations

import gzip
import os
import zlib

import pytest
import zstandard

from pipeline.receiverhelper.body import INFLATE_STEP, BodyError, decompress, decompress_async
from tests.loop_lag import LoopLag

MIB = 1024 * 1024
# Incompressible and compressible parts, 5.5 MiB: several steps.
DATA = (os.urandom(MIB) + b"otelpipe " * 300_000) * 2 + b"end"


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


ENCODED = [
    ("gzip", gzip.compress(DATA)),
    ("deflate", zlib.compress(DATA)),
    ("deflate", _raw_deflate(DATA)),
    ("zstd", zstandard.ZstdCompressor().compress(DATA)),
    ("identity", DATA),
]


@pytest.mark.parametrize(("encoding", "body"), ENCODED)
async def test_inflates_like_decompress(encoding: str, body: bytes) -> None:
    assert await decompress_async(body, encoding, len(DATA)) == DATA
    assert decompress(body, encoding, len(DATA)) == DATA


@pytest.mark.parametrize(("encoding", "body"), ENCODED[:4])
async def test_one_byte_over_the_limit_is_413(encoding: str, body: bytes) -> None:
    with pytest.raises(BodyError, match="exceeds the limit") as info:
        await decompress_async(body, encoding, len(DATA) - 1)
    assert info.value.status == 413


@pytest.mark.parametrize(("encoding", "body", "status", "match"), [
    ("gzip", gzip.compress(DATA)[:40], 400, "truncated gzip"),
    ("gzip", gzip.compress(DATA)[:-9], 400, "truncated gzip|invalid gzip"),
    ("gzip", b"not gzip" * 1000, 400, "invalid gzip body"),
    ("zstd", b"not zstd" * 1000, 400, "invalid zstd body"),
    ("br", b"x" * 10_000, 415, "unsupported Content-Encoding 'br'"),
])
async def test_bad_bodies(encoding: str, body: bytes, status: int, match: str) -> None:
    with pytest.raises(BodyError, match=match) as info:
        await decompress_async(body, encoding, 20 * MIB)
    assert info.value.status == status


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
async def test_a_bomb_is_refused_a_step_at_a_time(encoding: str) -> None:
    zeros = bytes(64 * MIB)
    bomb = gzip.compress(zeros, 9) if encoding == "gzip" \
        else zstandard.ZstdCompressor(level=19).compress(zeros)
    assert len(bomb) < 100_000
    async with LoopLag() as lag:
        with pytest.raises(BodyError, match="exceeds the limit of 20971520 bytes"):
            await decompress_async(bomb, encoding, 20 * MIB)
    assert lag.ticks >= 1
    lag.assert_bounded()
    assert INFLATE_STEP == MIB
