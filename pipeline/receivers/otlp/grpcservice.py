"""The otlp receiver's gRPC service: the Export handlers and the server."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from google.rpc import code_pb2

from pipeline.component import Signal
from pipeline.errors import PermanentError, RetryableError
from pipeline.pdata.otlp import AttributeLimits
from pipeline.receiverhelper.auth import grpc_server_credentials
from pipeline.receiverhelper.grpcserver import (
    Refused,
    grpc_status_details,
    refuse,
    server_options,
    try_admit,
)
from pipeline.receiverhelper.obs import ReceiverObs, sender_reason
from pipeline.receivers._otlpdecode import (
    OFF_LOOP_PROTOBUF_BYTES,
    DecodeWorker,
    MalformedRequest,
    Prepared,
    prepare,
)
from pipeline.receivers.otlp.common import partial_success
from pipeline.receivers.otlp.config import GRPCSettings

if TYPE_CHECKING:
    import grpc
    import grpc.aio

    from pipeline.receivers.otlp.receiver import OTLPReceiver

GRPC_SERVICES = {
    Signal.TRACES: "opentelemetry.proto.collector.trace.v1.TraceService",
    Signal.LOGS: "opentelemetry.proto.collector.logs.v1.LogsService",
    Signal.METRICS: "opentelemetry.proto.collector.metrics.v1.MetricsService",
}
GRPC_SHUTDOWN_GRACE = 10.0


def grpc_export(receiver: OTLPReceiver, signal: Signal
                ) -> Callable[[bytes, Any], Awaitable[bytes]]:
    import grpc

    obs = ReceiverObs(receiver.settings, "grpc")
    StatusCode = grpc.StatusCode
    consumer = receiver.consumers.get(signal)
    auth = receiver._grpc_auth
    if consumer is None:
        no_pipeline = receiver._no_pipeline(signal)

        async def unimplemented(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
            if auth is not None:
                reason = auth.grpc_check(context)
                if reason is not None:
                    await auth.grpc_abort(context, reason)
            obs.failed_request("no_pipeline")
            await context.abort(StatusCode.UNIMPLEMENTED, no_pipeline)
            raise AssertionError("unreachable")

        return unimplemented

    batch_of = receiver._batch_of
    limits = receiver.config.attribute_limits
    decoder = receiver._decoder
    deliver = obs.deliver
    ok = b""  # an empty Export*ServiceResponse
    budget = receiver._grpc_budget
    log = receiver.log

    async def export(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        # The common path awaits only the pipeline: admission, the decode of a small
        # body and the answer are plain calls (an abort is the only other await).
        if auth is not None:
            reason = auth.grpc_check(context)
            if reason is not None:
                await auth.grpc_abort(context, reason)
        admitted = try_admit(budget, obs, raw, context)
        if isinstance(admitted, Refused):
            await refuse(admitted, context)
            raise AssertionError("unreachable")
        reservation = admitted
        try:
            if len(raw) > OFF_LOOP_PROTOBUF_BYTES:
                prepared = await _grpc_decode_off_loop(signal, raw, limits, decoder, obs,
                                                       context)
            else:
                try:
                    prepared = prepare(signal, raw, False, limits)
                except MalformedRequest as exc:
                    obs.failed_request("malformed")
                    await context.abort(StatusCode.INVALID_ARGUMENT, str(exc))
            batch, rejected = batch_of(signal, prepared, obs, "grpc")
            # The batch holds what it needs (the bytes, or the message if ids were
            # dropped): no second copy may stay alive while the pipeline holds the batch.
            del prepared, raw
            if batch is not None:
                try:
                    await deliver(consumer, batch)
                except Exception as exc:
                    await _abort_refused(exc, context, log)
        finally:
            # The bytes are held while the request is decoded and delivered: released
            # here (also on abort or cancellation), not by a done callback on the call.
            reservation.release()
        if rejected:
            partial: bytes = partial_success(signal, rejected)[0].SerializeToString()
            return partial
        return ok

    return export


async def start_grpc(receiver: OTLPReceiver, cfg: GRPCSettings) -> None:
    import grpc.aio

    server = grpc.aio.server(options=server_options(
        max_recv_msg_size_mib=cfg.max_recv_msg_size_mib,
        max_concurrent_streams=cfg.max_concurrent_streams, so_reuseport=cfg.so_reuseport,
        max_connections=cfg.max_connections, keepalive=cfg.keepalive))
    for signal, service in GRPC_SERVICES.items():
        handlers = {"Export": grpc.unary_unary_rpc_method_handler(
            grpc_export(receiver, signal), request_deserializer=None,
            response_serializer=None)}
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, handlers),))
        server.add_registered_method_handlers(service, handlers)
    try:
        if cfg.tls is not None:
            port = server.add_secure_port(cfg.endpoint, grpc_server_credentials(cfg.tls))
        else:
            port = server.add_insecure_port(cfg.endpoint)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {cfg.endpoint}: {exc}") from None
    if not port:
        raise OSError(f"cannot listen on {cfg.endpoint}")
    await server.start()
    receiver._grpc_budget.open()
    receiver._grpc_server = server
    receiver.grpc_port = port
    receiver.log.info("listening", extra={"endpoint": cfg.endpoint, "protocol": "grpc",
                                      "tls": cfg.tls is not None,
                                      "auth": cfg.auth is not None})


async def _abort_refused(exc: Exception, context: grpc.aio.ServicerContext,
                         log: logging.Logger) -> None:
    """Abort the call the pipeline refused: UNAVAILABLE (with RetryInfo when known) for a
    retryable error or a failure, INVALID_ARGUMENT for a permanent one."""
    import grpc

    StatusCode = grpc.StatusCode
    metadata: tuple[tuple[str, bytes], ...] = ()
    if isinstance(exc, RetryableError):
        code, details = StatusCode.UNAVAILABLE, sender_reason(exc)
        metadata = (("grpc-status-details-bin", grpc_status_details(
            code_pb2.UNAVAILABLE, details, exc.retry_after)),)
    elif isinstance(exc, PermanentError):
        code, details = StatusCode.INVALID_ARGUMENT, sender_reason(exc)
    else:
        # Counted and logged by ReceiverObs; the sender retries, nothing is lost.
        log.debug("refusing a request after a pipeline failure")
        code, details = StatusCode.UNAVAILABLE, "internal error in the pipeline"
    await context.abort(code, details, trailing_metadata=metadata)


async def _grpc_decode_off_loop(signal: Signal, raw: bytes, limits: AttributeLimits,
                                decoder: DecodeWorker, obs: ReceiverObs,
                                context: grpc.aio.ServicerContext) -> Prepared:
    """A large request decoded and checked in the worker process; aborts the call with
    INVALID_ARGUMENT (malformed) or UNAVAILABLE (the worker died)."""
    import grpc

    try:
        return await decoder.prepare(signal, raw, False, limits)
    except MalformedRequest as exc:
        obs.failed_request("malformed")
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    except RuntimeError:
        obs.failed_request("decode_worker")
        await context.abort(grpc.StatusCode.UNAVAILABLE, "internal error in the receiver")
    raise AssertionError("unreachable")
