"""The lean produce path (`pipeline.kafkahelper.produce`) against the real broker: what
it writes is read back with aiokafka's consumer, record for record."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka import errors as kerrors
from aiokafka.partitioner import DefaultPartitioner

from pipeline.kafkahelper.produce import LeanProducer


def producer(bootstrap: str, **kw: Any) -> LeanProducer:
    args: dict[str, Any] = {"acks": "all", "request_timeout_ms": 5000, "linger_ms": 5,
                            "max_request_size": 1_064_000, "max_batch_size": 1_048_576}
    args.update(kw)
    return LeanProducer(bootstrap_servers=bootstrap, **args)


async def consume(bootstrap: str, topic: str, n: int) -> list[Any]:
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                         enable_auto_commit=False)
    await c.start()
    out: list[Any] = []
    try:
        async with asyncio.timeout(30):
            while len(out) < n:
                for recs in (await c.getmany(timeout_ms=500)).values():
                    out.extend(recs)
        assert not await c.getmany(timeout_ms=500)  # nothing more
    finally:
        await c.stop()
    return out


async def test_records_read_back_exactly(kafka_bootstrap: str, kafka_topic: Any) -> None:
    topic = await kafka_topic("lean")
    p = producer(kafka_bootstrap)
    await p.start()
    try:
        sent: dict[int, tuple[bytes | None, bytes]] = {}
        futures = []
        for i in range(300):  # concurrent: many records per request
            value = f"v{i}-".encode() * (1 + i * 37 % 2000)
            key = f"k{i % 7}".encode() if i % 3 else None
            headers = [("n", str(i).encode())] if i % 2 else None
            sent[i] = (key, value)
            futures.append(await p.send(topic, value, key=key, headers=headers))
        await asyncio.gather(*futures)
    finally:
        await p.stop()
    got = await consume(kafka_bootstrap, topic, 300)
    by_value = {r.value: r for r in got}
    assert len(by_value) == 300
    partitioner = DefaultPartitioner()
    for i, (key, value) in sent.items():
        r = by_value[value]
        assert r.key == key
        assert list(r.headers) == ([("n", str(i).encode())] if i % 2 else [])
        if key is not None:  # aiokafka's (the Java client's) murmur2 partitioning
            assert r.partition == partitioner(key, [0, 1, 2, 3], [0, 1, 2, 3])


async def test_stop_delivers_what_was_sent(kafka_bootstrap: str, kafka_topic: Any) -> None:
    topic = await kafka_topic("lean-stop")
    p = producer(kafka_bootstrap, linger_ms=200)
    await p.start()
    futures = [await p.send(topic, b"x%d" % i) for i in range(50)]
    await p.stop()  # while they linger
    assert all(f.done() and f.exception() is None for f in futures)
    assert len(await consume(kafka_bootstrap, topic, 50)) == 50
    with pytest.raises(kerrors.ProducerClosed):
        await p.send(topic, b"late")


async def test_acks_zero_resolves_without_an_answer(kafka_bootstrap: str,
                                                    kafka_topic: Any) -> None:
    topic = await kafka_topic("lean-acks0")
    # acks=0 hears of no error: first make sure every partition has its leader.
    warm = producer(kafka_bootstrap)
    await warm.start()
    try:
        await asyncio.gather(*[await warm.send(topic, b"w", key=b"%d" % i) for i in range(16)])
    finally:
        await warm.stop()
    p = producer(kafka_bootstrap, acks=0)
    await p.start()
    try:
        await asyncio.gather(*[await p.send(topic, b"y%d" % i) for i in range(20)])
    finally:
        await p.stop()
    assert len(await consume(kafka_bootstrap, topic, 36)) == 36


async def test_a_record_above_the_request_size_is_refused(kafka_bootstrap: str,
                                                          kafka_topic: Any) -> None:
    topic = await kafka_topic("lean-big")
    p = producer(kafka_bootstrap, max_request_size=10_000)
    await p.start()
    try:
        with pytest.raises(kerrors.MessageSizeTooLargeError):
            await p.send(topic, bytes(10_000))
        await (await p.send(topic, bytes(9_000)))  # below it: fine
    finally:
        await p.stop()


async def test_the_broker_refusing_a_batch_fails_its_future(kafka_bootstrap: str,
                                                            kafka_topic: Any) -> None:
    """The broker's own limit (max.message.bytes, 1 MiB by default) refuses the batch:
    a permanent error on the record's future, not a retry loop."""
    topic = await kafka_topic("lean-refused")
    p = producer(kafka_bootstrap, max_request_size=3_000_000, max_batch_size=3_000_000)
    await p.start()
    try:
        fut = await p.send(topic, bytes(2_000_000))
        with pytest.raises(kerrors.KafkaError) as err:
            await fut
        assert not err.value.retriable
    finally:
        await p.stop()


