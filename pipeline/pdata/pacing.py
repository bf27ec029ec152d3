"""Long loops on the event loop, in bounded slices.

A flush of 20,000 series (build the points, snapshot, commit) or a scrape that
renders them costs hundreds of milliseconds of CPU: in one piece it would hold
the loop far past the 100 ms bound of DESIGN.md. `paced` hands out the items
of such a loop and gives the loop a turn (`await asyncio.sleep(0)`) whenever a
slice of `SLICE_SECONDS` has passed since the last turn, so no synchronous
piece lasts longer than one slice plus one item, however many items there are
and however loaded the machine is (the slice is measured, not counted).

Here, in the data layer, so that the aggregation engine, the connectors,
processors and exporters share it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import TypeVar

__all__ = ["SLICE_SECONDS", "paced"]

T = TypeVar("T")

#: Longest synchronous run of a paced loop between two turns of the event loop.
SLICE_SECONDS = 0.01


async def paced(items: Iterable[T]) -> AsyncIterator[T]:
    """`items`, one at a time, yielding to the event loop between slices.

    What the caller's loop body reads must stay valid across the turns (other tasks
    run between them): iterate over a snapshot or over immutable data."""
    clock = time.perf_counter
    budget = SLICE_SECONDS  # read at each call: tests set it to 0 or to infinity
    end = clock() + budget
    for item in items:
        yield item
        if clock() >= end:
            await asyncio.sleep(0)
            end = clock() + budget
