"""`otlp` receiver: OTLP over gRPC (4317) and HTTP (4318), protobuf and JSON.

```yaml
receivers:
  otlp:
    protocols:
      grpc:                      # null or {} means "enabled with defaults"
        endpoint: localhost:4317   # the default; 0.0.0.0:4317 for every interface
        max_recv_msg_size_mib: 4
        max_concurrent_streams: 100   # per connection
        max_connections: 1000
        max_in_flight_bytes: 67108864 # message bytes held at once (see below)
        keepalive:                    # the Collector's keys; these are the defaults
          server_parameters: {max_connection_idle: 5m, time: 2h, timeout: 20s}
          # max_connection_age, max_connection_age_grace: unset (no limit)
          enforcement_policy: {min_time: 5m, permit_without_stream: false}
        tls: {cert_file: server.pem, key_file: server-key.pem}   # optional
        auth: {bearer_token: ${env:OTLP_TOKEN}}                  # optional
      http:
        endpoint: localhost:4318
        max_request_body_size: 20971520
        max_in_flight_bytes: 67108864
        read_header_timeout: 10s
        read_timeout: 30s
        idle_timeout: 60s
        max_connections: 1000
        traces_url_path: /v1/traces
        tls: ...                 # as for grpc; client_ca_file requires client certificates
        auth: ...
```

Budgets (timeouts, connection caps, bytes in flight, the memory limiter
consulted before a body is read): docs/security.md, "Limits".

Auth (per protocol): a request without `authorization: Bearer <token>` (gRPC
metadata or HTTP header) or with a wrong one is answered UNAUTHENTICATED /
401 with `WWW-Authenticate`, before its body is read; nothing is delivered.
See docs/security.md.

Delivery: a request is acknowledged only after the pipeline accepted its
batch. Backpressure (`RetryableError`) answers gRPC UNAVAILABLE with a
`google.rpc.RetryInfo`, HTTP 503 (429 when throttling) with Retry-After; bad
data (`PermanentError`, malformed protobuf/JSON) answers INVALID_ARGUMENT /
400. An exporter's error reaches the sender only as its status and a generic
reason naming the exporter ("exporter otlphttp/backend unavailable: retry
later"); its text, which may quote the backend, goes to the log, masked.
Spans and log records with malformed ids are dropped and reported as a
partial success; the rest of the request is delivered.

Attribute limits (`max_attributes_per_item`, `max_attribute_value_length`,
the SDK's limits): each attribute list (of a resource, scope, span, span
event, link, log record or data point) keeps its first
`max_attributes_per_item` entries, the rest are added to the owner's
`dropped_attributes_count` (data points have no such field); string and bytes
values are cut to `max_attribute_value_length`. Both are counted
(`otelpipe_receiver_attributes_dropped`,
`otelpipe_receiver_attribute_values_truncated`). 0 turns a limit off.

Hot path: a protobuf request is parsed once with the full OTLP classes (C
code in upb; ≈ 45 µs per 100 spans x 10 attributes). That parse validates
the wire format and UTF-8 of every string field, which a projection cannot
do, and the ids are checked on the parsed message. The limits cost nothing
for items too small to exceed them (pdata/otlp.py: `apply_attribute_limits`).
The batch then travels as the bytes that arrived; the parsed message is not
kept (so queued batches hold one copy of the data), unless ids had to be
dropped or attributes cut. Bodies over 1 MiB (protobuf) or 256 KiB (JSON) are
decoded and checked in a worker process, so that no request blocks the event
loop (receivers/_otlpdecode.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from google.protobuf.message import Message
from google.rpc import code_pb2
from pydantic import Field, field_validator, model_validator

from pipeline.component import (
    Component,
    ComponentConfig,
    Consumer,
    Factory,
    Host,
    Kind,
    ReceiverCreateSettings,
    Signal,
)
from pipeline.config.tls import ServerAuthSettings, TLSServerSettings
from pipeline.config.types import Endpoint
from pipeline.errors import PermanentError, RetryableError
from pipeline.pdata.batch import Batch
from pipeline.pdata.otlp import (
    ITEM_NAME,
    REJECTED_FIELD,
    RESPONSE_TYPES,
    AttributeLimits,
)
from pipeline.pdata.otlpjson import encode_request
from pipeline.receiverhelper.auth import Authenticator, auth_middleware, grpc_server_credentials
from pipeline.receiverhelper.body import BodyError
from pipeline.receiverhelper.budget import ListenerBudget
from pipeline.receiverhelper.grpcserver import (
    KeepaliveSettings,
    admit,
    grpc_status_details,
    server_options,
)
from pipeline.receiverhelper.http import (
    DEFAULT_MAX_CONNECTIONS,
    HTTPServer,
    HTTPServerSettings,
    Refused,
    ServerLimits,
    max_in_flight_bytes_field,
    read_body,
    retry_after_header,
)
from pipeline.receiverhelper.obs import ReceiverObs, sender_reason
from pipeline.receivers._otlpdecode import (
    OFF_LOOP_PROTOBUF_BYTES,
    DecodeWorker,
    MalformedRequest,
    Prepared,
    off_loop,
    prepare,
)
from pipeline.telemetry.metrics import CounterSpec

_SIGNAL_LABELS = ("receiver", "transport", "signal")
ATTRIBUTES_DROPPED = CounterSpec(
    "otelpipe_receiver_attributes_dropped",
    "Attributes a receiver dropped from lists longer than max_attributes_per_item "
    "(added to the owner's dropped_attributes_count).", _SIGNAL_LABELS)
VALUES_TRUNCATED = CounterSpec(
    "otelpipe_receiver_attribute_values_truncated",
    "String and bytes attribute values a receiver cut to max_attribute_value_length.",
    _SIGNAL_LABELS)

if TYPE_CHECKING:
    import grpc
    import grpc.aio
    from aiohttp import web

# Config ------------------------------------------------------------------------------


class GRPCSettings(ComponentConfig):
    endpoint: Endpoint = Field("localhost:4317", description="host:port to listen on.")
    max_recv_msg_size_mib: int = Field(
        4, gt=0, description="Largest accepted request in MiB (RESOURCE_EXHAUSTED above).")
    max_concurrent_streams: int = Field(
        100, gt=0, description="Concurrent requests per client connection (HTTP/2 streams).")
    max_connections: int = Field(
        DEFAULT_MAX_CONNECTIONS, gt=0,
        description="Open connections of this listener; more are closed as they arrive.")
    max_in_flight_bytes: int = max_in_flight_bytes_field()
    keepalive: KeepaliveSettings = Field(
        default_factory=KeepaliveSettings,
        description="server_parameters (max_connection_idle, max_connection_age, "
                    "max_connection_age_grace, time, timeout) and enforcement_policy "
                    "(min_time, permit_without_stream), as in the Collector.")
    so_reuseport: bool = Field(
        False, description="Set SO_REUSEPORT so several worker processes share the port.")
    tls: TLSServerSettings | None = Field(
        None, description="Serve TLS with this certificate (client_ca_file: mutual TLS).")
    auth: ServerAuthSettings | None = Field(
        None, description="Require `authorization: Bearer <token>` metadata; "
                          "UNAUTHENTICATED otherwise.")


class HTTPSettings(HTTPServerSettings):
    endpoint: Endpoint = Field("localhost:4318", description="host:port to listen on.")
    traces_url_path: str = "/v1/traces"
    logs_url_path: str = "/v1/logs"
    metrics_url_path: str = "/v1/metrics"

    @field_validator("traces_url_path", "logs_url_path", "metrics_url_path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"URL path {v!r} must start with '/'")
        return v

    @model_validator(mode="after")
    def _distinct(self) -> HTTPSettings:
        paths = [self.traces_url_path, self.logs_url_path, self.metrics_url_path]
        if len(set(paths)) != 3:
            raise ValueError("traces_url_path, logs_url_path and metrics_url_path must differ")
        return self

    def url_path(self, signal: Signal) -> str:
        return str(getattr(self, f"{signal.value}_url_path"))


class Protocols(ComponentConfig):
    grpc: GRPCSettings | None = None
    http: HTTPSettings | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_means_defaults(cls, data: Any) -> Any:
        # Like the Collector: `grpc:` written with no value enables gRPC with defaults;
        # only an absent key disables a protocol.
        if isinstance(data, dict):
            data = {k: ({} if v is None and k in ("grpc", "http") else v)
                    for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _at_least_one(self) -> Protocols:
        if self.grpc is None and self.http is None:
            raise ValueError("must specify at least one protocol (grpc, http)")
        return self


class OTLPReceiverConfig(ComponentConfig):
    protocols: Protocols = Field(
        description="grpc and/or http; a protocol written with no settings uses its defaults.")
    max_attributes_per_item: int = Field(
        1000, ge=0, description="Attributes kept per list (resource, scope, span, event, "
        "link, log record, data point); the rest are dropped and counted in "
        "dropped_attributes_count. 0: no limit.")
    max_attribute_value_length: int = Field(
        65536, ge=0, description="String and bytes attribute values longer than this are "
        "cut to it (characters; bytes for bytes values). 0: no limit.")

    @property
    def attribute_limits(self) -> AttributeLimits:
        return AttributeLimits(self.max_attributes_per_item, self.max_attribute_value_length)

    @model_validator(mode="before")
    @classmethod
    def _null_protocols(cls, data: Any) -> Any:
        if isinstance(data, dict) and "protocols" in data and data["protocols"] is None:
            data = {**data, "protocols": {}}
        return data


# Shared request handling ---------------------------------------------------------------

GRPC_SERVICES = {
    Signal.TRACES: "opentelemetry.proto.collector.trace.v1.TraceService",
    Signal.LOGS: "opentelemetry.proto.collector.logs.v1.LogsService",
    Signal.METRICS: "opentelemetry.proto.collector.metrics.v1.MetricsService",
}
GRPC_SHUTDOWN_GRACE = 10.0
HTTP_SHUTDOWN_TIMEOUT = 10.0
PROTOBUF_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})
JSON_TYPE = "application/json"
ID_RULES = {
    Signal.TRACES: "a span needs a 16-byte trace id and an 8-byte span id",
    Signal.LOGS: "a log record's trace id must be empty or 16 bytes, its span id empty or 8",
}


def partial_success(signal: Signal, rejected: int) -> tuple[Message, str]:
    message = (f"{rejected} {ITEM_NAME[signal]} with malformed ids were dropped "
               f"({ID_RULES[signal]})")
    resp = RESPONSE_TYPES[signal]()
    ps = resp.partial_success
    setattr(ps, REJECTED_FIELD[signal], rejected)
    ps.error_message = message
    return resp, message


class OTLPReceiver(Component):
    def __init__(self, settings: ReceiverCreateSettings, config: OTLPReceiverConfig):
        self.settings = settings
        self.config = config
        self.log = settings.logger
        self.consumers: dict[Signal, Consumer] = dict(settings.consumers)
        self._grpc_server: grpc.aio.Server | None = None
        self._grpc_budget = ListenerBudget(
            config.protocols.grpc.max_in_flight_bytes if config.protocols.grpc is not None
            else 0)
        self._http_server: HTTPServer | None = None
        self.grpc_port: int | None = None
        p = config.protocols
        self._grpc_auth = Authenticator(p.grpc.auth, settings, "grpc") \
            if p.grpc is not None and p.grpc.auth is not None else None
        self._http_auth = Authenticator(p.http.auth, settings, "http") \
            if p.http is not None and p.http.auth is not None else None
        # Decodes large bodies off the event loop (started on the first one).
        self._decoder = DecodeWorker()

    def _no_pipeline(self, signal: Signal) -> str:
        return (f"receiver {self.settings.id} is in no {signal.value} pipeline; "
                f"add it to a {signal.value} pipeline's receivers to accept {signal.value}")

    def _batch_of(self, signal: Signal, prepared: Prepared, obs: ReceiverObs,
                  transport: str) -> tuple[Batch | None, int]:
        """The batch to deliver (None if no item is left) and the items rejected."""
        bad = prepared.rejected
        if bad:
            obs.rejected(signal, bad)
        if prepared.attributes_dropped or prepared.values_truncated:
            labels = (str(self.settings.id), transport, signal.value)
            telemetry = self.settings.telemetry
            telemetry.counter(ATTRIBUTES_DROPPED).labels(*labels).inc(
                prepared.attributes_dropped)
            telemetry.counter(VALUES_TRUNCATED).labels(*labels).inc(prepared.values_truncated)
        total = prepared.items
        if not total:
            return None, bad
        if prepared.raw is not None:
            return Batch(signal, raw=prepared.raw, items=total), bad
        return Batch(signal, message=prepared.message, items=total), bad

    # gRPC -------------------------------------------------------------------------------

    def _grpc_export(self, signal: Signal) -> Callable[[bytes, Any], Awaitable[bytes]]:
        import grpc

        obs = ReceiverObs(self.settings, "grpc")
        StatusCode = grpc.StatusCode
        consumer = self.consumers.get(signal)
        auth = self._grpc_auth
        if consumer is None:
            no_pipeline = self._no_pipeline(signal)

            async def unimplemented(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
                if auth is not None:
                    reason = auth.grpc_check(context)
                    if reason is not None:
                        await auth.grpc_abort(context, reason)
                obs.failed_request("no_pipeline")
                await context.abort(StatusCode.UNIMPLEMENTED, no_pipeline)
                raise AssertionError("unreachable")

            return unimplemented

        batch_of = self._batch_of
        limits = self.config.attribute_limits
        decoder = self._decoder
        deliver = obs.deliver
        ok = b""  # an empty Export*ServiceResponse
        budget = self._grpc_budget
        log = self.log

        async def export(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
            if auth is not None:
                reason = auth.grpc_check(context)
                if reason is not None:
                    await auth.grpc_abort(context, reason)
            await admit(budget, obs, raw, context)
            prepared = await _grpc_decode(signal, raw, limits, decoder, obs, context)
            batch, rejected = batch_of(signal, prepared, obs, "grpc")
            # The batch holds what it needs (the bytes, or the message if ids were
            # dropped): no second copy may stay alive while the pipeline holds the batch.
            del prepared, raw
            if batch is not None:
                code: grpc.StatusCode | None = None
                details = ""
                metadata: tuple[tuple[str, bytes], ...] = ()
                try:
                    await deliver(consumer, batch)
                except RetryableError as exc:
                    code, details = StatusCode.UNAVAILABLE, sender_reason(exc)
                    metadata = (("grpc-status-details-bin", grpc_status_details(
                        code_pb2.UNAVAILABLE, details, exc.retry_after)),)
                except PermanentError as exc:
                    code, details = StatusCode.INVALID_ARGUMENT, sender_reason(exc)
                except Exception:
                    # Counted and logged by ReceiverObs; the sender retries, nothing is lost.
                    log.debug("refusing a request after a pipeline failure")
                    code, details = StatusCode.UNAVAILABLE, "internal error in the pipeline"
                if code is not None:
                    await context.abort(code, details, trailing_metadata=metadata)
            if rejected:
                partial: bytes = partial_success(signal, rejected)[0].SerializeToString()
                return partial
            return ok

        return export

    async def _start_grpc(self, cfg: GRPCSettings) -> None:
        import grpc.aio

        server = grpc.aio.server(options=server_options(
            max_recv_msg_size_mib=cfg.max_recv_msg_size_mib,
            max_concurrent_streams=cfg.max_concurrent_streams, so_reuseport=cfg.so_reuseport,
            max_connections=cfg.max_connections, keepalive=cfg.keepalive))
        for signal, service in GRPC_SERVICES.items():
            handlers = {"Export": grpc.unary_unary_rpc_method_handler(
                self._grpc_export(signal), request_deserializer=None,
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
        self._grpc_budget.open()
        self._grpc_server = server
        self.grpc_port = port
        self.log.info("listening", extra={"endpoint": cfg.endpoint, "protocol": "grpc",
                                          "tls": cfg.tls is not None,
                                          "auth": cfg.auth is not None})

    # HTTP -------------------------------------------------------------------------------

    def _http_export(self, signal: Signal, cfg: HTTPSettings
                     ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        from aiohttp import web

        consumer = self.consumers.get(signal)
        obs = ReceiverObs(self.settings, "http")
        batch_of = self._batch_of
        limits = self.config.attribute_limits
        decoder = self._decoder
        deliver = obs.deliver
        limit = cfg.max_request_body_size
        no_pipeline = self._no_pipeline(signal)
        log = self.log

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

    async def _start_http(self, cfg: HTTPSettings) -> None:
        from aiohttp import web

        # Bodies are read against our own limit; aiohttp's check is the backstop.
        middlewares = [auth_middleware(self._http_auth, _unauthorized)] \
            if self._http_auth is not None else []
        app = web.Application(client_max_size=cfg.max_request_body_size,
                              middlewares=middlewares)
        for signal in Signal:
            app.router.add_route("*", cfg.url_path(signal), self._http_export(signal, cfg))
        server = HTTPServer(app, cfg.endpoint, self.log, shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT,
                            auto_decompress=False,
                            ssl_context=cfg.tls.ssl_context() if cfg.tls is not None else None,
                            limits=ServerLimits.of(cfg), telemetry=self.settings.telemetry)
        await server.start()
        self._http_server = server

    # Lifecycle --------------------------------------------------------------------------

    async def start(self, host: Host) -> None:
        protocols = self.config.protocols
        for auth in (self._grpc_auth, self._http_auth):
            if auth is not None:
                await auth.start()
        if protocols.grpc is not None:
            await self._start_grpc(protocols.grpc)
        if protocols.http is not None:
            try:
                await self._start_http(protocols.http)
            except BaseException:
                await self.shutdown()
                raise

    async def shutdown(self) -> None:
        """Stop accepting requests; let those in flight finish (bounded)."""
        tasks = []
        if self._grpc_server is not None:
            tasks.append(self._grpc_server.stop(GRPC_SHUTDOWN_GRACE))
            self._grpc_server = None
            self._grpc_budget.close()
        if self._http_server is not None:
            tasks.append(self._http_server.stop())
            self._http_server = None
        if tasks:
            await asyncio.gather(*tasks)
        for auth in (self._grpc_auth, self._http_auth):
            if auth is not None:
                await auth.stop()
        await self._decoder.close()


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


async def _grpc_decode(signal: Signal, raw: bytes, limits: AttributeLimits,
                       decoder: DecodeWorker, obs: ReceiverObs,
                       context: grpc.aio.ServicerContext) -> Prepared:
    """The request decoded and checked (large ones in the worker process); aborts the
    call with INVALID_ARGUMENT (malformed) or UNAVAILABLE (the worker died)."""
    import grpc

    try:
        if len(raw) > OFF_LOOP_PROTOBUF_BYTES:
            return await decoder.prepare(signal, raw, False, limits)
        return prepare(signal, raw, False, limits)
    except MalformedRequest as exc:
        obs.failed_request("malformed")
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    except RuntimeError:
        obs.failed_request("decode_worker")
        await context.abort(grpc.StatusCode.UNAVAILABLE, "internal error in the receiver")
    raise AssertionError("unreachable")


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


def _create(settings: ReceiverCreateSettings, config: OTLPReceiverConfig) -> OTLPReceiver:
    return OTLPReceiver(settings, config)


factory = Factory(
    type="otlp",
    kind=Kind.RECEIVER,
    signals=frozenset(Signal),
    config_model=OTLPReceiverConfig,
    create=_create,
    description="OTLP over gRPC and HTTP (protobuf and JSON)",
)
