"""`LeanProducer` against a fake broker on a local socket (tests/unit/kafkahelper/
fakebroker.py): what it does when the broker drops, stalls, refuses or half-answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import errors as kerrors
from aiokafka.protocol.produce import ProduceResponse_v3
from aiokafka.record.default_records import DefaultRecordBatch

from pipeline.kafkahelper import is_permanent
from pipeline.kafkahelper.produce import LeanProducer
from tests.unit.kafkahelper.fakebroker import FakeBroker, Reply, ok_answer


def lean(broker: FakeBroker, **kw: Any) -> LeanProducer:
    args: dict[str, Any] = {"acks": "all", "request_timeout_ms": 5000, "linger_ms": 0,
                            "max_request_size": 100_000, "max_batch_size": 50_000,
                            "retry_backoff_ms": 20}
    args.update(kw)
    return LeanProducer(bootstrap_servers=broker.bootstrap, **args)


@pytest.fixture
async def broker() -> AsyncIterator[FakeBroker]:
    b = await FakeBroker({"t": 2}).start()
    yield b
    b.close()


def values(broker: FakeBroker) -> list[bytes]:
    return [r.value for req in broker.produces for _t, parts in req.topics
            for _p, data in parts for r in DefaultRecordBatch(data)]


async def settle(futures: list[asyncio.Future[None]]) -> None:
    _done, pending = await asyncio.wait(futures, timeout=20)
    assert not pending, "a record was left pending"


async def test_a_dropped_connection_sends_the_records_again(broker: FakeBroker) -> None:
    replies: list[Reply] = ["close"]
    broker.on_produce = lambda req: replies.pop() if replies else ok_answer(req)
    p = lean(broker)
    await p.start()
    try:
        fut = await p.send("t", b"once", key=b"k")
        await settle([fut])
        assert fut.result() is None
    finally:
        await p.stop()
    assert values(broker) == [b"once", b"once"]  # the first request got no answer


async def test_partial_failures_per_partition(broker: FakeBroker) -> None:
    """Partition 0 accepted, partition 1 answered NOT_LEADER_OR_FOLLOWER (retriable):
    only partition 1's record is sent again; a permanent code fails its record."""
    answers = 0

    def on_produce(req: Any) -> Reply:
        nonlocal answers
        answers += 1
        if answers == 1:
            codes = {0: 0, 1: 6}
            topics = [(t, [(p, codes[p], 0, -1) for p, _d in parts]) for t, parts in req.topics]
            return bytes(ProduceResponse_v3(topics, 0).encode())
        return ok_answer(req)

    broker.on_produce = on_produce
    p = lean(broker, linger_ms=50)
    await p.start()
    try:
        k0 = next(b"%d" % i for i in range(100) if p._partitioner(b"%d" % i, [0, 1], [0, 1]) == 0)
        k1 = next(b"%d" % i for i in range(100) if p._partitioner(b"%d" % i, [0, 1], [0, 1]) == 1)
        futs = [await p.send("t", b"p0", key=k0), await p.send("t", b"p1", key=k1)]
        await settle(futs)
        assert [f.result() for f in futs] == [None, None]
        assert sorted(values(broker)) == [b"p0", b"p1", b"p1"]
        broker.on_produce = lambda req: ok_answer(req, 10)  # MESSAGE_TOO_LARGE
        fut = await p.send("t", b"big", key=k0)
        await settle([fut])
        assert isinstance(fut.exception(), kerrors.MessageSizeTooLargeError)
    finally:
        await p.stop()


