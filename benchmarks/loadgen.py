"""OTLP load generator: sends pre-serialized trace requests over gRPC or HTTP.

Runs as its own process so its CPU is not charged to the pipeline under test.
Every request carries `spans` spans of `attrs` attributes each, with fresh
ids per request template (a pool of templates is built up front, so the
generator's own per-request cost is only the send).

    python -m benchmarks.loadgen --protocol grpc --endpoint 127.0.0.1:4317 \
        --requests 2000 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
ROUTES = ["/api/orders", "/api/users/{id}", "/api/cart", "/health", "/api/search"]
METHODS = ["GET", "POST", "PUT", "DELETE"]


def make_request(spans: int, attrs: int, services: int = 3, rng: random.Random | None = None
                 ) -> bytes:
    """One ExportTraceServiceRequest with `spans` spans × `attrs` attributes."""
    rng = rng or random.Random()
    now = time.time_ns()
    out = []
    per_service = max(1, spans // services)
    for s in range(services):
        n = per_service if s < services - 1 else spans - per_service * (services - 1)
        span_list = []
        trace_id = rng.randbytes(16)
        for i in range(n):
            status = 2 if rng.random() < 0.05 else 0
            dur = int(rng.expovariate(1 / 0.08) * 1e9)
            kv = [
                KeyValue(key="http.route", value=AnyValue(string_value=rng.choice(ROUTES))),
                KeyValue(key="http.request.method",
                         value=AnyValue(string_value=rng.choice(METHODS))),
                KeyValue(key="http.response.status_code",
                         value=AnyValue(int_value=500 if status == 2 else 200)),
            ]
            for j in range(len(kv), attrs):
                kv.append(KeyValue(key=f"app.attr{j}",
                                   value=AnyValue(string_value=f"value-{j}-{i % 7}")))
            if i % 10 == 0:
                trace_id = rng.randbytes(16)
            span_list.append(Span(
                trace_id=trace_id, span_id=rng.randbytes(8),
                name=f"{rng.choice(METHODS)} {rng.choice(ROUTES)}",
                kind=Span.SPAN_KIND_SERVER, start_time_unix_nano=now - dur, end_time_unix_nano=now,
                attributes=kv[:attrs], status=Status(code=status)))
        out.append(ResourceSpans(
            resource=Resource(attributes=[
                KeyValue(key="service.name", value=AnyValue(string_value=f"svc-{s}")),
                KeyValue(key="host.name", value=AnyValue(string_value="bench"))]),
            scope_spans=[ScopeSpans(scope=InstrumentationScope(name="bench"), spans=span_list)]))
    return ExportTraceServiceRequest(resource_spans=out).SerializeToString()


async def run_grpc(endpoint: str, bodies: list[bytes], total: int, concurrency: int,
                   rate: float) -> dict:
    import grpc

    channel = grpc.aio.insecure_channel(
        endpoint, options=[("grpc.max_send_message_length", 64 << 20)])
    call = channel.unary_unary(TRACE_METHOD, request_serializer=None, response_deserializer=None)
    return await _drive(lambda body: call(body, timeout=30), bodies, total, concurrency, rate,
                        retry_codes=("UNAVAILABLE", "RESOURCE_EXHAUSTED"), close=channel.close)


async def run_http(endpoint: str, bodies: list[bytes], total: int, concurrency: int,
                   rate: float) -> dict:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
    url = f"http://{endpoint}/v1/traces"

    async def send(body: bytes) -> None:
        headers = {"Content-Type": "application/x-protobuf"}
        async with session.post(url, data=body, headers=headers) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}")

    return await _drive(send, bodies, total, concurrency, rate,
                        retry_codes=("HTTP 503", "HTTP 429"), close=session.close)


async def _drive(send, bodies, total, concurrency, rate, retry_codes, close) -> dict:  # type: ignore[no-untyped-def]
    sent = 0
    errors = 0
    retries = 0
    latencies: list[float] = []
    next_index = 0
    start = time.monotonic()
    interval = concurrency / rate if rate else 0.0

    async def worker(w: int) -> None:
        nonlocal sent, errors, retries, next_index
        due = start + w * (interval / concurrency if interval else 0)
        while next_index < total:
            i = next_index
            next_index += 1
            body = bodies[i % len(bodies)]
            if interval:
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                due += interval
            for _attempt in range(50):
                t0 = time.monotonic()
                try:
                    await send(body)
                except Exception as exc:
                    text = str(exc)
                    if any(code in text for code in retry_codes):
                        retries += 1
                        await asyncio.sleep(0.05)
                        continue
                    errors += 1
                    print(f"loadgen: send failed: {text[:200]}", file=sys.stderr)
                    break
                latencies.append(time.monotonic() - t0)
                sent += 1
                break

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.monotonic() - start
    await close()
    latencies.sort()
    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else 0.0

    return {"requests_sent": sent, "errors": errors, "retries": retries, "elapsed_s": elapsed,
            "latency_p50_ms": pct(0.5) * 1000, "latency_p99_ms": pct(0.99) * 1000}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    p.add_argument("--endpoint", default="127.0.0.1:4317")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--spans", type=int, default=100)
    p.add_argument("--attrs", type=int, default=10)
    p.add_argument("--templates", type=int, default=64)
    p.add_argument("--rate", type=float, default=0.0,
                   help="requests per second; 0 = as fast as possible")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    rng = random.Random(args.seed)
    bodies = [make_request(args.spans, args.attrs, rng=rng) for _ in range(args.templates)]
    runner = run_grpc if args.protocol == "grpc" else run_http
    result = asyncio.run(runner(args.endpoint, bodies, args.requests, args.concurrency, args.rate))
    result.update(spans_per_request=args.spans, request_bytes=len(bodies[0]), pid=os.getpid())
    print(orjson.dumps(result).decode())
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
