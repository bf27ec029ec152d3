"""Gateways (`otelpipe run`: kafka receiver -> file exporter) killed mid-stream.

Every record must arrive; duplicates are allowed (at-least-once) and printed.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson

from tests.builders import span_names, tagged_traces_request
from tests.support import OtelpipeProcess, aeventually, eventually, with_logs

RECORDS = 4000
SPANS_PER_RECORD = 10


def gateway_config(bootstrap: str, topic: str, group: str, out: Path) -> dict[str, Any]:
    return {
        "receivers": {"kafka": {
            "brokers": [bootstrap], "group_id": group, "initial_offset": "earliest",
            "traces": {"topics": [topic]}, "commit_interval": "200ms",
            # a killed member is noticed after session_timeout
            "session_timeout": "6s", "heartbeat_interval": "1s"}},
        "exporters": {"file": {"path": str(out), "format": "otlp_json"}},
        "service": {"pipelines": {"traces": {"receivers": ["kafka"], "exporters": ["file"]}},
                    "shutdown_timeout": "10s"},
    }


async def produce(bootstrap: str, topic: str, records: int = RECORDS,
                  per_second: float = 0) -> set[str]:
    """`records` records of SPANS_PER_RECORD uniquely named spans; paced if per_second."""
    from aiokafka import AIOKafkaProducer

    names: set[str] = set()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                max_batch_size=1 << 20)
    await producer.start()
    chunk = 100
    try:
        futures = []
        for i in range(records):
            req = tagged_traces_request(traces_per_resource=2,
                                        spans_per_trace=SPANS_PER_RECORD // 2, tag=f"{i}-",
                                        attrs=1)
            names.update(span_names(req))
            futures.append(await producer.send(topic, req.SerializeToString()))
            if per_second and i % chunk == chunk - 1:
                await asyncio.sleep(chunk / per_second)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    assert len(names) == records * SPANS_PER_RECORD
    return names


def read_names(*paths: Path) -> tuple[list[str], int]:
    """Span names in the files' OTLP JSON lines, and lines that did not parse."""
    names: list[str] = []
    broken = 0
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_bytes().splitlines():
            try:
                req = orjson.loads(line)
            except orjson.JSONDecodeError:
                broken += 1  # a line cut by SIGKILL
                continue
            for rs in req.get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    names.extend(sp["name"] for sp in ss.get("spans", []))
    return names, broken


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def test_gateway_killed_mid_stream_redelivers_everything(
        kafka_bootstrap: str, kafka_topic: Any, tmp_path: Path) -> None:
    topic = await kafka_topic("gw")
    out = tmp_path / "spans.jsonl"
    started = time.monotonic()
    first = OtelpipeProcess(gateway_config(kafka_bootstrap, topic, topic, out), tmp_path)
    first.start()
    try:
        await aeventually(lambda: _assignments(first), timeout=60,
                          what=with_logs("the partitions", first))
        # Clients keep writing (~1000 records/s) while the gateway dies and comes back.
        producing = asyncio.create_task(produce(kafka_bootstrap, topic, RECORDS, 1000))
        await aeventually(lambda: lines(out) >= RECORDS // 4 or producing.done(),
                          interval=0.02, what="a quarter of the records written")
        assert not producing.done(), "production ended before the kill"
    finally:
        first.kill()
    at_kill = lines(out)
    second = OtelpipeProcess(gateway_config(kafka_bootstrap, topic, topic, out), tmp_path)
    second.start()
    try:
        expected = await producing
        await asyncio.to_thread(eventually, lambda: set(read_names(out)[0]) >= expected,
                                timeout=120, what=with_logs("every span", second))
        await asyncio.sleep(1.0)
    finally:
        assert second.stop() == 0, second.logs()[-3000:]
    names, broken = read_names(out)
    duplicates = len(names) - len(set(names))
    print(f"\nSIGKILL after {at_kill}/{RECORDS} records: {len(names)} spans written, "
          f"{len(set(names))} distinct of {len(expected)}, duplicate spans {duplicates} "
          f"({duplicates // SPANS_PER_RECORD} records), cut lines {broken}, "
          f"{time.monotonic() - started:.1f}s")
    assert set(names) == expected
    assert at_kill < RECORDS


async def test_two_gateways_one_killed_the_other_takes_over(
        kafka_bootstrap: str, kafka_topic: Any, tmp_path: Path) -> None:
    topic = await kafka_topic("gw2")
    out_a, out_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = OtelpipeProcess(gateway_config(kafka_bootstrap, topic, topic, out_a), tmp_path / "a")
    b = OtelpipeProcess(gateway_config(kafka_bootstrap, topic, topic, out_b), tmp_path / "b")
    started = time.monotonic()
    a.start()
    b.start()
    records = 2 * RECORDS
    try:
        # The group is stable once each member holds two of the four partitions.
        await aeventually(lambda: _holds_two(a) and _holds_two(b), timeout=60,
                          what=with_logs("the group to settle", a, b))
        # Clients keep writing (~2000 records/s) while A dies and B takes over.
        producing = asyncio.create_task(produce(kafka_bootstrap, topic, records, 2000))
        await aeventually(lambda: (lines(out_a) >= 300 and lines(out_b) >= 300)
                          or producing.done(), what="both gateways to write")
        assert not producing.done(), "production ended before both gateways consumed"
        a.kill()
        at_kill = lines(out_a)
        expected = await producing
        await asyncio.to_thread(
            eventually, lambda: set(read_names(out_a, out_b)[0]) >= expected, timeout=120,
            what=with_logs("the survivor to deliver every span", b))
        took_over = time.monotonic()
        await asyncio.sleep(1.0)
    finally:
        if a.proc is not None and a.proc.poll() is None:
            a.kill()
        assert b.stop() == 0, b.logs()[-3000:]
    names, broken = read_names(out_a, out_b)
    duplicates = len(names) - len(set(names))
    b_lines = lines(out_b)
    print(f"\ntwo gateways: A killed after {at_kill} records, B wrote {b_lines}; "
          f"{len(set(names))} distinct of {len(expected)} spans, duplicate spans {duplicates} "
          f"({duplicates // SPANS_PER_RECORD} records), cut lines {broken}, "
          f"all delivered {took_over - started:.1f}s after start")
    assert set(names) == expected
    assert _assignments(b)[-1] == 4, "B never got A's partitions"
    assert at_kill < records


def _assignments(p: OtelpipeProcess) -> list[int]:
    out = []
    for line in p.logs().splitlines():
        if '"partitions assigned"' in line:
            out.append(len(orjson.loads(line)["partitions"]))
    return out


def _holds_two(p: OtelpipeProcess) -> bool:
    got = _assignments(p)
    return bool(got) and got[-1] == 2
