from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2, status_pb2

from pipeline.receiverhelper import pressure
from pipeline.receiverhelper.budget import ListenerBudget, Pool
from pipeline.receiverhelper.grpcserver import KeepaliveSettings, admit, server_options
from pipeline.receiverhelper.obs import ReceiverObs
from pipeline.telemetry.metrics import Telemetry
from tests.support import aeventually, receiver_settings

METHOD = "/test.Budget/Export"


def test_collector_keys_become_core_arguments() -> None:
    keepalive = KeepaliveSettings.model_validate({
        "server_parameters": {"max_connection_idle": "1m", "max_connection_age": "30s",
                              "max_connection_age_grace": "5s"},
        "enforcement_policy": {"min_time": "10s", "permit_without_stream": True}})
    options = dict(server_options(max_recv_msg_size_mib=4, max_concurrent_streams=10,
                                  so_reuseport=False, max_connections=50, keepalive=keepalive))
    assert options == {
        "grpc.max_receive_message_length": 4 * 1024 * 1024,
        "grpc.max_concurrent_streams": 10,
        "grpc.so_reuseport": 0,
        "grpc.max_allowed_incoming_connections": 50,
        "grpc.server_handshake_timeout_ms": 10_000,
        "grpc.max_connection_idle_ms": 60_000,
        "grpc.max_connection_age_ms": 30_000,
        "grpc.max_connection_age_grace_ms": 5_000,
        "grpc.keepalive_time_ms": 7_200_000,
        "grpc.keepalive_timeout_ms": 20_000,
        "grpc.http2.min_ping_interval_without_data_ms": 10_000,
        "grpc.keepalive_permit_without_calls": 1,
        "grpc.http2.max_ping_strikes": 2,
    }
    defaults = dict(server_options(max_recv_msg_size_mib=4, max_concurrent_streams=100,
                                   so_reuseport=True, max_connections=1000,
                                   keepalive=KeepaliveSettings()))
    assert "grpc.max_connection_age_ms" not in defaults
    assert defaults["grpc.max_connection_idle_ms"] == 300_000


@asynccontextmanager
async def serving(budget: ListenerBudget, telemetry: Telemetry) -> AsyncIterator[str]:
    obs = ReceiverObs(receiver_settings("otlp", telemetry), "grpc")

    async def export(raw: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        await admit(budget, obs, raw, context)
        return b""

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Budget", {
        "Export": grpc.unary_unary_rpc_method_handler(export)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def call(target: str, body: bytes) -> grpc.aio.AioRpcError | None:
    async with grpc.aio.insecure_channel(target) as channel:
        try:
            await channel.unary_unary(METHOD)(body, timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc
    return None


def retry_delay(exc: grpc.aio.AioRpcError) -> float:
    details = dict(exc.trailing_metadata() or ())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(details)
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    return float(info.retry_delay.seconds)


async def test_refused_while_the_memory_limiter_refuses() -> None:
    telemetry = Telemetry()
    budget = ListenerBudget(1000, Pool())
    pressure.MEMORY.refuse("processor memory_limiter in test", "over the soft limit", 3.0)
    try:
        async with serving(budget, telemetry) as target:
            exc = await call(target, b"x" * 10)
    finally:
        pressure.MEMORY.accept("processor memory_limiter in test")
    assert exc is not None
    assert exc.code() == grpc.StatusCode.UNAVAILABLE
    assert exc.details() == "memory limit: processor memory_limiter in test: over the soft limit"
    assert retry_delay(exc) == 3.0
    assert telemetry.registry.get_sample_value(
        "otelpipe_receiver_failed_requests_total",
        {"receiver": "otlp", "transport": "grpc", "reason": "memory_limiter"}) == 1.0


@pytest.mark.parametrize(("held", "size", "refused"), [(0, 5000, False), (600, 300, False),
                                                      (600, 500, True)])
async def test_messages_beyond_the_in_flight_budget_are_refused(
        held: int, size: int, refused: bool) -> None:
    budget = ListenerBudget(1000, Pool())
    budget.open()
    budget.try_reserve(held)  # another request in progress
    async with serving(budget, Telemetry()) as target:
        exc = await call(target, b"x" * size)
        # the server releases after its answer is sent: the client may see it first
        await aeventually(lambda: budget.used == held, what="the request's bytes released")
    assert (exc is not None) == refused
    if exc is not None:
        assert exc.code() == grpc.StatusCode.UNAVAILABLE
        assert "max_in_flight_bytes" in (exc.details() or "")
        assert retry_delay(exc) == 1.0
    assert budget.used == held  # released when the RPC ended
