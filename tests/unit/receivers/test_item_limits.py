"""The otlp receiver's event, link and array limits over real sockets, on the loop and in
the decode worker (bodies over 1 MiB): exact counts in the spans and in the counters."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.component import Signal
from pipeline.pdata.otlpjson import encode_request
from pipeline.receivers._otlpdecode import OFF_LOOP_PROTOBUF_BYTES
from pipeline.receivers.otlp import factory
from pipeline.receivers.otlp.config import OTLPReceiverConfig
from pipeline.telemetry.metrics import Telemetry
from tests.support import Sink, free_port, receiver_settings


@pytest.fixture
async def receiver(telemetry: Telemetry) -> AsyncIterator[tuple[Sink, int]]:
    sink = Sink()
    hport = free_port()
    cfg = OTLPReceiverConfig.model_validate({
        "protocols": {"http": {"endpoint": f"127.0.0.1:{hport}"}},
        "max_events_per_span": 3, "max_links_per_span": 2, "max_attribute_array_length": 4})
    rec = factory.create(receiver_settings("otlp", telemetry, consumers={Signal.TRACES: sink}),
                         cfg)
    await rec.start(None)  # type: ignore[arg-type]
    try:
        yield sink, hport
    finally:
        await rec.shutdown()


def counter(telemetry: Telemetry, name: str) -> float | None:
    return telemetry.registry.get_sample_value(
        f"otelpipe_receiver_{name}_total",
        {"receiver": "otlp", "transport": "http", "signal": "traces"})


def spans(n: int, events: int, links: int, array: int) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    for i in range(n):
        sp = ss.spans.add(name=f"s{i}", trace_id=i.to_bytes(16, "big"),
                          span_id=(i + 1).to_bytes(8, "big"))
        for j in range(events):
            sp.events.add(name=f"e{j}")
        for j in range(links):
            sp.links.add(trace_id=b"\x01" * 16, span_id=(j + 1).to_bytes(8, "big"))
        values = sp.attributes.add(key="a").value.array_value.values
        for j in range(array):
            values.add().int_value = j
    return req


@pytest.mark.parametrize("large", [False, True], ids=["on-loop", "worker"])
@pytest.mark.parametrize("ctype", ["application/x-protobuf", "application/json"])
async def test_event_link_and_array_limits(receiver: tuple[Sink, int], telemetry: Telemetry,
                                           large: bool, ctype: str) -> None:
    sink, hport = receiver
    n = 4000 if large else 2  # 4000 spans: > 1 MiB of protobuf
    req = spans(n, events=5, links=6, array=9)
    raw = req.SerializeToString()
    assert (len(raw) > OFF_LOOP_PROTOBUF_BYTES) == large
    body = raw if ctype == "application/x-protobuf" else encode_request(req)
    async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{hport}/v1/traces", data=body,
            headers={"Content-Type": ctype}) as resp:
        assert resp.status == 200, await resp.read()
    [batch] = sink.batches
    got = [sp for rs in batch.message.resource_spans for ss in rs.scope_spans
           for sp in ss.spans]
    assert len(got) == n
    assert {(len(sp.events), sp.dropped_events_count, len(sp.links), sp.dropped_links_count,
             len(sp.attributes[0].value.array_value.values)) for sp in got} == {(3, 2, 2, 4, 4)}
    assert [e.name for e in got[0].events] == ["e0", "e1", "e2"]
    assert counter(telemetry, "span_events_dropped") == 2 * n
    assert counter(telemetry, "span_links_dropped") == 4 * n
    assert counter(telemetry, "attribute_arrays_truncated") == n
    assert counter(telemetry, "attributes_dropped") == 0


def test_defaults() -> None:
    cfg = OTLPReceiverConfig.model_validate({"protocols": {"http": None}})
    assert (cfg.max_events_per_span, cfg.max_links_per_span,
            cfg.max_attribute_array_length) == (1000, 1000, 32768)


