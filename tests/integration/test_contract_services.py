"""The component contract (tests/unit/test_contract.py) for components that need a real
service: the kafka receiver and exporter against our Kafka (scripts/kafka.sh,
127.0.0.1:9092) and the replication_lag receiver against our PostgreSQL primary and
streaming replica (scripts/postgres.sh, 127.0.0.1:55432 / 55433, user postgres, trust).

Same contract, same runner: build from the entry below, start on a nop host, feed one
small batch per signal, `begin_shutdown()` and `shutdown()` within the bound, and the
data must arrive (on the topic; at the recording consumers). The keys here must be
exactly `SERVICE_BACKED` of the unit module, which checks that every factory is in one
of the two lists.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from pipeline.component import Kind, Signal
from pipeline.registry import default_registry
from tests.kafkadata import read_topic
from tests.unit.test_contract import (
    SERVICE_BACKED,
    Env,
    Key,
    Outcome,
    Spec,
    SpecBuilder,
    make_batch,
    request_bytes,
    run_contract,
)

pytestmark = pytest.mark.integration

# A consumer group's first join waits out the broker's initial rebalance delay.
KAFKA_DELIVERY = 30.0


class ServiceEnv(Env):
    """`Env` plus the services, asked for (and started by their fixtures) on first use."""

    def __init__(self, tmp: Path, request: pytest.FixtureRequest):
        super().__init__(tmp)
        self._request = request
        self._topics: list[str] = []
        self._admin: Any = None

    def kafka_bootstrap(self) -> str:
        return str(self._request.getfixturevalue("kafka_bootstrap"))

    def postgres(self) -> dict[str, str]:
        pair: dict[str, str] = self._request.getfixturevalue("postgres_pair")
        return pair

    async def topic(self, prefix: str) -> str:
        """A new topic of one partition, deleted at the end of the test."""
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        if self._admin is None:
            self._admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka_bootstrap())
            await self._admin.start()
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        await self._admin.create_topics([NewTopic(name, 1, 1)])
        self._topics.append(name)
        return name

    async def aclose(self) -> None:
        try:
            if self._admin is not None:
                if self._topics:
                    await self._admin.delete_topics(self._topics)
                await self._admin.close()
        finally:
            await super().aclose()


@pytest_asyncio.fixture
async def service_env(tmp_path: Path, request: pytest.FixtureRequest
                      ) -> AsyncIterator[ServiceEnv]:
    e = ServiceEnv(tmp_path, request)
    try:
        yield e
    finally:
        await e.aclose()


async def _kafka_receiver(env: Env) -> Spec:
    assert isinstance(env, ServiceEnv)
    bootstrap = env.kafka_bootstrap()
    topics = {s: await env.topic(f"contract-{s.value}") for s in Signal}

    async def during(o: Outcome) -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for signal, topic in topics.items():
                await producer.send_and_wait(topic, request_bytes(signal))
        finally:
            await producer.stop()

    async def after(o: Outcome) -> None:
        for signal in Signal:
            assert o.out[signal].items == make_batch(signal).items, signal

    config = {"brokers": [bootstrap], "group_id": f"contract-{uuid.uuid4().hex[:10]}",
              "initial_offset": "earliest", "commit_interval": "100ms",
              **{s.value: {"topics": [t]} for s, t in topics.items()}}
    return Spec(config, during=during, after=after, deliver_within=KAFKA_DELIVERY)


async def _kafka_exporter(env: Env) -> Spec:
    assert isinstance(env, ServiceEnv)
    bootstrap = env.kafka_bootstrap()
    topic = await env.topic("contract-out")

    async def after(o: Outcome) -> None:
        records = await read_topic(bootstrap, topic)
        assert len(records) == len(o.fed), records  # one record per request

    return Spec({"brokers": [bootstrap], "topic": topic}, after=after)


async def _replication_lag_receiver(env: Env) -> Spec:
    assert isinstance(env, ServiceEnv)
    pair = env.postgres()
    return Spec({"primary": pair["primary"],
                 "replicas": [{"name": "replica1", "dsn": pair["replica"]}],
                 "interval": "100ms", "timeout": "2s", "reconnect_backoff": "50ms",
                 "max_reconnect_backoff": "500ms"})


SERVICE_CONFIGS: dict[Key, SpecBuilder] = {
    (Kind.RECEIVER, "kafka"): _kafka_receiver,
    (Kind.EXPORTER, "kafka"): _kafka_exporter,
    (Kind.RECEIVER, "replication_lag"): _replication_lag_receiver,
}


def test_service_configs_are_the_service_backed_components() -> None:
    assert set(SERVICE_CONFIGS) == SERVICE_BACKED


@pytest.mark.parametrize("key", sorted(SERVICE_CONFIGS), ids=lambda k: f"{k[0].value}-{k[1]}")
async def test_service_component_contract(key: Key, service_env: ServiceEnv) -> None:
    factory = default_registry().get(*key)
    assert factory is not None, key
    builder: SpecBuilder = SERVICE_CONFIGS[key]
    spec: Spec = await builder(service_env)
    await run_contract(factory, spec)
