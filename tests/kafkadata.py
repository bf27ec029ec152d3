"""Reading a Kafka topic back (`read_topic`) for the kafka tests.

The request builders below are the old ones of tests/unit/{receivers,exporters}/test_kafka.py
only (owned elsewhere while the tests move): they become tests/builders.py's
`tagged_traces_request` / `tagged_logs_request` / `span_names` / `log_bodies`, and this
module keeps `read_topic` alone. New tests use tests/builders.py.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tests.support import aeventually


def kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def traces(resources: int = 1, traces_per_resource: int = 2, spans_per_trace: int = 3,
           *, service: str = "svc", attrs: int = 2, tag: str = "",
           resource_attrs: dict[str, str] | None = None) -> ExportTraceServiceRequest:
    """A request whose span names are unique: `<tag>r<i>t<j>s<k>`."""
    req = ExportTraceServiceRequest()
    for r in range(resources):
        rs = req.resource_spans.add()
        rs.resource.attributes.append(kv("service.name", f"{service}-{r}"))
        for k, v in (resource_attrs or {}).items():
            rs.resource.attributes.append(kv(k, v))
        ss = rs.scope_spans.add()
        ss.scope.name = "test"
        for t in range(traces_per_resource):
            tid = os.urandom(16)
            for s in range(spans_per_trace):
                sp = ss.spans.add()
                sp.trace_id = tid
                sp.span_id = os.urandom(8)
                sp.name = f"{tag}r{r}t{t}s{s}"
                sp.kind = 2
                sp.start_time_unix_nano = 1_700_000_000_000_000_000
                sp.end_time_unix_nano = 1_700_000_000_100_000_000
                for a in range(attrs):
                    sp.attributes.append(kv(f"attr{a}", "x" * 20))
    return req


def logs(resources: int = 1, records: int = 5, *, tag: str = "",
         resource_attrs: list[dict[str, str]] | None = None) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    for r in range(resources):
        rl = req.resource_logs.add()
        attrs = (resource_attrs[r] if resource_attrs else {"service.name": f"svc-{r}"})
        for k, v in attrs.items():
            rl.resource.attributes.append(kv(k, v))
        sl = rl.scope_logs.add()
        for i in range(records):
            lr = sl.log_records.add()
            lr.time_unix_nano = 1_700_000_000_000_000_000 + i
            lr.body.string_value = f"{tag}r{r}l{i}"
            lr.severity_text = "INFO"
    return req


def metrics(points: int = 3) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.append(kv("service.name", "svc"))
    sm = rm.scope_metrics.add()
    m = sm.metrics.add()
    m.name = "requests"
    for i in range(points):
        dp = m.gauge.data_points.add()
        dp.as_int = i
        dp.time_unix_nano = 1_700_000_000_000_000_000
    return req


def span_names(request: Any) -> list[str]:
    return [sp.name for rs in request.resource_spans for ss in rs.scope_spans for sp in ss.spans]


def log_bodies(request: Any) -> list[str]:
    return [lr.body.string_value for rl in request.resource_logs for sl in rl.scope_logs
            for lr in sl.log_records]


async def read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every record on the topic right now (all partitions, from the beginning)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: list[Any] = []

        async def at_end() -> bool:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= end[tp] for pos, tp in zip(positions, tps, strict=True)):
                return True
            data = await consumer.getmany(timeout_ms=500)
            for recs in data.values():
                out.extend(recs)
            return False

        await aeventually(at_end, what=f"{topic} read to its end", interval=0)
        return out
    finally:
        await consumer.stop()
