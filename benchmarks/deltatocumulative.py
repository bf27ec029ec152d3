"""Delta points per CPU-second through the `deltatocumulative` processor.

    python -m benchmarks.deltatocumulative [requests per case]

Requests as `redmetrics` with `aggregation_temporality: delta` sends them: one resource,
one scope, one metric of 1000 streams (5 point attributes: service, span name, kind,
status, route), one delta per stream per request, every request a later window; a sum
(`calls`, int) and a 17-bucket histogram (`duration`). Each request goes in as the
serialized bytes a receiver hands over and comes out as the bytes an exporter would
send (`to_bytes()`), so decode and encode are counted. The first request of each case
(1000 new streams) is not timed. CPU time of this process (one core); memory per
stream with tracemalloc.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import tracemalloc
from pathlib import Path

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.component import Consumer, Signal
from pipeline.pdata.batch import Batch
from pipeline.processors.deltatocumulative.config import DeltaToCumulativeConfig
from pipeline.processors.deltatocumulative.processor import DeltaToCumulativeProcessor
from pipeline.telemetry.metrics import Telemetry
from tests.support import processor_settings

STREAMS = 1000
BOUNDS = [0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1, 1.4, 2, 5, 10, 15]


def delta_request(step: int, kind: str, streams: int = STREAMS) -> bytes:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = "api"
    sm = rm.scope_metrics.add()
    sm.scope.name = "otelpipe"
    m = sm.metrics.add(name="traces.span.metrics.calls" if kind == "sum"
                       else "traces.span.metrics.duration")
    c = m.sum if kind == "sum" else m.histogram
    c.aggregation_temporality = 1
    for i in range(streams):
        dp = c.data_points.add(start_time_unix_nano=10**18 + step * 10**9,
                               time_unix_nano=10**18 + (step + 1) * 10**9)
        for k, v in (("service.name", "api"), ("span.name", f"GET /r/{i}"),
                     ("span.kind", "SPAN_KIND_SERVER"), ("status.code", "STATUS_CODE_UNSET"),
                     ("http.route", f"/r/{i}")):
            dp.attributes.add(key=k).value.string_value = v
        if kind == "sum":
            dp.as_int = 3
        else:
            dp.count, dp.sum = 3, 0.3
            dp.explicit_bounds.extend(BOUNDS)
            dp.bucket_counts.extend([0] * 5 + [3] + [0] * 11)
    out: bytes = req.SerializeToString()
    return out


class Encode(Consumer):
    async def consume(self, batch: Batch) -> None:
        batch.to_bytes()


def processor() -> DeltaToCumulativeProcessor:
    return DeltaToCumulativeProcessor(
        processor_settings("deltatocumulative", Telemetry(), next_consumer=Encode(),
                           signal=Signal.METRICS), DeltaToCumulativeConfig())


async def points_per_cpu_second(kind: str, requests: int) -> float:
    proc = processor()
    raws = [delta_request(step, kind) for step in range(requests + 1)]
    await proc.consume(Batch(Signal.METRICS, raw=raws[0]))
    gc.collect()
    started = time.process_time()
    for raw in raws[1:]:
        await proc.consume(Batch(Signal.METRICS, raw=raw))
    return requests * STREAMS / (time.process_time() - started)


async def bytes_per_stream(kind: str, streams: int = 10_000) -> float:
    proc = processor()
    raw = delta_request(0, kind, streams)
    gc.collect()
    tracemalloc.start()
    await proc.consume(Batch(Signal.METRICS, raw=raw))
    gc.collect()
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return held / streams


async def main() -> None:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    for kind in ("sum", "histogram"):
        rate = await points_per_cpu_second(kind, requests)
        size = await bytes_per_stream(kind)
        print(f"{kind:9} {rate:>10,.0f} points/CPU-s  {size:6.0f} bytes/stream")


if __name__ == "__main__":
    asyncio.run(main())
