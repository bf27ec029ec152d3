"""`otelpipe run` on the default config loads only the libraries its components use.

Component modules import their heavy libraries (Kafka, PostgreSQL, compression
codecs, SQLite, psutil) when a component that needs them is created, so a
process running the default pipelines (OTLP and JSON logs in, memory_limiter,
batch, file exporters, health) must not have them mapped. The check reads the
running process's /proc/<pid>/maps for the libraries' extension modules (every
one of them has one), after readiness and a moment idle.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

from tests.support import OtelpipeProcess, eventually, free_port, http_get

# Library -> a path fragment of its extension modules.
NOT_FOR_THE_DEFAULT = {
    "aiokafka": "/aiokafka/",
    "asyncpg": "/asyncpg/",
    "cramjam": "/cramjam/",
    "sqlite3": "/_sqlite3.",
    "zstandard": "/zstandard/",
    "psutil": "/psutil/",
}
# What the default config does use: proves that the check sees extension modules.
USED_BY_THE_DEFAULT = {"grpc": "/grpc/_cython/", "aiohttp": "/aiohttp/"}


def mapped_files(pid: int) -> set[str]:
    with open(f"/proc/{pid}/maps") as f:
        return {line.split(maxsplit=5)[5].strip() for line in f if line.count(" ") >= 5
                and "/" in line}


def loaded(files: set[str], fragments: dict[str, str]) -> list[str]:
    return sorted(name for name, frag in fragments.items() if any(frag in f for f in files))


def test_default_config_does_not_load_other_components_libraries(tmp_path: Path) -> None:
    health = free_port()
    env = {
        "OTELPIPE_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
        "OTELPIPE_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
        "OTELPIPE_JSONLOGS_ENDPOINT": f"127.0.0.1:{free_port()}",
        "OTELPIPE_HEALTH_ENDPOINT": f"127.0.0.1:{health}",
        "OTELPIPE_DATA_DIR": str(tmp_path / "data"),
    }
    default = Path(str(resources.files("pipeline.config") / "default.yaml"))
    with OtelpipeProcess(default, tmp_path, env=env, wait_ports=(health,)) as proc:
        eventually(lambda: http_get(f"http://127.0.0.1:{health}/health/readiness")[0] == 200,
                   what="readiness")
        time.sleep(1.5)  # a memory_limiter check and a batch timeout have run
        files = mapped_files(proc.pid)
    assert loaded(files, USED_BY_THE_DEFAULT) == sorted(USED_BY_THE_DEFAULT)
    assert loaded(files, NOT_FOR_THE_DEFAULT) == [], (
        "the default config loaded libraries of components it does not use")
