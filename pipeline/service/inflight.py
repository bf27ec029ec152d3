"""Counting what is inside a consumer right now, for the report of an aborted drain.

The service wraps each receiver's consumers (requests in flight: batches a
receiver handed to its pipelines and not yet answered) and each exporter
(items inside `consume`: being sent by a caller that waits, or being queued).
A second SIGINT/SIGTERM during the drain logs these counts before exiting.
"""

from __future__ import annotations

from pipeline.component import Consumer
from pipeline.pdata.batch import Batch


class InFlight:
    """Requests and items currently inside the consumers of one component."""

    __slots__ = ("items", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.items = 0


class Tracked(Consumer):
    """A consumer that counts the batches and items it is consuming right now."""

    __slots__ = ("counts", "inner")

    def __init__(self, inner: Consumer, counts: InFlight):
        self.inner = inner
        self.counts = counts

    async def consume(self, batch: Batch) -> None:
        counts = self.counts
        n = batch.items
        counts.requests += 1
        counts.items += n
        try:
            await self.inner.consume(batch)
        finally:
            counts.requests -= 1
            counts.items -= n
