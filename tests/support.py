"""Helpers shared by tests: waiting for a condition, free ports and a real `otelpipe run`
process."""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, overload

import yaml

from pipeline.component import (
    ComponentID,
    ConnectorCreateSettings,
    Consumer,
    ExporterCreateSettings,
    ExtensionCreateSettings,
    Kind,
    ProcessorCreateSettings,
    ReceiverCreateSettings,
    Signal,
)

if TYPE_CHECKING:
    import logging

    from pipeline.telemetry.metrics import Telemetry

REPO = Path(__file__).resolve().parent.parent

T = TypeVar("T")

# Generous: tests run on busy 2-core machines next to Kafka, PostgreSQL and friends.
# A test that asserts a deadline (detected within 1 s, …) passes its own `timeout`.
TIMEOUT = 30.0
INTERVAL = 0.05

Described = str | Callable[[], str]


def _timed_out(what: Described, timeout: float, last: object,
               error: Exception | None) -> AssertionError:
    text = what() if callable(what) else what
    got = f"last error: {error!r}" if error is not None else f"last value: {last!r}"
    return AssertionError(f"timed out after {timeout:g}s waiting for {text}; {got}")


def _pauses(interval: float) -> Iterator[float]:
    """5 ms, 10 ms, 20 ms ... then `interval` seconds: a condition that holds soon is seen
    soon, and one that takes long (a service, a file) is not polled hard."""
    pause = min(0.005, interval)
    while True:
        yield pause
        pause = min(2 * pause, interval)


def eventually(cond: Callable[[], T], *, timeout: float = TIMEOUT, what: Described = "condition",
               interval: float = INTERVAL) -> T:
    """Calls `cond` until it returns something truthy, and returns that: at first every
    few milliseconds, backing off to every `interval` seconds. An exception from `cond`
    counts as "not yet". After `timeout` seconds (at least one call) it fails with an
    AssertionError naming `what` (a string, or a callable evaluated then, e.g. to add a
    process's logs) and the last value or exception."""
    deadline = time.monotonic() + timeout
    pauses = _pauses(interval)
    while True:
        error: Exception | None = None
        last: object = None
        try:
            value = cond()
        except Exception as exc:
            error = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last, error) from error
        time.sleep(next(pauses))


@overload
def aeventually(cond: Callable[[], Awaitable[T]], *, timeout: float = ...,
                what: Described = ..., interval: float = ...) -> Coroutine[Any, Any, T]: ...


@overload
def aeventually(cond: Callable[[], T], *, timeout: float = ...,
                what: Described = ..., interval: float = ...) -> Coroutine[Any, Any, T]: ...


def aeventually(cond: Callable[[], Any], *, timeout: float = TIMEOUT,
                what: Described = "condition",
                interval: float = INTERVAL) -> Coroutine[Any, Any, Any]:
    """`await aeventually(...)`: `eventually` in a coroutine. It sleeps on the event loop
    between calls, so the code under test runs meanwhile; `cond` may be a plain function
    or return an awaitable. A `cond` that blocks (HTTP with urllib, reading big files)
    belongs in `await asyncio.to_thread(eventually, cond, ...)` instead.

    (A plain function returning the coroutine: the deadline is computed here, and the
    poll loop takes it as a point in time.)"""
    return _poll(cond, time.monotonic() + timeout, functools.partial(_timed_out, what, timeout),
                 interval)


async def _poll(cond: Callable[[], Any], deadline: float,
                timed_out: Callable[[object, Exception | None], AssertionError],
                interval: float) -> Any:
    pauses = _pauses(interval)
    while True:
        error: Exception | None = None
        last: object = None
        try:
            value = cond()
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            error = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise timed_out(last, error) from error
        await asyncio.sleep(next(pauses))


_ISSUED_PORTS: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, and one this test process has not handed out before:
    the kernel may give the same ephemeral port to two binds in a row once the first
    socket is closed (a config once got one port for both gRPC and HTTP)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _ISSUED_PORTS:
            _ISSUED_PORTS.add(port)
            return port


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_port(port: int, timeout: float = TIMEOUT) -> None:
    eventually(lambda: port_open(port), timeout=timeout,
               what=f"something to listen on 127.0.0.1:{port}")


def with_logs(what: str, *procs: OtelpipeProcess) -> Callable[[], str]:
    """`what` for `eventually`, followed by the tail of the processes' logs (read when it
    times out)."""
    return lambda: what + "\n" + "\n".join(p.logs()[-3000:] for p in procs)


