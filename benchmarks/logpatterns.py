"""The `logpatterns` connector's cost per record, on real log lines (Loghub 2k samples).

Each system's lines are mined once by `logstruct`'s `TemplateMiner` (not timed), then
sent as OTLP log batches of 1,000 records (`service.name` = the system, the line as the
body, `log.template` / `log.template_id` and three other attributes) through the
connector's `consume` — protobuf decode of the batch included — with a clock that moves
one second per batch. Reported: CPU µs per record (`time.process_time`, best of
`--reps`), and the cost of one flush-time `tick` over every pattern.

    python benchmarks/logpatterns.py [--reps 5]
    python benchmarks/logpatterns.py --pipeline [--lines 100000] [--rounds 2]

`--pipeline`: lines per CPU-second of a real otelpipe process, `filelog -> logstruct
(auto, templates on) -> nop` against the same with `logpatterns` added (logs -> nop
and the connector, or with `--alone` the connector instead of nop; its metrics ->
nop), alternated, on the mixed-format synthetic file
of `benchmarks/logstruct_throughput.py`.

The data is read from `LOGHUB_DIR` (default: `../shared/data/loghub` from the
repository, or /work/shared/data/loghub).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from pipeline.component import Signal
from pipeline.connectors.logpatterns.config import LogPatternsConfig
from pipeline.connectors.logpatterns.connector import LogPatternsConnector
from pipeline.pdata.batch import Batch
from pipeline.processors.logstruct.templates import TemplateMiner, TemplateSettings
from tests.support import connector_settings

SYSTEMS = ("Apache", "HDFS", "Hadoop", "Linux", "OpenSSH", "Proxifier", "Spark", "Zookeeper")
BATCH = 1000


class _Clock:
    def __init__(self, now: list[int]):
        self.now = now

    def __call__(self) -> int:
        return self.now[0]


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def batches(system: str, lines: Sequence[str]) -> list[bytes]:
    miner = TemplateMiner(TemplateSettings(enabled=True))
    out = []
    for start in range(0, len(lines), BATCH):
        req = ExportLogsServiceRequest()
        rl = req.resource_logs.add()
        rl.resource.attributes.append(_kv("service.name", system))
        sl = rl.scope_logs.add()
        for line in lines[start:start + BATCH]:
            tid, template = miner.match(line)
            lr = sl.log_records.add(severity_number=9, severity_text="INFO")
            lr.body.string_value = line
            lr.attributes.extend([_kv("log.file.name", f"{system}.log"),
                                  _kv("thread", "main"), _kv("logger", "app"),
                                  _kv("log.template", template), _kv("log.template_id", tid)])
        out.append(req.SerializeToString())
    return out


async def measure(raws: list[bytes], reps: int) -> tuple[float, float, int]:
    best = float("inf")
    tick_ms = 0.0
    patterns = 0
    n = sum(ExportLogsServiceRequest.FromString(r).resource_logs[0].scope_logs[0]
            .log_records.__len__() for r in raws)
    for _ in range(reps):
        now = [1_700_000_000_000_000_000]
        c = LogPatternsConnector(connector_settings("logpatterns"),
                                 LogPatternsConfig(warmup=0), clock=_Clock(now))
        start = time.process_time()
        for raw in raws:
            now[0] += 1_000_000_000
            await c.consume(Batch(Signal.LOGS, raw=raw))
        best = min(best, (time.process_time() - start) / n * 1e6)
        now[0] += 600_000_000_000
        t = time.process_time()
        await c.tick()
        tick_ms = (time.process_time() - t) * 1000
        patterns = len(c.patterns)
    return best, tick_ms, patterns


def pipeline_cost(lines: int, rounds: int, alone: bool = False) -> None:
    import tempfile
    from unittest import mock

    from benchmarks import logstruct_throughput as lt

    src = Path(tempfile.mkdtemp(prefix="lpbench-")) / "mixed.log"
    from tests.unit.processors.logstruct.linegen import line_mixed

    lt.generate(src, line_mixed, lines)
    n = lines
    logstruct = {"auto": True, "templates": {"enabled": True}}
    base_config = lt.otelpipe_config

    def with_patterns(*a: object, **kw: object) -> dict[str, object]:
        cfg: dict[str, object] = base_config(*a, **kw)  # type: ignore[arg-type]
        cfg["connectors"] = {"logpatterns": {}}
        service = cfg["service"]
        assert isinstance(service, dict)
        service["pipelines"]["logs"]["exporters"] = ["logpatterns"] if alone \
            else ["nop", "logpatterns"]
        service["pipelines"]["metrics"] = {"receivers": ["logpatterns"], "exporters": ["nop"]}
        return cfg

    results: dict[str, list[float]] = {"without": [], "with logpatterns": []}
    for _ in range(rounds):
        for name in results:
            patch = mock.patch.object(lt, "otelpipe_config",
                                      with_patterns if name != "without" else base_config)
            with patch:
                r = lt.measure("otelpipe", "mixed_auto_templates", src, n, logstruct, 1000,
                               600)
            results[name].append(float(r["lines_per_cpu_s"] or 0))
            print(f"{name:<18} {r['lines_per_cpu_s']:>8} lines/CPU-s  ({r['cpu_s']} CPU-s)")
    best = {k: max(v) for k, v in results.items()}
    print(f"best: without {best['without']:.0f}, with {best['with logpatterns']:.0f} "
          f"lines/CPU-s: {best['with logpatterns'] / best['without']:.3f}x")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--pipeline", action="store_true")
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--alone", action="store_true", help="logs go to the connector only "
                    "(no fan-out to a second exporter, which copies the records)")
    args = ap.parse_args(argv)
    if args.pipeline:
        pipeline_cost(args.lines, args.rounds, args.alone)
        return 0
    default = Path(__file__).resolve().parents[2] / "shared/data/loghub"
    root = Path(os.environ.get("LOGHUB_DIR") or (default if default.exists()
                                                 else "/work/shared/data/loghub"))
    from benchmarks.logstruct_templates import load_system

    os.environ["LOGHUB_DIR"] = str(root)
    print(f"{'system':<10} {'records':>8} {'patterns':>9} {'µs/record':>10} {'tick ms':>8}")
    total_us = []
    for system in SYSTEMS:
        lines, _ = load_system(system)
        raws = batches(system, lines)
        us, tick_ms, patterns = asyncio.run(measure(raws, args.reps))
        total_us.append(us)
        print(f"{system:<10} {len(lines):>8} {patterns:>9} {us:>10.2f} {tick_ms:>8.2f}")
    print(f"{'average':<10} {'':>8} {'':>9} {sum(total_us) / len(total_us):>10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
