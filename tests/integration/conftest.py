"""Real services for integration tests, started on first use.

`kafka_bootstrap` starts the broker with `scripts/kafka.sh start` when
nothing answers on 127.0.0.1:${KAFKA_PORT:-9092}; if it cannot be started the
test errors out (never skips): a green run must mean the broker was there.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from tests.support import REPO

KAFKA_PORT = int(os.environ.get("KAFKA_PORT", "9092"))
KAFKA_PARTITIONS = 4


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def kafka_script(command: str, timeout: float = 300) -> None:
    """`scripts/kafka.sh <command>`; fails the test with the script's output."""
    proc = subprocess.run([str(REPO / "scripts" / "kafka.sh"), command], capture_output=True,
                          text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        pytest.fail(f"scripts/kafka.sh {command} failed ({proc.returncode}):\n"
                    f"{proc.stdout}\n{proc.stderr}", pytrace=False)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    if not _port_open(KAFKA_PORT):
        kafka_script("start")
    if not _port_open(KAFKA_PORT):
        pytest.fail(f"kafka is not listening on 127.0.0.1:{KAFKA_PORT} after start",
                    pytrace=False)
    return f"127.0.0.1:{KAFKA_PORT}"


TopicFactory = Callable[..., Awaitable[str]]


@pytest_asyncio.fixture
async def kafka_topic(kafka_bootstrap: str) -> AsyncIterator[TopicFactory]:
    """Creates uniquely named topics (4 partitions) and deletes them afterwards."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    created: list[str] = []

    async def make(prefix: str = "t", partitions: int = KAFKA_PARTITIONS) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        await admin.create_topics([NewTopic(name, partitions, 1)])
        created.append(name)
        return name

    try:
        yield make
    finally:
        try:
            if created:
                await admin.delete_topics(created)
        except Exception:  # the broker may be down after an outage test
            pass
        await admin.close()
