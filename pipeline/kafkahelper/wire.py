"""The lean produce path's wire format (`kafkahelper.produce`): RecordBatch v2 without
compression as pieces of the callers' bytes with their CRC-32C, the Produce v3 request
and answer, and `BrokerConnection`, a connection of our own that writes a request's
pieces in one `writelines` (writev)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from dataclasses import dataclass
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
_TAIL_SIZE = _BATCH_TAIL.size
_HEAD_REST = 4 + 1 + 4  # leader epoch, magic, crc: counted in the batch length
BATCH_OVERHEAD = _BATCH_HEAD.size + _TAIL_SIZE  # a batch's bytes besides its records


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
    alone: bool = False  # goes in a batch of its own (its batch was too large)


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
            try:
                await self._check_versions(self._reader, self._writer)
            except BaseException:  # not checked: not to be used
                self.close()
                raise
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
