"""The supervisor with real child processes: small Python scripts standing in for
`python -m pipeline _worker` (they read the orders on stdin as a worker does)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.component import ComponentID, Kind
from pipeline.service.workers import supervisor as sup
from pipeline.service.workers.supervisor import Supervisor, describe_exit
from pipeline.telemetry.metrics import Telemetry
from tests.support import aeventually

# Appends "<index> <time>" to a file, then exits with the code given.
EXITS = """
import sys, time, orjson
orders = orjson.loads(sys.stdin.buffer.read())
with open(sys.argv[1], "a") as f:
    f.write(f"{orders['index']} {time.monotonic()}\\n")
sys.exit(int(sys.argv[2]))
"""

# Answers on the control socket until SIGTERM (then exits 0), or ignores SIGTERM.
RUNS = """
import asyncio, signal, sys, orjson
orders = orjson.loads(sys.stdin.buffer.read())
async def main():
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGUSR2):  # SIGUSR2: the supervisor's drain request
        if sys.argv[1] == "drain":
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        else:
            signal.signal(sig, signal.SIG_IGN)
    async def serve(r, w):
        cmd = (await r.readline()).strip()
        answer = b"# TYPE x counter\\nx_total 1.0\\n" if cmd == b"metrics" else \\
            open(sys.argv[2], "rb").read() if len(sys.argv) > 2 else b"{}"
        w.write(b"%d\\n" % len(answer) + answer)  # framed as control.py does
        await w.drain()
        w.close()
    await asyncio.start_unix_server(serve, path=orders["control"])
    await stop.wait()
asyncio.run(main())
"""


def supervisor(tmp_path: Path, script: str, *args: str, count: int = 2,
               shutdown_timeout: float = 5.0) -> Supervisor:
    path = tmp_path / "worker.py"
    path.write_text(script)
    return Supervisor({"receivers": {}}, count, str(tmp_path), Telemetry(),
                      shutdown_timeout=shutdown_timeout,
                      command=[sys.executable, str(path), *args])


class FakeService:
    supervisor: Any = None


async def test_a_worker_that_exits_is_restarted_with_backoff(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    s = supervisor(tmp_path, EXITS, str(starts), "3")
    await s.started(FakeService())  # type: ignore[arg-type]
    try:
        await aeventually(lambda: starts.exists() and
                          len(starts.read_text().splitlines()) >= 3 and
                          s.workers[0].state == "restarting",
                          timeout=60, interval=0.05, what="two restarts")
        w = s.workers[0].as_dict()
        assert w["last_exit"] == "exit code 3"
        assert w["index"] == 1
        times = [float(line.split()[1]) for line in starts.read_text().splitlines()]
        # 1 s before the first restart, 2 s before the second (at least: never less).
        assert times[1] - times[0] >= sup.BACKOFF_FIRST
        assert times[2] - times[1] >= 2 * sup.BACKOFF_FIRST
        assert s.restarts.labels(worker="1")._value.get() == s.workers[0].restarts
    finally:
        await s.stopping()
    assert s.workers[0].state == "stopped"


async def test_running_workers_drain_on_stopping_and_their_metrics_merge(
        tmp_path: Path) -> None:
    s = supervisor(tmp_path, RUNS, "drain", count=3)
    await s.started(FakeService())  # type: ignore[arg-type]
    await aeventually(lambda: all(w.state == "running" for w in s.workers), timeout=60,
                      interval=0.05, what="workers running")
    states = s.states()
    assert [w["index"] for w in states] == [0, 1, 2]
    assert states[0]["primary"] is True
    merged = await s.merged_metrics(b"# TYPE x counter\nx_total 2.0\n")
    assert "x_total 4.0" in merged.decode()
    await s.stopping()
    assert [w.state for w in s.workers] == ["stopped", "stopped"]
    assert [w.last_exit for w in s.workers] == ["exit code 0", "exit code 0"]
    assert all(w.restarts == 0 for w in s.workers)


async def test_a_worker_that_does_not_drain_is_killed(tmp_path: Path) -> None:
    s = supervisor(tmp_path, RUNS, "ignore", shutdown_timeout=1.0)
    await s.started(FakeService())  # type: ignore[arg-type]
    await aeventually(lambda: s.workers[0].state == "running", timeout=60, interval=0.05,
                      what="worker running")
    await s.stopping()
    assert s.workers[0].last_exit == "killed by SIGKILL"
    assert s.workers[0].state == "stopped"


def test_the_plan_sets_reuseport_on_shardable_receivers_only(tmp_path: Path) -> None:
    """The supervisor runs the plan's configs as they are: the plan is what makes every
    process bind the shared listeners with SO_REUSEPORT."""
    from pipeline.config.loader import load_config
    from pipeline.config.model import validate_config
    from pipeline.registry import default_registry

    cfg = tmp_path / "c.yaml"
    log = tmp_path / "a.log"
    cfg.write_text(f"""
