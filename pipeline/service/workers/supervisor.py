"""The supervisor of worker processes (`service.workers` > 1).

The `otelpipe run` process is the supervisor *and* worker 0, the primary: it runs
the primary config (what must run once, and the ends of the internal links) and
starts workers 1..N-1, each `python -m pipeline _worker` with the worker config
as JSON on stdin. The OTLP and jsonlogs listeners bind with SO_REUSEPORT in every
process, so the kernel spreads connections over them.

- A worker that exits is started again after a backoff (1 s, doubling to 30 s;
  back to 1 s once a worker stayed up 60 s), counted in
  `otelpipe_worker_restarts_total` and shown in `/health/detailed`.
- SIGTERM/SIGINT: one deadline, `service.shutdown_timeout`: the workers are asked
  to drain within 70 % of it, killed at 80 %, and the primary drains in the rest
  (SIGUSR2; a SIGTERM a worker gets
  from its environment as well, as systemd's KillMode=control-group or pkill send,
  drains it the same way, and neither cuts the other's drain short), then the
  primary drains. A second signal to the supervisor is passed on as SIGUSR1 (exit
  now), and everything exits at once. Workers ignore SIGINT (a terminal's Ctrl-C
  reaches the whole process group): they hear it from the supervisor, once.
- `/metrics` on the primary sums the metrics of every process
  (`pipeline.telemetry.merge.ExpositionMerger`), which each worker serves on its control socket.
- A worker dies with the supervisor (PR_SET_PDEATHSIG: it drains and exits).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import errno
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel

from pipeline.component import Kind
from pipeline.config.model import Config, validate_config
from pipeline.config.types import split_endpoint
from pipeline.errors import ConfigError
from pipeline.registry import default_registry
from pipeline.service.service import Service, run
from pipeline.service.workers.child import DRAIN_SIGNAL, EXIT_NOW_SIGNAL, Orders
from pipeline.service.workers.control import ask
from pipeline.service.workers.plan import plan
from pipeline.telemetry.merge import ExpositionMerger, merge_expositions
from pipeline.telemetry.metrics import CounterSpec, Telemetry

log = logging.getLogger("otelpipe.service.workers")

WORKER_RESTARTS = CounterSpec(
    "otelpipe_worker_restarts",
    "Worker processes started again after they exited (service.workers).", ("worker",))

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
BACKOFF_RESET_AFTER = 60.0  # up this long: the next restart waits BACKOFF_FIRST again
READY_POLL = 0.05
HEALTH_POLL = 1.0  # a running worker's health (its failing components) is this fresh
METRICS_TIMEOUT = 2.0
# One deadline, service.shutdown_timeout (T), for the whole drain: each worker drains
# within WORKER_DRAIN × T by itself (its config's shutdown_timeout), one still running
# at WORKER_KILL × T is killed, and the primary drains in the rest (at least
# 1 - WORKER_KILL - KILL_WAIT of T: what the workers sent it is in its queues).
WORKER_DRAIN = 0.7
WORKER_KILL = 0.8
KILL_WAIT = 0.05  # for a killed worker to be reaped

@dataclass(frozen=True)
class Prepared:
    """A validated plan for N processes, ready to run."""

    primary: Config
    worker: dict[str, Any]  # raw config of workers 1..N-1
    workers: int
    link_dir: str
    links: tuple[str, ...]


# sockaddr_un.sun_path holds 108 bytes on Linux, the terminating NUL included.
MAX_SOCKET_PATH = 107


def control_path(link_dir: str, index: int) -> str:
    return os.path.join(link_dir, f"worker-{index}.sock")


def make_link_dir() -> str:
    """A private (0700) directory for the internal sockets, under $TMPDIR (or /tmp)."""
    try:
        return tempfile.mkdtemp(prefix="otelpipe-")
    except OSError as exc:
        raise ConfigError([
            f"service.workers: cannot create the directory of the internal sockets in "
            f"{tempfile.gettempdir()!r} ({exc.strerror or exc}): set TMPDIR to a writable "
            f"directory"]) from None


def check_socket_paths(link_dir: str, links: Sequence[str], workers: int) -> None:
    """Each internal socket's path (the links, each worker's control socket and the
    temporary name it binds first) must fit a unix socket address."""
    paths = [*links, *(control_path(link_dir, i) + ".tmp" for i in range(1, workers))]
    longest = max(paths, key=len, default="")
    if len(longest.encode()) > MAX_SOCKET_PATH:
        raise ConfigError([
            f"service.workers: the internal socket path {longest!r} is "
            f"{len(longest.encode())} bytes, more than a unix socket address holds "
            f"({MAX_SOCKET_PATH}): set TMPDIR to a shorter directory (it is "
            f"{tempfile.gettempdir()!r})"])


def prepare(raw: Mapping[str, Any], config: Config, workers: int) -> Prepared:
    """Plan the processes' configs in a private link directory (0700) and validate both;
    raises ConfigError (the directory removed) if either is invalid. The plan's notes
    (idle workers, a small memory share) join `config.warnings`, which `run` logs and
    `validate` prints."""
    link_dir = make_link_dir()
    try:
        planned = plan(raw, config, workers=workers, link_dir=link_dir)
        config.warnings.extend(f"service.workers: {note}" for note in planned.notes)
        check_socket_paths(link_dir, planned.links, workers)
        # The plan has set so_reuseport on every shardable listener of both configs.
        primary = validate_config(planned.primary, default_registry())
        worker = copy.deepcopy(planned.worker)
        # The workers' share of the one drain deadline (see WORKER_DRAIN).
        worker.setdefault("service", {})["shutdown_timeout"] = \
            primary.service.shutdown_timeout * WORKER_DRAIN
        validate_config(worker, default_registry())
    except BaseException:
        shutil.rmtree(link_dir, ignore_errors=True)
        raise
    return Prepared(primary, worker, workers, link_dir, tuple(planned.links))


def shared_endpoints(config: Config) -> list[tuple[str, str]]:
    """(receiver name, host:port) of each TCP listener that binds with SO_REUSEPORT."""
    out: list[tuple[str, str]] = []

    def visit(name: str, node: object, depth: int) -> None:
        if not isinstance(node, BaseModel) or depth > 3:
            return
        endpoint = getattr(node, "endpoint", None)
        if getattr(node, "so_reuseport", False) is True and isinstance(endpoint, str) \
                and not endpoint.startswith("unix:"):
            out.append((name, endpoint))
        for key in type(node).model_fields:
            visit(name, getattr(node, key, None), depth + 1)

    for rid, rcfg in config.components.get(Kind.RECEIVER, {}).items():
        visit(f"receivers.{rid}", rcfg, 0)
    return out


def probe_endpoints(config: Config) -> None:
    """SO_REUSEPORT lets a second otelpipe (or anything else setting it) bind the same
    port and take a share of the connections, silently: bind each shared endpoint
    once without it first, so that a port already in use is the error it is without
    workers. Raises ConfigError naming the endpoint."""
    problems = []
    for name, endpoint in shared_endpoints(config):
        host, port = split_endpoint(endpoint)
        try:
            addrs = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        except OSError:
            continue  # the receiver reports what it cannot resolve
        for family, type_, proto, _, addr in addrs:
            try:
                with socket.socket(family, type_, proto) as sock:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT
                    sock.bind(addr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    problems.append(f"{name}: endpoint {endpoint}: address in use: another "
                                    f"process listens on port {port} (service.workers "
                                    f"shares the port between otelpipe's processes, so "
                                    f"it is checked before they start)")
                    break
    if problems:
        raise ConfigError(problems)


async def run_supervised(prepared: Prepared, *, command: Sequence[str] | None = None) -> int:
    """`run` the primary with a supervisor of the other workers; remove the link
    directory at the end."""
    try:
        telemetry = Telemetry()
        supervisor = Supervisor(prepared.worker, prepared.workers, prepared.link_dir, telemetry,
                                shutdown_timeout=prepared.primary.service.shutdown_timeout,
                                command=command)
        return await run(prepared.primary, telemetry=telemetry, hooks=supervisor)
    finally:
        shutil.rmtree(prepared.link_dir, ignore_errors=True)


def parse_failing(answer: bytes) -> list[dict[str, str]]:
    """The failing components of a worker's `health` answer."""
    try:
        failing = orjson.loads(answer).get("failing")
    except (orjson.JSONDecodeError, AttributeError):
        return []
    out = []
    for item in failing if isinstance(failing, list) else ():
        if isinstance(item, dict):
            out.append({"component": str(item.get("component", "?")),
                        "error": str(item.get("error") or "unhealthy")})
        else:
            out.append({"component": str(item), "error": "unhealthy"})
    return out


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclass
class Worker:
    """One worker process as the supervisor sees it (replaced processes keep the index)."""

    index: int
    control: str
    pid: int | None = None
    state: str = "starting"  # starting, running, restarting, stopping, stopped
    restarts: int = 0
    last_exit: str | None = None
    last_exit_time: float | None = None
    process: asyncio.subprocess.Process | None = None
    # Its unhealthy components as it last answered: [{"component", "error"}].
    failing: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "pid": self.pid, "state": self.state,
                "restarts": self.restarts, "last_exit": self.last_exit,
                "last_exit_time": self.last_exit_time, "failing": list(self.failing)}


