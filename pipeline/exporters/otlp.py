"""`otlp` exporter: OTLP over gRPC to Jaeger, Tempo, a Collector, any OTLP backend.

```yaml
exporters:
  otlp/jaeger:
    endpoint: jaeger-collector:4317   # or https://host:4317 / http://host:4317
    tls: {insecure: true}             # plaintext; default is TLS (system CAs or ca_file)
    compression: gzip                 # gzip (default) | none
    headers: {x-scope-orgid: tenant}
    auth: {bearer_token: ${env:TOKEN}}
    timeout: 5s
    retry_on_failure: {max_elapsed_time: 0}   # retry forever
    sending_queue: {storage: disk, directory: /var/lib/otelpipe/queue}
```

The request bytes the batch carries are sent as they are, with a generic
unary call (no decode, no re-encode). Errors follow the OTLP specification:
UNAVAILABLE, CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE and
DATA_LOSS are retried (honouring a `google.rpc.RetryInfo` delay);
RESOURCE_EXHAUSTED is retried only when the server sent RetryInfo; every
other code (INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED,
UNIMPLEMENTED …) is permanent: the batch is dropped and counted. A
`partial_success` in the response counts its rejected items as failed and
logs the server's message; the rest counts as sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from google.protobuf.message import DecodeError
from pydantic import Field, model_validator

from pipeline import __version__
from pipeline.component import ExporterCreateSettings, Factory, Host, Kind, Signal
from pipeline.config.retry import ExporterSettings
from pipeline.config.tls import ClientSettings
from pipeline.errors import PermanentError, RetryableError
from pipeline.exporterhelper import Exporter
from pipeline.exporterhelper.http import MAX_MESSAGE_CHARS
from pipeline.exporterhelper.retry import retry_delay
from pipeline.pdata.batch import Batch
from pipeline.pdata.otlp import ITEM_NAME, REJECTED_FIELD, RESPONSE_TYPES

if TYPE_CHECKING:
    import grpc
    import grpc.aio

GRPC_METHODS = {
    Signal.TRACES: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    Signal.LOGS: "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    Signal.METRICS: "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}
# grpc.StatusCode names (grpc loads when an exporter is created).
RETRYABLE_CODES = frozenset({"CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE",
                             "UNAVAILABLE", "DATA_LOSS"})


class OTLPExporterConfig(ClientSettings, ExporterSettings):
    endpoint: str = Field(
        description="host:port of the OTLP gRPC server; an http:// prefix means plaintext, "
                    "https:// means TLS; unix:/path/to/socket is a local unix socket "
                    "(plaintext)")
    compression: Literal["gzip", "none"] = "gzip"
    balancer_name: Literal["pick_first", "round_robin"] = Field(
        "pick_first", description="gRPC load balancing over the addresses the name resolves to")

    @model_validator(mode="after")
    def _grpc_tls_limits(self) -> OTLPExporterConfig:
        if self.tls.insecure_skip_verify:
            raise ValueError("tls.insecure_skip_verify is not supported by the gRPC client; "
                             "give tls.ca_file (the server's CA) instead")
        if self.tls.min_version != "1.2":
            raise ValueError("tls.min_version: the gRPC client negotiates TLS 1.2 or newer "
                             "and cannot be restricted further; leave it at 1.2")
        target, _ = split_endpoint(self.endpoint)
        if target.startswith("unix:"):
            if not target.removeprefix("unix:").strip("/"):
                raise ValueError(f"endpoint {self.endpoint!r}: expected unix:/path/to/socket")
        elif not target or ":" not in target.rsplit("]", 1)[-1]:
            raise ValueError(f"endpoint {self.endpoint!r}: expected host:port")
        return self

    def plaintext(self) -> bool:
        target, scheme = split_endpoint(self.endpoint)
        if scheme == "http" or target.startswith("unix:"):
            return True
        if scheme == "https":
            return False
        return self.tls.insecure


def split_endpoint(endpoint: str) -> tuple[str, str | None]:
    """(host:port, scheme or None)."""
    for scheme in ("http", "https"):
        prefix = scheme + "://"
        if endpoint.startswith(prefix):
            return endpoint[len(prefix):].rstrip("/"), scheme
    return endpoint, None


def map_rpc_error(exc: grpc.aio.AioRpcError, endpoint: str) -> Exception:
    """RetryableError or PermanentError for a failed export, per the OTLP spec."""
    code = exc.code()
    details = (exc.details() or "")[:MAX_MESSAGE_CHARS]
    text = f"{endpoint}: {code.name}: {details}" if details else f"{endpoint}: {code.name}"
    delay = retry_delay(exc.trailing_metadata())
    if code.name in RETRYABLE_CODES:
        return RetryableError(text, retry_after=delay)
    if code.name == "RESOURCE_EXHAUSTED" and delay is not None:
        return RetryableError(text, retry_after=delay, throttle=True)
    return PermanentError(text)


def rejected_items(signal: Signal, response: bytes, log: Any) -> int | None:
    """Items a partial_success response rejected (logged with the server's message)."""
    if not response:
        return None
    resp = RESPONSE_TYPES[signal]()
    try:
        resp.ParseFromString(response)
    except DecodeError:
        return None
    if not resp.HasField("partial_success"):
        return None
    ps = resp.partial_success
    rejected = int(getattr(ps, REJECTED_FIELD[signal]))
    if rejected or ps.error_message:
        log.warning("the backend rejected part of a request", extra={
            "rejected": rejected, "item": ITEM_NAME[signal],
            "server_message": ps.error_message[:MAX_MESSAGE_CHARS]})
    return rejected or None


class OTLPExporter(Exporter):
    def __init__(self, settings: ExporterCreateSettings, config: OTLPExporterConfig):
        super().__init__(settings, config)
        self.config = config
        self.target, _ = split_endpoint(config.endpoint)
        self._channel: grpc.aio.Channel | None = None
        self._calls: dict[Signal, Any] = {}
        headers = config.request_headers()
        # gRPC metadata keys are lower case.
        self._metadata = tuple((k.lower(), v) for k, v in headers.items())

    def _open_channel(self) -> grpc.aio.Channel:
        import grpc
        import grpc.aio

        c = self.config
        options: list[tuple[str, Any]] = [
            ("grpc.primary_user_agent", f"otelpipe/{__version__}"),
            ("grpc.lb_policy_name", c.balancer_name),
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            # Reconnect soon after the backend returns (the default backoff grows to 120 s).
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 5000),
        ]
        compression = grpc.Compression.Gzip if c.compression == "gzip" else None
        if c.plaintext():
            return grpc.aio.insecure_channel(self.target, options=options,
                                             compression=compression)
        if c.tls.server_name_override:
            options.append(("grpc.ssl_target_name_override", c.tls.server_name_override))
        root, key, cert = c.tls.pem()
        creds = grpc.ssl_channel_credentials(root_certificates=root, private_key=key,
                                             certificate_chain=cert)
        return grpc.aio.secure_channel(self.target, creds, options=options,
                                       compression=compression)

    async def start_exporter(self, host: Host) -> None:
        self._channel = self._open_channel()
        self._calls = {s: self._channel.unary_unary(m, request_serializer=None,
                                                    response_deserializer=None)
                       for s, m in GRPC_METHODS.items()}

    async def shutdown_exporter(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def send(self, batch: Batch) -> int | None:
        import grpc.aio

        call = self._calls[batch.signal]
        try:
            response = await call(batch.to_bytes(), timeout=self.helper.timeout or None,
                                  metadata=self._metadata, wait_for_ready=False)
        except grpc.aio.AioRpcError as exc:
            raise map_rpc_error(exc, self.target) from None
        return rejected_items(batch.signal, response, self.log)


def _create(settings: ExporterCreateSettings, config: OTLPExporterConfig) -> OTLPExporter:
    return OTLPExporter(settings, config)


factory = Factory(type="otlp", kind=Kind.EXPORTER, config_model=OTLPExporterConfig,
                  create=_create, signals=frozenset(Signal),
                  description="OTLP over gRPC (Jaeger, Tempo, a Collector, any OTLP backend)")
