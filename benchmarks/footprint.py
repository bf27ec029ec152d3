"""Idle footprint of `otelpipe run` on the embedded default config (and of the Go peer).

    python benchmarks/footprint.py                 # otelpipe, 3 runs, medians
    python benchmarks/footprint.py --runs 5 --idle 10
    python benchmarks/footprint.py --otelcol       # also the Go Collector (scripts/otelcol.sh)
    python benchmarks/footprint.py --json

Per run: a fresh `python -m pipeline run` (the `pipeline` that PYTHONPATH / the
install resolves to, so the same script measures any checkout) on the embedded
default config, every listener on a free loopback port (the config's
`OTELPIPE_*_ENDPOINT` variables) and its files in a temporary directory.

- start-up: from spawning the process to `/health/readiness` answering 200, and
  the CPU time (user + system) the process used until then, which a busy
  machine disturbs less than the wall time;
- RSS at readiness, and after `--idle` seconds (default 5) with no traffic
  (VmRSS: resident pages, shared library pages included, as `ps` shows them),
  and the anonymous part of the latter (RssAnon: heap, stacks, Python objects);
- threads after the idle wait;
- the top-level packages the process imported by then: one extra run, started
  through a two-line wrapper that writes `sys.modules` to a file on SIGUSR1,
  signalled after the idle wait (not part of the figures).

With `--otelcol`, the Go Collector (the benchmark peer, scripts/otelcol.sh) runs
with an equivalent config: OTLP gRPC + HTTP receivers, memory_limiter, batch and
the debug exporter (the peer is built without the file exporter and without
extensions, so no health_check: it counts as ready when its OTLP/HTTP receiver,
which starts after the pipelines behind it, answers a request), measured the
same way.

MALLOC_ARENA_MAX and similar allocator settings are removed from the
environment of both, so the figures are what a user gets by default.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ALLOCATOR_VARS = ("MALLOC_ARENA_MAX", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
                  "PYTHONMALLOC", "GODEBUG", "GOGC", "GOMEMLIMIT")
# Libraries that the default config must not load (they belong to other components).
NOT_FOR_DEFAULT = ("aiokafka", "asyncpg", "cramjam", "zstandard", "sqlite3", "psutil")

OTELCOL_CONFIG = """
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{grpc}"}}
      http: {{endpoint: "127.0.0.1:{http}"}}
processors:
  memory_limiter: {{check_interval: 1s, limit_mib: 512, spike_limit_mib: 128}}
  batch: {{send_batch_size: 8192, timeout: 200ms}}
exporters:
  debug: {{verbosity: basic}}
service:
  telemetry:
    metrics: {{level: none}}
  pipelines:
    traces: {{receivers: [otlp], processors: [memory_limiter, batch], exporters: [debug]}}
    logs: {{receivers: [otlp], processors: [memory_limiter, batch], exporters: [debug]}}
    metrics: {{receivers: [otlp], processors: [memory_limiter, batch], exporters: [debug]}}
"""


@dataclass
class Run:
    startup_s: float
    startup_cpu_s: float  # user + system CPU the process used until ready (steadier on a busy box)
    rss_ready_mib: float
    rss_idle_mib: float
    anon_idle_mib: float  # RssAnon: the process's own memory, without shared library pages
    threads: int


@dataclass
class Result:
    name: str
    runs: list[Run] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)
    unwanted: list[str] = field(default_factory=list)  # of NOT_FOR_DEFAULT

    def median(self, attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in self.runs))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ALLOCATOR_VARS}


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until `url` answers 200, or, for a URL ending in `#any`, answers at all."""
    url, _, mode = url.partition("#")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=0.5) as resp:
                if resp.status == 200:
                    return
        except urllib.error.HTTPError:
            if mode == "any":
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise TimeoutError(f"{url} did not answer within {timeout:g}s")


def measure(start: Callable[[Path], tuple[list[str], dict[str, str], str]], idle: float,
            modules_file: Path | None = None) -> Run:
    """Start the process `start(tmpdir)` describes (argv, env, readiness URL), measure it;
    with `modules_file`, SIGUSR1 after the idle wait (the wrapper dumps sys.modules)."""
    with tempfile.TemporaryDirectory(prefix="otelpipe-footprint-") as tmp:
        argv, env, url = start(Path(tmp))
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, env=env, cwd=tmp, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            wait_ready(url, proc)
            startup = time.monotonic() - t0
            startup_cpu = cpu_seconds(proc.pid)
            ready = status(proc.pid, "VmRSS") / 1024
            time.sleep(idle)
            run = Run(startup, startup_cpu, ready, status(proc.pid, "VmRSS") / 1024,
                      status(proc.pid, "RssAnon") / 1024, status(proc.pid, "Threads"))
            if modules_file is not None:
                proc.send_signal(signal.SIGUSR1)
                deadline = time.monotonic() + 10
                while not modules_file.exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
            return run
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# `python -m pipeline run`, plus: on SIGUSR1, write sys.modules to $FOOTPRINT_MODULES.
DUMP_MODULES = (
    "import os, runpy, signal, sys\n"
    "def dump(*_):\n"
    "    with open(os.environ['FOOTPRINT_MODULES'] + '.tmp', 'w') as f:\n"
    "        f.write('\\n'.join(sorted(sys.modules)))\n"
    "    os.rename(os.environ['FOOTPRINT_MODULES'] + '.tmp', os.environ['FOOTPRINT_MODULES'])\n"
    "signal.signal(signal.SIGUSR1, dump)\n"
    "sys.argv = ['otelpipe', 'run']\n"
    "runpy.run_module('pipeline', run_name='__main__', alter_sys=True)\n")


