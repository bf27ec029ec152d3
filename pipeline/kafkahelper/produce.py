"""A lean produce path for the `kafka` exporter's common case (no compression, no
idempotence, no SASL): records go straight from the exporter into one Produce request
per broker.

aiokafka's `AIOKafkaProducer` builds each record into a batch builder, computes the
batch's CRC-32C with a byte-table loop (≈ 30 µs per 35 KB record), then encodes the
Produce request field by field in Python: a 35 KB OTLP request is copied about nine
times on its way to the socket (builder, bytes field, every nested array and struct
join, header, size prefix), and decoding the answer is Python too. Here a record stays
the caller's bytes until the kernel copies it: each partition's RecordBatch (v2, magic
2) is a list of pieces whose CRC-32C is computed over them in turn (google-crc32c,
hardware-accelerated), and the request goes out as those pieces in one `writelines`
(writev) on a connection of our own (`BrokerConnection`, Produce v3, PLAINTEXT or TLS).
aiokafka's client still does bootstrap and metadata (partitions, leaders, brokers).

Semantics follow `AIOKafkaProducer` with `enable_idempotence=False`:
- keyless records go to a random available partition, keyed ones to murmur2(key) over
  all partitions (aiokafka's `DefaultPartitioner`, the Java client's);
- one request in flight per broker; records wait `linger_ms` from the oldest one, or
  until `max_request_size` bytes are waiting; a partition's batch holds at most
  `max_batch_size` bytes (as aiokafka's batches: the broker's `message.max.bytes`, 1 MiB
  by default, refuses a larger one);
- a retriable error (connection lost, leader moved, request timed out) refreshes the
  metadata and sends the record again after `retry_backoff_ms`, until the record's own
  deadline (`request_timeout_ms` from `send`), ahead of the records then waiting; then,
  or on any other error, the record's future fails with aiokafka's error. A record still
  waiting at its deadline fails unsent (KafkaTimeoutError). Records that
  came during the backoff may be written before it (no idempotence: as the Java
  client's retries with more than one request in flight). A future resolves only when the broker
  acknowledged its record (per `acks`).
"""


from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pipeline.kafkahelper.wire import (
    BATCH_OVERHEAD,
    BrokerConnection,
    Record,
    encode_headers,
    produce_answers,
    produce_request,
    record_batch,
)

_NETWORK_EXCEPTION = 13
_INVALID_RECORD = 87
_TOO_LARGE = (10, 18)  # MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE


