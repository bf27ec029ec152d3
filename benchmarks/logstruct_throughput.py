"""Lines per CPU-second through `filelog -> logstruct -> nop`, per log format.

For each case a synthetic file (default 200k lines) is generated in a temp dir; a real
otelpipe process is started watching an empty directory; once it is up, the file is
renamed into the directory (a new file: read from the start) and the process's CPU
time is measured until its receiver has had every line accepted downstream
(`otelpipe_receiver_accepted_items_total` on the health extension's /metrics).

Cases: `raw` (filelog -> nop, no parsing: the receiver alone), JSON lines, logfmt,
nginx combined, syslog RFC 3164, mixed formats with auto-detection and template
mining, a five-pattern grok config. With `--peer`, the Go Collector's filelog
receiver with a regex_parser operator -> nop runs the nginx file for comparison.

`--exporters` picks what ends the pipeline (one row per case and exporter):
`nop` discards batches as they are (what issue 4 measures: the records may never
become OTLP); `nop_serialize` encodes every batch as OTLP protobuf first (what an
OTLP/Kafka exporter pays on top); `file_json` writes flat JSON lines (`file`
exporter, `format: json`) to /dev/null.

    python -m benchmarks.logstruct_throughput [--lines 200000] [--raw-lines 1000000]
                                              [--cases raw,json,...] [--peer] [--batch 1000]
                                              [--exporters nop,nop_serialize,file_json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    cpu_seconds,
    free_port,
    peak_rss_mib,
    start_target,
    write_result,
)

# ---------------------------------------------------------------------------------------
# synthetic input
# The synthetic input is the tests' line generator (one copy): shapes of each format.
from tests.unit.processors.logstruct.linegen import (
    GROK_PATTERNS,
    line_grok,
    line_json,
    line_logfmt,
    line_mixed,
    line_nginx,
    line_syslog,
)

NGINX_REGEX = (r'^(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] '
               r'"(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]+)" (?P<status>\d{3}) '
               r'(?P<size>\d+|-) "(?P<referrer>[^"]*)" "(?P<agent>[^"]*)"$')

CASES: dict[str, tuple[Any, dict[str, Any] | None]] = {
    "raw": (line_nginx, None),
    "json": (line_json, {"parsers": [{"type": "json"}]}),
    "logfmt": (line_logfmt, {"parsers": [{"type": "logfmt"}]}),
    "nginx": (line_nginx, {"parsers": [{"type": "access_log"}]}),
    "syslog": (line_syslog, {"parsers": [{"type": "syslog", "protocol": "rfc3164"}]}),
    "mixed_auto_templates": (line_mixed, {"auto": True, "templates": {"enabled": True}}),
    "grok5": (line_grok, {"parsers": [{"type": "grok", "pattern": GROK_PATTERNS}]}),
}


def generate(path: Path, make: Any, n: int) -> int:
    r = random.Random(42)
    size = 0
    with open(path, "w") as f:
        for start in range(0, n, 10000):
            chunk = "".join(make(r, i) + "\n" for i in range(start, min(n, start + 10000)))
            size += len(chunk.encode())
            f.write(chunk)
    return size


# ---------------------------------------------------------------------------------------
# running


def logstruct_available() -> bool:
    from pipeline.component import Kind
    from pipeline.registry import default_registry
    return default_registry().get(Kind.PROCESSOR, "logstruct") is not None


def metric(port: int, name: str, label: str | None = None) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (label is None or label in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


EXPORTERS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "nop": ("nop", None),
    "nop_serialize": ("nop", {"serialize": True}),
    "file_json": ("file", {"path": "/dev/null", "format": "json"}),
}


def otelpipe_config(watch: Path, state: Path, health: int, logstruct: dict | None,
                    batch: int, exporter: str = "nop") -> dict:
    exp_type, exp_cfg = EXPORTERS[exporter]
    cfg: dict[str, Any] = {
        "receivers": {"filelog": {"include": [str(watch / "*.log")], "start_at": "beginning",
                                  "storage_dir": str(state), "poll_interval": "100ms",
                                  "max_batch_lines": batch}},
        "exporters": {exp_type: exp_cfg},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"extensions": ["health"],
                    "pipelines": {"logs": {"receivers": ["filelog"],
                                           "exporters": [exp_type]}}},
    }
    if logstruct is not None:
        cfg["processors"] = {"logstruct": logstruct}
        cfg["service"]["pipelines"]["logs"]["processors"] = ["logstruct"]
    return cfg


def peer_config(watch: Path, metrics_port: int, parse: bool) -> dict:
    ops = [{"type": "regex_parser", "regex": NGINX_REGEX}] if parse else []
    return {
        "receivers": {"filelog": {"include": [str(watch / "*.log")], "start_at": "beginning",
                                  "operators": ops}},
        "exporters": {"nop": None},
        "service": {
            "telemetry": {"metrics": {"level": "normal", "readers": [{"pull": {"exporter": {
                "prometheus": {"host": "127.0.0.1", "port": metrics_port}}}}]}},
            "pipelines": {"logs": {"receivers": ["filelog"], "exporters": ["nop"]}}},
    }


def measure(kind: str, case: str, src: Path, lines: int, logstruct: dict | None,
            batch: int, timeout: float, exporter: str = "nop") -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"lsbench-{case}-"))
    watch = work / "watch"
    watch.mkdir()
    port = free_port()
    if kind == "otelpipe":
        cfg = otelpipe_config(watch, work / "state", port, logstruct, batch, exporter)
        accepted: tuple[str, str | None] = ("otelpipe_receiver_accepted_items_total",
                                            'receiver="filelog"')
    else:
        cfg = peer_config(watch, port, parse=case != "raw")
        accepted = ("otelcol_receiver_accepted_log_records", None)
    try:
        with start_target(kind, cfg, [port]) as t:
            time.sleep(0.5)  # let start-up work finish
            cpu0 = cpu_seconds(t.pid)
            wall0 = time.monotonic()
            os.link(src, watch / "input.log")  # appears at once, whole
            deadline = wall0 + timeout
            done = 0.0
            while done < lines:
                if time.monotonic() > deadline or t.proc.poll() is not None:
                    tail = t.log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{kind}/{case}: {done:.0f} of {lines} lines after "
                                       f"{timeout}s\n{tail}")
                time.sleep(0.1)
                done = metric(port, *accepted)
            cpu = cpu_seconds(t.pid) - cpu0
            wall = time.monotonic() - wall0
            rss = peak_rss_mib(t.pid)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"target": kind, "case": case, "exporter": exporter if kind == "otelpipe" else "nop",
            "lines": lines, "cpu_s": round(cpu, 3),
            "lines_per_cpu_s": round(lines / cpu) if cpu else None,
            "wall_s": round(wall, 3), "peak_rss_mib": round(rss, 1)}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--lines", type=int, default=200_000)
    p.add_argument("--raw-lines", type=int, default=1_000_000,
                   help="lines for the `raw` case (cheap per line: more lines, finer CPU "
                        "resolution)")
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--batch", type=int, default=1000, help="filelog max_batch_lines")
    p.add_argument("--peer", action="store_true", help="also run the Go Collector (nginx)")
    p.add_argument("--exporters", default="nop",
                   help=f"comma-separated, of {', '.join(EXPORTERS)} (one row each)")
    p.add_argument("--timeout", type=float, default=600)
    args = p.parse_args()
    have_logstruct = logstruct_available()
    if not have_logstruct:
        print("logstruct processor not registered: running filelog -> nop only", flush=True)
    data = Path(tempfile.mkdtemp(prefix="lsbench-data-"))
    rows = []
    try:
        for case in args.cases.split(","):
            make, ls_cfg = CASES[case]
            if ls_cfg is not None and not have_logstruct:
                continue
            src = data / f"{case}.log"
            n = args.raw_lines if case == "raw" else args.lines
            size = generate(src, make, n)
            row = None
            for exporter in args.exporters.split(","):
                r = measure("otelpipe", case, src, n, ls_cfg, args.batch, args.timeout,
                            exporter)
                r["bytes"] = size
                rows.append(r)
                row = row or r
                print(f"otelpipe {case:22} {exporter:14} {r['lines_per_cpu_s']:>10,} "
                      f"lines/CPU-s  cpu {r['cpu_s']:6.2f}s  wall {r['wall_s']:6.2f}s  "
                      f"peak RSS {r['peak_rss_mib']:6.1f} MiB", flush=True)
            assert row is not None
            if args.peer and case in ("nginx", "raw"):
                peer = measure("otelcol", case, src, n, None, args.batch, args.timeout)
                peer["bytes"] = size
                what = "filelog -> nop" if case == "raw" else "filelog + regex_parser -> nop"
                peer["note"] = what
                rows.append(peer)
                print(f"otelcol  {case:22} {'nop':14} {peer['lines_per_cpu_s']:>10,} lines/CPU-s  "
                      f"cpu {peer['cpu_s']:6.2f}s  wall {peer['wall_s']:6.2f}s  "
                      f"peak RSS {peer['peak_rss_mib']:6.1f} MiB  ({what})", flush=True)
                row["ratio_to_peer"] = round(row["lines_per_cpu_s"] / peer["lines_per_cpu_s"], 3)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    result = {"date": dt.datetime.now(dt.UTC).isoformat(), "python": sys.version.split()[0],
              "logstruct": have_logstruct, "max_batch_lines": args.batch, "rows": rows}
    path = write_result("logstruct_throughput", result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

