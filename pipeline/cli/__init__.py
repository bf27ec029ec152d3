"""Command line: `otelpipe run | validate | components | schema | slo rules | version`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import shutil
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

import orjson

from pipeline import __version__
from pipeline.cli import ports, slo
from pipeline.cli.slo import EXIT_INVALID_CONFIG
from pipeline.component import Kind
from pipeline.config.loader import load_config
from pipeline.config.model import build_json_schema, check_workers, validate_config
from pipeline.errors import ConfigError
from pipeline.registry import default_registry
from pipeline.telemetry.logs import setup_logging

WORKER_COMMAND = "_worker"


def cmd_validate(args: argparse.Namespace) -> int:
    if slo.is_slo_definitions(args.config):
        return slo.validate_slo_definitions(args.config[0])
    try:
        raw = load_config(args.config)
        config = validate_config(raw, default_registry())
        if config.service.workers != 1:
            # The configs of the processes must be valid too, whatever this machine's
            # CPUs (`auto` may be 1 here and 8 where it runs): plan at least 2.
            from pipeline.service.workers.supervisor import prepare

            workers = max(2, config.service.worker_count())
            shutil.rmtree(prepare(raw, config, workers).link_dir, ignore_errors=True)
    except ConfigError as exc:
        print(f"invalid configuration ({len(exc.problems)} problem"
              f"{'s' if len(exc.problems) != 1 else ''}):", file=sys.stderr)
        for p in exc.problems:
            print(f"  error: {p}", file=sys.stderr)
        return EXIT_INVALID_CONFIG
    for w in config.warnings:
        print(f"  warning: {w}", file=sys.stderr)
    print(f"configuration is valid: {len(config.pipelines)} pipeline"
          f"{'s' if len(config.pipelines) != 1 else ''} "
          f"({', '.join(sorted(config.pipelines))})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    try:
        raw = load_config(args.config)
        service = raw.get("service")
        if args.workers not in (None, 1) or (
                isinstance(service, dict) and service.get("workers") not in (None, 1, "1")):
            # Before gRPC loads (validation loads it): the supervisor forks only to exec
            # a worker, gRPC's fork handlers are of no use, and they print a line that is
            # not JSON on every fork.
            os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
        config = validate_config(raw, default_registry())
        workers = args.workers if args.workers is not None else config.service.worker_count()
        prepared = None
        if workers > 1:
            from pipeline.service.workers.supervisor import prepare, probe_endpoints

            prepared = prepare(raw, config, workers)
            try:
                probe_endpoints(prepared.primary)
            except ConfigError:
                shutil.rmtree(prepared.link_dir, ignore_errors=True)
                raise
    except ConfigError as exc:
        for p in exc.problems:
            print(f"error: {p}", file=sys.stderr)
        return EXIT_INVALID_CONFIG
    setup_logging(config.service.telemetry.logs.level)
    import logging

    log = logging.getLogger("otelpipe.service")
    for w in config.warnings:
        log.warning(w)
    tune_gc()
    if prepared is not None:
        from pipeline.service.workers.supervisor import run_supervised

        return _run_loop(run_supervised(prepared))
    from pipeline.service import run

    return _run_loop(run(config))


def cmd_worker() -> int:
    """`python -m pipeline _worker`: a worker process of `run --workers N`; its orders
    (config included) arrive as JSON on stdin from the supervisor."""
    from pipeline.service.workers.child import Orders, WorkerHooks, WorkerLogFilter, die_with

    try:
        orders = Orders.read(sys.stdin.buffer)
        die_with(orders.supervisor_pid)
        config = validate_config(orders.config, default_registry())
    except ConfigError as exc:
        for p in exc.problems:
            print(f"error: {p}", file=sys.stderr)
        return EXIT_INVALID_CONFIG
    setup_logging(config.service.telemetry.logs.level)
    import logging

    for handler in logging.getLogger("otelpipe").handlers:
        handler.addFilter(WorkerLogFilter(orders.index))
    tune_gc()
    # A terminal's Ctrl-C reaches the whole process group: the supervisor passes it on
    # (a drain request, then an exit request for a second one), so the worker drains
    # once, not twice.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from pipeline.service import run
    from pipeline.service.workers.child import STOP_SIGNALS

    hooks = WorkerHooks(orders.control, orders.supervisor_pid)
    try:
        return _run_loop(run(config, hooks=hooks, stop_signals=STOP_SIGNALS))
    finally:
        with contextlib.suppress(OSError):
            os.unlink(orders.control)
        if hooks.orphaned:  # the supervisor was killed: nobody else removes its link dir
            shutil.rmtree(os.path.dirname(orders.control), ignore_errors=True)


def _run_loop(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep running without it
        return asyncio.run(main)
    return uvloop.run(main)


def workers_arg(value: str) -> int:
    from pipeline.config.model import resolve_workers

    try:
        return resolve_workers(check_workers(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def tune_gc() -> None:
    """Garbage collection for a data pipeline: the hot path allocates many short-lived
    containers (log records, attribute dicts), and with the default threshold (700) the
    cyclic collector ran every few records and cost ~15% of a logstruct pipeline's CPU.
    Collect the young generation every 10,000 net allocations, and move everything that
    exists at start-up (modules, classes, config) out of the collector's sight for good
    (`gc.freeze`), so older-generation collections do not rescan it."""
    gc.collect()
    gc.freeze()
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(10_000, g1, g2)


def cmd_components(args: argparse.Namespace) -> int:
    registry = default_registry()
    if args.markdown:
        from pipeline.config.reference import render

        sys.stdout.write(render(registry))
        return 0
    rows = []
    for f in registry.factories():
        if f.kind is Kind.CONNECTOR:
            signals = ", ".join(f"{a}->{b}" for a, b in sorted(f.connector_pairs))
        elif f.kind is Kind.EXTENSION:
            signals = "-"
        else:
            signals = ", ".join(s.value for s in sorted(f.signals))
        name = f.type + (f" (alias {', '.join(f.aliases)})" if f.aliases else "")
        rows.append((f.kind.value, name, signals, f.description))
    if args.json:
        print(orjson.dumps([dict(zip(("kind", "type", "signals", "description"), r,
                                     strict=True)) for r in rows]).decode())
        return 0
    width = max(len(r[1]) for r in rows)
    for kind in Kind:
        kind_rows = [r for r in rows if r[0] == kind.value]
        if kind_rows:
            print(f"{kind.section}:")
            for _, name, signals, desc in kind_rows:
                print(f"  {name:<{width}}  {signals:<32}  {desc}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(orjson.dumps(build_json_schema(default_registry()), option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    print(f"otelpipe {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otelpipe", description=__doc__)
    parser.add_argument("--version", action="version", version=f"otelpipe {__version__}")
    sub = parser.add_subparsers(dest="command")

    def config_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", action="append", default=[], metavar="FILE",
                       help="config file; repeat to merge several in order "
                            "(default: the embedded default config)")

    p = sub.add_parser("run", help="run the pipelines", epilog=ports.run_epilog(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    config_arg(p)
    p.add_argument("--workers", type=workers_arg, default=None, metavar="N|auto",
                   help="processes sharing the work (overrides service.workers; auto: "
                        "one per CPU)")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("validate", help="check a config; exit 2 with every problem if invalid")
    config_arg(p)
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("components", help="list component types and their signals")
    p.add_argument("--json", action="store_true")
    p.add_argument("--markdown", action="store_true",
                   help="print the component reference with every config key")
    p.set_defaults(func=cmd_components)
    p = sub.add_parser("schema", help="print the JSON Schema of the config")
    p.set_defaults(func=cmd_schema)
    slo.add_parser(sub)
    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else list(argv))[:1] == [WORKER_COMMAND]:
        return cmd_worker()  # internal: not in the help
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["run", *(argv or sys.argv[1:])])
    try:
        return int(args.func(args))
    except BrokenPipeError:  # `otelpipe components | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
