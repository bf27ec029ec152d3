"""Scraping cost: otelpipe's `prometheus` receiver vs the Collector's, same target.

    python -m benchmarks.scrape                    # 10k and 100k series, both sides
    python -m benchmarks.scrape --series 10000 --window 20 --no-peer

A target in this process serves a fixed exposition body (text format 0.0.4) of N
samples: counters and gauges with three labels, and classic histograms (12 buckets,
_sum, _count). Each side runs as its own process with one scrape job on that target
and a `nop` exporter (the Collector's own telemetry off). After a warm-up (the
first scrapes build the series caches), CPU of the scraper process (user + system,
/proc) is measured over a window, and the scrapes the target served in that window
are counted: CPU per scrape, and samples per CPU-second = scrapes x N / CPU.
otelpipe and the Collector run one after the other for each size, in the same
minute; the figures to read are the ratio, on a machine whose load is printed.
"""

from __future__ import annotations

import argparse
import gzip
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from benchmarks.harness import cpu_seconds, free_port, peak_rss_mib, start_target, write_result

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def body(n: int) -> bytes:
    """About n samples: 45% counters, 45% gauges, 10% histogram samples."""
    lines: list[str] = []
    per_family = 100
    f = 0
    while len(lines) < n * 0.9:
        kind = "counter" if f % 2 == 0 else "gauge"
        name = f"app_requests_{f}_total" if kind == "counter" else f"app_inflight_{f}"
        lines.append(f"# HELP {name} Benchmark {kind} {f}.")
        lines.append(f"# TYPE {name} {kind}")
        for i in range(per_family):
            lines.append(f'{name}{{method="GET",path="/api/v1/item/{i}",code="200"}} '
                         f"{i * 7 + f}")
        f += 1
    h = 0
    while len(lines) < n:
        name = f"app_latency_{h}_seconds"
        lines.append(f"# TYPE {name} histogram")
        for i in range(20):
            labels = f'path="/api/v1/item/{i}",code="200"'
            c = 0
            for b in BUCKETS:
                c += i + 1
                lines.append(f'{name}_bucket{{{labels},le="{b}"}} {c}')
            lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {c + 3}')
            lines.append(f"{name}_sum{{{labels}}} {c * 0.1:.3f}")
            lines.append(f"{name}_count{{{labels}}} {c + 3}")
        h += 1
    return ("\n".join(lines) + "\n").encode()


def samples_in(data: bytes) -> int:
    return sum(1 for line in data.split(b"\n") if line and not line.startswith(b"#"))


class BodyServer:
    """Serves the body; counts the scrapes it answered in full."""

    def __init__(self, data: bytes, use_gzip: bool):
        self.data = data
        self.gz = gzip.compress(data, 1) if use_gzip else None
        self.served = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                payload = server.data
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                if server.gz is not None and "gzip" in self.headers.get("Accept-Encoding", ""):
                    payload = server.gz
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                with server.lock:
                    server.served += 1

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def config(kind: str, port: int, interval: str) -> dict[str, Any]:
    job = {"job_name": "bench", "scrape_interval": interval, "scrape_timeout": interval,
           "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
    cfg: dict[str, Any] = {
        "receivers": {"prometheus": {"config": {"scrape_configs": [job]}}},
        "exporters": {"nop": None},
        "service": {"pipelines": {"metrics": {"receivers": ["prometheus"],
                                              "exporters": ["nop"]}}},
    }
    if kind == "otelcol":
        cfg["service"]["telemetry"] = {"metrics": {"level": "none"}}
    return cfg


def wait_scrapes(server: BodyServer, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    start = server.served
    while server.served - start < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {n} scrapes in {timeout:.0f}s")
        time.sleep(0.05)


def measure(kind: str, server: BodyServer, samples: int, interval: str, window: float,
            warmup_scrapes: int) -> dict[str, Any]:
    with start_target(kind, config(kind, server.port, interval), []) as t:
        wait_scrapes(server, warmup_scrapes, 120)
        time.sleep(float(interval.rstrip("s")) / 2)  # past the last warm-up scrape's work
        cpu0, served0, t0 = cpu_seconds(t.pid), server.served, time.monotonic()
        time.sleep(window)
        cpu = cpu_seconds(t.pid) - cpu0
        scrapes = server.served - served0
        wall = time.monotonic() - t0
        alive = t.proc.poll() is None
        log_tail = t.log_path.read_text(errors="replace")[-1500:]
        rss = peak_rss_mib(t.pid)
    if not alive or not scrapes:
        raise RuntimeError(f"{kind}: no scrapes measured\n{log_tail}")
    return {"target": kind, "series": samples, "interval": interval, "window_s": round(wall, 1),
            "scrapes": scrapes, "cpu_s": round(cpu, 3),
            "cpu_ms_per_scrape": round(cpu / scrapes * 1000, 1),
            "samples_per_cpu_s": round(scrapes * samples / cpu) if cpu else None,
            "peak_rss_mib": round(rss, 1)}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--series", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--window", type=float, default=20.0, help="measured seconds per run")
    p.add_argument("--gzip", action="store_true", help="serve the body gzip-compressed")
    p.add_argument("--no-peer", action="store_true", help="skip the Go Collector")
    args = p.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    rows = []
    for n in args.series:
        data = body(n)
        samples = samples_in(data)
        interval = "1s" if samples <= 20_000 else "3s"
        server = BodyServer(data, args.gzip)
        try:
            for kind in ("otelpipe", *(() if args.no_peer else ("otelcol",))):
                row = measure(kind, server, samples, interval, args.window, 3)
                rows.append(row)
                print(f"{kind:9} {samples:>7,} series  {row['scrapes']:>3} scrapes  "
                      f"{row['cpu_ms_per_scrape']:>8.1f} ms CPU/scrape  "
                      f"{row['samples_per_cpu_s']:>10,} samples/CPU-s  "
                      f"peak RSS {row['peak_rss_mib']:.0f} MiB", flush=True)
        finally:
            server.close()
        if not args.no_peer:
            ours, peer = rows[-2], rows[-1]
            ratio = ours["samples_per_cpu_s"] / peer["samples_per_cpu_s"]
            print(f"ratio otelpipe/otelcol at {samples:,} series: {ratio:.2f}x", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    write_result("scrape-gzip" if args.gzip else "scrape", {"gzip": args.gzip, "rows": rows,
                            "load_average": os.getloadavg()[0]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
