"""`otelpipe run` with `service.workers: 2` and a `kafka` receiver: real processes, the
shared Kafka broker (127.0.0.1:9092, a topic of 4 partitions and a group of this test's
own), a `file` exporter.

The kafka receiver is shardable, so each process runs it: both are members of the
consumer group, and each reads the partitions the group gives it. The `file` exporter
runs once, in the primary; the worker's records cross the internal link, and its
receiver commits an offset only after the primary wrote the record. Each record is
one span with a unique name; the producer notes each record's partition and offset.

- both processes join the group and each holds partitions (the group's description
  from the broker, matched with the partitions each process logs);
- SIGKILL of the worker mid-load: the group drops it and rebalances, the supervisor
  starts it again, it joins and gets partitions, and every record arrives (at least
  once: duplicates are counted and printed, losses fail), and `/metrics`, merged over
  the processes, ends with one consumer-lag series per partition, at 0, and the
  committed offsets at the end offsets;
- SIGTERM mid-load drains both processes: what they wrote is exactly what the group
  committed (per partition, the records below the committed offset and none above:
  nothing delivered-but-uncommitted, nothing committed-but-undelivered); a second run
  on the same group reads the rest, and after its SIGTERM the committed offsets equal
  the end offsets.

The broker must be running (scripts/kafka.sh, started by the suite); the test fails
when it is not, never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import pytest_asyncio

from tests.builders import tagged_traces_request
from tests.e2e.test_workers import (
    START_TIMEOUT,
    UNDRAINED,
    Supervised,
    detailed,
    running_workers,
)
from tests.integration.conftest import KAFKA_PORT, kafka_script
from tests.integration.test_kafka_gateway import read_names
from tests.support import aeventually, http_get, port_open, with_logs

PARTITIONS = 4
SHUTDOWN_TIMEOUT = 20.0
SESSION_TIMEOUT = 6.0  # a killed member leaves the group after this
RATE = 800  # records/s while producing
MORE = 2000  # records produced during the second run of the SIGTERM test
LINK = "otlp/_link_exit_traces_workers"  # the worker's records enter the primary here
DEADLINE = 180.0  # for anything the machine's load may slow down


@dataclass
class Kafka:
    bootstrap: str
    admin: Any  # AIOKafkaAdminClient
    topic: str
    group: str


@pytest_asyncio.fixture
async def kafka() -> AsyncIterator[Kafka]:
    """The shared broker (started as the suite does when nothing listens; never stopped
    or restarted here), a topic of PARTITIONS partitions and a group id of this test's
    own; the topic is deleted afterwards (the broker then drops the group's offsets,
    and the empty group with them)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    if not port_open(KAFKA_PORT):
        kafka_script("start")
    if not port_open(KAFKA_PORT):
        pytest.fail(f"kafka is not listening on 127.0.0.1:{KAFKA_PORT}", pytrace=False)
    bootstrap = f"127.0.0.1:{KAFKA_PORT}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    name = f"kworkers-{uuid.uuid4().hex[:10]}"
    await admin.create_topics([NewTopic(name, PARTITIONS, 1)])
    try:
        yield Kafka(bootstrap, admin, name, name)
    finally:
        with contextlib.suppress(Exception):  # cleanup only
            await admin.delete_topics([name])
        await admin.close()


def service_config(k: Kafka, out: Path, health: int) -> dict[str, Any]:
    return {
        "receivers": {"kafka": {
            "brokers": [k.bootstrap], "group_id": k.group, "initial_offset": "earliest",
            "traces": {"topics": [k.topic]}, "commit_interval": "200ms",
            "session_timeout": f"{SESSION_TIMEOUT:g}s", "heartbeat_interval": "1s"}},
        "exporters": {"file": {"path": str(out), "format": "otlp_json"}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"workers": 2, "shutdown_timeout": f"{SHUTDOWN_TIMEOUT:g}s",
                    "extensions": ["health"],
                    "pipelines": {"traces": {"receivers": ["kafka"], "exporters": ["file"]}}},
    }


@dataclass
class Produced:
    """What the producer wrote: span name -> (partition, offset)."""

    at: dict[str, tuple[int, int]] = field(default_factory=dict)

    def names(self) -> set[str]:
        return set(self.at)