class LoopTurns:
    """Counts the turns the event loop gives another task while the `async with` block
    runs: proof that long work yields, counted rather than timed (the machine's load
    changes times, not counts)."""

    def __init__(self) -> None:
        self.count = 0
        self._running = True
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while self._running:
            await asyncio.sleep(0)
            self.count += 1

    async def __aenter__(self) -> LoopTurns:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        await asyncio.sleep(0)  # the counter is running
        self.count = 0
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._running = False
        assert self._task is not None
        await self._task


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
        for port in self.wait_ports:
            try:
                state = eventually(functools.partial(self._listening_or_exited, port),
                                   what=f"otelpipe to listen on 127.0.0.1:{port}")
            except AssertionError:
                state = "not listening"
            if state != "listening":
                self.stop()
                raise AssertionError(f"otelpipe did not start ({state}):\n{self.logs()}")
        if self.wait_ports:
            # A listening port is not a started service: the health extension listens
            # before the receivers, a receiver before the ones after it. Every component
            # has started once the service logs it.
            try:
                state = eventually(self._started_or_exited, what="otelpipe started")
            except AssertionError:
                state = "not started"
            if state != "started":
                self.stop()
                raise AssertionError(f"otelpipe did not start ({state}):\n{self.logs()}")
        return self

    def _started_or_exited(self) -> str | None:
        if b'"msg":"otelpipe started"' in self.log_path.read_bytes():
            return "started"
        assert self.proc is not None
        code = self.proc.poll()
        return None if code is None else f"exited with {code}"

    def _listening_or_exited(self, port: int) -> str | None:
        if port_open(port):
            return "listening"
        assert self.proc is not None
        code = self.proc.poll()
        return None if code is None else f"exited with {code}"

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


class _Common(TypedDict):
    id: ComponentID
    logger: logging.Logger
    telemetry: Telemetry


def _common(kind: Kind, component_id: str, telemetry: Telemetry | None) -> _Common:
    from pipeline.telemetry.logs import component_logger
    from pipeline.telemetry.metrics import Telemetry

    return {"id": ComponentID.parse(component_id),
            "logger": component_logger(kind.value, component_id),
            "telemetry": telemetry or Telemetry()}


def receiver_settings(component_id: str, telemetry: Telemetry | None = None, *,
                      consumers: Mapping[Signal, Consumer] | None = None,
                      ) -> ReceiverCreateSettings:
    """Settings for building one receiver in a unit test."""
    return ReceiverCreateSettings(**_common(Kind.RECEIVER, component_id, telemetry),
                                  consumers=consumers or {})


def processor_settings(component_id: str, telemetry: Telemetry | None = None, *,
                       next_consumer: Consumer, signal: Signal,
                       pipeline_id: str | None = None) -> ProcessorCreateSettings:
    """Settings for one processor in a unit test; its pipeline is named after the signal."""
    return ProcessorCreateSettings(**_common(Kind.PROCESSOR, component_id, telemetry),
                                   signal=signal, pipeline_id=pipeline_id or signal.value,
                                   next_consumer=next_consumer)


def exporter_settings(component_id: str,
                      telemetry: Telemetry | None = None) -> ExporterCreateSettings:
    """Settings for building one exporter in a unit test."""
    return ExporterCreateSettings(**_common(Kind.EXPORTER, component_id, telemetry))


def connector_settings(component_id: str, telemetry: Telemetry | None = None, *,
                       consumers: Mapping[Signal, Consumer] | None = None,
                       ) -> ConnectorCreateSettings:
    """Settings for building one connector in a unit test."""
    return ConnectorCreateSettings(**_common(Kind.CONNECTOR, component_id, telemetry),
                                   consumers=consumers or {})


def extension_settings(component_id: str,
                       telemetry: Telemetry | None = None) -> ExtensionCreateSettings:
    """Settings for building one extension in a unit test."""
    return ExtensionCreateSettings(**_common(Kind.EXTENSION, component_id, telemetry))


def cpu_bounded(call: Callable[[], T], bound: float = 0.1) -> T:
    """`call()`, asserting it spends under `bound` seconds of this thread's CPU. The garbage
    collector is off meanwhile (a collection of the test process's heap is not the
    input's cost), and a first run over the bound is repeated once (a machine under
    load evicts caches): the faster run counts."""
    took = float("inf")
    for _ in range(2):
        enabled = gc.isenabled()
        gc.disable()
        try:
            started = time.thread_time()
            result = call()
            took = min(took, time.thread_time() - started)
        finally:
            if enabled:
                gc.enable()
        if took < bound:
            break
    assert took < bound, f"{took * 1000:.0f} ms of CPU"
    return result
