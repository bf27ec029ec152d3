"""A real refusal after the workers' RED merge: the user's metrics exporter (OTLP, no
queue, no retry) has its backend down, then up. The primary's deltatocumulative takes
back what the refused flushes added, the connectors send them again identical, and the
backend's cumulative calls equal the spans sent: none twice, none lost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from pipeline.aggregation.connector import AggregatingConnector
from pipeline.component import ComponentID, Kind, Signal
from pipeline.config.model import validate_config
from pipeline.receivers.otlp import factory as otlp_receiver
from pipeline.receivers.otlp.receiver import OTLPReceiver
from pipeline.registry import default_registry
from pipeline.service.service import Service
from pipeline.service.workers.plan import plan
from tests.builders import traces_request
from tests.support import Sink, aeventually, free_port, receiver_settings


async def _send(port: int, spans: int, start: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        await export(traces_request(spans, start=start).SerializeToString(), timeout=10)


def _calls(sink: Sink) -> dict[str, int]:
    """The last cumulative `calls` value per series the backend got."""
    last: dict[str, int] = {}
    for b in sink.batches:
        req = ExportMetricsServiceRequest.FromString(b.to_bytes())
        for rm in req.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name.endswith(".calls"):
                        for dp in m.sum.data_points:
                            assert m.sum.aggregation_temporality == 2  # CUMULATIVE
                            last[str(sorted(str(a) for a in dp.attributes))] = dp.as_int
    return last


async def test_a_refusal_after_the_merge_counts_every_span_once(tmp_path: Path) -> None:
    backend_port = free_port()
    raw: dict[str, Any] = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "connectors": {"redmetrics": {"metrics_flush_interval": "1h"}},
        "exporters": {"otlp/backend": {
            "endpoint": f"127.0.0.1:{backend_port}", "tls": {"insecure": True},
            "timeout": "2s", "retry_on_failure": {"enabled": False},
            "sending_queue": {"enabled": False}}},
        "service": {"pipelines": {
            "traces": {"receivers": ["otlp"], "exporters": ["redmetrics"]},
            "metrics": {"receivers": ["redmetrics"], "exporters": ["otlp/backend"]}}}}
    registry = default_registry()
    p = plan(raw, validate_config(raw, registry), workers=2,
             link_dir=str(tmp_path / "links"), registry=registry)
    (tmp_path / "links").mkdir(mode=0o700)
    primary = Service(validate_config(p.primary, registry))
    worker = Service(validate_config(p.worker, registry))
    await primary.start()
    await worker.start()
    backend: OTLPReceiver | None = None
    sink = Sink()
    try:
        conns = []
        for side in (worker, primary):
            rec = side.components()[(Kind.RECEIVER, ComponentID("otlp"))]
            conn = side.components()[(Kind.CONNECTOR, ComponentID("redmetrics"))]
            assert isinstance(rec, OTLPReceiver)
            assert isinstance(conn, AggregatingConnector)
            assert rec.grpc_port is not None
            conns.append((rec.grpc_port, conn))
        (wport, wconn), (pport, pconn) = conns
        await _send(wport, 5, 0)
        await _send(pport, 4, 0)
        # the backend is down: both flushes are refused, through the merge (and the link)
        assert not await wconn.flush()
        assert not await pconn.flush()
        await _send(wport, 3, 5)
        cfg = otlp_receiver.config_model.model_validate(
            {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{backend_port}"}}})
        made = otlp_receiver.create(
            receiver_settings("otlp/backend", consumers={Signal.METRICS: sink}), cfg)
        assert isinstance(made, OTLPReceiver)
        backend = made
        await backend.start(None)  # type: ignore[arg-type]
        # refused until the exporter's channel reconnects (its backoff): each refusal
        # is taken back again
        await aeventually(wconn.flush, what="a flush accepted by the backend")
        assert await pconn.flush()
        assert await wconn.flush()  # nothing new
        calls = _calls(sink)
        assert sum(calls.values()) == 5 + 4 + 3
        # span-0..3 in both processes, span-4 in the worker, span-5..7 in its second batch
        assert sorted(calls.values()) == [1, 1, 1, 1, 2, 2, 2, 2]
    finally:
        if backend is not None:
            await backend.shutdown()
        await worker.shutdown()
        await primary.shutdown()