async def produce(k: Kafka, produced: Produced, first: int, count: int) -> None:
    """Records `first`..`first+count-1`, one span each, round robin over the
    partitions, about RATE a second."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=k.bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        pending: list[tuple[str, asyncio.Future[Any]]] = []
        chunk = 50
        for i in range(first, first + count):
            req = tagged_traces_request(traces_per_resource=1, spans_per_trace=1,
                                        tag=f"{i}-", attrs=1)
            name = req.resource_spans[0].scope_spans[0].spans[0].name
            pending.append((name, await producer.send(k.topic, req.SerializeToString(),
                                                      partition=i % PARTITIONS)))
            if i % chunk == chunk - 1:
                await asyncio.sleep(chunk / RATE)
        for name, fut in pending:
            meta = await fut
            produced.at[name] = (meta.partition, meta.offset)
    finally:
        await producer.stop()


async def members(k: Kafka) -> dict[str, set[int]] | None:
    """The group's members and their partitions, once the group is stable."""
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

    (resp,) = await k.admin.describe_consumer_groups([k.group])
    (group,) = resp.to_object()["groups"]
    if group["state"] != "Stable":
        return None
    out: dict[str, set[int]] = {}
    for m in group["members"]:
        parts: set[int] = set()
        if m["member_assignment"]:
            for topic, ps in ConsumerProtocolMemberAssignment.decode(
                    m["member_assignment"]).assignment:
                if topic == k.topic:
                    parts.update(ps)
        out[m["member_id"]] = parts
    return out


async def shared_by(k: Kafka, n: int) -> dict[str, set[int]] | None:
    """The stable group when it has `n` members, each with partitions, all assigned."""
    got = await members(k)
    if got is None or len(got) != n or not all(got.values()):
        return None
    if set().union(*got.values()) != set(range(PARTITIONS)):
        return None
    return got


async def committed(k: Kafka) -> dict[int, int]:
    offsets = await k.admin.list_consumer_group_offsets(k.group)
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == k.topic}


async def end_offsets(k: Kafka) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=k.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(k.topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


def logged_partitions(proc: Supervised) -> dict[int, set[int]]:
    """The partitions each process (0: the primary) was given last, from its logs."""
    import orjson

    last: dict[int, set[int]] = {}
    for line in proc.logs().splitlines():
        if b'"partitions assigned"' not in line.encode():
            continue
        rec = orjson.loads(line)
        last[int(rec.get("worker", 0))] = {int(p.rsplit("/", 1)[1]) for p in rec["partitions"]}
    return last


def metric(health: int, name: str, receiver: str) -> float:
    """The sum of counter `name` over the series of `receiver` on the primary's /metrics
    (the sum over the processes)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = http_get(f"http://127.0.0.1:{health}/metrics")
    assert status == 200, body
    return sum(s.value for fam in text_string_to_metric_families(body.decode())
               for s in fam.samples
               if s.name == f"{name}_total" and s.labels.get("receiver") == receiver)


def per_partition(health: int, name: str, topic: str) -> dict[int, float]:
    """Gauge `name` of `topic` on the primary's /metrics (merged over the processes:
    consumer lag summed, committed offsets their maximum), by partition."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = http_get(f"http://127.0.0.1:{health}/metrics")
    assert status == 200, body
    out: dict[int, float] = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            if s.name == name and s.labels.get("topic") == topic:
                part = int(s.labels["partition"])
                assert part not in out, f"two series of {name} for partition {part}"
                out[part] = s.value
    return out


def written(out: Path) -> Counter[str]:
    names, _ = read_names(out)
    return Counter(names)


async def start(k: Kafka, tmp_path: Path, out: Path, name: str
                ) -> tuple[Supervised, int, list[dict[str, Any]]]:
    from tests.support import free_port

    health = free_port()
    home = tmp_path / name
    home.mkdir()
    proc = Supervised(service_config(k, out, health), home).start()
    try:
        states = await aeventually(lambda: running_workers(health, 2, proc),
                                   timeout=START_TIMEOUT, interval=0.2,
                                   what=with_logs("2 processes running", proc))
    except BaseException:
        proc.stop()
        raise
    assert states is not None
    return proc, health, states