class LeanProducer:
    """`send(topic, value, key, headers)` → a future resolved when the broker acknowledged
    the record: the subset of `AIOKafkaProducer` the `kafka` exporter uses, without
    compression or idempotence (the exporter uses aiokafka's producer for those)."""

    def __init__(self, *, acks: int | str, request_timeout_ms: int, linger_ms: int,
                 max_request_size: int, max_batch_size: int, retry_backoff_ms: int = 100,
                 **client_kwargs: Any):
        from aiokafka.client import AIOKafkaClient
        from aiokafka.partitioner import DefaultPartitioner

        if client_kwargs.get("security_protocol", "PLAINTEXT") not in ("PLAINTEXT", "SSL"):
            raise ValueError("the lean producer speaks PLAINTEXT or SSL (no SASL)")
        self._client = AIOKafkaClient(request_timeout_ms=request_timeout_ms,
                                      retry_backoff_ms=retry_backoff_ms, **client_kwargs)
        self._client_id = client_kwargs.get("client_id", "otelpipe")
        self._ssl = client_kwargs.get("ssl_context")
        self._conns: dict[int, BrokerConnection] = {}
        self._acks = -1 if acks == "all" else int(acks)
        self._timeout_ms = request_timeout_ms
        self._linger = linger_ms / 1000
        self._max_request = max_request_size
        self._max_batch = max_batch_size - BATCH_OVERHEAD  # for the records
        self._backoff = retry_backoff_ms / 1000
        self._partitioner = DefaultPartitioner()
        self._queues: dict[int, _NodeQueue] = {}
        self._unresolved: set[asyncio.Future[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._parked: list[Record] = []  # their partition has no leader (yet)
        self._parking: asyncio.Task[None] | None = None
        self._closed = False
        self._closing = asyncio.Event()

    async def start(self) -> None:
        await self._client.bootstrap()

    async def stop(self) -> None:
        """Deliver what was sent (each record until its deadline), then close."""
        from aiokafka.errors import ProducerClosed

        self._closed = True
        self._closing.set()
        try:
            if self._unresolved:
                await asyncio.wait(list(self._unresolved),
                                   timeout=self._timeout_ms / 1000 + 1)
        finally:  # also when the caller bounds stop (wait_for) and cancels the wait
            for task in [*self._tasks, *(q.task for q in self._queues.values() if q.task)]:
                task.cancel()
            for fut in list(self._unresolved):
                if not fut.done():
                    fut.set_exception(ProducerClosed())
            self._queues.clear()
            self._parked.clear()
            for conn in self._conns.values():
                conn.close()
            self._conns.clear()
            await self._client.close()

    async def _partitions(self, topic: str) -> set[int]:
        """The topic's partitions, fetching its metadata first if need be (as
        aiokafka's producer does, until the request timeout)."""
        from aiokafka import errors as kerrors

        client = self._client
        partitions: set[int] | None = client.cluster.partitions_for_topic(topic)
        if partitions is not None:
            return partitions
        client.add_topic(topic)
        deadline = time.monotonic() + self._timeout_ms / 1000
        while True:
            await self._unless_closed(client.force_metadata_update(),
                                      deadline - time.monotonic())
            partitions = client.cluster.partitions_for_topic(topic)
            if partitions is not None:
                return partitions
            if topic in client.cluster.unauthorized_topics:
                raise kerrors.TopicAuthorizationFailedError(topic)
            if time.monotonic() > deadline:
                raise kerrors.UnknownTopicOrPartitionError()
            await self._unless_closed(asyncio.sleep(self._backoff), self._backoff)

    async def _unless_closed(self, awaitable: Awaitable[Any], within: float) -> None:
        """Await `awaitable` for at most `within` seconds, or until stop: ProducerClosed
        then (a closed client's metadata update never completes)."""
        from aiokafka.errors import ProducerClosed

        waiting = asyncio.ensure_future(awaitable)
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait([waiting, closing], timeout=max(within, 0.0),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            waiting.cancel()
        if self._closed:
            raise ProducerClosed()

    async def send(self, topic: str, value: bytes, key: bytes | None = None,
                   headers: Sequence[tuple[str, bytes | None]] | None = None
                   ) -> asyncio.Future[None]:
        from aiokafka import errors as kerrors

        if self._closed:
            raise kerrors.ProducerClosed()
        partitions = await self._partitions(topic)
        if self._closed:  # stopped while the metadata came
            raise kerrors.ProducerClosed()
        available = list(self._client.cluster.available_partitions_for_topic(topic))
        partition = self._partitioner(key, sorted(partitions), available)
        hdrs = encode_headers(headers)
        size = len(value) + len(hdrs) + (len(key) if key else 0) + 32
        if size > min(self._max_request, self._max_batch):
            raise kerrors.MessageSizeTooLargeError(
                f"the record is {size} bytes, more than max_request_size ({self._max_request}) "
                f"or max_batch_size ({self._max_batch})")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._unresolved.add(fut)
        fut.add_done_callback(self._unresolved.discard)
        self._enqueue(Record(topic, partition, key, value, hdrs, int(time.time() * 1000),
                             time.monotonic() + self._timeout_ms / 1000, fut, size))
        return fut

    # Queueing -----------------------------------------------------------------------
    def _enqueue(self, record: Record, first: bool = False) -> None:
        """Queue `record` for its partition's leader: last, or `first` (a record sent
        again goes before the ones that came after it)."""
        from aiokafka.structs import TopicPartition

        node = self._client.cluster.leader_for_partition(
            TopicPartition(record.topic, record.partition))
        if node is None or node < 0:
            self._park(record)
            return
        queue = self._queues.get(node)
        if queue is None:
            queue = self._queues[node] = _NodeQueue()
        if queue.task is None or queue.task.done():
            queue.task = asyncio.create_task(self._sender(node, queue),
                                             name=f"kafka-produce-{node}")
        if first:
            queue.records.insert(0, record)
        else:
            queue.records.append(record)
        queue.size += record.size
        if not queue.wake.is_set():
            queue.oldest = time.monotonic()
            queue.wake.set()

    def _park(self, record: Record) -> None:
        """Keep `record` (its partition has no leader) until the metadata names one:
        the records parked wait together, one task for them all."""
        self._parked.append(record)
        if self._parking is None or self._parking.done():
            self._parking = task = asyncio.create_task(self._unpark())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _unpark(self) -> None:
        """Every backoff, refresh the metadata and queue the parked records again, in
        their order; those past their deadline fail (LeaderNotAvailableError)."""
        from aiokafka.errors import LeaderNotAvailableError

        while self._parked:
            await asyncio.sleep(self._backoff)
            with contextlib.suppress(Exception):  # a failed refresh: the next round tells
                await self._client.force_metadata_update()
            records, self._parked = self._parked, []
            now = time.monotonic()
            for r in records:
                if r.future.done():
                    continue
                if r.deadline <= now:
                    r.future.set_exception(LeaderNotAvailableError(
                        f"no leader for {r.topic}[{r.partition}] within the deadline"))
                else:
                    self._enqueue(r)  # parked again while there is still no leader

    def _retry_later(self, records: list[Record], error: BaseException) -> None:
        """Send `records` again after the backoff and a metadata refresh; those whose
        deadline comes first fail with `error`."""
        resend_by = time.monotonic() + self._backoff
        keep = [r for r in records if r.deadline > resend_by]
        for r in records:
            if r.deadline <= resend_by and not r.future.done():
                r.future.set_exception(error)
        if keep:
            task = asyncio.create_task(self._requeue(keep))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _requeue(self, records: list[Record]) -> None:
        await asyncio.sleep(self._backoff)
        with contextlib.suppress(Exception):  # a failed refresh: the next attempt tells
            await self._client.force_metadata_update()
        for r in reversed(records):  # each inserted first: they keep their order
            if not r.future.done():
                self._enqueue(r, first=True)

    # Sending ------------------------------------------------------------------------
    async def _sender(self, node: int, queue: _NodeQueue) -> None:
        """One Produce request in flight to `node` at a time."""
        while True:
            await queue.wake.wait()
            wait = queue.oldest + self._linger - time.monotonic()
            if wait > 0 and queue.size < self._max_request:
                await asyncio.sleep(wait)
            records = self._unexpired(node, queue.take(self._max_request, self._max_batch))
            if not records:
                continue
            try:
                await self._produce(node, records)
            except Exception as exc:  # a bug must not leave records waiting forever
                from aiokafka.errors import KafkaError

                error = KafkaError(f"produce failed: {type(exc).__name__}: {exc}")
                for r in records:
                    if not r.future.done():
                        r.future.set_exception(error)

    def _unexpired(self, node: int, records: list[Record]) -> list[Record]:
        """`records` but those past their deadline: these fail now, unsent (as aiokafka
        expires its batches). A broker that stalls holds each request for the whole
        timeout; without this the records behind it would each wait for their turn, be
        sent long after their caller gave up, and pile up while the caller's retries
        add more."""
        now = time.monotonic()
        if all(r.deadline > now for r in records):
            return records
        from aiokafka.errors import KafkaTimeoutError

        error = KafkaTimeoutError(f"the record waited for broker {node} past its deadline "
                                  f"({self._timeout_ms} ms from send)")
        for r in records:
            if r.deadline <= now and not r.future.done():
                r.future.set_exception(error)
        return [r for r in records if r.deadline > now]

    async def _produce(self, node: int, records: list[Record]) -> None:
        from aiokafka import errors as kerrors

        by_tp: dict[tuple[str, int], list[Record]] = {}
        for r in records:
            by_tp.setdefault((r.topic, r.partition), []).append(r)
        batches: dict[str, list[tuple[int, list[bytes], int]]] = {}
        for (topic, partition), recs in by_tp.items():
            batches.setdefault(topic, []).append((partition, *record_batch(recs)))
        pieces, size = produce_request(self._acks, self._timeout_ms, batches)
        try:
            conn = self._connection(node)
            answer = await conn.request(pieces, size, self._acks != 0)
        except kerrors.KafkaError as exc:
            self._failed(records, exc)
            return
        if answer is None:  # acks=0: nothing to wait for
            _resolve(records)
            return
        try:
            answers = produce_answers(answer)
        except (struct.error, UnicodeDecodeError) as exc:  # not a Produce answer
            conn.close()
            self._failed(records, kerrors.KafkaConnectionError(f"unreadable answer: {exc}"))
            return
        for topic, partition, code in answers:
            recs = by_tp.pop((topic, partition), [])
            if code == 0:
                _resolve(recs)
            elif code in _TOO_LARGE and len(recs) > 1:
                self._split(recs)
            else:
                self._failed(recs, _error(code, topic, partition))
        for recs in by_tp.values():  # a broker answers for every partition; if not, fail
            self._failed(recs, kerrors.KafkaError("no answer for the partition"))

    def _split(self, records: list[Record]) -> None:
        """A batch the broker found too large (the topic's max.message.bytes below
        max_batch_size): its records go again at once, each in a batch of its own (as
        the Java client splits such a batch); one too large alone then fails."""
        for r in reversed(records):  # each inserted first: they keep their order
            if not r.future.done():
                r.alone = True
                self._enqueue(r, first=True)

    def _connection(self, node: int) -> BrokerConnection:
        from aiokafka import errors as kerrors

        broker = self._client.cluster.broker_metadata(node)
        if broker is None:
            raise kerrors.NodeNotReadyError(f"broker {node} is not in the metadata")
        conn = self._conns.get(node)
        if conn is None or (conn.host, conn.port) != (broker.host, broker.port):
            if conn is not None:
                conn.close()
            conn = self._conns[node] = BrokerConnection(
                broker.host, broker.port, self._client_id, self._ssl, self._timeout_ms / 1000)
        return conn

    def _failed(self, records: list[Record], exc: BaseException) -> None:
        if getattr(exc, "invalid_metadata", False):
            self._client.force_metadata_update()
        if getattr(exc, "retriable", False):
            self._retry_later(records, exc)
            return
        for r in records:
            if not r.future.done():
                r.future.set_exception(exc)


@cache
def _invalid_record_error() -> type[Exception]:
    from aiokafka.errors import InvalidMessageError

    class InvalidRecordError(InvalidMessageError):  # type: ignore[misc]
        """INVALID_RECORD (87): the broker refused the batch's records, for good."""

        errno = _INVALID_RECORD
        message = "INVALID_RECORD"
        retriable = False

    return InvalidRecordError


def _error(code: int, topic: str, partition: int) -> BaseException:
    """The error of a partition's answer. aiokafka names code 13 after its pre-0.10
    meaning (StaleLeaderEpochCode, not retriable); since 0.10 it is NETWORK_EXCEPTION,
    retriable after a metadata refresh (the Java client's NetworkException). It does not
    know 87 (INVALID_RECORD, permanent)."""
    from aiokafka import errors as kerrors

    error: BaseException
    if code == _NETWORK_EXCEPTION:
        error = kerrors.KafkaConnectionError(
            f"the broker answered NETWORK_EXCEPTION for {topic}[{partition}]")
    elif code == _INVALID_RECORD:
        error = _invalid_record_error()(
            f"the broker refused the batch for {topic}[{partition}] as INVALID_RECORD "
            "(e.g. a record without a key on a compacted topic)")
    else:
        error = kerrors.for_code(code)()
    return error


def _resolve(records: list[Record]) -> None:
    for r in records:
        if not r.future.done():
            r.future.set_result(None)


@dataclass(slots=True)
class _NodeQueue:
    """Records waiting for one broker, in arrival order."""

    records: list[Record] = field(default_factory=list)
    size: int = 0
    oldest: float = 0.0  # monotonic time the oldest waiting record arrived
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def take(self, max_request: int, max_batch: int) -> list[Record]:
        """The oldest records, up to `max_request` bytes in all and `max_batch` bytes
        per partition (the broker refuses a larger batch: `message.max.bytes`), at
        least one. A partition whose batch is full keeps its later records too, so each
        partition's records go in the order they came."""
        taken: list[Record] = []
        left: list[Record] = []
        batches: dict[tuple[str, int], int] = {}
        full: set[tuple[str, int]] = set()
        total = 0
        records = self.records
        for i, r in enumerate(records):
            if taken and total + r.size > max_request:
                left += records[i:]
                break
            tp = (r.topic, r.partition)
            batch = batches.get(tp, 0)
            if tp in full or (batch and (batch + r.size > max_batch or r.alone)):
                full.add(tp)
                left.append(r)
                continue
            batches[tp] = batch + r.size
            total += r.size
            taken.append(r)
            if r.alone:  # nothing more in its batch
                full.add(tp)
        self.records = left
        self.size -= total
        if left:
            self.oldest = 0.0  # they waited already: send them next
        else:
            self.wake.clear()
        return taken
