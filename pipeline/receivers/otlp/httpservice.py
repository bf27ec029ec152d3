"""The otlp receiver's HTTP service: the /v1/* handlers, their answers, the server."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from google.rpc import code_pb2

from pipeline.component import Consumer, Signal
from pipeline.errors import PermanentError, RetryableError
from pipeline.pdata.batch import Batch
from pipeline.pdata.otlp import AttributeLimits
from pipeline.pdata.otlpjson import encode_request
from pipeline.receiverhelper.auth import auth_middleware
from pipeline.receiverhelper.body import BodyError
from pipeline.receiverhelper.grpcserver import grpc_status_details
from pipeline.receiverhelper.http import (
    HTTPServer,
    Refused,
    ServerLimits,
    read_body,
    retry_after_header,
)
from pipeline.receiverhelper.obs import ReceiverObs, sender_reason
from pipeline.receivers._otlpdecode import (
    DecodeWorker,
    MalformedRequest,
    Prepared,
    off_loop,
    prepare,
)
from pipeline.receivers.otlp.common import JSON_TYPE, PROTOBUF_TYPES, partial_success
from pipeline.receivers.otlp.config import HTTPSettings

if TYPE_CHECKING:
    from aiohttp import web

    from pipeline.receivers.otlp.receiver import OTLPReceiver

HTTP_SHUTDOWN_TIMEOUT = 10.0


def http_export(receiver: OTLPReceiver, signal: Signal, cfg: HTTPSettings
                ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    from aiohttp import web

    consumer = receiver.consumers.get(signal)
    obs = ReceiverObs(receiver.settings, "http")
    batch_of = receiver._batch_of
    limits = receiver.config.attribute_limits
    decoder = receiver._decoder
    deliver = obs.deliver
    limit = cfg.max_request_body_size
    no_pipeline = receiver._no_pipeline(signal)
    log = receiver.log

    async def export(request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            obs.failed_request("method_not_allowed")
            return web.Response(status=405, headers={"Allow": "POST"},
                                text="405 method not allowed, supported: [POST]")
        ctype = request.content_type
        if ctype in PROTOBUF_TYPES:
            is_json = False
        elif ctype == JSON_TYPE:
            is_json = True
        else:
            obs.failed_request("unsupported_media_type")
            return web.Response(
                status=415, text=f"415 unsupported media type {ctype!r}, supported: "
                                 "[application/json, application/x-protobuf]")
        target = consumer
        if target is None:
            obs.failed_request("no_pipeline")
            return _status_response(is_json, ctype, 404, code_pb2.UNIMPLEMENTED, no_pipeline)
        body = await _read_body(request, obs, is_json, ctype, limit)
        if isinstance(body, web.Response):
            return body
        decoded = await _decode_body(signal, body, obs, is_json, ctype, limits, decoder)
        if isinstance(decoded, web.Response):
            return decoded
        batch, rejected = batch_of(signal, decoded, obs, "http")
        # As in gRPC: the batch alone holds the data while it waits.
        del body, decoded
        if batch is not None:
            refused = await _deliver_http(deliver, target, batch, is_json, ctype, log)
            if refused is not None:
                return refused
        if rejected:
            resp = partial_success(signal, rejected)[0]
            answer = encode_request(resp) if is_json else resp.SerializeToString()
        else:
            answer = b"{}" if is_json else b""
        return web.Response(body=answer, content_type=ctype)

    return export


async def start_http(receiver: OTLPReceiver, cfg: HTTPSettings) -> None:
    from aiohttp import web

    # Bodies are read against our own limit; aiohttp's check is the backstop.
    middlewares = [auth_middleware(receiver._http_auth, _unauthorized)] \
        if receiver._http_auth is not None else []
    app = web.Application(client_max_size=cfg.max_request_body_size,
                          middlewares=middlewares)
    for signal in Signal:
        app.router.add_route("*", cfg.url_path(signal), http_export(receiver, signal, cfg))
    server = HTTPServer(app, cfg.endpoint, receiver.log, shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT,
                        auto_decompress=False,
                        ssl_context=cfg.tls.ssl_context() if cfg.tls is not None else None,
                        limits=ServerLimits.of(cfg), telemetry=receiver.settings.telemetry,
                        reuse_port=cfg.so_reuseport)
    await server.start()
    receiver._http_server = server


async def _read_body(request: web.Request, obs: ReceiverObs, is_json: bool, ctype: str,
                     limit: int) -> bytes | web.Response:
    """The request body, inflated per Content-Encoding, or the error answer (413 above
    `limit` before or after decompression, 400/415 for a bad encoding, 408 when it
    is too slow, 503 + Retry-After before reading while over the listener's budgets)."""

    length = request.content_length
    if length is not None and length > limit:
        obs.failed_request("too_large")
        return _too_large(is_json, ctype, limit)
    try:
        return await read_body(request, limit)
    except Refused as exc:
        obs.failed_request(exc.reason)
        return _status_response(is_json, ctype, 503, code_pb2.UNAVAILABLE, str(exc),
                                retry_after=exc.retry_after, headers=exc.headers)
    except BodyError as exc:
        reason, code = _BODY_ERRORS.get(exc.status, ("bad_encoding", code_pb2.INVALID_ARGUMENT))
        obs.failed_request(reason)
        return _status_response(is_json, ctype, exc.status, code, str(exc))


_BODY_ERRORS = {413: ("too_large", code_pb2.RESOURCE_EXHAUSTED),
                408: ("timeout", code_pb2.DEADLINE_EXCEEDED)}



async def _decode_body(signal: Signal, body: bytes, obs: ReceiverObs, is_json: bool,
                       ctype: str, limits: AttributeLimits, decoder: DecodeWorker
                       ) -> Prepared | web.Response:
    """The decoded and checked request (large bodies in the worker process), or the
    error answer (400 for a malformed body)."""
    try:
        if off_loop(body, is_json):
            return await decoder.prepare(signal, body, is_json, limits)
        return prepare(signal, body, is_json, limits)
    except MalformedRequest as exc:
        obs.failed_request("malformed")
        return _status_response(is_json, ctype, 400, code_pb2.INVALID_ARGUMENT, str(exc))
    except RuntimeError:
        obs.failed_request("decode_worker")
        return _status_response(is_json, ctype, 503, code_pb2.UNAVAILABLE,
                                "internal error in the receiver", headers={"Retry-After": "1"})


async def _deliver_http(deliver: Callable[[Consumer, Batch], Awaitable[None]],
                        target: Consumer, batch: Batch, is_json: bool, ctype: str,
                        log: logging.Logger) -> web.Response | None:
    """Deliver; None once accepted, else the answer to a refusal or rejection."""
    try:
        await deliver(target, batch)
    except RetryableError as exc:
        status = 429 if exc.throttle else 503
        code = code_pb2.RESOURCE_EXHAUSTED if exc.throttle else code_pb2.UNAVAILABLE
        return _status_response(
            is_json, ctype, status, code, sender_reason(exc),
            retry_after=exc.retry_after, headers=retry_after_header(exc))
    except PermanentError as exc:
        return _status_response(is_json, ctype, 400, code_pb2.INVALID_ARGUMENT,
                                sender_reason(exc))
    except Exception:
        log.debug("refusing a request after a pipeline failure")
        return _status_response(is_json, ctype, 503, code_pb2.UNAVAILABLE,
                                "internal error in the pipeline",
                                headers={"Retry-After": "1"})
    return None


def _status_response(is_json: bool, ctype: str, status: int, code: int, message: str, *,
                     retry_after: float | None = None,
                     headers: Any = None) -> web.Response:
    """An error answer: a google.rpc.Status in the request's content type."""
    from aiohttp import web

    if is_json:
        st: dict[str, Any] = {"code": code, "message": message}
        if retry_after is not None:
            st["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                              "retryDelay": f"{max(0.0, retry_after):g}s"}]
        body = orjson.dumps(st)
    else:
        body = grpc_status_details(code, message, retry_after)
    return web.Response(status=status, body=body, content_type=ctype, headers=headers)


def _unauthorized(request: web.Request, reason: str) -> web.Response:
    """401 with a google.rpc.Status (UNAUTHENTICATED) in the request's content type."""
    ctype = request.content_type
    if ctype not in PROTOBUF_TYPES:
        ctype = JSON_TYPE  # JSON requests, and anything that is not OTLP protobuf
    return _status_response(ctype == JSON_TYPE, ctype, 401, code_pb2.UNAUTHENTICATED, reason)


def _too_large(is_json: bool, ctype: str, limit: int) -> web.Response:
    return _status_response(is_json, ctype, 413, code_pb2.RESOURCE_EXHAUSTED,
                            f"request body exceeds the limit of {limit} bytes")