async def joined(k: Kafka, proc: Supervised) -> dict[str, set[int]]:
    """Both processes are members and each holds partitions: the broker's description
    of the group has two members, each with partitions, and the partitions each process
    logged last are exactly one member's."""
    async def both() -> dict[str, set[int]] | None:
        group = await shared_by(k, 2)
        logged = logged_partitions(proc)
        if group is None or sorted(logged) != [0, 1]:
            return None
        held = sorted(sorted(p) for p in group.values())
        return group if sorted(sorted(p) for p in logged.values()) == held else None

    got = await aeventually(both, timeout=DEADLINE, interval=0.2,
                            what=with_logs("both processes members of the group", proc))
    assert got is not None
    return got


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def check_drained(proc: Supervised) -> None:
    """Both processes logged a drained stop, the worker first, and nothing was cut
    short. (aiokafka's own warnings are plain text lines: only JSON lines are read.)"""
    import orjson

    logs = [orjson.loads(line) for line in proc.logs().splitlines() if line.startswith("{")]
    stopped = [r for r in logs if r["msg"] == "stopped"]
    assert [r.get("worker", 0) for r in stopped][-2:] == [1, 0], stopped
    assert all(r["drained"] is True for r in stopped), stopped
    cut = [r for r in logs if any(m in r["msg"] for m in UNDRAINED)]
    assert not cut, cut


async def test_both_processes_join_the_group_and_a_killed_worker_loses_nothing(
        kafka: Kafka, tmp_path: Path) -> None:
    out = tmp_path / "out" / "spans.jsonl"
    proc, health, states = await start(kafka, tmp_path, out, "service")
    worker = states[1]
    produced = Produced()
    records = 8000
    try:
        group = await joined(kafka, proc)
        logged = logged_partitions(proc)
        producing = asyncio.create_task(produce(kafka, produced, 0, records))
        # Both deliver: the worker's records enter the primary through the link.
        await aeventually(lambda: (lines(out) >= records // 8
                                   and metric(health, "otelpipe_receiver_accepted_items",
                                              LINK) > 0) or producing.done(),
                          timeout=DEADLINE, interval=0.05,
                          what=with_logs("both processes to deliver", proc))
        assert not producing.done(), "production ended before the kill"
        by_worker_at_kill = metric(health, "otelpipe_receiver_accepted_items", LINK)
        os.kill(worker["pid"], signal.SIGKILL)
        killed = time.monotonic()
        at_kill = lines(out)

        def replaced() -> dict[str, Any] | None:
            w: dict[str, Any] = detailed(health)["workers"][1]
            return w if w["restarts"] == 1 and w["state"] == "running" else None

        new = await aeventually(replaced, timeout=DEADLINE, interval=0.2,
                                what=with_logs("worker 1 replaced", proc))
        assert new is not None
        assert new["pid"] != worker["pid"]
        assert new["last_exit"] == "killed by SIGKILL"
        assert psutil.Process(new["pid"]).ppid() == proc.pid
        replaced_after = time.monotonic() - killed

        # The dead member is dropped (after its session timeout), the new worker joins:
        # two members again, each with partitions: the primary's (still the same
        # member) and a new one.
        async def rebalanced() -> dict[str, set[int]] | None:
            got = await shared_by(kafka, 2)
            return got if got is not None and len(set(got) & set(group)) == 1 else None

        after = await aeventually(rebalanced, timeout=DEADLINE, interval=0.1,
                                  what=with_logs("the group rebalanced without the "
                                                 "killed member", proc))
        assert after is not None
        rebalance_after = time.monotonic() - killed
        regrouped = await joined(kafka, proc)
        await producing
        expected = produced.names()
        assert len(expected) == records
        await aeventually(lambda: set(written(out)) >= expected, timeout=DEADLINE,
                          interval=0.2, what=with_logs("every record written", proc))
        by_worker = metric(health, "otelpipe_receiver_accepted_items", LINK)
        total = metric(health, "otelpipe_receiver_accepted_items", "kafka")
        # /metrics (merged over the processes) shows one lag series per partition, 0
        # now, and the committed offsets at the end offsets.
        ends = await end_offsets(kafka)
        caught_up = {p: 0.0 for p in range(PARTITIONS)}
        at_end = {p: float(o) for p, o in ends.items()}
        await aeventually(
            lambda: per_partition(health, "otelpipe_kafka_receiver_consumer_lag",
                                  kafka.topic) == caught_up
            and per_partition(health, "otelpipe_kafka_receiver_committed_offset",
                              kafka.topic) == at_end,
            timeout=DEADLINE, interval=0.2, what=with_logs("lag 0 on /metrics", proc))
    finally:
        code = proc.stop(timeout=SHUTDOWN_TIMEOUT + 30)
    assert code == 0, proc.logs()[-5000:]
    check_drained(proc)
    # Everything was delivered before SIGTERM: the drain committed it all.
    assert await committed(kafka) == ends
    got = written(out)
    duplicates = sum(n - 1 for n in got.values())
    print(f"\nbefore the kill: group {sorted(map(sorted, group.values()))}, processes "
          f"{ {w: sorted(p) for w, p in sorted(logged.items())} }; SIGKILL of worker 1 after "
          f"{at_kill}/{records} records written ({by_worker_at_kill:.0f} by the worker); "
          f"worker replaced after {replaced_after:.1f}s, group rebalanced without the dead "
          f"member after {rebalance_after:.1f}s (session timeout {SESSION_TIMEOUT:g}s): "
          f"{sorted(map(sorted, regrouped.values()))}; {len(got)} distinct of {records} "
          f"records written, {duplicates} duplicates; spans accepted: {total:.0f}, "
          f"{by_worker:.0f} of them through the worker's link")
    assert set(got) == expected, f"{len(expected - set(got))} records lost"
    assert not set(got) - expected
    assert at_kill < records


