"""The lean produce path's wire format, read back with aiokafka's own decoders."""

from __future__ import annotations

import asyncio
import io
import socket
import ssl
import struct
from pathlib import Path

import pytest
from aiokafka import errors as kerrors
from aiokafka.protocol.admin import ApiVersionResponse_v0
from aiokafka.protocol.produce import ProduceRequest_v3, ProduceResponse_v3
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.record.util import encode_varint

from pipeline.config.kafka import TLSSettings
from pipeline.kafkahelper import ssl_context
from pipeline.kafkahelper.produce import _NodeQueue
from pipeline.kafkahelper.wire import (
    BrokerConnection,
    Record,
    encode_headers,
    produce_answers,
    produce_request,
    record_batch,
    zigzag,
)
from tests.certs import make_certs


def record(value: bytes, key: bytes | None = None, ts: int = 1_700_000_000_000,
           headers: list[tuple[str, bytes | None]] | None = None) -> Record:
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    return Record("t", 0, key, value, encode_headers(headers), ts, 0.0, fut, len(value) + 32)


@pytest.mark.parametrize("n", [0, 1, -1, 63, 64, -65, 300, 1_000_000, -(2**40), 2**62])
def test_zigzag_is_kafkas_varint(n: int) -> None:
    out = bytearray()
    encode_varint(n, out.append)
    assert zigzag(n) == bytes(out)


async def test_record_batch_reads_back_with_a_valid_crc() -> None:
    records = [record(b"first", ts=1_700_000_000_005),
               record(b"x" * 70_000, key=b"trace-1", ts=1_700_000_000_001,
                      headers=[("tenant", b"acme"), ("k2", b"")]),
               record(b"", key=b"", ts=1_700_000_000_009)]
    pieces, size = record_batch(records)
    data = b"".join(pieces)
    assert len(data) == size
    batch = DefaultRecordBatch(data)
    assert batch.validate_crc()
    assert batch.magic == 2
    assert batch.compression_type == 0
    assert batch.first_timestamp == 1_700_000_000_001  # the earliest
    assert batch.max_timestamp == 1_700_000_000_009
    got = list(batch)
    assert [r.offset for r in got] == [0, 1, 2]
    assert [r.value for r in got] == [b"first", b"x" * 70_000, b""]
    assert [r.key for r in got] == [None, b"trace-1", b""]
    assert [r.timestamp for r in got] == [1_700_000_000_005, 1_700_000_000_001,
                                          1_700_000_000_009]
    assert [list(r.headers) for r in got] == [[], [("tenant", b"acme"), ("k2", b"")], []]


async def test_a_null_header_value_is_null_not_empty() -> None:
    pieces, _ = record_batch([record(b"v", headers=[("none", None), ("empty", b"")])])
    batch = DefaultRecordBatch(b"".join(pieces))
    assert batch.validate_crc()
    assert [list(r.headers) for r in batch] == [[("none", None), ("empty", b"")]]


async def test_record_batch_crc_covers_the_values() -> None:
    pieces, _ = record_batch([record(b"abc")])
    data = bytearray(b"".join(pieces))
    data[-2] ^= 0xFF  # inside the value
    assert not DefaultRecordBatch(bytes(data)).validate_crc()


async def test_produce_request_is_a_produce_v3_request() -> None:
    a, a_size = record_batch([record(b"one"), record(b"two")])
    b, b_size = record_batch([record(b"three", key=b"k")])
    pieces, size = produce_request(-1, 5000, {"spans": [(0, a, a_size), (3, b, b_size)],
                                              "logs": [(1, b, b_size)]})
    body = b"".join(pieces)
    assert len(body) == size
    req = ProduceRequest_v3.decode(io.BytesIO(body))
    assert req.transactional_id is None
    assert req.required_acks == -1
    assert req.timeout == 5000
    topics = {t: {p: [r.value for r in DefaultRecordBatch(data)] for p, data in parts}
              for t, parts in req.topics}
    assert topics == {"spans": {0: [b"one", b"two"], 3: [b"three"]}, "logs": {1: [b"three"]}}


async def test_node_queue_takes_the_oldest_records_up_to_the_size() -> None:
    q = _NodeQueue()
    for i in range(5):
        r = record(bytes(100), ts=i)
        q.records.append(r)
        q.size += r.size
        q.wake.set()
    taken = q.take(300, 10_000)  # 132 bytes each: two fit
    assert [r.timestamp_ms for r in taken] == [0, 1]
    assert q.size == 3 * 132
    assert q.wake.is_set()
    assert q.oldest == 0.0
    assert len(q.take(10, 10)) == 1  # at least one, even above the sizes
    assert len(q.take(10_000, 10_000)) == 2
    assert q.size == 0
    assert not q.wake.is_set()


