"""tests/container: otelpipe's image (Dockerfile) built and run with rootful podman
(`scripts/container.sh`, which installs podman from Debian and makes the base image
with debootstrap), and the Kubernetes manifests run as pods (`podman play kube`).

Every test here is marked `container`. Nothing skips: when podman or the image cannot
be had, the `image` fixture fails with the script's output (scripts/test.sh builds the
image before the suite runs; a warm build takes seconds)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO

HERE = Path(__file__).parent
SCRIPT = REPO / "scripts" / "container.sh"
UID = 10001  # the image's user (Dockerfile)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.container)


def podman(*args: str, check: bool = True,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """podman with scripts/container.sh's configuration (storage, runtime, ulimits)."""
    proc = subprocess.run([str(SCRIPT), "podman", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"podman {' '.join(args)} failed ({proc.returncode}):\n"
                    f"{proc.stdout}\n{proc.stderr}", pytrace=False)
    return proc


def container_script(command: str, timeout: float = 1800) -> str:
    proc = subprocess.run([str(SCRIPT), command], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        pytest.fail(f"scripts/container.sh {command} failed ({proc.returncode}):\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}", pytrace=False)
    return proc.stdout


@pytest.fixture(scope="session")
def image() -> str:
    """otelpipe's image, built from the Dockerfile (cached by podman when warm)."""
    container_script("build")
    return container_script("image").strip()


def http_status(url: str, timeout: float = 3.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def inspect(name: str, fmt: str) -> str:
    return podman("inspect", "--format", fmt, name).stdout.strip()


class Container:
    """One `podman run -d` of the image; removed (forcibly) at the end of the test."""

    def __init__(self, name: str, image: str, run_args: Sequence[str],
                 args: Sequence[str] = ()) -> None:
        self.name, self.image = name, image
        self.run_args, self.args = list(run_args), list(args)
        self.started = 0.0
        self.ready_after = 0.0

    def start(self, health_port: int, timeout: float = 60) -> Container:
        podman("rm", "-f", "--ignore", self.name)
        self.started = time.monotonic()
        podman("run", "-d", "--name", self.name, *self.run_args, self.image, *self.args)
        deadline = self.started + timeout
        url = f"http://127.0.0.1:{health_port}/health/readiness"
        while http_status(url, timeout=1) != 200:
            if inspect(self.name, "{{.State.Running}}") != "true":
                pytest.fail(f"{self.name} exited during startup:\n{self.logs()}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} not ready within {timeout}s:\n{self.logs()}",
                            pytrace=False)
            time.sleep(0.05)
        self.ready_after = time.monotonic() - self.started
        return self

    def logs(self) -> str:
        proc = podman("logs", self.name, check=False)
        return (proc.stdout + proc.stderr)[-5000:]

    def exec(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *cmd, check=check)

    def remove(self) -> None:
        podman("rm", "-f", "--ignore", "-t", "0", self.name, check=False)

    def config(self) -> dict[str, Any]:
        [data] = json.loads(podman("inspect", self.name).stdout)
        return dict(data)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A host directory for the image's state volume, owned by the image's user."""
    import os

    d = tmp_path / "data"
    d.mkdir()
    os.chown(d, UID, UID)
    return d
