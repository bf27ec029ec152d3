"""Header-field accuracy and throughput of the `logstruct` processor on the Loghub 2k samples.

    python benchmarks/logstruct_headers.py [--repeat 5] [--json]

Each system's header layout (the table in ../shared/data/loghub/README.md) is
written below as one grok or regex parser config. The real processor
(`LogStructProcessor.process`) runs over Batches of the 2,000 raw lines; the
records that come out are compared with `<System>_2k.log_structured.csv`.

A line is *fully correct* when all of these hold:

- timestamp: the record's `time_unix_nano` (the normalised time, read as UTC,
  since these stamps carry no zone), rendered with the system's own layout,
  equals the ground truth's date/time columns, column by column. Year-less
  layouts (Linux, OpenSSH, Proxifier) are rendered without a year. Columns the
  CSV stores as numbers lost their leading zeros (HDFS `081109` -> `81109`), so
  purely numeric columns compare as integers.
- level: `severity_text` equals the `Level` column exactly (systems that have one);
- component: the attribute the layout's component lands in equals the
  `Component` column exactly (or `Program` for Proxifier).

Loghub's column names do not always mean what they say: Linux's `Level` column
holds the host name (`combo`) and OpenSSH's `Component` the host (`LabSZ`); we
compare them with `host.name`, where the parser puts a host.

Nothing is read from the CSV while parsing; the configs are the README's layouts.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pipeline.component import Signal  # noqa: E402
from pipeline.pdata.anyvalue import any_value  # noqa: E402
from pipeline.pdata.batch import Batch  # noqa: E402
from pipeline.processors.logstruct.config import LogStructConfig  # noqa: E402
from pipeline.processors.logstruct.processor import LogStructProcessor  # noqa: E402
from tests.support import Sink, processor_settings  # noqa: E402

LOGHUB = Path(__file__).resolve().parents[2] / "shared" / "data" / "loghub"


@dataclass
class System:
    name: str
    parser: dict[str, Any]
    # (ground-truth column, strftime layout of that column; %3f = milliseconds)
    time_cols: list[tuple[str, str]]
    # (ground-truth column, output field: "severity_text" or an attribute name)
    fields: list[tuple[str, str]] = field(default_factory=list)


SYSTEMS = [
    System("HDFS",
           {"type": "regex", "pattern": r"^(?P<timestamp>\d{6} \d{6}) (?P<pid>\d+) "
                                        r"(?P<level>[A-Z]+) (?P<component>\S+?): (?P<message>.*)"},
           [("Date", "%y%m%d"), ("Time", "%H%M%S")],
           [("Level", "severity_text"), ("Component", "log.logger")]),
    System("Hadoop",
           {"type": "grok", "pattern": r"^%{TIMESTAMP_ISO8601:timestamp} %{LOGLEVEL:level} "
                                       r"\[%{DATA:thread}\] %{DATA:component}: "
                                       r"%{GREEDYDATA:message}"},
           [("Date", "%Y-%m-%d"), ("Time", "%H:%M:%S,%3f")],
           [("Level", "severity_text"), ("Component", "log.logger")]),
    System("Spark",
           {"type": "grok", "pattern": r"^(?<timestamp>\d\d/\d\d/\d\d %{TIME}) %{LOGLEVEL:level} "
                                       r"%{DATA:component}: %{GREEDYDATA:message}"},
           [("Date", "%y/%m/%d"), ("Time", "%H:%M:%S")],
           [("Level", "severity_text"), ("Component", "log.logger")]),
    System("Zookeeper",
           {"type": "grok", "pattern": r"^%{TIMESTAMP_ISO8601:timestamp} - %{LOGLEVEL:level} +"
                                       r"\[(?<node>[^:]*):(?<component>[^@]*)@%{INT:line:int}\]"
                                       r" - %{GREEDYDATA:message}"},
           [("Date", "%Y-%m-%d"), ("Time", "%H:%M:%S,%3f")],
           [("Level", "severity_text"), ("Component", "log.logger")]),
    System("Linux",
           {"type": "grok", "pattern": r"^(?<timestamp>%{SYSLOGTIMESTAMP}) %{NOTSPACE:host} +"
                                       r"(?<component>[^\[:]+?)(?:\[%{INT:pid}\])?: "
                                       r"%{GREEDYDATA:message}"},
           [("Month", "%b"), ("Date", "%d"), ("Time", "%H:%M:%S")],
           [("Level", "host.name"), ("Component", "log.logger")]),
    System("Apache",
           {"type": "grok", "pattern": r"^\[%{HTTPDERROR_DATE:timestamp}\] \[%{LOGLEVEL:level}\] "
                                       r"%{GREEDYDATA:message}"},
           [("Time", "%a %b %d %H:%M:%S %Y")],
           [("Level", "severity_text")]),
    System("Proxifier",
           {"type": "grok", "pattern": r"^\[(?<timestamp>\d\d\.\d\d %{TIME})\] %{DATA:program} - "
                                       r"%{GREEDYDATA:message}",
            "time_format": "%m.%d %H:%M:%S"},
           [("Time", "%m.%d %H:%M:%S")],
           [("Program", "process.executable.name")]),
    System("OpenSSH",
           {"type": "grok", "pattern": r"^(?<timestamp>%{SYSLOGTIMESTAMP}) %{NOTSPACE:host} "
                                       r"%{PROG:program}\[%{INT:pid}\]: %{GREEDYDATA:message}"},
           [("Date", "%b"), ("Day", "%d"), ("Time", "%H:%M:%S")],
           [("Component", "host.name")]),
]


def read_lines(system: str) -> list[str]:
    raw = (LOGHUB / system / f"{system}_2k.log").read_bytes()
    return [ln.rstrip(b"\r").decode("utf-8", errors="replace")
            for ln in raw.split(b"\n") if ln.strip()]


def read_truth(system: str) -> list[dict[str, str]]:
    with open(LOGHUB / system / f"{system}_2k.log_structured.csv", newline="",
              encoding="utf-8", errors="replace") as f:
        return list(csv.DictReader(f))


def make_batch(lines: list[str]) -> Batch:
    req = ExportLogsServiceRequest()
    recs = req.resource_logs.add().scope_logs.add().log_records
    for ln in lines:
        recs.add(observed_time_unix_nano=1, body={"string_value": ln})
    return Batch(Signal.LOGS, raw=req.SerializeToString())


def make_processor(system: System) -> LogStructProcessor:
    cfg = LogStructConfig.model_validate({"parsers": [system.parser]})
    settings = processor_settings(f"logstruct/{system.name.lower()}",
                                  next_consumer=Sink(), signal=Signal.LOGS)
    return LogStructProcessor(settings, cfg)


def render(ns: int, layout: str) -> str:
    t = dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC)
    return t.strftime(layout.replace("%3f", f"{ns // 1_000_000 % 1000:03d}"))


def same(got: str | None, want: str) -> bool:
    if got is None:
        return False
    if got == want:
        return True
    try:  # numeric CSV columns lost leading zeros (081109 -> 81109, 19939 -> 19939.0)
        return float(got) == float(want)
    except ValueError:
        return False


def evaluate(system: System, repeat: int) -> dict[str, Any]:
    lines = read_lines(system.name)
    truth = read_truth(system.name)
    if len(lines) != len(truth):
        raise SystemExit(f"{system.name}: {len(lines)} lines but {len(truth)} ground-truth rows")
    proc = make_processor(system)
    batch = make_batch(lines)
    proc.process(batch)
    records = list(batch.message.resource_logs[0].scope_logs[0].log_records)

    ok_time = ok_fields = ok_all = errors = 0
    examples: list[str] = []
    for lr, row, line in zip(records, truth, lines, strict=True):
        attrs = {kv.key: any_value(kv.value) for kv in lr.attributes}
        if "log.parse_error" in attrs:
            errors += 1
        t_ok = bool(lr.time_unix_nano) and all(
            same(render(lr.time_unix_nano, layout), row[col]) for col, layout in system.time_cols)
        f_ok = True
        for col, out in system.fields:
            got = lr.severity_text if out == "severity_text" else attrs.get(out)
            if not same(None if got is None else str(got), row[col]):
                f_ok = False
        ok_time += t_ok
        ok_fields += f_ok
        if t_ok and f_ok:
            ok_all += 1
        elif len(examples) < 3:
            examples.append(line[:160])

    # Throughput: fresh batches of the same lines through process(), CPU time only.
    batches = [make_batch(lines) for _ in range(repeat)]
    t0 = time.process_time()
    for b in batches:
        proc.process(b)
    cpu = time.process_time() - t0
    n = len(lines)
    return {"system": system.name, "lines": n, "timestamp": ok_time / n, "fields": ok_fields / n,
            "correct": ok_all / n, "parse_errors": errors,
            "lines_per_cpu_s": n * repeat / cpu if cpu else float("inf"),
            "wrong_examples": examples}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="batches of 2k lines timed per system")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("systems", nargs="*", help="subset of systems (default: all eight)")
    args = ap.parse_args(argv)
    chosen = [s for s in SYSTEMS if not args.systems or s.name in args.systems]
    results = [evaluate(s, args.repeat) for s in chosen]
    avg = sum(r["correct"] for r in results) / len(results)
    if args.json:
        print(json.dumps({"systems": results, "average_correct": avg}, indent=2))
        return 0
    print(f"{'system':<10} {'time ok':>8} {'lvl/comp':>9} {'correct':>8} {'errors':>7} "
          f"{'lines/CPU-s':>12}")
    for r in results:
        print(f"{r['system']:<10} {r['timestamp']:>8.2%} {r['fields']:>9.2%} {r['correct']:>8.2%} "
              f"{r['parse_errors']:>7} {r['lines_per_cpu_s']:>12,.0f}")
        for ex in r["wrong_examples"]:
            print(f"    wrong: {ex}")
    print(f"{'average':<10} {'':>8} {'':>9} {avg:>8.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
