"""Helpers shared by tests: free ports and a real `otelpipe run` process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from pipeline.component import Consumer

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class OtelpipeProcess:
    """`python -m pipeline run -c <config>` in a subprocess, with its logs captured.

    `config` is a dict (written to `tmp_path/config.yaml`) or a path.
    """

    def __init__(self, config: dict[str, Any] | Path, tmp_path: Path,
                 env: dict[str, str] | None = None, wait_ports: tuple[int, ...] = ()):
        if isinstance(config, dict):
            path = tmp_path / "config.yaml"
            path.write_text(yaml.safe_dump(config))
            config = path
        self.config_path = config
        self.tmp_path = tmp_path
        self.log_path = tmp_path / f"otelpipe-{int(time.time() * 1000)}.log"
        self.env = {**os.environ, **(env or {})}
        self.wait_ports = wait_ports
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OtelpipeProcess:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "run", "-c", str(self.config_path)],
            stdout=self._log, stderr=subprocess.STDOUT, env=self.env, cwd=self.tmp_path)
        try:
            for port in self.wait_ports:
                wait_port(port)
        except TimeoutError:
            self.stop()
            raise AssertionError(f"otelpipe did not start:\n{self.logs()}") from None
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> OtelpipeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Sink(Consumer):
    """A consumer that keeps what it gets; `refuse` makes it push back."""

    def __init__(self) -> None:
        from pipeline.pdata.batch import Batch

        self.batches: list[Batch] = []
        self.refuse: Exception | None = None

    async def consume(self, batch: Any) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.batches.append(batch)

    @property
    def items(self) -> int:
        return sum(b.items for b in self.batches)


def create_settings(kind: str, component_id: str, telemetry: Any = None, **kw: Any) -> Any:
    """CreateSettings for building one component in a unit test."""
    from pipeline.component import ComponentID, CreateSettings, Kind
    from pipeline.telemetry.logs import component_logger
    from pipeline.telemetry.metrics import Telemetry

    return CreateSettings(id=ComponentID.parse(component_id), kind=Kind(kind),
                          logger=component_logger(kind, component_id),
                          telemetry=telemetry or Telemetry(), **kw)
