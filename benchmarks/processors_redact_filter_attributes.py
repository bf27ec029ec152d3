"""Per-item cost of the redact, filter and attributes processors (CPU time, one core).

    python benchmarks/processors_redact_filter_attributes.py

Logs: batches of 100 records, a ~110-character body and 10 attributes each;
spans: 100 spans with 10 attributes. Each case starts from the serialized
request (as the otlp receiver hands it over) and includes decoding, the
processor's work and the re-encoding an exporter would do (`to_bytes()`).
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.component import Consumer, Signal
from pipeline.pdata.batch import Batch
from pipeline.processors import attributes, filter, redact
from tests.support import processor_settings

N = 100
BODIES = {
    "clean": "GET /api/v1/orders/{i} completed in {i}ms for customer cust-{i} region eu-west-1 ok",
    "trigger": "refreshing cache key orders:{i} for user 2023-10-10 12:00:{i:02d} after 3 retries",
    "secret10": "GET /api/v1/orders/{i} completed in {i}ms for customer cust-{i} region eu-west-1"
                " ok",
    "secret100": "login ok user=bob{i} password=hunter{i} from 10.0.0.{i} via sso gateway eu-1",
}


def logs_raw(case: str) -> bytes:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.add(key="service.name").value.string_value = "api"
    sl = rl.scope_logs.add()
    for i in range(N):
        lr = sl.log_records.add(time_unix_nano=1_700_000_000_000_000_000 + i,
                                severity_number=9, severity_text="INFO")
        body = BODIES[case]
        if case == "secret10" and i % 10 == 0:
            body = "login ok user=bob{i} password=hunter{i} from 10.0.0.{i} via sso gateway eu-1"
        lr.body.string_value = body.format(i=i)
        for a in range(8):
            lr.attributes.add(key=f"attr.{a}").value.string_value = f"value-{a}-{i}"
        lr.attributes.add(key="http.status_code").value.int_value = 200
        lr.attributes.add(key="duration").value.double_value = 1.5
    return req.SerializeToString()


def spans_raw() -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "api"
    ss = rs.scope_spans.add()
    rnd = random.Random(1)
    for i in range(N):
        sp = ss.spans.add(trace_id=rnd.randbytes(16), span_id=rnd.randbytes(8),
                          name=f"GET /r/{i % 7}", kind=2, start_time_unix_nano=1,
                          end_time_unix_nano=1 + i * 1_000_000)
        for a in range(10):
            sp.attributes.add(key=f"attr.{a}").value.string_value = f"v{a}.{i}"
    return req.SerializeToString()


class Drain(Consumer):
    async def consume(self, batch: Any) -> None:
        batch.to_bytes()


def measure(label: str, signal: Signal, module: Any, cfg: dict[str, Any], raw: bytes,
            rounds: int = 300) -> float:
    settings = processor_settings(module.factory.type, next_consumer=Drain(), signal=signal)
    proc = module.factory.create(settings, module.factory.config_model.model_validate(cfg))
    loop = asyncio.new_event_loop()

    async def run() -> float:
        t0 = time.process_time()
        for _ in range(rounds):
            await proc.consume(Batch(signal, raw=raw))
        return time.process_time() - t0

    base_t0 = time.process_time()
    for _ in range(rounds):  # the floor: decode + encode only
        b = Batch(signal, raw=raw)
        b.mutable()
        b.to_bytes()
    floor = time.process_time() - base_t0
    spent = loop.run_until_complete(run())
    loop.close()
    per_item = spent / (rounds * N) * 1e6
    print(f"{label:48s} {per_item:6.2f} µs/item  ({1e6 / per_item:9.0f} items/CPU-s; "
          f"decode+encode alone {floor / (rounds * N) * 1e6:.2f} µs)")
    return per_item


def main() -> None:
    for case in BODIES:
        measure(f"redact logs, {case}", Signal.LOGS, redact, {}, logs_raw(case))
    measure("redact logs, secret100, summary + hash", Signal.LOGS, redact,
            {"summary": True, "hash": "sha256"}, logs_raw("secret100"))
    measure("redact spans, clean", Signal.TRACES, redact, {}, spans_raw())
    measure("filter logs, severity (nothing dropped)", Signal.LOGS, filter,
            {"logs": {"exclude": [{"not": {"severity_at_least": "INFO"}}]}}, logs_raw("clean"))
    measure("filter logs, attribute + body (half dropped)", Signal.LOGS, filter,
            {"logs": {"exclude": [{"any": [{"attribute": "attr.3", "matches": "[02468]$"},
                                           {"field": "body", "matches": "never"}]}]}},
            logs_raw("clean"))
    measure("filter spans, name + duration", Signal.TRACES, filter,
            {"traces": {"exclude": [{"all": [{"field": "name", "equals": "GET /r/0"},
                                             {"field": "duration_ms", "lt": 50}]}]}},
            spans_raw())
    measure("attributes spans, upsert + delete + hash", Signal.TRACES, attributes,
            {"actions": [{"key": "env", "value": "prod", "action": "upsert"},
                         {"key": "attr.1", "action": "delete"},
                         {"key": "attr.2", "action": "hash"}]}, spans_raw())


if __name__ == "__main__":
    main()