async def test_records_waiting_past_their_deadline_are_not_sent(broker: FakeBroker) -> None:
    """A broker that takes requests and never answers: each request holds the
    connection for the whole timeout. The records queued behind the first one are past
    their deadline when their turn comes: they fail then (as aiokafka expires its
    batches) instead of each holding the connection for another timeout, and the queue
    does not grow without bound while the broker stalls."""
    broker.on_produce = lambda req: None
    p = lean(broker, request_timeout_ms=300, max_request_size=150, max_batch_size=1000)
    await p.start()
    try:
        futs = [await p.send("t", bytes([i]) * 100) for i in range(4)]  # one per request
        await settle(futs)
        errors = [f.exception() for f in futs]
        assert all(isinstance(e, kerrors.KafkaError) and not is_permanent(e) for e in errors)
        assert all(isinstance(e, kerrors.KafkaTimeoutError) for e in errors[1:])
    finally:
        await p.stop()
    assert len(broker.produces) == 1


async def test_stop_cancelled_still_fails_the_records_and_closes(broker: FakeBroker) -> None:
    """The exporter bounds `stop` (wait_for, 10 s) below the records' deadline: stop
    cancelled while it waits must still fail what is pending and close the connections
    and the client (no task, socket or metadata loop left behind)."""
    broker.on_produce = lambda req: None
    p = lean(broker)
    await p.start()
    fut = await p.send("t", b"stuck")
    await asyncio.sleep(0.1)  # in flight
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(p.stop(), 0.3)
    assert fut.done()
    assert isinstance(fut.exception(), kerrors.ProducerClosed)
    assert not p._conns
    assert p._client._sync_task is None  # the metadata loop ended


async def test_acks_zero_does_not_write_into_a_connection_the_broker_closed(
        broker: FakeBroker) -> None:
    """The broker closes an idle connection (connections.max.idle.ms): the next request
    goes on a new one, not into the closed socket (with acks=0 that record would be
    resolved and lost)."""
    broker.close_after_answer = True
    p = lean(broker, acks=1)
    await p.start()
    try:
        await settle([await p.send("t", b"first")])
        await asyncio.sleep(0.2)  # the close reaches us
        p._acks = 0
        await settle([await p.send("t", b"second")])
        for _ in range(100):
            if len(broker.produces) == 2:
                break
            await asyncio.sleep(0.02)
    finally:
        await p.stop()
    assert values(broker) == [b"first", b"second"]


async def test_a_broker_without_produce_v3_is_a_precise_error() -> None:
    """A broker whose ApiVersions leave out Produce v3 (before 0.11, or a later one
    that dropped it): the record fails with UnsupportedVersionError naming the versions,
    not with connection errors until the deadline."""
    broker = await FakeBroker({"t": 1}, produce_versions=(4, 12)).start()
    p = lean(broker, request_timeout_ms=2000)
    await p.start()
    try:
        fut = await p.send("t", b"x")
        await settle([fut])
        exc = fut.exception()
        assert isinstance(exc, kerrors.UnsupportedVersionError)
        assert "Produce v4 to v12" in str(exc)
    finally:
        await p.stop()
        broker.close()
    assert broker.produces == []


async def test_network_exception_is_sent_again(broker: FakeBroker) -> None:
    """Error 13 is NETWORK_EXCEPTION since Kafka 0.10 (retriable); aiokafka's for_code
    still calls it StaleLeaderEpochCodeError, not retriable."""
    answers: list[int] = []

    def on_produce(req: Any) -> Reply:
        answers.append(13 if not answers else 0)
        return ok_answer(req, answers[-1])

    broker.on_produce = on_produce
    p = lean(broker)
    await p.start()
    try:
        fut = await p.send("t", b"again")
        await settle([fut])
        assert fut.result() is None
    finally:
        await p.stop()
    assert answers == [13, 0]


async def test_records_without_a_leader_wait_together(broker: FakeBroker) -> None:
    """During a leader election every record of the partition has no leader: they wait
    for the metadata together (one task), not a task and a metadata wait per record
    every backoff (a thousand records: a thousand tasks each 20 ms). When a leader is
    back they go."""
    broker.leader = -1
    p = lean(broker, retry_backoff_ms=20)
    await p.start()
    try:
        futs = [await p.send("t", b"%d" % i) for i in range(1000)]
        await asyncio.sleep(0.2)
        assert len(p._tasks) <= 2
        assert not any(f.done() for f in futs)
        broker.leader = 0
        await settle(futs)
        assert all(f.result() is None for f in futs)
    finally:
        await p.stop()
    assert sorted(values(broker)) == sorted(b"%d" % i for i in range(1000))



