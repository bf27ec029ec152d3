"""Decoding OTLP bodies on the loop and in the worker process (receivers/_otlpdecode.py),
and the otlp receiver's attribute limits and large bodies over real sockets."""

from __future__ import annotations

import asyncio
import os
import signal as signal_module
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import grpc.aio
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.component import Signal
from pipeline.pdata.otlp import AttributeLimits
from pipeline.pdata.otlpjson import encode_request
from pipeline.receivers._otlpdecode import (
    OFF_LOOP_JSON_BYTES,
    OFF_LOOP_PROTOBUF_BYTES,
    DecodeWorker,
    MalformedRequest,
    prepare,
)
from pipeline.receivers.otlp import factory
from pipeline.receivers.otlp.config import OTLPReceiverConfig
from pipeline.telemetry.metrics import Telemetry
from tests.support import Sink, free_port, receiver_settings

LIMITS = AttributeLimits(max_attributes=5, max_value_length=100)
METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def spans(n: int, *, attrs: int = 2, bad: int = 0, value: str = "v") -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    for i in range(n + bad):
        sp = ss.spans.add(name=f"s{i}", trace_id=os.urandom(16 if i < n else 3),
                          span_id=os.urandom(8))
        for j in range(attrs):
            sp.attributes.add(key=f"k{j}").value.string_value = value
    return req


# prepare ----------------------------------------------------------------------------------

def test_prepare_unchanged_protobuf_keeps_the_body() -> None:
    raw = spans(3).SerializeToString()
    p = prepare(Signal.TRACES, raw, False, LIMITS)
    assert (p.raw is raw, p.message, p.items, p.rejected) == (True, None, 3, 0)


def test_prepare_drops_bad_ids_and_cuts_attributes() -> None:
    req = spans(2, bad=1)
    req.resource_spans[0].scope_spans[0].spans[0].attributes.add(key="long") \
        .value.string_value = "x" * 500
    for i in range(10):
        req.resource_spans[0].scope_spans[0].spans[1].attributes.add(key=f"e{i}")
    p = prepare(Signal.TRACES, req.SerializeToString(), False, LIMITS)
    assert (p.raw, p.items, p.rejected, p.attributes_dropped, p.values_truncated) == \
        (None, 2, 1, 7, 1)
    first, second = p.message.resource_spans[0].scope_spans[0].spans
    assert first.attributes[2].value.string_value == "x" * 100
    assert (len(second.attributes), second.dropped_attributes_count) == (5, 7)
    assert prepare(Signal.TRACES, req.SerializeToString(), False, LIMITS, serialize=True) \
        .raw == p.message.SerializeToString()


def test_prepare_json_and_malformed() -> None:
    req = spans(2)
    p = prepare(Signal.TRACES, encode_request(req), True, LIMITS)
    assert (p.raw, p.message) == (req.SerializeToString(), None)
    with pytest.raises(MalformedRequest, match=r"^malformed protobuf: "):
        prepare(Signal.TRACES, b"\xff\xff", False, LIMITS)
    with pytest.raises(MalformedRequest, match=r"^invalid JSON: "):
        prepare(Signal.TRACES, b"{", True, LIMITS)


# The worker process ---------------------------------------------------------------------

@pytest.fixture
async def worker() -> AsyncIterator[DecodeWorker]:
    w = DecodeWorker()
    try:
        yield w
    finally:
        await w.close()


async def test_worker_answers_as_prepare_does(worker: DecodeWorker) -> None:
    raw = spans(3).SerializeToString()
    p = await worker.prepare(Signal.TRACES, raw, False, LIMITS)
    assert (p.raw is raw, p.items) == (True, 3)  # unchanged: no bytes travel back

    req = spans(4, attrs=9, bad=2)
    p = await worker.prepare(Signal.TRACES, encode_request(req), True, LIMITS)
    local = prepare(Signal.TRACES, encode_request(req), True, LIMITS, serialize=True)
    assert p == local
    assert (p.items, p.rejected, p.attributes_dropped) == (4, 2, 4 * 4)

    with pytest.raises(MalformedRequest) as exc:
        await worker.prepare(Signal.LOGS, b"\x0a\x05\x01", False, LIMITS)
    assert str(exc.value).startswith("malformed protobuf: ")
    empty = await worker.prepare(Signal.METRICS, b"", False, LIMITS)
    assert (empty.raw, empty.items) == (None, 0)


async def test_worker_death_fails_one_request_then_restarts(worker: DecodeWorker) -> None:
    raw = spans(1).SerializeToString()
    await worker.prepare(Signal.TRACES, raw, False, LIMITS)
    assert worker._proc is not None
    os.kill(worker._proc.pid, signal_module.SIGKILL)
    await asyncio.to_thread(worker._proc.wait)
    with pytest.raises(RuntimeError, match="the decode worker failed"):
        await worker.prepare(Signal.TRACES, raw, False, LIMITS)
    assert (await worker.prepare(Signal.TRACES, raw, False, LIMITS)).items == 1


async def test_a_cancelled_caller_leaves_the_worker_in_sync(worker: DecodeWorker) -> None:
    big = spans(20_000).SerializeToString()
    task = asyncio.ensure_future(worker.prepare(Signal.TRACES, big, False, LIMITS))
    await asyncio.sleep(0.05)
    task.cancel()
    small = spans(2).SerializeToString()
    assert (await worker.prepare(Signal.TRACES, small, False, LIMITS)).items == 2