async def test_sigterm_drains_and_commits_exactly_what_was_written(
        kafka: Kafka, tmp_path: Path) -> None:
    out = tmp_path / "out" / "spans.jsonl"
    produced = Produced()
    records = 6000
    proc, health, _states = await start(kafka, tmp_path, out, "first")
    try:
        await joined(kafka, proc)
        producing = asyncio.create_task(produce(kafka, produced, 0, records))
        # Both deliver (the worker's records enter the primary through the link).
        await aeventually(lambda: (lines(out) >= records // 4
                                   and metric(health, "otelpipe_receiver_accepted_items",
                                              LINK) > 0) or producing.done(),
                          timeout=DEADLINE, interval=0.05,
                          what=with_logs("a quarter of the records written", proc))
        assert not producing.done(), "production ended before SIGTERM"
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.proc.wait, SHUTDOWN_TIMEOUT + 30)
    finally:
        proc.stop()
    assert code == 0, proc.logs()[-5000:]
    check_drained(proc)
    await producing
    first_run = written(out)
    commits = await committed(kafka)
    ends = await end_offsets(kafka)
    check_commits_match(produced, first_run, commits)
    assert sum(commits.values()) < sum(ends.values()), "nothing left for the second run"

    # A second run on the same group reads the rest, and more records produced once
    # both processes are members; after its SIGTERM every record is written and the
    # committed offsets are the end offsets.
    proc, health, _states = await start(kafka, tmp_path, out, "second")
    try:
        await joined(kafka, proc)
        await produce(kafka, produced, records, MORE)
        await aeventually(lambda: set(written(out)) >= produced.names(), timeout=DEADLINE,
                          interval=0.2, what=with_logs("every record written", proc))
        by_worker = metric(health, "otelpipe_receiver_accepted_items", LINK)
    finally:
        code = proc.stop(timeout=SHUTDOWN_TIMEOUT + 30)
    assert code == 0, proc.logs()[-5000:]
    check_drained(proc)
    got = written(out)
    final = await committed(kafka)
    final_ends = await end_offsets(kafka)
    duplicates = sum(n - 1 for n in got.values())
    print(f"\nSIGTERM after {sum(first_run.values())}/{records} records written: committed "
          f"{dict(sorted(commits.items()))} of end offsets {dict(sorted(ends.items()))}, "
          f"every record below a committed offset written and none above; second run: "
          f"committed {dict(sorted(final.items()))} = end offsets, {len(got)} distinct of "
          f"{len(produced.at)} records written ({by_worker:.0f} through the worker), "
          f"{duplicates} duplicates")
    assert final == final_ends
    assert sum(final_ends.values()) == records + MORE
    assert set(got) == produced.names()
    assert by_worker > 0
    assert duplicates == 0, "a drained run left delivered records uncommitted"


def check_commits_match(produced: Produced, got: Counter[str],
                        commits: dict[int, int]) -> None:
    """Per partition: the records written are those below the committed offset."""
    for partition in range(PARTITIONS):
        below = {n for n, (p, o) in produced.at.items()
                 if p == partition and o < commits.get(partition, 0)}
        on = {n for n, (p, _) in produced.at.items() if p == partition}
        wrote = set(got) & on
        assert below <= wrote, (f"partition {partition}: {len(below - wrote)} records "
                                "committed but never written (lost)")
        assert wrote <= below, (f"partition {partition}: {len(wrote - below)} records "
                                "written but not committed by the drain")
