"""The README's "Try it" commands, run as written against `otelpipe run` on the
embedded default config, with the outputs the README promises: the health answer,
and the span and the log lines as OTLP JSON lines under ./otelpipe-data.

The only change to the commands: the default ports become free ones (this machine
runs other tests at the same time), moved through the `OTELPIPE_*_ENDPOINT`
variables of the README's "Ports and overrides" table."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from pipeline.cli.ports import PORTS
from tests.support import eventually, free_port, http_get, port_open

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


def section_block(title: str) -> str:
    """The first ```sh block under the heading `title`."""
    section = README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    m = re.search(r"^```sh\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert m, f"no sh block under '## {title}'"
    return m.group(1)


def commands(block: str) -> list[str]:
    """Shell commands: comments dropped, `\\`-continued lines joined."""
    out: list[str] = []
    pending = ""
    for line in block.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        out.append(pending.strip())
        pending = ""
    return out


def test_the_readme_starts_otelpipe_with_no_config() -> None:
    """What test_try_it starts (`python -m pipeline run`, the same command)."""
    assert commands(section_block("Set-up"))[0].endswith("&& otelpipe run")
    assert "as OTLP JSON lines in `./otelpipe-data/`" in README


def ready(health: int) -> bool:
    return port_open(health) and http_get(
        f"http://127.0.0.1:{health}/health/readiness")[0] == 200


def test_try_it(tmp_path: Path) -> None:
    ports = {p.port: free_port() for p in PORTS}
    env = {p.variable: f"localhost:{ports[p.port]}" for p in PORTS}
    health = ports[13133]

    def localize(command: str) -> str:
        return re.sub(r"\blocalhost:(\d+)\b",
                      lambda m: f"localhost:{ports[int(m[1])]}", command)

    cmds = commands(section_block("Try it"))
    assert len(cmds) == 4, cmds
    for c in cmds:
        for m in re.finditer(r"\blocalhost:(\d+)\b", c):
            assert int(m[1]) in ports, f"README uses port {m[1]}, not in the ports table"

    log = tmp_path / "otelpipe.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run"], cwd=tmp_path,
                                env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        # Readiness, not the health port: the health extension listens before the
        # receivers do, and on a loaded machine the gap is long enough to matter.
        eventually(lambda: ready(health) or proc.poll() is not None,
                   what="otelpipe to be ready (every component started)")
        assert proc.poll() is None, log.read_text()

        def run(command: str) -> str:
            done = subprocess.run(["bash", "-c", localize(command)], cwd=tmp_path,
                                  capture_output=True, text=True, timeout=30, check=False)
            assert done.returncode == 0, (command, done.stderr)
            return done.stdout

        span, logs, readiness, tail = cmds
        assert orjson.loads(run(span) or "{}").get("partialSuccess") in (None, {})
        run(logs)
        assert orjson.loads(run(readiness))["status"] == "ready"

        data = tmp_path / "otelpipe-data"
        eventually(lambda: (data / "traces.jsonl").exists()
                   and b'"GET /"' in (data / "traces.jsonl").read_bytes(),
                   what="the span in otelpipe-data/traces.jsonl")
        eventually(lambda: (data / "logs.jsonl").exists()
                   and b"plain line" in (data / "logs.jsonl").read_bytes(),
                   what="both log lines in otelpipe-data/logs.jsonl")

        shown = run(tail)
        assert "==> otelpipe-data/traces.jsonl <==" in shown
        assert "5b8efff798038103d269b633813fc60c" in shown
        assert "==> otelpipe-data/logs.jsonl <==" in shown
        assert "hello" in shown
        assert "plain line" in shown
        records = [orjson.loads(line) for line in
                   (data / "logs.jsonl").read_text().splitlines()]
        bodies = [r["body"]["stringValue"] for line in records
                  for rl in line["resourceLogs"] for sl in rl["scopeLogs"]
                  for r in sl["logRecords"]]
        assert bodies == ["hello", "plain line"]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, log.read_text()
