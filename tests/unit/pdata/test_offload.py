"""pdata/offload.py: a worker process runs module-level functions off the event loop."""

from __future__ import annotations

import os
import time

import pytest

from pipeline.errors import PermanentError
from pipeline.pdata.offload import Offload, OffloadError, workers_memory
from tests.loop_lag import LoopLag


def add(a: int, b: int) -> int:
    return a + b


def pid() -> int:
    return os.getpid()


def refuse(n: int) -> None:
    raise PermanentError("too big", rejected=n)


def spin(seconds: float) -> bytes:
    """CPU work (no sleep): what would hold the loop if run on it."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return b"x" * 5_000_000


def die() -> None:
    os._exit(3)


def unpicklable() -> object:
    return lambda: None


async def test_calls_run_in_one_other_process_in_order() -> None:
    off = Offload()
    try:
        assert await off.call(add, 2, 3) == 5
        first = await off.call(pid)
        assert first != os.getpid()
        assert await off.call(pid) == first  # one worker, reused
        assert off.calls == 3
    finally:
        await off.close()


async def test_an_exception_comes_back_with_its_attributes() -> None:
    off = Offload()
    try:
        with pytest.raises(PermanentError, match="too big") as info:
            await off.call(refuse, 7)
        assert info.value.rejected == 7
        assert await off.call(add, 1, 1) == 2  # the worker survived
    finally:
        await off.close()


async def test_a_dead_worker_is_an_offload_error_and_is_restarted() -> None:
    off = Offload()
    try:
        first = await off.call(pid)
        with pytest.raises(OffloadError, match="failed"):
            await off.call(die)
        second = await off.call(pid)
        assert second != first
    finally:
        await off.close()


async def test_unpicklable_arguments_and_results_are_offload_errors() -> None:
    off = Offload()
    try:
        with pytest.raises(OffloadError, match="cannot send"):
            await off.call(add, lambda: 1, 2)
        with pytest.raises(OffloadError, match="cannot send the result"):
            await off.call(unpicklable)
        assert await off.call(add, 2, 2) == 4
    finally:
        await off.close()


async def test_cpu_work_in_the_worker_does_not_hold_the_loop() -> None:
    off = Offload()
    try:
        await off.call(add, 0, 0)  # started (the import is not the point here)
        async with LoopLag() as lag:
            out = await off.call(spin, 0.5)
        assert len(out) == 5_000_000
        assert lag.ticks >= 20  # the loop kept running meanwhile
        lag.assert_bounded()
    finally:
        await off.close()


_HELD: list[bytes] = []


def hold(n: int) -> int:
    """Keep `n` bytes resident in the worker (until `drop`)."""
    _HELD.append(b"x" * n)
    return n


def drop() -> None:
    _HELD.clear()


def allocate_and_free(n: int) -> int:
    """Build `n` bytes of small objects and free them before answering (what encoding a
    big batch does): glibc keeps such memory unless it is trimmed."""
    chunks = [bytes(1000) + str(i).encode() for i in range(n // 1000)]
    size = sum(map(len, chunks))
    del chunks
    return size


async def test_what_a_worker_holds_counts_as_the_process_memory() -> None:
    assert workers_memory() == 0
    off = Offload()
    try:
        await off.call(add, 1, 1)
        idle = workers_memory()
        assert 0 < idle < 64 * 1024 * 1024  # its own heap, not the interpreter it maps
        await off.call(hold, 200 * 1024 * 1024)
        assert workers_memory() >= idle + 190 * 1024 * 1024
        await off.call(drop)
        assert workers_memory() < idle + 32 * 1024 * 1024
        # Freed memory leaves the worker after each call (trimmed), so a peak does not
        # stay counted.
        assert await off.call(allocate_and_free, 200 * 1024 * 1024) > 190 * 1024 * 1024
        assert workers_memory() < idle + 32 * 1024 * 1024
    finally:
        await off.close()
    assert workers_memory() == 0
