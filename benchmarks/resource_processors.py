"""Spans per CPU-second through the `resource` and `resourcedetection` processors,
against passing the batch on untouched and against the obvious implementation
(decode the whole request, edit the resources, encode it again).

    python benchmarks/resource_processors.py [seconds per case]
    python -m benchmarks.resource_processors --pipeline [--requests 3000]

`--pipeline`: the same comparison end to end, side by side with the Go Collector's
`resource` processor (the peer of scripts/otelcol.sh): OTLP/HTTP (100 spans x 10
attributes per request, benchmarks.loadgen) -> [resource] -> nop, spans per
CPU-second of the process under test, with and without the processor.

Batches of 100 spans with 10 attributes each, one resource of 6 attributes, from the
serialized request as the otlp receiver hands it over; each case ends with the bytes
an exporter would send (`to_bytes()`); batches carry their item count, as the otlp receiver sets it.
CPU time of this process (one core).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.component import Consumer, Signal
from pipeline.pdata.attractions import AttributeAction, compile_actions
from pipeline.pdata.batch import Batch
from pipeline.processors import resource, resourcedetection
from tests.support import processor_settings

N = 100
ACTIONS = [{"key": "deployment.environment.name", "value": "prod", "action": "upsert"},
           {"key": "k8s.cluster.name", "value": "eu-1", "action": "insert"},
           {"key": "telemetry.sdk.version", "action": "delete"}]


def spans_raw(i0: int = 0) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for k, v in (("service.name", "api"), ("service.version", "1.2.3"),
                 ("telemetry.sdk.name", "opentelemetry"), ("telemetry.sdk.language", "python"),
                 ("telemetry.sdk.version", "1.45.1"), ("host.name", "web-1")):
        rs.resource.attributes.add(key=k).value.string_value = v
    ss = rs.scope_spans.add()
    ss.scope.name = "opentelemetry.instrumentation.flask"
    for i in range(i0, i0 + N):
        sp = ss.spans.add(trace_id=i.to_bytes(16, "big"), span_id=(i + 1).to_bytes(8, "big"),
                          name="GET /users/{id}", kind=2,
                          start_time_unix_nano=1_700_000_000_000_000_000 + i,
                          end_time_unix_nano=1_700_000_000_001_000_000 + i)
        for a in range(9):
            sp.attributes.add(key=f"attr.{a}").value.string_value = f"value-{a}-{i}"
        sp.attributes.add(key="http.response.status_code").value.int_value = 200
    out: bytes = req.SerializeToString()
    return out


class Drain(Consumer):
    async def consume(self, batch: Batch) -> None:
        batch.to_bytes()


def naive(raw: bytes) -> bytes:
    edit = compile_actions([AttributeAction.model_validate(a) for a in ACTIONS])
    batch = Batch(Signal.TRACES, raw=raw, items=N)
    for rs in batch.mutable().resource_spans:
        edit(rs.resource.attributes)
    out: bytes = batch.to_bytes()
    return out


def measure(name: str, step: Any, raws: list[bytes], seconds: float) -> float:
    loop = asyncio.new_event_loop()
    n = 0
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        for raw in raws:
            loop.run_until_complete(step(raw))
        n += len(raws) * N
    rate = n / (time.process_time() - t0)
    loop.close()
    print(f"{name:34s} {rate:>12,.0f} spans/CPU-s")
    return rate


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    raws = [spans_raw(i * N) for i in range(20)]
    drain = Drain()
    res = resource.factory.create(
        processor_settings("resource", next_consumer=drain, signal=Signal.TRACES),
        resource.ResourceConfig.model_validate({"attributes": ACTIONS}))
    det = resourcedetection.factory.create(
        processor_settings("resourcedetection", next_consumer=drain, signal=Signal.TRACES),
        resourcedetection.ResourceDetectionConfig.model_validate(
            {"detectors": ["process", "system"], "system": {"hostname_sources": ["os"]}}))
    asyncio.run(det.start(None))  # type: ignore[arg-type]

    async def passthrough(raw: bytes) -> None:
        await drain.consume(Batch(Signal.TRACES, raw=raw, items=N))

    async def with_resource(raw: bytes) -> None:
        await res.consume(Batch(Signal.TRACES, raw=raw, items=N))  # type: ignore[attr-defined]

    async def with_detection(raw: bytes) -> None:
        await det.consume(Batch(Signal.TRACES, raw=raw, items=N))  # type: ignore[attr-defined]

    async def decode_edit_encode(raw: bytes) -> None:
        naive(raw)

    base = measure("pass through (no processor)", passthrough, raws, seconds)
    r = measure("resource (3 actions)", with_resource, raws, seconds)
    d = measure("resourcedetection (system+process)", with_detection, raws, seconds)
    nv = measure("decode + edit + encode (naive)", decode_edit_encode, raws, seconds)
    print(f"resource: {r / base:.2f}x of pass-through, {r / nv:.1f}x the naive way; "
          f"resourcedetection: {d / base:.2f}x of pass-through")


def pipeline(requests: int, concurrency: int) -> None:
    from benchmarks.harness import free_port, measure_otlp_load

    for kind in ("otelpipe", "otelcol"):
        rates = {}
        for with_resource in (False, True):
            grpc, http = free_port(), free_port()
            cfg: dict[str, Any] = {
                "receivers": {"otlp": {"protocols": {
                    "grpc": {"endpoint": f"127.0.0.1:{grpc}"},
                    "http": {"endpoint": f"127.0.0.1:{http}"}}}},
                "exporters": {"nop": None},
                "service": {"pipelines": {"traces": {"receivers": ["otlp"],
                                                     "exporters": ["nop"]}}}}
            if with_resource:
                cfg["processors"] = {"resource": {"attributes": ACTIONS}}
                cfg["service"]["pipelines"]["traces"]["processors"] = ["resource"]
            if kind == "otelcol":
                cfg["service"]["telemetry"] = {"metrics": {"level": "none"}}
            row = measure_otlp_load(kind, cfg, "http", requests, concurrency)
            rates[with_resource] = row["spans_per_cpu_s"]
            print(f"{kind:9} http {'resource' if with_resource else 'none':9} "
                  f"{row['spans_per_cpu_s']:>10,} spans/CPU-s  errors {row['errors']}",
                  flush=True)
        print(f"{kind}: with resource {rates[True] / rates[False]:.2f}x of without")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("seconds", nargs="?", type=float, default=3.0)
    ap.add_argument("--pipeline", action="store_true")
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    if args.pipeline:
        pipeline(args.requests, args.concurrency)
    else:
        sys.argv[1:] = [str(args.seconds)]
        main()