receivers:
  otlp: {{protocols: {{grpc: null, http: {{endpoint: "127.0.0.1:14318"}}}}}}
  otlp/b: {{protocols: {{grpc: {{endpoint: "127.0.0.1:14327"}}}}}}
  jsonlogs: null
  filelog: {{include: ["{log}"]}}
exporters: {{nop: {{}}}}
service:
  workers: 2
  pipelines:
    traces: {{receivers: [otlp, otlp/b], exporters: [nop]}}
    logs: {{receivers: [jsonlogs, filelog], exporters: [nop]}}
""")
    raw = load_config([str(cfg)])
    prepared = sup.prepare(raw, validate_config(raw, default_registry()), 2)
    try:
        worker = prepared.worker["receivers"]
        assert worker["otlp"]["protocols"]["grpc"]["so_reuseport"] is True
        assert worker["otlp"]["protocols"]["http"]["so_reuseport"] is True
        assert worker["otlp/b"]["protocols"]["grpc"]["so_reuseport"] is True
        assert worker["jsonlogs"]["so_reuseport"] is True
        assert "filelog" not in worker  # runs once, in the primary: no shared port
        primary: Any = prepared.primary.components[Kind.RECEIVER]
        otlp = primary[ComponentID("otlp")].protocols
        assert otlp.grpc.so_reuseport
        assert otlp.http.so_reuseport
        assert primary[ComponentID("otlp", "b")].protocols.grpc.so_reuseport
        assert primary[ComponentID("jsonlogs")].so_reuseport
        assert raw["receivers"]["otlp"]["protocols"]["grpc"] is None  # a copy
    finally:
        import shutil
        shutil.rmtree(prepared.link_dir)


def test_describe_exit() -> None:
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(-200) == "killed by signal 200"


def test_orders_roundtrip() -> None:
    from io import BytesIO

    from pipeline.service.workers.child import Orders

    o = Orders(index=3, supervisor_pid=7, config={"a": [1]}, control="/x")
    assert Orders.read(BytesIO(o.to_json())) == o
    assert orjson.loads(o.to_json())["config"] == {"a": [1]}


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b'{"index": 1}', b'{"index": "x", '
                                 b'"supervisor_pid": 1, "config": {}, "control": "/x"}'])
def test_bad_orders_are_refused(raw: bytes) -> None:
    from io import BytesIO

    from pipeline.errors import ConfigError
    from pipeline.service.workers.child import Orders

    with pytest.raises(ConfigError, match="worker orders: expected the supervisor's JSON"):
        Orders.read(BytesIO(raw))


async def test_control_socket(tmp_path: Path) -> None:
    from pipeline.service.workers.control import ControlServer, ask

    async def answer() -> bytes:
        return b"x" * 300_000

    path = str(tmp_path / "c.sock")
    assert await ask(path, "metrics", 1.0) is None  # nobody listens
    server = ControlServer(path, {"metrics": answer})
    await server.start()
    try:
        assert await ask(path, "metrics", 5.0) == b"x" * 300_000
        assert await ask(path, "nonsense", 5.0) is None  # closed without an answer
        assert (tmp_path / "c.sock").stat().st_mode & 0o777 == 0o600
    finally:
        await server.stop()
    assert not (tmp_path / "c.sock").exists()


def test_validate_plans_the_processes(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("""
receivers: {otlp: {protocols: {grpc: {endpoint: "127.0.0.1:4317"}}}}
exporters: {nop: {}}
service:
  workers: 3
  pipelines: {traces: {receivers: [otlp], exporters: [nop]}}
