"""Real services for integration tests, started on first use; every test here is marked
`integration`.

`kafka_bootstrap` starts the broker with `scripts/kafka.sh start` when
nothing answers on 127.0.0.1:${KAFKA_PORT:-9092}; if it cannot be started the
test errors out (never skips): a green run must mean the broker was there.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.promdata import PrometheusServer
from tests.support import REPO

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in tests/integration needs real services: marked `integration`. (A
    conftest's collection hook sees every collected item, not only this folder's.)"""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


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


# --- Prometheus -------------------------------------------------------------------

PROMETHEUS_PORT = int(os.environ.get("PROMETHEUS_PORT", "9091"))


@pytest.fixture(scope="session")
def prometheus() -> PrometheusServer:
    """Our Prometheus (scripts/prometheus.sh): remote-write receiver on, 1 s scrapes of
    the file_sd targets tests add. Started (installed if need be) on first use; a
    failure to start fails the test, never skips it."""
    script = REPO / "scripts" / "prometheus.sh"
    proc = subprocess.run([str(script), "start"], capture_output=True, text=True,
                          timeout=900, check=False)
    if proc.returncode != 0:
        pytest.fail(f"scripts/prometheus.sh start failed ({proc.returncode}):\n"
                    f"{proc.stdout}\n{proc.stderr}", pytrace=False)
    state = Path(os.environ.get("PROMETHEUS_STATE_DIR") or
                 Path(os.environ.get("OTELPIPE_STATE", "/tmp/otelpipe-services")) / "prometheus")
    server = PrometheusServer(f"http://127.0.0.1:{PROMETHEUS_PORT}", state)
    try:
        server.api("/api/v1/status/buildinfo")
    except OSError as exc:
        pytest.fail(f"prometheus does not answer on {server.url} after start: {exc}",
                    pytrace=False)
    return server


# --- Jaeger -----------------------------------------------------------------------


class Jaeger:
    """One Jaeger v2 instance run by scripts/jaeger.sh (in-memory storage).

    `shared` is the session instance on the script's default ports (OTLP
    14317/14318, query 16686); private ones (outage tests stop and start them)
    get their own state dir and free ports.
    """

    def __init__(self, state_dir: Path | None = None, ports: dict[str, int] | None = None):
        self.env = dict(os.environ)
        if state_dir is not None:
            self.env["JAEGER_STATE_DIR"] = str(state_dir)
        p = ports or {}
        self.grpc_port = p.get("grpc", int(os.environ.get("JAEGER_OTLP_GRPC_PORT", "14317")))
        self.http_port = p.get("http", int(os.environ.get("JAEGER_OTLP_HTTP_PORT", "14318")))
        self.query_port = p.get("query", int(os.environ.get("JAEGER_QUERY_PORT", "16686")))
        self.env.update(JAEGER_OTLP_GRPC_PORT=str(self.grpc_port),
                        JAEGER_OTLP_HTTP_PORT=str(self.http_port),
                        JAEGER_QUERY_PORT=str(self.query_port))
        if "query_grpc" in p:
            self.env["JAEGER_QUERY_GRPC_PORT"] = str(p["query_grpc"])

    def script(self, command: str, timeout: float = 1800) -> str:
        proc = subprocess.run([str(REPO / "scripts" / "jaeger.sh"), command],
                              capture_output=True, text=True, timeout=timeout, check=False,
                              env=self.env)
        if proc.returncode != 0:
            pytest.fail(f"scripts/jaeger.sh {command} failed ({proc.returncode}):\n"
                        f"{proc.stdout}\n{proc.stderr}", pytrace=False)
        return proc.stdout + proc.stderr

    def start(self) -> None:
        self.script("start")

    def stop(self) -> None:
        self.script("stop")

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.query_port}"

    def trace(self, trace_id_hex: str) -> list[dict[str, Any]]:
        """The spans of a trace from the v3 API (OTLP JSON), [] if not (yet) there."""
        import json
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.query_url}/api/v3/traces/{trace_id_hex}",
                                        timeout=5) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise
        spans = []
        for rs in body.get("result", {}).get("resourceSpans", []):
            service = next((a["value"].get("stringValue") for a in
                            rs.get("resource", {}).get("attributes", [])
                            if a["key"] == "service.name"), None)
            for ss in rs.get("scopeSpans", []):
                for sp in ss.get("spans", []):
                    spans.append({**sp, "service": service})
        return spans


@pytest.fixture(scope="session")
def jaeger() -> Jaeger:
    """The shared Jaeger (built on first use, several minutes); fails, never skips."""
    j = Jaeger()
    j.start()
    return j


