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

_BATCH_TAIL = struct.Struct(">hiqqqhii")  # attributes .. record count
_BATCH_HEAD = struct.Struct(">qiibI")  # base offset, length, leader epoch, magic, crc
_PRODUCE_HEAD = struct.Struct(">hhii")  # null transactional id, acks, timeout, topics
_TOPIC = struct.Struct(">h")
_PARTITION = struct.Struct(">ii")  # partition, records size
_PARTITIONS = _I32 = struct.Struct(">i")
_ANSWER = struct.Struct(">ihqq")  # partition, error code, base offset, log append time
_HEADER = struct.Struct(">ihhi")  # size, api key (Produce: 0), api version, correlation id
_VERSIONS_HEAD = struct.Struct(">ihi")  # correlation id, error code, api count
_VERSION = struct.Struct(">hhh")  # api key, min version, max version
_PRODUCE_VERSION = 3
_NETWORK_EXCEPTION = 13
_INVALID_RECORD = 87
_TAIL_SIZE = _BATCH_TAIL.size
_HEAD_REST = 4 + 1 + 4  # leader epoch, magic, crc: counted in the batch length


def zigzag(n: int) -> bytes:
    """Kafka's signed varint (zigzag, then base-128 little end first)."""
    v = (n << 1) ^ (n >> 63)
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


_SMALL = [zigzag(i) for i in range(64)]


_NULL = zigzag(-1)  # a null key or header value


def _varint(n: int) -> bytes:
    return _SMALL[n] if 0 <= n < 64 else zigzag(n)


def encode_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> bytes:
    """A record's headers; a None value is Kafka's null (length -1), not empty."""
    if not headers:
        return b"\x00"
    parts = [_varint(len(headers))]
    for key, value in headers:
        k = key.encode()
        if value is None:
            parts += (_varint(len(k)), k, _NULL)
        else:
            parts += (_varint(len(k)), k, _varint(len(value)), value)
    return b"".join(parts)


