"""Kafka settings and helpers: importing them loads no Kafka client; errors map onto
the pipeline's retryable / permanent split; the stall watch tells an outage from a
consumer stuck while the brokers answer."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import pytest
from aiokafka import errors as kerrors
from aiokafka.structs import TopicPartition

from pipeline import kafkahelper
from pipeline.config.kafka import ClientSettings
from pipeline.kafkahelper import StallWatch, describe, is_permanent


def test_settings_and_helpers_do_not_import_aiokafka() -> None:
    code = ("import sys, pipeline.config.kafka, pipeline.kafkahelper; "
            "print('aiokafka' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_error_mapping() -> None:
    assert is_permanent(kerrors.MessageSizeTooLargeError())
    assert is_permanent(kerrors.InvalidTopicError())
    assert not is_permanent(kerrors.KafkaConnectionError())
    assert describe(ValueError()) == "ValueError"
    assert describe(TimeoutError("no answer")) == "TimeoutError: no answer"


class _Coordinator:
    coordinator_id: int | None = 1


class _Consumer:
    """What StallWatch looks at: the coordinator, paused partitions, fetch times."""

    def __init__(self) -> None:
        self._coordinator = _Coordinator()
        self.paused_tps: set[TopicPartition] = set()
        self.last_fetch: dict[TopicPartition, int | None] = {}

    def paused(self) -> set[TopicPartition]:
        return self.paused_tps

    def last_poll_timestamp(self, tp: TopicPartition) -> int | None:
        return self.last_fetch[tp]


TP = TopicPartition("otlp_spans", 0)


def _watch(consumer: _Consumer, monkeypatch: pytest.MonkeyPatch,
           answers: list[bool]) -> tuple[StallWatch, list[str]]:
    """A watch whose probes answer `answers[0]` (changeable); returns it and the probe log."""
    probes: list[str] = []

    async def probe(settings: Any, group_id: str) -> bool:
        probes.append(group_id)
        return answers[0]

    monkeypatch.setattr(kafkahelper, "coordinator_answers", probe)
    settings = ClientSettings()
    return StallWatch(consumer, lambda: {TP}, settings, "g", 5.0, "kafka"), probes


async def _run(watch: StallWatch, start: float, end: float) -> str | None:
    """Checks once a (simulated) second from `start` to `end`; the first reason given."""
    t = start
    while t <= end:
        reason = await watch.check(t)
        await asyncio.sleep(0)  # let a probe started by this check finish
        await asyncio.sleep(0)
        if reason is not None:
            return reason
        t += 1.0
    return None


async def test_stall_watch_leaves_a_healthy_consumer_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = _Consumer()
    consumer.last_fetch[TP] = int(time.time() * 1000)
    watch, probes = _watch(consumer, monkeypatch, [True])
    assert await _run(watch, 0.0, 30.0) is None
    assert probes == []


async def test_stall_watch_waits_out_an_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    """No coordinator while no broker answers: aiokafka's to reconnect, nothing replaced."""
    consumer = _Consumer()
    consumer._coordinator.coordinator_id = None
    consumer.last_fetch[TP] = None
    watch, probes = _watch(consumer, monkeypatch, [False])
    assert await _run(watch, 0.0, 60.0) is None
    assert len(probes) > 10


async def test_stall_watch_replaces_a_consumer_stuck_while_brokers_answer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = _Consumer()
    consumer._coordinator.coordinator_id = None
    consumer.last_fetch[TP] = None
    answers = [False]
    watch, _ = _watch(consumer, monkeypatch, answers)
    assert await _run(watch, 0.0, 30.0) is None  # the outage
    answers[0] = True  # the broker is back; the consumer stays stuck
    reason = await _run(watch, 31.0, 60.0)
    assert reason is not None
    assert reason.startswith("no group coordinator for ")
    # Given `timeout` (5 s) of answering brokers first, not replaced at once.
    assert float(reason.split(" for ")[1].split("s")[0]) >= 36.0


async def test_stall_watch_resets_when_the_consumer_recovers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = _Consumer()
    consumer._coordinator.coordinator_id = None
    consumer.last_fetch[TP] = None
    watch, _ = _watch(consumer, monkeypatch, [True])
    assert await _run(watch, 0.0, 3.0) is None
    consumer._coordinator.coordinator_id = 1  # aiokafka found it by itself
    assert await _run(watch, 4.0, 30.0) is None
    assert watch.since is None


async def test_stall_watch_sees_fetching_stop_unless_paused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = _Consumer()
    consumer.last_fetch[TP] = int(time.time() * 1000) - 60_000
    consumer.paused_tps = {TP}  # the pipeline pushes back: not fetching is right
    watch, _ = _watch(consumer, monkeypatch, [True])
    assert watch.reason() is None
    consumer.paused_tps = set()
    assert watch.reason() == "no fetch response for otlp_spans/0"
    reason = await _run(watch, 0.0, 30.0)
    assert reason is not None
    assert reason.startswith("no fetch response for otlp_spans/0 for ")
