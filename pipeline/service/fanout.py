"""Fan-out of one batch to several consumers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pipeline.component import Consumer
from pipeline.errors import RetryableError
from pipeline.pdata.batch import Batch


class FanOut(Consumer):
    """Hands a batch to every consumer concurrently; succeeds only if all accept.

    If any refuses, the sender retries the whole batch: the consumers that
    accepted get it twice (at-least-once). A retryable refusal wins over a
    permanent one so that nothing that could still be delivered is dropped.
    Each consumer gets its own `Batch` over the same bytes, so a processor
    that changes its copy does not change the others'.
    """

    def __init__(self, consumers: Sequence[Consumer]):
        if len(consumers) < 2:
            raise ValueError("FanOut needs at least two consumers")
        self.consumers = tuple(consumers)

    async def consume(self, batch: Batch) -> None:
        results = await asyncio.gather(
            *(c.consume(batch.copy()) for c in self.consumers), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if not errors:
            return
        for err in errors:
            if isinstance(err, RetryableError):
                raise err
        raise errors[0]


def fan_out(consumers: Sequence[Consumer]) -> Consumer:
    return consumers[0] if len(consumers) == 1 else FanOut(consumers)