@pytest.fixture
def private_jaeger(tmp_path: Path) -> Iterator[Jaeger]:
    """A Jaeger of this test's own on free ports, stopped afterwards."""
    from tests.support import free_port

    j = Jaeger(tmp_path / "jaeger", {"grpc": free_port(), "http": free_port(),
                                     "query": free_port(), "query_grpc": free_port()})
    yield j
    j.stop()


# --- VictoriaLogs -----------------------------------------------------------------

VICTORIALOGS_PORT = int(os.environ.get("VICTORIALOGS_PORT", "9428"))


@pytest.fixture(scope="session")
def victorialogs() -> str:
    """Base URL of our VictoriaLogs (scripts/victorialogs.sh: built from the Go module proxy
    on first use, then cached). A failure to build or start fails the test, never skips."""
    script = REPO / "scripts" / "victorialogs.sh"
    proc = subprocess.run([str(script), "start"], capture_output=True, text=True,
                          timeout=1800, check=False)
    if proc.returncode != 0:
        pytest.fail(f"scripts/victorialogs.sh start failed ({proc.returncode}):\n"
                    f"{proc.stdout}\n{proc.stderr}", pytrace=False)
    url = f"http://127.0.0.1:{VICTORIALOGS_PORT}"
    try:
        import urllib.request

        with urllib.request.urlopen(url + "/health", timeout=5) as resp:
            assert resp.status == 200
    except OSError as exc:
        pytest.fail(f"victorialogs does not answer on {url}/health after start: {exc}",
                    pytrace=False)
    return url


# --- PostgreSQL primary + streaming replica -----------------------------------------

PG_PRIMARY_PORT = int(os.environ.get("PG_PRIMARY_PORT", "55432"))
PG_REPLICA_PORT = int(os.environ.get("PG_REPLICA_PORT", "55433"))


def postgres_script(command: str, timeout: float = 900) -> None:
    """`scripts/postgres.sh <command>`; fails the test with the script's output."""
    proc = subprocess.run([str(REPO / "scripts" / "postgres.sh"), command],
                          capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        pytest.fail(f"scripts/postgres.sh {command} failed ({proc.returncode}):\n"
                    f"{proc.stdout}\n{proc.stderr}", pytrace=False)


@pytest.fixture(scope="session")
def postgres_pair() -> dict[str, str]:
    """DSNs of our PostgreSQL 15 primary and its streaming replica (scripts/postgres.sh:
    installed and created on first use; `start` is idempotent and returns once the
    replica streams). A failure to start fails the test, never skips it."""
    postgres_script("start")
    return {
        "primary": f"postgresql://postgres@127.0.0.1:{PG_PRIMARY_PORT}/postgres",
        "replica": f"postgresql://postgres@127.0.0.1:{PG_REPLICA_PORT}/postgres",
    }


# --- Alertmanager ---------------------------------------------------------------------

ALERTMANAGER_PORT = int(os.environ.get("ALERTMANAGER_PORT", "19093"))


@pytest.fixture(scope="session")
def alertmanager() -> str:
    """Base URL of our Alertmanager (scripts/alertmanager.sh: Debian
    prometheus-alertmanager, installed on first use, null receiver, 1 s group_wait /
    group_interval, clustering off). A failure to start fails the test, never skips it."""
    import urllib.request

    proc = subprocess.run([str(REPO / "scripts" / "alertmanager.sh"), "start"],
                          capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        pytest.fail(f"scripts/alertmanager.sh start failed ({proc.returncode}):\n"
                    f"{proc.stdout}\n{proc.stderr}", pytrace=False)
    url = f"http://127.0.0.1:{ALERTMANAGER_PORT}"
    try:
        with urllib.request.urlopen(f"{url}/api/v2/status", timeout=5) as resp:
            resp.read()
    except OSError as exc:
        pytest.fail(f"alertmanager does not answer on {url}/api/v2/status after start: {exc}",
                    pytrace=False)
    return url


# --- promtool (Debian `prometheus`) ---------------------------------------------------


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of `promtool`, installed with the Debian package `prometheus` when missing
    (`scripts/prometheus.sh install` if the script has it, else apt-get). Fails, never
    skips."""
    import shutil

    found = shutil.which("promtool")
    if found is None:
        script = REPO / "scripts" / "prometheus.sh"
        usage = subprocess.run([str(script)], capture_output=True, text=True, check=False)
        if "install" in usage.stdout + usage.stderr:
            cmd = [str(script), "install"]
        else:
            cmd = ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"]
            if os.geteuid() != 0:
                cmd = ["sudo", "-n", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = shutil.which("promtool")
        if found is None:
            pytest.fail(f"promtool is not installed and `{' '.join(cmd)}` did not install it "
                        f"({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}",
                        pytrace=False)
    return found
