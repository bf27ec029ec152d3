"""The longest event-loop stall of one big flush (redmetrics), delta merge
(deltatocumulative) or scrape (prometheus).

    python -m benchmarks.flush_stall [series ...]

Fills a component with N distinct series (default: the default cardinality limit
5000, and 20000 for a user who raises it), then runs one flush / scrape as a task
while a ticker task yields to the loop (`await asyncio.sleep(0)`) and records the
longest gap between its ticks: that is the longest synchronous slice, i.e. the
longest time no other request could be answered. Also reports the CPU seconds
of the whole flush. Figures depend on the machine's load: report `uptime` with them.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from prometheus_client.exposition import choose_encoder

from benchmarks.deltatocumulative import Encode, delta_request
from pipeline.cli import tune_gc
from pipeline.component import Consumer, Signal
from pipeline.connectors.logpatterns.config import LogPatternsConfig
from pipeline.connectors.logpatterns.connector import LogPatternsConnector
from pipeline.connectors.redmetrics import RedMetricsConfig, RedMetricsConnector
from pipeline.exporters.prometheus import (
    DEFAULT_MAX_SERIES,
    PrometheusConfig,
    PrometheusExporter,
    SeriesCollector,
)
from pipeline.pdata.batch import Batch
from pipeline.processors.deltatocumulative.config import DeltaToCumulativeConfig
from pipeline.processors.deltatocumulative.processor import DeltaToCumulativeProcessor
from pipeline.telemetry.metrics import Telemetry
from tests.support import connector_settings, exporter_settings, processor_settings
from tests.unit.connectors.spans import T0, log_batch, span_batch

SPANS_PER_BATCH = 1000


class Drop(Consumer):
    async def consume(self, batch: Batch) -> None:
        return None


async def longest_stall(work: Callable[[], Awaitable[Any]]) -> tuple[float, float, int]:
    """(longest gap between the ticker's ticks in s, CPU s of `work`, ticks)."""
    done = False
    longest = 0.0
    ticks = 0

    async def ticker() -> None:
        nonlocal longest, ticks
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now
            ticks += 1

    t = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    cpu = time.process_time()
    await work()
    cpu = time.process_time() - cpu
    done = True
    await t
    return longest, cpu, ticks


async def redmetrics(series: int, **cfg: Any) -> RedMetricsConnector:
    conn = RedMetricsConnector(
        connector_settings("redmetrics", consumers={Signal.METRICS: Drop()}),
        RedMetricsConfig.model_validate({"aggregation_cardinality_limit": series, **cfg}))
    for first in range(0, series, SPANS_PER_BATCH):
        await conn.consume(span_batch(
            [{"name": f"GET /r/{i}", "ms": 1 + i % 300,
              "trace": i.to_bytes(16, "big"), "span": i.to_bytes(8, "big")}
             for i in range(first, min(series, first + SPANS_PER_BATCH))]))
    return conn


CASES: dict[str, dict[str, Any]] = {
    "explicit cumulative": {},
    "explicit delta": {"aggregation_temporality": "delta"},
    "exponential delta": {"aggregation_temporality": "delta",
                          "histogram": {"exponential": {}}},
}


def report(what: str, n: int, stall: float, cpu: float, ticks: int) -> None:
    print(f"{what:40} series={n:6}: longest stall {stall * 1e3:7.1f} ms, "
          f"CPU {cpu * 1e3:7.1f} ms, ticker ticks {ticks}", flush=True)


async def logpatterns(n: int) -> None:
    """A flush of `n` patterns (its metric's limit raised to `n`), all silent since the
    last one: the sliced flush, then `tick` (windows rolled, state) in one piece."""
    now = [T0]
    conn = LogPatternsConnector(
        connector_settings("logpatterns", consumers={Signal.METRICS: Drop()}),
        LogPatternsConfig.model_validate({"warmup": 0, "aggregation_cardinality_limit": n,
                                          "max_patterns": max(n, 20_000)}),
        clock=lambda: now[0])
    for first in range(0, n, SPANS_PER_BATCH):
        now[0] += 10**9
        await conn.consume(log_batch([
            {"attrs": {"log.template": f"job <*> step {i} done",
                       "log.template_id": f"t{i}"}, "body": f"job 1 step {i} done"}
            for i in range(first, min(n, first + SPANS_PER_BATCH))]))
    now[0] += 600 * 10**9
    report("logpatterns flush (+ tick)", n, *await longest_stall(conn.flush))


async def deltatocumulative(n: int) -> None:
    """One request of `n` delta histogram points (a worker's flush, as the primary
    merges it), the second window (the streams exist)."""
    proc = DeltaToCumulativeProcessor(
        processor_settings("deltatocumulative", Telemetry(), next_consumer=Encode(),
                           signal=Signal.METRICS), DeltaToCumulativeConfig())
    await proc.consume(Batch(Signal.METRICS, raw=delta_request(0, "histogram", n)))
    raw = delta_request(1, "histogram", n)
    report("deltatocumulative merge (histogram)", n,
           *await longest_stall(lambda: proc.consume(Batch(Signal.METRICS, raw=raw))))


OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def scrape_cpu(exp: PrometheusExporter, n: int) -> None:
    """CPU µs per series of the scrape's rendering in chunks, and of one
    prometheus_client rendering of all series (the body before the chunks)."""
    encoder, _ = choose_encoder(OPENMETRICS)
    for _ in range(2):
        exp._cache.clear()
        cpu = time.process_time()
        chunks, _ = exp.render_chunks(OPENMETRICS)
        chunked = time.process_time() - cpu
        del chunks
        cpu = time.process_time()
        body = encoder(SeriesCollector(list(exp.acc.values()), exp.config.send_timestamps))
        whole = time.process_time() - cpu
        print(f"{'prometheus scrape CPU per series':40} series={n:6}: chunks "
              f"{chunked / n * 1e6:5.1f} µs, one rendering {whole / n * 1e6:5.1f} µs, "
              f"body {len(body) / 2**20:.0f} MiB", flush=True)
        del body


async def prometheus(n: int) -> None:
    """A scrape of `n` histogram series (OpenMetrics), then all of them expiring."""
    clock = [0.0]
    exp = PrometheusExporter(exporter_settings("prometheus"), PrometheusConfig(),
                             clock=lambda: clock[0])
    for first in range(0, n, 1000):
        req = ExportMetricsServiceRequest.FromString(
            delta_request(0, "histogram", min(1000, n - first)))
        for dp in req.resource_metrics[0].scope_metrics[0].metrics[0].histogram.data_points:
            dp.attributes[1].value.string_value += f"/{first}"
        exp.consume_request(req)
    report("prometheus scrape (openmetrics)", n, *await longest_stall(
        lambda: exp.render_async(OPENMETRICS)))
    scrape_cpu(exp, n)
    clock[0] += 3600

    async def expire() -> None:
        exp._expire()

    report("prometheus expiry of every series", n, *await longest_stall(expire))


async def main(sizes: list[int]) -> None:
    tune_gc()  # as `python -m pipeline run` does
    for n in sizes:
        for name, cfg in CASES.items():
            conn = await redmetrics(n, **cfg)
            report(f"redmetrics flush {name}", n, *await longest_stall(conn.flush))
        await deltatocumulative(n)
        await logpatterns(n)
    for n in (sizes[-1], DEFAULT_MAX_SERIES):
        await prometheus(n)


if __name__ == "__main__":
    asyncio.run(main([int(a) for a in sys.argv[1:]] or [5000, 20000]))
