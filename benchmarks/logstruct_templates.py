"""Template mining on the Loghub 2k samples: grouping accuracy and throughput vs drain3.

For each system, the `Content` column of `<S>_2k.log_structured.csv` (headers
already stripped) goes through our `TemplateMiner` and through drain3's
`TemplateMiner` with the same masks (the same regexes, replaced by `<*>`) and
the same Drain parameters (similarity threshold, depth, max children).

Grouping accuracy (Loghub's definition): a line is correct when the set of
lines given its template id equals the set of lines given its ground-truth
`EventId`. Throughput: lines per CPU-second (`time.process_time`), best of
several repetitions, each repetition a fresh miner over the same messages.

    python benchmarks/logstruct_templates.py [--reps 5] [--systems HDFS,Apache]

The data is read from `../shared/data/loghub` (override: `LOGHUB_DIR`); it is
never copied into the repository.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.processors.logstruct.masks import DEFAULT_MASKS, mask_regex
from pipeline.processors.logstruct.templates import TemplateMiner, TemplateSettings

SYSTEMS = ("HDFS", "Hadoop", "Spark", "Zookeeper", "Linux", "Apache", "Proxifier", "OpenSSH")


def loghub_dir() -> Path:
    env = os.environ.get("LOGHUB_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared/data/loghub"


def load_system(system: str) -> tuple[list[str], list[str]]:
    path = loghub_dir() / system / f"{system}_2k.log_structured.csv"
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["Content"] for r in rows], [r["EventId"] for r in rows]


def grouping_accuracy(predicted: Sequence[str], truth: Sequence[str]) -> float:
    """Share of lines whose predicted group is exactly their ground-truth group."""
    by_pred: dict[str, list[int]] = defaultdict(list)
    by_truth: dict[str, list[int]] = defaultdict(list)
    for i, (p, t) in enumerate(zip(predicted, truth, strict=True)):
        by_pred[p].append(i)
        by_truth[t].append(i)
    correct = 0
    for members in by_truth.values():
        # lines of one true event are all correct iff they all share one
        # predicted group and that group holds nothing else
        first = predicted[members[0]]
        if by_pred[first] == members:
            correct += len(members)
    return correct / len(truth) if truth else 1.0


# -- the two miners ---------------------------------------------------------------

def ours_factory(settings: TemplateSettings) -> Callable[[], Callable[[str], str]]:
    def make() -> Callable[[str], str]:
        miner = TemplateMiner(settings)
        match = miner.match

        def run(message: str) -> str:
            return match(message)[0]
        return run
    return make


def drain3_factory(settings: TemplateSettings) -> Callable[[], Callable[[str], str]]:
    from drain3 import TemplateMiner as Drain3Miner
    from drain3.masking import MaskingInstruction
    from drain3.template_miner_config import TemplateMinerConfig

    logging.getLogger("drain3").setLevel(logging.WARNING)
    masks = []
    for m in settings.masks:
        # the same regex, one instruction per mask; drain3 wraps mask_with in <…>
        regex, replacement = mask_regex(m)
        masks.append(MaskingInstruction(regex, replacement.removeprefix("<").removesuffix(">")))

    def make() -> Callable[[str], str]:
        config = TemplateMinerConfig()
        config.masking_instructions = masks
        config.mask_prefix, config.mask_suffix = "<", ">"
        config.drain_sim_th = settings.similarity_threshold
        config.drain_depth = settings.depth
        config.drain_max_children = settings.max_children
        config.drain_max_clusters = settings.max_templates
        config.profiling_enabled = False
        miner = Drain3Miner(config=config)
        add = miner.add_log_message

        def run(message: str) -> str:
            return str(add(message)["cluster_id"])
        return run
    return make


def assign(make: Callable[[], Callable[[str], str]], messages: Sequence[str]) -> list[str]:
    run = make()
    return [run(m) for m in messages]


def throughput(make: Callable[[], Callable[[str], str]], messages: Sequence[str],
               reps: int) -> float:
    """Best lines per CPU-second over `reps` fresh runs."""
    best = 0.0
    for _ in range(reps):
        run = make()
        t0 = time.process_time()
        for m in messages:
            run(m)
        dt = time.process_time() - t0
        best = max(best, len(messages) / dt if dt > 0 else float("inf"))
    return best


def write_result(name: str, result: dict[str, Any]) -> Path:
    try:
        from benchmarks.harness import write_result as shared
    except ImportError:  # run as a script from elsewhere
        import json
        path = Path(__file__).resolve().parent / "results" / f"{name}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        return path
    return shared(name, result)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--sim", type=float, default=None, help="similarity threshold (both)")
    ap.add_argument("--depth", type=int, default=None)
    ap.add_argument("--masks", default=None, help="comma-separated built-in mask names")
    ap.add_argument("--cache-size", type=int, default=None,
                    help="our exact-message cache (0 = off) to see the uncached cost")
    ap.add_argument("--no-drain3", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)

    overrides: dict[str, Any] = {"enabled": True}
    if args.sim is not None:
        overrides["similarity_threshold"] = args.sim
    if args.depth is not None:
        overrides["depth"] = args.depth
    if args.cache_size is not None:
        overrides["cache_size"] = args.cache_size
    if args.masks is not None:
        overrides["masks"] = [m for m in args.masks.split(",") if m]
    settings = TemplateSettings(**overrides)
    systems = [s for s in args.systems.split(",") if s]

    peers: dict[str, Callable[[], Callable[[str], str]]] = {"ours": ours_factory(settings)}
    if not args.no_drain3:
        peers["drain3"] = drain3_factory(settings)

    per_system: dict[str, dict[str, Any]] = {}
    total_lines = 0
    cpu: dict[str, float] = dict.fromkeys(peers, 0.0)
    for system in systems:
        messages, truth = load_system(system)
        total_lines += len(messages)
        row: dict[str, Any] = {"lines": len(messages), "events": len(set(truth))}
        for name, make in peers.items():
            predicted = assign(make, messages)
            lps = throughput(make, messages, args.reps)
            cpu[name] += len(messages) / lps
            row[name] = {"accuracy": round(grouping_accuracy(predicted, truth), 4),
                         "templates": len(set(predicted)),
                         "lines_per_cpu_s": round(lps)}
        per_system[system] = row

    names = list(peers)
    header = f"{'system':<10} {'events':>6} " + " ".join(
        f"{n + ' acc':>11} {n + ' tpl':>10} {n + ' l/s':>12}" for n in names)
    print(header)
    print("-" * len(header))
    for system, row in per_system.items():
        print(f"{system:<10} {row['events']:>6} " + " ".join(
            f"{row[n]['accuracy']:>11.4f} {row[n]['templates']:>10} "
            f"{row[n]['lines_per_cpu_s']:>12,}" for n in names))
    summary: dict[str, Any] = {}
    for n in names:
        summary[n] = {
            "average_accuracy": round(sum(r[n]["accuracy"] for r in per_system.values())
                                      / len(per_system), 4),
            # all lines / all CPU seconds (each system's best repetition)
            "lines_per_cpu_s": round(total_lines / cpu[n]),
        }
    print("-" * len(header))
    print(f"{'average':<10} {'':>6} " + " ".join(
        f"{summary[n]['average_accuracy']:>11.4f} {'':>10} {summary[n]['lines_per_cpu_s']:>12,}"
        for n in names))
    if "drain3" in summary:
        ratio = summary["ours"]["lines_per_cpu_s"] / summary["drain3"]["lines_per_cpu_s"]
        summary["throughput_ratio"] = round(ratio, 2)
        print(f"throughput ours/drain3: {ratio:.2f}x   accuracy ours-drain3: "
              f"{summary['ours']['average_accuracy'] - summary['drain3']['average_accuracy']:+.4f}")

    result = {
        "benchmark": "logstruct_templates",
        "python": platform.python_version(),
        "settings": settings.model_dump(mode="json"),
        "masks": {m: mask_regex(m)[0] for m in settings.masks if isinstance(m, str)},
        "default_masks": list(DEFAULT_MASKS),
        "reps": args.reps,
        "systems": per_system,
        "summary": summary,
    }
    if not args.no_write:
        print("wrote", write_result("logstruct_templates", result))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