async def test_a_send_waiting_for_metadata_when_stop_comes_is_refused(
        broker: FakeBroker) -> None:
    """send() waits for a new topic's metadata; stop() closes meanwhile: the send ends
    with ProducerClosed (it neither hangs on the closed client's metadata nor queues a
    record, a task and a connection after the close)."""
    p = lean(broker, request_timeout_ms=3000)
    await p.start()
    sending = asyncio.create_task(p.send("new", b"x"))
    await asyncio.sleep(0.1)  # waiting: the broker does not know the topic yet
    await p.stop()
    broker.topics["new"] = 1
    done, _ = await asyncio.wait([sending], timeout=10)
    assert done, "send hung after stop"
    with pytest.raises(kerrors.ProducerClosed):
        sending.result()
    assert not p._queues
    assert not p._conns


async def test_invalid_record_is_a_permanent_precise_error(broker: FakeBroker) -> None:
    """INVALID_RECORD (87: e.g. a keyless record on a compacted topic) never succeeds on
    a retry; aiokafka does not know the code (UnknownError, which the exporter retries
    for ever)."""
    broker.on_produce = lambda req: ok_answer(req, 87)
    p = lean(broker)
    await p.start()
    try:
        fut = await p.send("t", b"keyless")
        await settle([fut])
    finally:
        await p.stop()
    exc = fut.exception()
    assert exc is not None
    assert is_permanent(exc)
    assert "INVALID_RECORD" in str(exc)
    assert "t[" in str(exc)
    assert len(broker.produces) == 1



async def test_a_batch_too_large_for_the_broker_is_split(broker: FakeBroker) -> None:
    """A topic whose max.message.bytes is below max_batch_size refuses a batch of
    records that each fit (MESSAGE_TOO_LARGE): they go again one per batch (as the Java
    client splits the batch), not fail for good; a record too large alone fails."""
    def on_produce(req: Any) -> Reply:
        topics = [(t, [(p, 10 if len(list(DefaultRecordBatch(d))) > 1 else 0, 0, -1)
                       for p, d in parts]) for t, parts in req.topics]
        return bytes(ProduceResponse_v3(topics, 0).encode())

    broker.on_produce = on_produce
    p = lean(broker, linger_ms=50)
    await p.start()
    try:
        futs = [await p.send("t", b"%d" % i, key=b"k") for i in range(3)]  # one partition
        await settle(futs)
        assert [f.result() for f in futs] == [None, None, None]
        assert len(broker.produces) == 4  # the batch of 3, refused, then 3 of 1
        assert values(broker)[3:] == [b"0", b"1", b"2"]  # in order
        broker.on_produce = lambda req: ok_answer(req, 10)
        fut = await p.send("t", b"alone", key=b"k")
        await settle([fut])
        assert isinstance(fut.exception(), kerrors.MessageSizeTooLargeError)
    finally:
        await p.stop()


async def test_a_failed_version_check_is_made_again(broker: FakeBroker) -> None:
    """ApiVersions answered with an error: the connection is closed, so the next
    request checks the versions again instead of writing on an unchecked connection
    (a backoff longer than the deadline: no second attempt hides it)."""
    p = lean(broker, request_timeout_ms=2000, retry_backoff_ms=3000)
    await p.start()
    broker.versions_error = 33  # UNSUPPORTED_SASL_MECHANISM: any error
    try:
        fut = await p.send("t", b"x")
        await settle([fut])
        assert isinstance(fut.exception(), kerrors.KafkaError)
        broker.versions_error = 0
        broker.produce_versions = (4, 9)
        fut = await p.send("t", b"y")
        await settle([fut])
        assert isinstance(fut.exception(), kerrors.UnsupportedVersionError)
    finally:
        await p.stop()
    assert broker.produces == []