async def test_start_fails_without_a_broker() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens after the close
    p = producer(f"127.0.0.1:{port}")
    with pytest.raises(kerrors.KafkaConnectionError):
        await p.start()
    await p.stop()


async def test_a_retriable_error_sends_again_until_the_deadline(kafka_bootstrap: str,
                                                                kafka_topic: Any) -> None:
    """What the broker answers when a leader moved (NotLeaderForPartition): the records
    go again after a metadata refresh; one whose deadline comes first fails with it."""
    import time

    from pipeline.kafkahelper.wire import Record, encode_headers

    topic = await kafka_topic("lean-retry")
    # partition 1's key, and a linger that keeps a newer record waiting in the queue
    # while the failed ones are sent again
    key = next(k for k in (b"%d" % i for i in range(100))
               if DefaultPartitioner()(k, [0, 1, 2, 3], [0, 1, 2, 3]) == 1)
    p = producer(kafka_bootstrap, linger_ms=1000)
    await p.start()
    try:
        await (await p.send(topic, b"warm"))  # metadata known
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        again = [Record(topic, 1, None, b"again%d" % i, encode_headers(None), 0, now + 5,
                        loop.create_future(), 40) for i in range(3)]
        late = Record(topic, 1, None, b"late", encode_headers(None), 0, now + 0.05,
                      loop.create_future(), 40)
        p._failed([*again, late], kerrors.NotLeaderForPartitionError())
        newer = await p.send(topic, b"newer", key=key)  # waits (linger) in the queue
        await asyncio.gather(*(r.future for r in again), newer)
        with pytest.raises(kerrors.NotLeaderForPartitionError):
            await late.future
    finally:
        await p.stop()
    got = await consume(kafka_bootstrap, topic, 5)
    assert sorted(r.value for r in got) == [b"again0", b"again1", b"again2", b"newer", b"warm"]
    in_partition_1 = [r.value for r in got if r.partition == 1 and r.value != b"warm"]
    # sent again ahead of the record waiting, in the order they came
    assert in_partition_1 == [b"again0", b"again1", b"again2", b"newer"]


async def test_batches_stay_within_the_brokers_limit(kafka_bootstrap: str,
                                                    kafka_topic: Any) -> None:
    """Sixty 35 KB records at once into one partition: 2 MB, more than the broker takes
    in one batch (message.max.bytes, 1 MiB): they go as several batches, all accepted."""
    topic = await kafka_topic("lean-one", partitions=1)
    p = producer(kafka_bootstrap, linger_ms=50)
    await p.start()
    try:
        futures = [await p.send(topic, bytes([i]) * 35_000) for i in range(60)]
        await asyncio.gather(*futures)
    finally:
        await p.stop()
    got = await consume(kafka_bootstrap, topic, 60)
    assert [r.value[0] for r in got] == list(range(60))  # one partition: in order


async def test_a_batch_above_the_topics_limit_is_split(kafka_bootstrap: str) -> None:
    """A topic whose max.message.bytes (100 kB) is below max_batch_size: twenty 30 kB
    records at once into its one partition make a batch it refuses (MESSAGE_TOO_LARGE);
    they go again one per batch and are all written, in order."""
    import uuid

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"lean-small-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1,
                                            topic_configs={"max.message.bytes": "100000"})])
        p = producer(kafka_bootstrap, linger_ms=50)
        await p.start()
        try:
            futures = [await p.send(topic, bytes([i]) * 30_000) for i in range(20)]
            await asyncio.gather(*futures)
        finally:
            await p.stop()
        got = await consume(kafka_bootstrap, topic, 20)
        assert [r.value[0] for r in got] == list(range(20))
    finally:
        await admin.delete_topics([topic])
        await admin.close()
