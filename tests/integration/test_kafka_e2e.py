"""SDK -> agent (otlp receiver -> kafka exporter) -> Kafka -> gateway (kafka
receiver -> file exporter): every span arrives exactly once when nothing fails."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_kafka_gateway import _assignments, read_names
from tests.support import OtelpipeProcess, aeventually, free_port, with_logs

SPANS = 2000


@pytest.mark.parametrize("encoding", ["otlp_proto", "otlp_json"])
async def test_sdk_agent_kafka_gateway_file(kafka_bootstrap: str, kafka_topic: Any,
                                            tmp_path: Path, encoding: str) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    topic = await kafka_topic("e2e")
    grpc_port = free_port()
    agent_cfg = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"}}}},
        "processors": {"batch": {"send_batch_size": 512, "timeout": "100ms"}},
        "exporters": {"kafka": {"brokers": [kafka_bootstrap], "topic": topic,
                                "encoding": encoding, "partition_traces_by_id": True}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                             "exporters": ["kafka"]}}},
    }
    out = tmp_path / "gw" / "spans.jsonl"
    gateway_cfg = {
        "receivers": {"kafka": {"brokers": [kafka_bootstrap], "group_id": topic,
                                "encoding": encoding, "traces": {"topics": [topic]}}},
        "exporters": {"file": {"path": str(out)}},
        "service": {"pipelines": {"traces": {"receivers": ["kafka"], "exporters": ["file"]}}},
    }
    (tmp_path / "agent").mkdir()
    (tmp_path / "gw").mkdir()
    agent = OtelpipeProcess(agent_cfg, tmp_path / "agent", wait_ports=(grpc_port,))
    gateway = OtelpipeProcess(gateway_cfg, tmp_path / "gw")
    started = time.monotonic()
    with agent, gateway:
        provider = TracerProvider(resource=Resource.create({"service.name": "e2e"}))
        provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"127.0.0.1:{grpc_port}", insecure=True),
            max_export_batch_size=256))
        tracer = provider.get_tracer("e2e")
        for i in range(SPANS // 4):
            with tracer.start_as_current_span(f"root-{i}"):
                for j in range(3):
                    with tracer.start_as_current_span(f"child-{i}-{j}"):
                        pass
        assert provider.force_flush(30_000)
        provider.shutdown()
        await aeventually(lambda: _assignments(gateway), timeout=60,
                          what=with_logs("the gateway's partitions", gateway))
        await aeventually(lambda: len(read_names(out)[0]) >= SPANS, timeout=60,
                          what=with_logs("every span at the gateway", agent, gateway))
        await asyncio.sleep(1.0)  # anything more would be a duplicate
    names, broken = read_names(out)
    print(f"\ne2e {encoding}: {len(names)} spans at the gateway of {SPANS} sent, "
          f"{time.monotonic() - started:.1f}s")
    assert broken == 0
    assert len(names) == SPANS
    assert len(set(names)) == SPANS
