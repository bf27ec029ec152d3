"""A worker process: `python -m pipeline _worker`, started by the supervisor.

It reads its orders as one JSON object on stdin (never a file or argv: the config
holds resolved secrets), asks the kernel to signal it when the supervisor dies
(PR_SET_PDEATHSIG: it then drains and exits as on SIGTERM), runs the worker config
with the ordinary `Service`, and answers the supervisor on its control socket once
started.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
from dataclasses import dataclass
from typing import IO, Any

import orjson

from pipeline.errors import ConfigError
from pipeline.service.service import Service, exit_undrained
from pipeline.service.workers.control import ControlServer

PR_SET_PDEATHSIG = 1
# Not SIGTERM: the kernel may send it several times (see WorkerHooks._orphaned).
PARENT_DEATH_SIGNAL = signal.SIGHUP
# The supervisor's requests: drain (idempotent: the same as a first SIGTERM, and a
# SIGTERM after it is not a second signal) and exit at once (the supervisor got a
# second signal).
DRAIN_SIGNAL = signal.SIGUSR2
EXIT_NOW_SIGNAL = signal.SIGUSR1
# What starts a worker's drain: its environment's SIGTERM (systemd KillMode=control-group,
# pkill, a cgroup kill) or the supervisor's request.
STOP_SIGNALS = (signal.SIGTERM, DRAIN_SIGNAL)

log = logging.getLogger("otelpipe.service.workers")
MAX_ORDERS = 64 * 1024 * 1024


@dataclass(frozen=True)
class Orders:
    """What the supervisor tells a worker."""

    index: int
    supervisor_pid: int
    config: dict[str, Any]
    control: str  # the control socket's path

    def to_json(self) -> bytes:
        return orjson.dumps({"index": self.index, "supervisor_pid": self.supervisor_pid,
                             "config": self.config, "control": self.control})

    @classmethod
    def read(cls, stream: IO[bytes]) -> Orders:
        raw = stream.read(MAX_ORDERS + 1)
        if len(raw) > MAX_ORDERS:
            raise ConfigError([f"worker orders: more than {MAX_ORDERS} bytes on stdin"])
        try:
            data = orjson.loads(raw)
            return cls(index=int(data["index"]), supervisor_pid=int(data["supervisor_pid"]),
                       config=dict(data["config"]), control=str(data["control"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError([f"worker orders: expected the supervisor's JSON on stdin "
                               f"({type(exc).__name__})"]) from None


def die_with(parent_pid: int) -> None:
    """Have the kernel signal this process (PARENT_DEATH_SIGNAL) when its parent dies, so
    that a worker drains and exits when the supervisor is gone (`WorkerHooks` turns
    the signal into one SIGTERM, and until then ignores it); exit at once if the parent
    is gone already."""
    signal.signal(PARENT_DEATH_SIGNAL, signal.SIG_IGN)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(PARENT_DEATH_SIGNAL), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # died before prctl: nobody will signal us
        raise SystemExit(f"worker: supervisor {parent_pid} is gone")


class WorkerLogFilter(logging.Filter):
    """Adds `worker: <index>` to every log record of a worker process."""

    def __init__(self, index: int):
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index
        return True


class WorkerHooks:
    """A worker's additions to `run` (with `stop_signals=STOP_SIGNALS`): its control
    socket, open from the end of the service's start until the process exits, and its
    signals. SIGTERM and the supervisor's DRAIN_SIGNAL each start the drain, and neither
    cuts it short once it runs: the environment often signals every process of the
    group (systemd, pkill, a cgroup kill) while the supervisor asks each worker to drain
    too, and neither is the user's second signal. That one reaches the supervisor, which
    passes it on as EXIT_NOW_SIGNAL: exit at once, without draining."""

    def __init__(self, control: str, supervisor_pid: int):
        self.control_path = control
        self.supervisor_pid = supervisor_pid
        self.orphaned = False  # the supervisor died
        self.service: Service | None = None
        self._control: ControlServer | None = None

    async def started(self, service: Service) -> None:
        self.service = service
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(PARENT_DEATH_SIGNAL, self._orphaned)
        loop.add_signal_handler(EXIT_NOW_SIGNAL, exit_undrained, service, EXIT_NOW_SIGNAL)
        if os.getppid() != self.supervisor_pid:  # died while this one started
            self._orphaned()
        self._control = ControlServer(self.control_path, {
            "metrics": self._metrics, "health": self._health})
        await self._control.start()

    async def stopping(self) -> None:
        pass  # the socket answers during the drain too; it goes with the process

    def second_signal(self, sig: signal.Signals) -> bool:
        """SIGTERM or DRAIN_SIGNAL during the drain: already draining (only the
        supervisor's EXIT_NOW_SIGNAL cuts it short)."""
        log.info("already draining", extra={"signal": sig.name})
        return False

    def _orphaned(self) -> None:
        """The supervisor died: drain and exit, as on its drain request. A SIGHUP from
        anything else (a terminal's hangup, a `kill -HUP`) is not that: ignored."""
        if os.getppid() == self.supervisor_pid:
            return
        if self.orphaned:
            return
        self.orphaned = True
        log.warning("supervisor gone: draining and exiting",
                    extra={"supervisor_pid": self.supervisor_pid})
        os.kill(os.getpid(), DRAIN_SIGNAL)

    async def _metrics(self) -> bytes:
        assert self.service is not None
        return self.service.telemetry.render()

    async def _health(self) -> bytes:
        service = self.service
        assert service is not None
        failing = []
        for e in service.component_entries():
            try:
                h = e.component.health()
                healthy, error = h.healthy, h.last_error
            except Exception as exc:
                healthy, error = False, f"health check failed: {type(exc).__name__}"
            if not healthy:
                failing.append({"component": e.name, "error": error or "unhealthy"})
        return orjson.dumps({"running": service.started(), "failing": failing})
