"""Peers of the template benchmark: LOGPAI's Brain and Drain from `logparser3` (PyPI),
each with the per-system settings its own benchmark publishes (regexes, thresholds,
depth), on the raw Loghub 2k files.

It runs in a virtualenv of its own (logparser3 pins `regex==2022.3.2` and pulls pandas,
scipy and scikit-learn, which otelpipe does not need):

    python -m venv ~/.cache/otelpipe/logparser3-venv
    ~/.cache/otelpipe/logparser3-venv/bin/pip install logparser3==1.0.4
    ~/.cache/otelpipe/logparser3-venv/bin/python benchmarks/loghub_logparser3.py \\
        --loghub ../shared/data/loghub --systems HDFS,Linux > peers.json

`benchmarks/logstruct_templates.py --logparser3 VENV_PYTHON` runs it and scores the
result with the same accuracy functions as ours. Printed JSON, per system and parser:
the event id and template of every line (in file order) and the CPU seconds of
`parse()` (which also reads the file and writes its CSV: an upper bound of the
parsing cost).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import csv
import importlib.util
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def published_settings(parser: str) -> dict[str, dict[str, Any]]:
    """`benchmark_settings` of logparser3's own benchmark script for `parser`, read
    without running that script (it parses every system when imported)."""
    spec = importlib.util.find_spec(f"logparser.{parser}")
    if spec is None or spec.origin is None:
        raise SystemExit(f"logparser3 not installed (no logparser.{parser})")
    source = Path(spec.origin).with_name("benchmark.py").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "benchmark_settings" for t in node.targets):
            settings: dict[str, dict[str, Any]] = ast.literal_eval(node.value)
            return settings
    raise SystemExit(f"no benchmark_settings in logparser.{parser}'s benchmark.py")


def run(parser: str, system: str, setting: dict[str, Any], loghub: Path,
        out: Path, brain_threshold: int | None = None) -> dict[str, Any]:
    from logparser import Brain, Drain

    indir = str(loghub / system)
    log_file = f"{system}_2k.log"
    if parser == "Brain":
        p: Any = Brain.LogParser(log_format=setting["log_format"], indir=indir,
                                 outdir=str(out), rex=setting["regex"],
                                 delimeter=setting["delimiter"],
                                 threshold=brain_threshold or setting["theshold"],
                                 logname=system)
    else:
        p = Drain.LogParser(log_format=setting["log_format"], indir=indir, outdir=str(out),
                            rex=setting["regex"], depth=setting["depth"], st=setting["st"])
    t0 = time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):  # progress lines would break the JSON
        p.parse(log_file)
    cpu = time.process_time() - t0
    with (out / f"{log_file}_structured.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {"event_ids": [r["EventId"] for r in rows],
            "templates": [r["EventTemplate"] for r in rows], "cpu_s": cpu}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loghub", required=True, type=Path)
    ap.add_argument("--systems", required=True)
    ap.add_argument("--brain-threshold", type=int, default=None,
                    help="one threshold for every system instead of the published ones")
    args = ap.parse_args()
    result: dict[str, dict[str, Any]] = {}
    settings = {name: published_settings(name) for name in ("Brain", "Drain")}
    with tempfile.TemporaryDirectory() as tmp:
        for system in args.systems.split(","):
            result[system] = {}
            for name in ("Brain", "Drain"):
                out = Path(tmp) / name / system
                os.makedirs(out)
                result[system][name.lower()] = run(name, system, settings[name][system],
                                                   args.loghub, out, args.brain_threshold)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