class Supervisor:
    """Starts, watches, restarts and stops workers 1..count-1 (the `RunHooks` of the
    primary's `run`)."""

    def __init__(self, worker_config: dict[str, Any], count: int, link_dir: str,
                 telemetry: Telemetry, *, shutdown_timeout: float,
                 command: Sequence[str] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.worker_config = worker_config
        self.link_dir = link_dir
        self.shutdown_timeout = shutdown_timeout
        self.command = list(command or (sys.executable, "-m", "pipeline", "_worker"))
        self.clock = clock
        self.restarts = telemetry.counter(WORKER_RESTARTS)
        self.workers = [Worker(i, control_path(link_dir, i)) for i in range(1, count)]
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        # Keeps summed counters monotonic across a worker's restart, and counts a worker
        # that does not answer a scrape with its last values.
        self._merger = ExpositionMerger()
        self._merging = asyncio.Lock()

    # RunHooks -------------------------------------------------------------------
    async def started(self, service: Service) -> None:
        service.supervisor = self
        try:
            for w in self.workers:
                await self._spawn(w)  # the first start's errors stop the whole service
        finally:  # watched even then: `stopping` drains the ones already started
            self._tasks = [asyncio.create_task(self._watch(w), name=f"worker-{w.index}")
                           for w in self.workers if w.process is not None]
        log.info("workers started", extra={"workers": len(self.workers) + 1,
                                           "pids": [w.pid for w in self.workers]})

    async def stopping(self) -> None:
        """Ask every worker to drain (DRAIN_SIGNAL, not SIGTERM: a worker that got
        SIGTERM from its environment too must not take ours for a second signal) and
        wait for them (then SIGKILL the late)."""
        self._stopping.set()
        for w in self.workers:
            self._signal(w, DRAIN_SIGNAL)
            if w.state != "stopped":
                w.state = "stopping"
        if not self._tasks:
            return
        _, late = await asyncio.wait(self._tasks, timeout=self.shutdown_timeout * WORKER_KILL)
        for w in self.workers:
            if w.process is not None and w.process.returncode is None:
                log.error("worker did not drain in time: killed",
                          extra={"worker": w.index, "pid": w.pid})
                self._signal(w, signal.SIGKILL)
        if late:
            await asyncio.wait(late, timeout=max(0.1, self.shutdown_timeout * KILL_WAIT))
        log.info("workers stopped", extra={
            "exits": {str(w.index): w.last_exit for w in self.workers}})

    def second_signal(self, sig: signal.Signals) -> bool:
        """The user's second signal: every process exits at once (the link directory
        removed first: the exit skips every `finally`)."""
        for w in self.workers:
            self._signal(w, EXIT_NOW_SIGNAL)
        shutil.rmtree(self.link_dir, ignore_errors=True)
        return True

    # Health and metrics -----------------------------------------------------------
    def states(self) -> list[dict[str, Any]]:
        primary = {"index": 0, "pid": os.getpid(), "state": "running", "restarts": 0,
                   "last_exit": None, "last_exit_time": None, "failing": [],
                   "primary": True}  # its own components are health's `components`
        return [primary, *(w.as_dict() for w in self.workers)]

    async def merged_metrics(self, own: bytes) -> bytes:
        """The sum over processes of their metrics (a worker that does not answer within
        METRICS_TIMEOUT counts with its last answer)."""
        live = [w for w in self.workers if w.state in ("running", "stopping")]
        answers = await asyncio.gather(*(ask(w.control, "metrics", METRICS_TIMEOUT)
                                         for w in live))
        texts = {"0": own.decode()}
        for w, text in zip(live, answers, strict=True):
            if text is not None:
                texts[str(w.index)] = text.decode(errors="replace")
        # Off the loop (≈ 5 ms of CPU per process merged): the loop keeps serving while
        # the merge thread holds the GIL in slices; one merge at a time (the merger's
        # memory is not thread-safe).
        async with self._merging:
            merged = await asyncio.to_thread(self._merge, texts)
        return merged.encode()

    def _merge(self, texts: dict[str, str]) -> str:
        """The merge of `texts`, leaving out (and logging) a process whose text does not
        parse, rather than failing the whole scrape."""
        try:
            return self._merger.merge(texts)
        except ValueError:
            pass  # which one: each alone (the merger's memory is untouched on a failure)
        for worker, text in list(texts.items()):
            try:
                merge_expositions({worker: text})
            except ValueError as exc:
                log.warning("worker metrics left out of /metrics: they do not parse",
                            extra={"worker": worker, "error": str(exc)[:300]})
                del texts[worker]
        return self._merger.merge(texts)

    # Processes --------------------------------------------------------------------
    async def _spawn(self, w: Worker) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(w.control)  # the previous process's: readiness is its reappearance
        orders = Orders(index=w.index, supervisor_pid=os.getpid(),
                        config=self.worker_config, control=w.control)
        # Same session and process group (not a session of its own: with the kernel's
        # autogroup scheduling, a worker alone in its session got a fraction of the CPU
        # the primary got); a terminal's Ctrl-C reaches it too, and it ignores SIGINT:
        # the supervisor passes signals on as SIGTERM.
        proc = await asyncio.create_subprocess_exec(*self.command,
                                                    stdin=asyncio.subprocess.PIPE)
        assert proc.stdin is not None
        try:
            proc.stdin.write(orders.to_json())
            await proc.stdin.drain()
            proc.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass  # it died at once: _watch sees the exit
        # Started while the stop began (a restart): it is stopping, not starting.
        w.process, w.pid = proc, proc.pid
        w.state = "stopping" if self._stopping.is_set() else "starting"

    async def _watch(self, w: Worker) -> None:
        delay = BACKOFF_FIRST
        while True:
            proc = w.process
            assert proc is not None
            if self._stopping.is_set():  # started while the stop began
                self._signal(w, DRAIN_SIGNAL)
            began = self.clock()
            code = await self._until_exit(w, proc)
            w.last_exit, w.last_exit_time = describe_exit(code), time.time()
            if self._stopping.is_set():
                w.state = "stopped"
                return
            if self.clock() - began >= BACKOFF_RESET_AFTER:
                delay = BACKOFF_FIRST
            w.state = "restarting"
            log.error("worker exited: starting it again", extra={
                "worker": w.index, "pid": w.pid, "exit": w.last_exit, "after_s": delay})
            while True:
                if not await self._wait_or_stop(delay):
                    w.state = "stopped"
                    return
                delay = min(delay * 2, BACKOFF_MAX)
                try:
                    await self._spawn(w)
                    break
                except OSError as exc:
                    log.error("cannot start worker", extra={"worker": w.index,
                                                            "error": str(exc)})
            w.restarts += 1
            self.restarts.labels(worker=str(w.index)).inc()

    async def _until_exit(self, w: Worker, proc: asyncio.subprocess.Process) -> int:
        """Wait for `proc` to exit, marking it running once its control socket answers,
        and keeping its failing components as it reports them."""
        exited = asyncio.ensure_future(proc.wait())
        while not exited.done():
            await asyncio.wait({exited}, timeout=READY_POLL if w.state == "starting"
                               else HEALTH_POLL)
            answer = await ask(w.control, "health", READY_POLL * 20)
            if answer is None or exited.done():
                continue
            if w.state == "starting":
                w.state = "running"
            w.failing = parse_failing(answer)
        w.failing = []
        return await exited

    async def _wait_or_stop(self, delay: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)
        return not self._stopping.is_set()

    @staticmethod
    def _signal(w: Worker, sig: signal.Signals) -> None:
        proc = w.process
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