async def test_the_loop_runs_while_the_worker_decodes(worker: DecodeWorker) -> None:
    # 1M tiny attributes, ≈ 9 MB: a parse of ≈ 0.1-0.3 s (much more on a loaded
    # machine), off the loop. Were it on the loop, one tick would last all of it.
    raw = spans(1, attrs=1_000_000, value="").SerializeToString()
    await worker.prepare(Signal.TRACES, spans(1).SerializeToString(), False, LIMITS)  # warm
    stalls: list[float] = []

    async def ticker() -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            stalls.append(time.perf_counter() - t)

    tick = asyncio.ensure_future(ticker())
    t0 = time.perf_counter()
    try:
        p = await worker.prepare(Signal.TRACES, raw, False, LIMITS)
    finally:
        elapsed = time.perf_counter() - t0
        tick.cancel()
    assert (p.items, p.attributes_dropped) == (1, 1_000_000 - 5)
    assert len(stalls) >= 5
    assert max(stalls) < max(0.1, elapsed / 3), (max(stalls), elapsed)


# The receiver -----------------------------------------------------------------------------

@pytest.fixture
async def receiver(telemetry: Telemetry) -> AsyncIterator[tuple[Any, Sink, int, int]]:
    sink = Sink()
    gport, hport = free_port(), free_port()
    cfg = OTLPReceiverConfig.model_validate({
        "protocols": {"grpc": {"endpoint": f"127.0.0.1:{gport}", "max_recv_msg_size_mib": 8},
                      "http": {"endpoint": f"127.0.0.1:{hport}"}},
        "max_attributes_per_item": 5, "max_attribute_value_length": 100})
    rec = factory.create(receiver_settings("otlp", telemetry, consumers={Signal.TRACES: sink}),
                         cfg)
    await rec.start(None)  # type: ignore[arg-type]
    try:
        yield rec, sink, gport, hport
    finally:
        await rec.shutdown()


def counter(telemetry: Telemetry, name: str, transport: str) -> float:
    v = telemetry.registry.get_sample_value(
        f"otelpipe_receiver_{name}_total",
        {"receiver": "otlp", "transport": transport, "signal": "traces"})
    return v or 0.0


def test_config_defaults() -> None:
    cfg = OTLPReceiverConfig.model_validate({"protocols": {"http": None}})
    assert cfg.attribute_limits == AttributeLimits(1000, 65536, 1000, 1000, 32768)


@pytest.mark.parametrize("large", [False, True], ids=["on-loop", "worker"])
async def test_limits_over_http_and_grpc(receiver: tuple[Any, Sink, int, int],
                                         telemetry: Telemetry, large: bool) -> None:
    _, sink, gport, hport = receiver
    n = 6000 if large else 3  # 6000 spans x 7 attributes: > 1 MiB of protobuf
    req = spans(n, attrs=7, value="y" * 150)
    raw = req.SerializeToString()
    body = encode_request(req)
    assert (len(raw) > OFF_LOOP_PROTOBUF_BYTES, len(body) > OFF_LOOP_JSON_BYTES) == \
        (large, large)
    async with aiohttp.ClientSession() as http:
        for data, ctype in ((raw, "application/x-protobuf"), (body, "application/json")):
            async with http.post(f"http://127.0.0.1:{hport}/v1/traces", data=data,
                                 headers={"Content-Type": ctype}) as resp:
                assert resp.status == 200, await resp.read()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gport}", options=[
            ("grpc.max_send_message_length", 64 << 20)]) as channel:
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        assert await call(raw, timeout=30) == b""
    assert len(sink.batches) == 3
    for batch in sink.batches:
        got = [sp for rs in batch.message.resource_spans for ss in rs.scope_spans
               for sp in ss.spans]
        assert len(got) == n
        assert {(len(sp.attributes), sp.dropped_attributes_count) for sp in got} == {(5, 2)}
        assert {kv.value.string_value for kv in got[0].attributes} == {"y" * 100}
    assert counter(telemetry, "attributes_dropped", "http") == 2 * 2 * n
    assert counter(telemetry, "attribute_values_truncated", "http") == 2 * 5 * n
    assert counter(telemetry, "attributes_dropped", "grpc") == 2 * n


async def test_large_malformed_bodies(receiver: tuple[Any, Sink, int, int]) -> None:
    _, sink, gport, hport = receiver
    garbage = b"\x0a\xff\xff\xff\x7f" + b"\x00" * (OFF_LOOP_PROTOBUF_BYTES + 10)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{hport}/v1/traces", data=garbage,
                             headers={"Content-Type": "application/x-protobuf"}) as resp:
            assert resp.status == 400
        bad_json = b'{"resourceSpans": [' + b'{"scopeSpans": 5},' * 20_000 + b"{}]}"
        async with http.post(f"http://127.0.0.1:{hport}/v1/traces", data=bad_json,
                             headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 400
            text = orjson.loads(await resp.read())["message"]
            assert text.startswith("invalid OTLP JSON: repeated field scopeSpans"), text
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gport}", options=[
            ("grpc.max_send_message_length", 64 << 20)]) as channel:
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await call(garbage, timeout=30)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not sink.batches
