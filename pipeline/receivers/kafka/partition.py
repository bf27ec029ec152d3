"""One partition of the `kafka` receiver: its records delivered in order, and the
next offset to commit."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiokafka.structs import ConsumerRecord, TopicPartition

    from pipeline.receivers.kafka.receiver import KafkaReceiver


class _Abandon(Exception):
    """The partition was revoked or the receiver stops: leave the record."""


class _Partition:
    """Delivers one partition's records in order; tracks the next offset to commit."""

    def __init__(self, receiver: KafkaReceiver, tp: TopicPartition):
        self.r = receiver
        self.tp = tp
        self.queue: collections.deque[ConsumerRecord[bytes, bytes]] = collections.deque()
        self.wake = asyncio.Event()
        self.delivered: int | None = None  # next offset to commit
        self.committed: int | None = None
        self.stopping = False
        self.paused = False
        self.task = asyncio.create_task(
            self._run(), name=f"{receiver.id}-{tp.topic}-{tp.partition}")

    def add(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        self.queue.extend(records)
        self.wake.set()

    async def _run(self) -> None:
        r = self.r
        while not self.stopping:
            if not self.queue:
                self.wake.clear()
                await self.wake.wait()
                continue
            rec = self.queue[0]
            try:
                await r._process(self, rec)
            except _Abandon:
                return
            self.queue.popleft()
            self.delivered = rec.offset + 1
            if self.paused and len(self.queue) <= r.config.max_buffered_records // 2:
                r._resume(self)

    async def stop(self, grace: float) -> None:
        """Finish the record in flight (no new attempt after a refusal), drop the rest."""
        self.stopping = True
        self.wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), grace)
        except TimeoutError:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        except Exception:  # the task logged its own failure
            pass
        self.queue.clear()



async def _until(part: _Partition) -> None:
    while not part.stopping:
        part.wake.clear()
        await part.wake.wait()

