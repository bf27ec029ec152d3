"""Hostile configs against the real `otelpipe validate` command: a YAML alias bomb
("billion laughs") and 20,000-deep nesting are refused with a clear message and
exit code 2, quickly and in little memory (the child's own CPU time and peak RSS,
from `os.wait4`), never a RecursionError traceback.

Before the loader was bounded, the bomb ran past 30 s at more than 1.1 GB and the
deep nesting ended in a RecursionError traceback (exit 1)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

MAX_RSS_KB = 200 * 1024
MAX_CPU_S = 2.0
MAX_WALL_S = 2.0


def laughs() -> str:
    rows = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    rows += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join(rows) + "\nservice: {pipelines: {}}\n"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    wall: float
    cpu: float
    max_rss_kb: int


# Runs the command as the only child of a small interpreter and reports that child's
# rusage: a child forked straight from pytest starts with pytest's RSS (hundreds of MB
# late in the suite), so its ru_maxrss would say nothing about the loader.
_MEASURE = """
import json, os, subprocess, sys, time
with open(sys.argv[1], "wb") as o, open(sys.argv[2], "wb") as e:
    started = time.monotonic()
    proc = subprocess.Popen(sys.argv[3:], stdout=o, stderr=e)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
print(json.dumps([os.waitstatus_to_exitcode(status), wall,
                  usage.ru_utime + usage.ru_stime, usage.ru_maxrss]))
"""


def validate(tmp_path: Path, text: str) -> Run:
    """`otelpipe validate -c <file>`: exit code, output, wall and CPU time, peak RSS."""
    config = tmp_path / "config.yaml"
    config.write_text(text)
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    measured = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(out), str(err),
         sys.executable, "-m", "pipeline", "validate", "-c", str(config)],
        capture_output=True, text=True, check=True, timeout=120)
    code, wall, cpu, max_rss_kb = json.loads(measured.stdout)
    return Run(code, out.read_text(), err.read_text(), wall, cpu, max_rss_kb)


@pytest.fixture(scope="module")
def baseline_wall(tmp_path_factory: pytest.TempPathFactory) -> float:
    """Wall time of validating a tiny valid config now: on a busy machine the
    interpreter's start-up alone can take seconds, which says nothing of the loader."""
    run = validate(tmp_path_factory.mktemp("baseline"),
                   "receivers: {otlp: {protocols: {http: {}}}}\nexporters: {nop: {}}\n"
                   "service: {pipelines: {traces: {receivers: [otlp], exporters: [nop]}}}\n")
    assert run.code == 0, run.stderr
    return run.wall


@pytest.mark.parametrize(("text", "problem"), [
    (laughs(), "config.yaml:6:5: config has more than 100000 YAML nodes once its aliases "
               "are expanded (an alias bomb?)"),
    ("a: " + "[" * 20_000 + "]" * 20_000 + "\n",
     "config.yaml:1:103: config nested deeper than 100 levels"),
    ("a: " + "{a: " * 20_000 + "1" + "}" * 20_000 + "\n",
     "config.yaml:1:397: config nested deeper than 100 levels"),
], ids=["alias-bomb", "deep-sequences", "deep-mappings"])
def test_hostile_config_is_refused_quickly_in_little_memory(
        tmp_path: Path, baseline_wall: float, text: str, problem: str) -> None:
    run = validate(tmp_path, text)
    assert run.code == 2, run.stderr
    assert run.stdout == ""
    assert run.stderr == f"invalid configuration (1 problem):\n  error: {tmp_path}/{problem}\n"
    assert "Traceback" not in run.stderr
    assert run.cpu < MAX_CPU_S, run
    assert run.wall < max(MAX_WALL_S, 3 * baseline_wall), (run, baseline_wall)
    assert run.max_rss_kb < MAX_RSS_KB, run