""")
    assert main(["validate", "-c", str(cfg)]) == 0
    assert "configuration is valid" in capsys.readouterr().out
    cfg.write_text(cfg.read_text().replace("workers: 3", "workers: -1"))
    assert main(["validate", "-c", str(cfg)]) == 2
    assert "service.workers: expected a number of processes from 1 to 256 or `auto`" \
        in capsys.readouterr().err


def test_a_worker_takes_sighup_for_the_supervisors_death_only_when_it_is_gone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from pipeline.service.workers import child

    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    hooks = child.WorkerHooks("/nonexistent", supervisor_pid=os.getppid())
    hooks._orphaned()  # a terminal's hangup, `kill -HUP`: the supervisor is there
    assert sent == []
    gone = child.WorkerHooks("/nonexistent", supervisor_pid=-1)
    gone._orphaned()
    gone._orphaned()  # the kernel repeats it: one drain request
    assert sent == [(os.getpid(), child.DRAIN_SIGNAL)]


def test_a_worker_ignores_further_drain_signals() -> None:
    from pipeline.service.workers import child

    hooks = child.WorkerHooks("/nonexistent", supervisor_pid=1)
    assert hooks.second_signal(signal.SIGTERM) is False
    assert hooks.second_signal(child.DRAIN_SIGNAL) is False


async def truncated_server(path: str, reply: bytes) -> asyncio.AbstractServer:
    """A worker killed mid-write: `reply` (a frame cut short), then the connection closes."""
    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readline()
        w.write(reply)
        await w.drain()
        w.close()

    return await asyncio.start_unix_server(serve, path=path)


@pytest.mark.parametrize("reply", [
    b"40\n# TYPE x counter\nx_total{a=\"b",  # cut mid-label
    b"40\n# TYPE x counter\nx_total 1.0\n",  # cut after a whole line
    b"4",  # cut in the length
    b"# TYPE x counter\nx_total 1.0\n",  # not framed
    b"99999999999\n",  # more than MAX_ANSWER
])
async def test_an_answer_cut_short_is_no_answer(tmp_path: Path, reply: bytes) -> None:
    from pipeline.service.workers.control import ask

    path = str(tmp_path / "c.sock")
    server = await truncated_server(path, reply)
    try:
        assert await ask(path, "metrics", 5.0) is None
    finally:
        server.close()


async def test_a_worker_text_that_does_not_parse_is_left_out_of_metrics(
        tmp_path: Path) -> None:
    from pipeline.service.workers.control import ControlServer

    s = supervisor(tmp_path, RUNS, "drain", count=3)

    async def bad() -> bytes:  # a whole frame whose text is broken
        return b'# TYPE x counter\nx_total{a="b 1.0\n'

    async def good() -> bytes:
        return b"# TYPE x counter\nx_total 5.0\n"

    servers = [ControlServer(s.workers[0].control, {"metrics": bad}),
               ControlServer(s.workers[1].control, {"metrics": good})]
    for server, w in zip(servers, s.workers, strict=True):
        await server.start()
        w.state = "running"
    try:
        merged = (await s.merged_metrics(b"# TYPE x counter\nx_total 2.0\n")).decode()
        assert "x_total 7.0" in merged, merged
    finally:
        for server in servers:
            await server.stop()


WORKERS_CONFIG = """
receivers: {otlp: {protocols: {grpc: {endpoint: "127.0.0.1:4317"}}}}
exporters: {nop: {}}
service:
  workers: 3
  pipelines: {traces: {receivers: [otlp], exporters: [nop]}}
