"""Template mining on the Loghub 2k samples: grouping accuracy and throughput vs drain3.

For each system, the `Content` column of `<S>_2k.log_structured.csv` (headers
already stripped) goes through our `TemplateMiner` and through drain3's
`TemplateMiner` with the same masks (the same regexes, replaced by `<*>`) and
the same Drain parameters (similarity threshold, depth, max children).

Grouping accuracy (Loghub's definition): a line is correct when the set of
lines given its template id equals the set of lines given its ground-truth
`EventId`. Parsing accuracy: a line is correct when the final text of its
template equals its ground-truth `EventTemplate`. Throughput: lines per
CPU-second (`time.process_time`), best of several repetitions, each repetition
a fresh miner over the same messages.

Against overfitting, each file is also split in two: the miner's rules were
designed looking at the first half, and the second half is mined by a fresh miner
and reported on its own (`half 2`). Ours runs with its defaults only; no setting
is chosen per system.

`--logparser3 PYTHON` adds LOGPAI's Brain and Drain (PyPI `logparser3`) with the
per-system regexes and thresholds their own benchmark publishes, run by
`benchmarks/loghub_logparser3.py` under that interpreter (a virtualenv of their
own: see that file).

    python benchmarks/logstruct_templates.py [--reps 5] [--systems HDFS,Apache]
        [--logparser3 ~/.cache/otelpipe/logparser3-venv/bin/python]

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


def load_templates(system: str) -> list[str]:
    path = loghub_dir() / system / f"{system}_2k.log_structured.csv"
    with path.open(newline="", encoding="utf-8") as f:
        return [r["EventTemplate"] for r in csv.DictReader(f)]


def parsing_accuracy(templates: Sequence[str], truth: Sequence[str]) -> float:
    """Share of lines whose template text equals the ground truth's (spaces normalised)."""
    ok = sum(" ".join(a.split()) == " ".join(b.split())
             for a, b in zip(templates, truth, strict=True))
    return ok / len(truth) if truth else 1.0


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


def ours_final_templates(settings: TemplateSettings, messages: Sequence[str]) -> list[str]:
    """The final template text of each message's template (after the whole file)."""
    miner = TemplateMiner(settings)
    ids = [miner.match(m)[0] for m in messages]
    text = {cid: template for cid, template, _ in miner.templates()}
    return [text[i] for i in ids]


def logparser3_peers(python: str, systems: Sequence[str],
                     brain_threshold: int | None = None) -> dict[str, Any]:
    """Brain and Drain with their published settings (see loghub_logparser3.py); Brain
    with one `brain_threshold` for every system when given."""
    import json
    import subprocess

    script = Path(__file__).resolve().with_name("loghub_logparser3.py")
    out = subprocess.run([python, str(script), "--loghub", str(loghub_dir()),
                          "--systems", ",".join(systems)]
                         + (["--brain-threshold", str(brain_threshold)] if brain_threshold else []),
                         check=True, capture_output=True, text=True)
    peers: dict[str, Any] = json.loads(out.stdout)
    return peers


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


def score_system(system: str, peers: dict[str, Callable[[], Callable[[str], str]]],
                 tuned: dict[str, Any], settings: TemplateSettings, reps: int,
                 ) -> tuple[dict[str, Any], dict[str, float]]:
    """One system's row (accuracies, templates, lines per CPU-second per miner) and the
    CPU seconds each miner spent on it."""
    messages, truth = load_system(system)
    truth_templates = load_templates(system)
    half = len(messages) // 2
    row: dict[str, Any] = {"lines": len(messages), "events": len(set(truth))}
    spent: dict[str, float] = {}
    for name, make in peers.items():
        predicted = assign(make, messages)
        lps = throughput(make, messages, reps)
        spent[name] = len(messages) / lps
        row[name] = {"accuracy": round(grouping_accuracy(predicted, truth), 4),
                     "half_1": round(grouping_accuracy(assign(make, messages[:half]),
                                                       truth[:half]), 4),
                     "half_2": round(grouping_accuracy(assign(make, messages[half:]),
                                                       truth[half:]), 4),
                     "templates": len(set(predicted)),
                     "lines_per_cpu_s": round(lps)}
        if name == "ours":
            row[name]["parsing_accuracy"] = round(parsing_accuracy(
                ours_final_templates(settings, messages), truth_templates), 4)
    for peer, result in tuned.items():
        name = result.get("label", f"{peer} (tuned)")
        spent[name] = result["cpu_s"]
        row[name] = {"accuracy": round(grouping_accuracy(result["event_ids"], truth), 4),
                     "parsing_accuracy": round(parsing_accuracy(result["templates"],
                                                                truth_templates), 4),
                     "templates": len(set(result["event_ids"])),
                     "lines_per_cpu_s": round(len(messages) / max(result["cpu_s"], 1e-9))}
    return row, spent


