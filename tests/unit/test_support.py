"""`eventually` / `aeventually` (tests/support.py), the one way tests wait."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.support import _pauses, aeventually, eventually


def test_eventually_returns_the_first_truthy_value() -> None:
    calls = itertools.count()
    assert eventually(lambda: next(calls) >= 3 and "ready", interval=0) == "ready"


def test_eventually_retries_exceptions_and_names_the_last_one() -> None:
    def boom() -> bool:
        raise ConnectionRefusedError("not yet")

    with pytest.raises(AssertionError, match=r"the backend.*ConnectionRefusedError") as info:
        eventually(boom, timeout=0.05, what="the backend", interval=0.01)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


def test_eventually_reports_the_last_value_and_a_lazy_description() -> None:
    with pytest.raises(AssertionError, match=r"after 0.05s waiting for 3 items \(logs\); "
                                             r"last value: \[\]"):
        eventually(list, timeout=0.05, what=lambda: "3 items (logs)", interval=0.01)


def test_eventually_calls_at_least_once() -> None:
    assert eventually(lambda: 7, timeout=0) == 7


async def test_aeventually_lets_the_loop_run_and_awaits_async_conditions() -> None:
    done: list[int] = []

    async def later() -> None:
        await asyncio.sleep(0.02)
        done.append(1)

    task = asyncio.create_task(later())
    assert await aeventually(lambda: len(done), interval=0.005) == 1
    await task

    async def fetch() -> dict[str, int]:
        return {"n": len(done)}

    assert await aeventually(fetch) == {"n": 1}


async def test_aeventually_times_out_with_the_last_value() -> None:
    with pytest.raises(AssertionError, match="waiting for nothing; last value: 0"):
        await aeventually(lambda: 0, timeout=0.03, what="nothing", interval=0.01)


def test_polling_starts_fast_and_backs_off_to_the_interval() -> None:
    assert list(itertools.islice(_pauses(0.05), 6)) == [0.005, 0.01, 0.02, 0.04, 0.05, 0.05]
    assert list(itertools.islice(_pauses(0), 2)) == [0, 0]