async def test_node_queue_caps_each_partitions_batch_and_keeps_its_order() -> None:
    q = _NodeQueue()
    parts = [0, 0, 1, 0, 1, 2]
    for i, p in enumerate(parts):
        r = record(bytes(100), ts=i)
        r.partition = p
        q.records.append(r)
        q.size += r.size
    # 132 bytes each; a batch holds 2 (264): partition 0's third record waits, and so
    # would any after it in partition 0
    taken = q.take(10_000, 264)
    assert [(r.partition, r.timestamp_ms) for r in taken] == [(0, 0), (0, 1), (1, 2), (1, 4),
                                                               (2, 5)]
    assert [(r.partition, r.timestamp_ms) for r in q.records] == [(0, 3)]
    assert q.size == 132


async def _server(answer: bytes | None, ssl_context: ssl.SSLContext | None = None
                  ) -> tuple[asyncio.Server, int, list[bytes]]:
    """A local TCP (or TLS) server answering the connection's ApiVersions request
    (correlation id 1: Produce v0 to v9), then reading one request; it answers `answer`
    (None: never, not even ApiVersions)."""
    got: list[bytes] = []

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if answer is not None:
            (n,) = struct.unpack(">i", await r.readexactly(4))
            assert struct.unpack_from(">hhi", await r.readexactly(n)) == (18, 0, 1)
            versions = ApiVersionResponse_v0(0, [(0, 0, 9), (18, 0, 3)]).encode()
            w.write(struct.pack(">ii", 4 + len(versions), 1) + versions)
        (n,) = struct.unpack(">i", await r.readexactly(4))
        got.append(await r.readexactly(n))
        if answer is not None:
            w.write(answer)
            await w.drain()
        await r.read()  # until the client closes
        w.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ssl_context)
    return srv, srv.sockets[0].getsockname()[1], got


async def test_broker_connection_sends_header_and_pieces_and_reads_the_answer() -> None:
    body = ProduceResponse_v3([("t", [(2, 0, 5, -1)])], 0).encode()
    srv, port, got = await _server(struct.pack(">ii", 4 + len(body), 2) + body)
    conn = BrokerConnection("127.0.0.1", port, "me", None, 5.0)
    try:
        answer = await conn.request([b"ab", b"cde"], 5, expect_answer=True)
    finally:
        conn.close()
        srv.close()
    assert answer is not None
    assert produce_answers(answer) == [("t", 2, 0)]
    # api key 0 (Produce), version 3, correlation id 2 (after ApiVersions), client id
    # "me", then the body
    assert got == [struct.pack(">hhih", 0, 3, 2, 2) + b"me" + b"abcde"]


async def test_broker_connection_errors_are_kafka_errors() -> None:
    silent, port, _ = await _server(None)
    conn = BrokerConnection("127.0.0.1", port, "me", None, 0.3)
    with pytest.raises(kerrors.RequestTimedOutError):
        await conn.request([b"x"], 1, expect_answer=True)
    silent.close()
    wrong_id, port, _ = await _server(struct.pack(">ii", 8, 99) + bytes(4))
    conn = BrokerConnection("127.0.0.1", port, "me", None, 5.0)
    with pytest.raises(kerrors.KafkaConnectionError, match="correlation"):
        await conn.request([b"x"], 1, expect_answer=True)
    wrong_id.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    conn = BrokerConnection("127.0.0.1", free, "me", None, 5.0)
    with pytest.raises(kerrors.KafkaConnectionError):
        await conn.request([b"x"], 1, expect_answer=True)
    assert kerrors.KafkaConnectionError.retriable
    assert kerrors.RequestTimedOutError.retriable


async def test_broker_connection_over_tls(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(certs.server_cert, certs.server_key)
    body = ProduceResponse_v3([("t", [(0, 0, 1, -1)])], 0).encode()
    srv, port, got = await _server(struct.pack(">ii", 4 + len(body), 2) + body, server_ctx)
    trusted = ssl_context(TLSSettings.model_validate({"ca_file": str(certs.ca)}))
    conn = BrokerConnection("localhost", port, "me", trusted, 5.0)
    try:
        answer = await conn.request([b"abc"], 3, expect_answer=True)
        assert answer is not None
        assert produce_answers(answer) == [("t", 0, 0)]
        assert got[0].endswith(b"me" + b"abc")
        # a CA the server's certificate is not from: refused, as a connection error
        other = ssl.create_default_context()
        stranger = BrokerConnection("localhost", port, "me", other, 5.0)
        with pytest.raises(kerrors.KafkaConnectionError, match="SSL"):
            await stranger.request([b"abc"], 3, expect_answer=True)
    finally:
        conn.close()
        srv.close()


def test_produce_answers_refuses_a_truncated_answer() -> None:
    answer = ProduceResponse_v3([("spans", [(0, 0, 41, -1)])], 0).encode()
    with pytest.raises(struct.error):
        produce_answers(answer[:12])