def settings_from(args: argparse.Namespace) -> TemplateSettings:
    """Our miner's settings: the defaults unless an option changes one."""
    overrides: dict[str, Any] = {"enabled": True}
    if args.sim is not None:
        overrides["similarity_threshold"] = args.sim
    if args.depth is not None:
        overrides["depth"] = args.depth
    if args.cache_size is not None:
        overrides["cache_size"] = args.cache_size
    if args.masks is not None:
        overrides["masks"] = [m for m in args.masks.split(",") if m]
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = value
    return TemplateSettings(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--sim", type=float, default=None, help="similarity threshold (both)")
    ap.add_argument("--depth", type=int, default=None)
    ap.add_argument("--masks", default=None, help="comma-separated built-in mask names")
    ap.add_argument("--cache-size", type=int, default=None,
                    help="our exact-message cache (0 = off) to see the uncached cost")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="another template setting for ours (e.g. constant_after=10), to "
                         "see what a rule does; the documented figures use the defaults")
    ap.add_argument("--no-drain3", action="store_true")
    ap.add_argument("--logparser3", metavar="PYTHON", default=None,
                    help="interpreter with logparser3 installed: adds Brain and Drain")
    ap.add_argument("--brain-threshold", type=int, default=None,
                    help="with --logparser3: Brain with this one threshold for every system "
                         "(its published ones: 2 to 6 per system)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)

    settings = settings_from(args)
    systems = [s for s in args.systems.split(",") if s]

    peers: dict[str, Callable[[], Callable[[str], str]]] = {"ours": ours_factory(settings)}
    if not args.no_drain3:
        peers["drain3"] = drain3_factory(settings)

    tuned = (logparser3_peers(args.logparser3, systems, args.brain_threshold)
             if args.logparser3 else {})
    per_system: dict[str, dict[str, Any]] = {}
    total_lines = 0
    brain = f"brain (th {args.brain_threshold})" if args.brain_threshold else "brain (tuned)"
    for rows in tuned.values():
        rows["brain"]["label"] = brain
    names = list(peers) + ([brain, "drain (tuned)"] if tuned else [])
    cpu: dict[str, float] = dict.fromkeys(names, 0.0)
    for system in systems:
        row, spent = score_system(system, peers, tuned.get(system, {}), settings, args.reps)
        per_system[system] = row
        total_lines += row["lines"]
        for name, seconds in spent.items():
            cpu[name] += seconds

    def cell(r: dict[str, Any], key: str) -> str:
        return f"{r[key]:.4f}" if key in r else "-"

    print(f"{'system':<10} {'events':>6}  " + "  ".join(
        f"{n:>16}: {'group':>6} {'half 2':>6} {'parse':>6} {'tpl':>4} {'lines/CPU-s':>11}"
        for n in names))
    for system, row in per_system.items():
        print(f"{system:<10} {row['events']:>6}  " + "  ".join(
            f"{'':>16}  {cell(row[n], 'accuracy'):>6} {cell(row[n], 'half_2'):>6} "
            f"{cell(row[n], 'parsing_accuracy'):>6} {row[n]['templates']:>4} "
            f"{row[n]['lines_per_cpu_s']:>11,}" for n in names))
    summary: dict[str, Any] = {}
    for n in names:
        rows = [r[n] for r in per_system.values()]
        summary[n] = {
            "average_accuracy": round(sum(r["accuracy"] for r in rows) / len(rows), 4),
            "lowest_accuracy": min(r["accuracy"] for r in rows),
            # all lines / all CPU seconds (each system's best repetition)
            "lines_per_cpu_s": round(total_lines / cpu[n]),
        }
        for key in ("half_2", "parsing_accuracy"):
            if all(key in r for r in rows):
                summary[n][f"average_{key}"] = round(sum(r[key] for r in rows) / len(rows), 4)
    print(f"{'average':<10} {'':>6}  " + "  ".join(
        f"{'':>16}  {summary[n]['average_accuracy']:>6.4f} "
        f"{summary[n].get('average_half_2', float('nan')):>6.4f} "
        f"{summary[n].get('average_parsing_accuracy', float('nan')):>6.4f} {'':>4} "
        f"{summary[n]['lines_per_cpu_s']:>11,}" for n in names))
    print(f"{'lowest':<10} {'':>6}  " + "  ".join(
        f"{'':>16}  {summary[n]['lowest_accuracy']:>6.4f}" + " " * 31 for n in names))
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
