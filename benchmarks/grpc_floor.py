"""The gRPC server's own cost per call: an `Export` handler that does nothing (or only
the otlp receiver's `prepare()`), served by grpc.aio on uvloop (what the otlp receiver
uses) or by the sync server with a thread pool, under the same load as the other
benchmarks (benchmarks.loadgen, 100 spans x 10 attributes per request). Reports CPU
microseconds per call of the server process, alternating the servers round by round.

    python -m benchmarks.grpc_floor [--rounds 3] [--requests 3000] [--work none|prepare]
        [--servers aio,sync4,sync2]

The server runs in a child process: `python -m benchmarks.grpc_floor --serve MODE PORT`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from concurrent import futures
from typing import Any

from benchmarks.harness import cpu_seconds, free_port, run_loadgen, wait_port

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


def _work(kind: str) -> Any:
    if kind == "none":
        return lambda raw: None
    from pipeline.component import Signal
    from pipeline.pdata.otlp import AttributeLimits
    from pipeline.receivers._otlpdecode import prepare
    limits = AttributeLimits(1000, 65536, 1000, 1000, 32768)  # the receiver's defaults
    return lambda raw: prepare(Signal.TRACES, raw, False, limits)


def serve(mode: str, port: int, work: str) -> None:
    import grpc
    do = _work(work)
    if mode == "aio":
        import grpc.aio
        import uvloop

        async def export(raw: bytes, context: Any) -> bytes:
            do(raw)
            return b""

        async def main() -> None:
            server = grpc.aio.server()
            handlers = {"Export": grpc.unary_unary_rpc_method_handler(export)}
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(SERVICE, handlers),))
            server.add_insecure_port(f"127.0.0.1:{port}")
            await server.start()
            await server.wait_for_termination()

        uvloop.run(main())
        return

    def export_sync(raw: bytes, context: Any) -> bytes:
        do(raw)
        return b""

    threads = int(mode.removeprefix("sync") or 4)
    server = grpc.server(futures.ThreadPoolExecutor(threads))
    handlers = {"Export": grpc.unary_unary_rpc_method_handler(export_sync)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def measure(mode: str, work: str, requests: int, concurrency: int) -> float:
    """CPU microseconds per call of a `mode` server."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.grpc_floor", "--serve", mode,
                             str(port), "--work", work])
    try:
        wait_port(port)
        common = ["--protocol", "grpc", "--endpoint", f"127.0.0.1:{port}",
                  "--concurrency", str(concurrency)]
        run_loadgen(*common, "--requests", "300")  # warm-up
        cpu0 = cpu_seconds(proc.pid)
        load = run_loadgen(*common, "--requests", str(requests))
        return 1e6 * (cpu_seconds(proc.pid) - cpu0) / load["requests_sent"]
    finally:
        proc.terminate()
        proc.wait()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--work", choices=["none", "prepare"], default="none")
    p.add_argument("--servers", default="aio,sync4,sync2")
    p.add_argument("--serve", nargs=2, metavar=("MODE", "PORT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.work)
        return 0
    for r in range(args.rounds):
        for mode in args.servers.split(","):
            us = measure(mode, args.work, args.requests, args.concurrency)
            print(f"round {r}  {mode:6} {args.work:8} {us:7.0f} CPU-us per call", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
