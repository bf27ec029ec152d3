"""Shared benchmark plumbing: start a target process, measure its CPU and peak RSS.

Figures are per CPU-second of the process under test (user + system time
from /proc), so a noisy machine shifts wall time but not the ratio to a peer
measured in the same session on the same input.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Target:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


def peer_binary() -> str:
    """The OpenTelemetry Collector built by scripts/otelcol.sh (the benchmark peer)."""
    out = subprocess.run([str(REPO / "scripts" / "otelcol.sh"), "path"], capture_output=True,
                         text=True, check=True).stdout.strip()
    if not Path(out).exists():
        raise SystemExit(f"peer collector not built: run scripts/otelcol.sh build ({out})")
    return out


@contextlib.contextmanager
def start_target(kind: str, config: dict, ports: list[int]) -> Iterator[Target]:
    """Run otelpipe (`kind="otelpipe"`) or the Go collector (`"otelcol"`) on `config`."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-"))
    cfg = workdir / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    log_path = workdir / "out.log"
    if kind == "otelpipe":
        cmd = [sys.executable, "-m", "pipeline", "run", "-c", str(cfg)]
    else:
        cmd = [peer_binary(), "--config", str(cfg)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        try:
            for p in ports:
                wait_port(p)
        except TimeoutError:
            raise RuntimeError(f"{kind} did not start:\n{log_path.read_text()[-3000:]}") from None
        yield Target(kind, proc, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def run_loadgen(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.loadgen", *args], cwd=REPO,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_result(name: str, result: dict) -> Path:
    path = REPO / "benchmarks" / "results" / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def measure_otlp_load(kind: str, config: dict, protocol: str, requests: int,
                      concurrency: int) -> dict:
    """Run `kind` on `config` (an otlp receiver on the two ports it names), warm it up,
    then send `requests` trace requests from benchmarks.loadgen over `protocol`; spans per
    CPU-second of the target, its peak RSS and the client's view of latency."""
    otlp = config["receivers"]["otlp"]["protocols"]
    ports = [int(otlp[p]["endpoint"].rsplit(":", 1)[1]) for p in ("grpc", "http")]
    with start_target(kind, config, ports) as t:
        endpoint = otlp[protocol]["endpoint"]
        common = ["--protocol", protocol, "--endpoint", endpoint,
                  "--concurrency", str(concurrency)]
        run_loadgen(*common, "--requests", str(max(200, requests // 10)))  # warm-up
        cpu0 = cpu_seconds(t.pid)
        load = run_loadgen(*common, "--requests", str(requests))
        cpu = cpu_seconds(t.pid) - cpu0
        spans = load["requests_sent"] * load["spans_per_request"]
        return {"target": kind, "protocol": protocol, "spans": spans, "cpu_s": round(cpu, 3),
                "spans_per_cpu_s": round(spans / cpu) if cpu else None,
                "wall_spans_per_s": round(spans / load["elapsed_s"]),
                "peak_rss_mib": round(peak_rss_mib(t.pid), 1),
                "errors": load["errors"], "retries": load["retries"],
                "latency_p50_ms": round(load["latency_p50_ms"], 2),
                "latency_p99_ms": round(load["latency_p99_ms"], 2)}