@dataclass(slots=True)
class Record:
    """One record on its way: the caller's bytes, its partition and its future."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes
    headers: bytes  # encoded
    timestamp_ms: int
    deadline: float  # monotonic
    future: asyncio.Future[None]
    size: int = 0  # bytes it adds to a request (approximately: framing is small)


def record_batch(records: list[Record]) -> tuple[list[bytes], int]:
    """A RecordBatch (v2, no compression) of `records`, timestamps relative to the
    earliest: its pieces (the records' values are the callers' bytes, not copied) and
    their total size. The CRC-32C goes over the pieces one after another."""
    from google_crc32c import extend

    stamps = [r.timestamp_ms for r in records]
    base_ts = min(stamps)
    tail = _BATCH_TAIL.pack(0, len(records) - 1, base_ts, max(stamps), -1, -1, -1, len(records))
    pieces = [b"", tail]
    crc = extend(0, tail)
    size = len(tail)
    for i, (r, ts) in enumerate(zip(records, stamps, strict=True)):
        key = r.key
        value = r.value
        head = b"".join((b"\x00", _varint(ts - base_ts), _varint(i),
                         _NULL if key is None else _varint(len(key)) + key,
                         _varint(len(value))))
        head = _varint(len(head) + len(value) + len(r.headers)) + head
        crc = extend(extend(extend(crc, head), value), r.headers)
        pieces += (head, value, r.headers)
        size += len(head) + len(value) + len(r.headers)
    pieces[0] = _BATCH_HEAD.pack(0, _HEAD_REST + size, -1, 2, crc)
    return pieces, _BATCH_HEAD.size + size


def produce_request(acks: int, timeout_ms: int,
                    batches: dict[str, list[tuple[int, list[bytes], int]]]
                    ) -> tuple[list[bytes], int]:
    """A Produce request body (v3) without its header, as pieces to write one after
    another (the records' values are not copied) and their total size:
    {topic: [(partition, record batch pieces, their size)]}."""
    parts = [_PRODUCE_HEAD.pack(-1, acks, timeout_ms, len(batches))]
    size = _PRODUCE_HEAD.size
    for topic, partitions in batches.items():
        name = topic.encode()
        parts += (_TOPIC.pack(len(name)), name, _PARTITIONS.pack(len(partitions)))
        size += _TOPIC.size + len(name) + _PARTITIONS.size
        for partition, pieces, batch_size in partitions:
            parts.append(_PARTITION.pack(partition, batch_size))
            parts += pieces
            size += _PARTITION.size + batch_size
    return parts, size


def produce_answers(body: bytes) -> list[tuple[str, int, int]]:
    """(topic, partition, error code) of a Produce response (v3) body after the
    correlation id."""
    out: list[tuple[str, int, int]] = []
    (topics,) = _I32.unpack_from(body, 0)
    pos = 4
    for _ in range(topics):
        (n,) = _TOPIC.unpack_from(body, pos)
        topic = body[pos + 2:pos + 2 + n].decode()
        pos += 2 + n
        (partitions,) = _I32.unpack_from(body, pos)
        pos += 4
        for _ in range(partitions):
            partition, code, _offset, _append_time = _ANSWER.unpack_from(body, pos)
            pos += _ANSWER.size
            out.append((topic, partition, code))
    return out


class BrokerConnection:
    """A connection of our own to one broker (PLAINTEXT or TLS) for Produce requests, one
    at a time: the request goes out as its pieces in one `writelines` (writev), so the
    records' bytes are copied by the kernel only. Any failure closes it; the next request
    connects again."""

    def __init__(self, host: str, port: int, client_id: str, ssl_context: Any,
                 timeout: float):
        self.host, self.port = host, port
        name = client_id.encode()
        self._client_id = _TOPIC.pack(len(name)) + name
        self._ssl = ssl_context
        self._timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._correlation = 0

    async def request(self, pieces: list[bytes], size: int, expect_answer: bool) -> bytes | None:
        """Send a Produce request (body `pieces` of `size` bytes); its answer's body after
        the correlation id, or None without `expect_answer` (acks=0)."""
        from aiokafka import errors as kerrors

        try:
            async with asyncio.timeout(self._timeout):
                return await self._exchange(pieces, size, expect_answer)
        except TimeoutError:
            self.close()
            raise kerrors.RequestTimedOutError(
                f"no answer from {self.host}:{self.port} within {self._timeout:g}s") from None
        except (OSError, EOFError, ValueError, struct.error) as exc:  # IncompleteRead: EOF
            self.close()
            raise kerrors.KafkaConnectionError(
                f"connection to {self.host}:{self.port}: {type(exc).__name__}: {exc}") from None

    async def _exchange(self, pieces: list[bytes], size: int, expect_answer: bool) -> bytes | None:
        if (self._writer is None or self._writer.is_closing()  # never or no longer open
                or self._reader is None or self._reader.at_eof()):  # the broker closed it
            self.close()  # (asyncio keeps a plain socket half-open after the peer's FIN)
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port, ssl=self._ssl)
            await self._check_versions(self._reader, self._writer)
        reader, writer = self._reader, self._writer
        assert reader is not None
        self._correlation = correlation = (self._correlation + 1) & 0x7FFFFFFF
        header = _HEADER.pack(_HEADER.size - 4 + len(self._client_id) + size, 0,
                              _PRODUCE_VERSION, correlation)
        writer.writelines([header, self._client_id, *pieces])
        await writer.drain()
        if not expect_answer:
            return None
        (length,) = _I32.unpack(await reader.readexactly(4))
        answer = await reader.readexactly(length)
        if _I32.unpack_from(answer, 0)[0] != correlation:
            raise ValueError("the answer's correlation id is not the request's")
        return answer[4:]

    async def _check_versions(self, reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
        """Ask the broker which Produce versions it speaks (ApiVersions v0, as every
        client does on a new connection): one without v3 (before 0.11, or a later one
        that dropped it) is refused with a precise error instead of closing the
        connection on every request until the records' deadline."""
        from aiokafka import errors as kerrors

        self._correlation = correlation = (self._correlation + 1) & 0x7FFFFFFF
        writer.write(_HEADER.pack(_HEADER.size - 4 + len(self._client_id), 18, 0, correlation)
                     + self._client_id)
        await writer.drain()
        (length,) = _I32.unpack(await reader.readexactly(4))
        answer = await reader.readexactly(length)
        got, error, count = _VERSIONS_HEAD.unpack_from(answer, 0)
        if got != correlation:
            raise ValueError("the answer's correlation id is not the request's")
        if error:
            raise kerrors.for_code(error)(f"ApiVersions from {self.host}:{self.port}")
        versions = dict((key, (low, high)) for key, low, high in
                        _VERSION.iter_unpack(answer[_VERSIONS_HEAD.size:][:count * 6]))
        low, high = versions.get(0, (-1, -1))
        if not low <= _PRODUCE_VERSION <= high:
            self.close()
            speaks = f"v{low} to v{high}" if low >= 0 else "no Produce version"
            raise kerrors.UnsupportedVersionError(
                f"broker {self.host}:{self.port} speaks Produce {speaks}; the lean producer "
                f"writes v{_PRODUCE_VERSION} (Kafka 0.11 and later)")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


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
        self._max_batch = max_batch_size - _BATCH_HEAD.size - _TAIL_SIZE  # for the records
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
            answer = await self._connection(node).request(pieces, size, self._acks != 0)
        except kerrors.KafkaError as exc:
            self._failed(records, exc)
            return
        if answer is None:  # acks=0: nothing to wait for
            _resolve(records)
            return
        try:
            answers = produce_answers(answer)
        except (struct.error, UnicodeDecodeError) as exc:  # not a Produce answer
            self._connection(node).close()
            self._failed(records, kerrors.KafkaConnectionError(f"unreadable answer: {exc}"))
            return
        for topic, partition, code in answers:
            recs = by_tp.pop((topic, partition), [])
            if code == 0:
                _resolve(recs)
            else:
                self._failed(recs, _error(code, topic, partition))
        for recs in by_tp.values():  # a broker answers for every partition; if not, fail
            self._failed(recs, kerrors.KafkaError("no answer for the partition"))

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
            if tp in full or (batch and batch + r.size > max_batch):
                full.add(tp)
                left.append(r)
                continue
            batches[tp] = batch + r.size
            total += r.size
            taken.append(r)
        self.records = left
        self.size -= total
        if left:
            self.oldest = 0.0  # they waited already: send them next
        else:
            self.wake.clear()
        return taken