"""


def test_a_tmpdir_too_long_for_the_sockets_is_a_precise_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import tempfile

    from pipeline.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(WORKERS_CONFIG)
    deep = tmp_path / ("d" * 60) / ("e" * 40)
    deep.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    assert main(["run", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "more than a unix socket address holds (107): set TMPDIR to a shorter " \
        "directory" in err, err
    assert "/worker-1.sock.tmp' is " in err, err
    assert list(deep.iterdir()) == []  # the link directory removed


def test_a_tmpdir_that_cannot_be_written_is_a_precise_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import tempfile

    from pipeline.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(WORKERS_CONFIG)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    assert main(["run", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "service.workers: cannot create the directory of the internal sockets in " \
        f"'{tmp_path / 'missing'}' (No such file or directory): set TMPDIR" in err, err


def test_the_workers_drain_within_their_share_of_the_one_deadline(tmp_path: Path) -> None:
    import shutil

    from pipeline.config.loader import load_config
    from pipeline.config.model import validate_config
    from pipeline.registry import default_registry

    cfg = tmp_path / "c.yaml"
    cfg.write_text(WORKERS_CONFIG.replace("workers: 3", "workers: 3\n  shutdown_timeout: 20s"))
    raw = load_config([str(cfg)])
    prepared = sup.prepare(raw, validate_config(raw, default_registry()), 3)
    try:
        assert prepared.primary.service.shutdown_timeout == 20.0
        worker = validate_config(prepared.worker, default_registry())
        assert worker.service.shutdown_timeout == 20.0 * sup.WORKER_DRAIN
        # Workers drain, then are killed, then reaped, before the primary's share.
        assert sup.WORKER_DRAIN < sup.WORKER_KILL < sup.WORKER_KILL + sup.KILL_WAIT < 1
    finally:
        shutil.rmtree(prepared.link_dir)


@pytest.mark.parametrize("reuseport", [False, True], ids=["plain", "SO_REUSEPORT"])
def test_a_shared_port_in_use_is_refused_before_start(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], reuseport: bool) -> None:
    """Another process listening on the port (even with SO_REUSEPORT, which would let
    the workers bind beside it and take a share of its connections): a precise error."""
    import socket

    from pipeline.cli import main

    with socket.socket() as other:
        if reuseport:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        cfg = tmp_path / "c.yaml"
        cfg.write_text(WORKERS_CONFIG.replace("127.0.0.1:4317", f"127.0.0.1:{port}"))
        assert main(["run", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"error: receivers.otlp: endpoint 127.0.0.1:{port}: address in use: another " \
        f"process listens on port {port}" in err, err


def test_shared_endpoints_lists_the_reuseport_tcp_listeners(tmp_path: Path) -> None:
    from pipeline.config.loader import load_config
    from pipeline.config.model import validate_config
    from pipeline.registry import default_registry

    cfg = tmp_path / "c.yaml"
    cfg.write_text("""
receivers:
  otlp: {protocols: {grpc: {endpoint: "127.0.0.1:14317"}, http: {endpoint: "127.0.0.1:14318"}}}
  jsonlogs: {endpoint: "127.0.0.1:18081"}
exporters: {nop: {}}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [nop]}
    logs: {receivers: [jsonlogs], exporters: [nop]}
""")
    raw = load_config([str(cfg)])
    prepared = sup.prepare(raw, validate_config(raw, default_registry()), 2)
    import shutil
    shutil.rmtree(prepared.link_dir)
    assert sorted(sup.shared_endpoints(prepared.primary)) == [
        ("receivers.jsonlogs", "127.0.0.1:18081"),
        ("receivers.otlp", "127.0.0.1:14317"), ("receivers.otlp", "127.0.0.1:14318")]


@pytest.mark.parametrize("workers", ["auto", "3"])
def test_validate_plans_whenever_workers_is_not_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], workers: str) -> None:
    """Valid as one process, not as several (a shardable listener on a unix socket):
    `validate` says so even where `auto` is 1 CPU."""
    import os

    from pipeline.cli import main

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    cfg = tmp_path / "c.yaml"
    sock = tmp_path / "otlp.sock"
    cfg.write_text(f"""
receivers: {{otlp: {{protocols: {{grpc: {{endpoint: "unix:{sock}"}}}}}}}}
exporters: {{nop: {{}}}}
service:
  workers: {workers}
  pipelines: {{traces: {{receivers: [otlp], exporters: [nop]}}}}
""")
    assert main(["validate", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "receivers.otlp.protocols.grpc: listens on unix:" in err, err
    assert "which the worker processes cannot share" in err, err
    cfg.write_text(cfg.read_text().replace(f"workers: {workers}", "workers: 1"))
    assert main(["validate", "-c", str(cfg)]) == 0


def test_a_second_signal_removes_the_link_dir(tmp_path: Path) -> None:
    """The process then exits at once (os._exit: no `finally` runs)."""
    link_dir = tmp_path / "otelpipe-x"
    link_dir.mkdir()
    (link_dir / "link-0.sock").touch()
    s = Supervisor({}, 2, str(link_dir), Telemetry(), shutdown_timeout=1.0,
                   command=[sys.executable, "-c", "pass"])
    assert s.second_signal(signal.SIGTERM) is True
    assert not link_dir.exists()


# Exits at once the first time (no marker yet), then runs (and, started with the drain
# signals ignored, never drains).
FIRST_EXITS_THEN_STUCK = """
import os, sys, time, orjson
orders = orjson.loads(sys.stdin.buffer.read())
if not os.path.exists(sys.argv[1]):
    open(sys.argv[1], "w").close()
    sys.exit(1)