def otelpipe_start(extra: list[str]) -> Callable[[Path], tuple[list[str], dict[str, str], str]]:
    def start(tmp: Path) -> tuple[list[str], dict[str, str], str]:
        health = free_port()
        env = clean_env()
        env.update({
            "OTELPIPE_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
            "OTELPIPE_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
            "OTELPIPE_JSONLOGS_ENDPOINT": f"127.0.0.1:{free_port()}",
            "OTELPIPE_HEALTH_ENDPOINT": f"127.0.0.1:{health}",
            "OTELPIPE_DATA_DIR": str(tmp / "data"),
        })
        if extra:  # the wrapper that reports its modules
            env["FOOTPRINT_MODULES"] = extra[0]
            argv = [sys.executable, "-c", DUMP_MODULES]
        else:
            argv = [sys.executable, "-m", "pipeline", "run"]
        return argv, env, f"http://127.0.0.1:{health}/health/readiness"
    return start


def otelcol_start(binary: str) -> Callable[[Path], tuple[list[str], dict[str, str], str]]:
    def start(tmp: Path) -> tuple[list[str], dict[str, str], str]:
        http = free_port()
        cfg = tmp / "otelcol.yaml"
        cfg.write_text(OTELCOL_CONFIG.format(grpc=free_port(), http=http))
        # GET on an OTLP path: 405 once the receiver listens.
        return [binary, "--config", str(cfg)], clean_env(), f"http://127.0.0.1:{http}/v1/traces#any"
    return start


def imported_packages(modules: list[str]) -> list[str]:
    """The top-level packages of `modules` that are not the standard library's."""
    tops = {m.split(".")[0] for m in modules}
    return sorted(t for t in tops if not t.startswith("_") and t not in sys.stdlib_module_names)


def bench_otelpipe(runs: int, idle: float) -> Result:
    result = Result("otelpipe")
    for _ in range(runs):
        result.runs.append(measure(otelpipe_start([]), idle))
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "modules.txt"
        measure(otelpipe_start([str(dump)]), idle, modules_file=dump)
        if dump.exists():
            modules = dump.read_text().split()
            result.packages = imported_packages(modules)
            tops = {m.split(".")[0] for m in modules}
            result.unwanted = [p for p in NOT_FOR_DEFAULT if p in tops]
    return result


def bench_otelcol(runs: int, idle: float) -> Result:
    binary = subprocess.run([str(REPO / "scripts" / "otelcol.sh"), "path"], check=True,
                            capture_output=True, text=True).stdout.strip()
    if not os.access(binary, os.X_OK):
        raise SystemExit(f"no collector at {binary}: run scripts/otelcol.sh build")
    result = Result("otelcol (Go)")
    for _ in range(runs):
        result.runs.append(measure(otelcol_start(binary), idle))
    return result


def report(results: list[Result], idle: float) -> str:
    idle_col = f"RSS +{idle:g}s"
    lines = [f"{'':14} {'start-up s':>10} {'CPU s':>6} {'RSS ready':>10} {idle_col:>10}"
             f" {'anon':>8} {'threads':>8}   (median of runs; MiB)"]
    for r in results:
        lines.append(f"{r.name:14} {r.median('startup_s'):10.2f} {r.median('startup_cpu_s'):6.2f} "
                     f"{r.median('rss_ready_mib'):10.1f} "
                     f"{r.median('rss_idle_mib'):10.1f} {r.median('anon_idle_mib'):8.1f} "
                     f"{r.median('threads'):8.0f}")
        lines.append("    runs: " + "; ".join(
            f"{x.startup_s:.2f}s ({x.startup_cpu_s:.2f} CPU s) "
            f"{x.rss_ready_mib:.1f}/{x.rss_idle_mib:.1f} MiB"
            for x in r.runs))
        if r.packages:
            lines.append("    packages: " + " ".join(r.packages))
            lines.append("    not needed by the default config, yet imported: "
                         + (" ".join(r.unwanted) or "none"))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle before sampling")
    parser.add_argument("--otelcol", action="store_true", help="also measure the Go Collector")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [bench_otelpipe(args.runs, args.idle)]
    if args.otelcol:
        results.append(bench_otelcol(args.runs, args.idle))
    if args.json:
        print(json.dumps([{"name": r.name, "runs": [asdict(x) for x in r.runs],
                           "packages": r.packages, "unwanted": r.unwanted,
                           "median": {k: r.median(k) for k in
                                      ("startup_s", "startup_cpu_s", "rss_ready_mib",
                                       "rss_idle_mib",
                                       "anon_idle_mib")}}
                          for r in results], indent=2))
    else:
        print(report(results, args.idle))
    return 0


if __name__ == "__main__":
    sys.exit(main())