time.sleep(600)
"""


def deaf() -> None:
    """In the child before exec: ignored from its first instruction (no startup race)."""
    for sig in (signal.SIGTERM, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)


async def test_a_worker_restarted_while_the_stop_begins_is_stopped_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The restart's spawn is under way when the stop begins: the new process is
    `stopping` (not `starting`), asked to drain, and killed when late."""
    monkeypatch.setattr(sup, "BACKOFF_FIRST", 0.05)
    spawning, release = asyncio.Event(), asyncio.Event()
    real = asyncio.create_subprocess_exec
    calls = 0

    async def slow_second_spawn(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        nonlocal calls
        calls += 1
        if calls == 2:
            spawning.set()
            await release.wait()
            kwargs["preexec_fn"] = deaf
        return await real(*args, **kwargs)

    monkeypatch.setattr(asyncio, "create_subprocess_exec", slow_second_spawn)
    s = supervisor(tmp_path, FIRST_EXITS_THEN_STUCK, str(tmp_path / "marker"),
                   shutdown_timeout=1.0)
    await s.started(FakeService())  # type: ignore[arg-type]
    await asyncio.wait_for(spawning.wait(), 60)
    stopping = asyncio.create_task(s.stopping())
    await asyncio.sleep(0.1)  # the stop has begun: the old process is gone already
    release.set()
    await asyncio.wait_for(stopping, 60)
    w = s.workers[0]
    assert w.process is not None
    assert w.process.returncode is not None, "escaped"
    assert w.last_exit == "killed by SIGKILL"
    assert w.state == "stopped"


async def test_workers_started_before_a_failed_start_are_drained(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = asyncio.create_subprocess_exec
    calls = 0

    async def second_fails(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("no more processes")
        return await real(*args, **kwargs)

    monkeypatch.setattr(asyncio, "create_subprocess_exec", second_fails)
    s = supervisor(tmp_path, RUNS, "drain", count=3)
    with pytest.raises(OSError, match="no more processes"):
        await s.started(FakeService())  # type: ignore[arg-type]
    first = s.workers[0].process
    assert first is not None
    await aeventually(lambda: s.workers[0].state == "running", timeout=60, interval=0.05,
                      what="worker 1 running")
    await s.stopping()  # what run() does when a start hook fails
    assert first.returncode == 0  # drained, not left running
    assert s.workers[0].state == "stopped"
    assert s.workers[1].process is None


async def test_a_workers_failing_components_are_in_its_state(tmp_path: Path) -> None:
    answer = tmp_path / "health.json"
    answer.write_bytes(orjson.dumps({"running": True, "failing": [
        {"component": "exporter otlp", "error": "refused"}]}))
    s = supervisor(tmp_path, RUNS, "drain", str(answer))
    await s.started(FakeService())  # type: ignore[arg-type]
    try:
        await aeventually(lambda: s.workers[0].failing != [], timeout=60, interval=0.05,
                          what="the worker's failing components")
        assert s.states()[1]["failing"] == [{"component": "exporter otlp",
                                             "error": "refused"}]
        assert s.states()[0]["failing"] == []
        answer.write_bytes(b'{"running": true, "failing": []}')
        await aeventually(lambda: s.workers[0].failing == [], timeout=60, interval=0.05,
                          what="healthy again")
    finally:
        await s.stopping()
    assert s.workers[0].failing == []


def test_parse_failing() -> None:
    assert sup.parse_failing(b'{"failing": ["exporter a"]}') == [
        {"component": "exporter a", "error": "unhealthy"}]
    assert sup.parse_failing(b"nonsense") == []
    assert sup.parse_failing(b"[]") == []
    assert sup.parse_failing(b'{"failing": 3}') == []


def test_validate_prints_the_plans_notes(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A config with nothing a worker can run (file tailing only) leaves the workers
    idle: `validate` says so, as `run` logs it."""
    from pipeline.cli import main
    from tests.support import REPO

    override = tmp_path / "workers.yaml"
    override.write_text("service:\n  workers: 2\n")
    assert main(["validate", "-c", str(REPO / "configs/filelog.yaml"),
                 "-c", str(override)]) == 0
    err = capsys.readouterr().err
    assert "warning: service.workers: " in err
    assert "service.workers: 1" in err
