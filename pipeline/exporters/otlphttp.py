"""`otlphttp` exporter: OTLP over HTTP, protobuf or JSON, to any OTLP backend.

```yaml
exporters:
  otlphttp/tempo:
    endpoint: https://tempo:4318        # POSTs to /v1/traces, /v1/logs, /v1/metrics
    traces_endpoint: https://x/otlp/v1/traces   # optional per-signal full URL
    encoding: proto                     # proto (default) | json
    compression: gzip                   # gzip (default) | none
    tls: {ca_file: /etc/ssl/ca.pem}
    auth: {basic: {username: u, password: ${env:PASS}}}
    headers: {X-Scope-OrgID: tenant-a}
```

With `encoding: proto` the bytes the batch carries are posted as they are.
Responses follow the OTLP/HTTP specification: 2xx is success (a
`partial_success` in the body counts its rejected items as failed and logs
the server's message); 429, 502, 503 and 504 are retried, honouring
`Retry-After` (seconds or an HTTP date); every other status (400, 401, 403,
404, 413, 500 …) is permanent: the batch is dropped and counted, never
retried. Connection failures and timeouts are retried.

Credentials in an endpoint URL (`http://user:pw@host`) are sent as basic auth
(see `pipeline.config.tls.ClientSettings`); errors and logs show the URL
masked (`pipeline.config.secrets`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import orjson
from google.protobuf.message import DecodeError
from pydantic import Field, field_validator, model_validator

from pipeline import __version__
from pipeline.component import ExporterCreateSettings, Factory, Host, Kind, Signal
from pipeline.config.retry import ExporterSettings
from pipeline.config.secrets import mask_url
from pipeline.config.tls import ClientSettings
from pipeline.errors import PermanentError
from pipeline.exporterhelper import Exporter
from pipeline.exporterhelper.http import (
    MAX_MESSAGE_CHARS,
    client_session,
    error_for_status,
    gzip_body,
    post,
    safe_url,
)
from pipeline.pdata.batch import Batch
from pipeline.pdata.otlp import ITEM_NAME, REJECTED_FIELD, RESPONSE_TYPES
from pipeline.pdata.otlpjson import encode_request

if TYPE_CHECKING:
    import aiohttp

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
SIGNAL_PATHS = {Signal.TRACES: "/v1/traces", Signal.LOGS: "/v1/logs",
                Signal.METRICS: "/v1/metrics"}
# JSON names of the partial-success counters.
REJECTED_JSON = {Signal.TRACES: "rejectedSpans", Signal.LOGS: "rejectedLogRecords",
                 Signal.METRICS: "rejectedDataPoints"}


def _url(v: str | None) -> str | None:
    if v is not None and not v.startswith(("http://", "https://")):
        raise ValueError(f"{mask_url(v)!r}: expected an http:// or https:// URL")
    return v


class OTLPHTTPExporterConfig(ClientSettings, ExporterSettings):
    endpoint: str | None = Field(
        None, description="base URL; /v1/traces, /v1/logs, /v1/metrics are appended")
    traces_endpoint: str | None = Field(None, description="full URL for traces")
    logs_endpoint: str | None = Field(None, description="full URL for logs")
    metrics_endpoint: str | None = Field(None, description="full URL for metrics")
    encoding: Literal["proto", "json"] = "proto"
    compression: Literal["gzip", "none"] = "gzip"
    max_idle_conns: int = Field(100, gt=0, description="connection pool size")

    @field_validator("endpoint", "traces_endpoint", "logs_endpoint", "metrics_endpoint")
    @classmethod
    def _urls(cls, v: str | None) -> str | None:
        return _url(v)

    @model_validator(mode="after")
    def _some_endpoint(self) -> OTLPHTTPExporterConfig:
        if not (self.endpoint or self.traces_endpoint or self.logs_endpoint
                or self.metrics_endpoint):
            raise ValueError("give endpoint (a base URL) or a per-signal *_endpoint")
        return self

    def url(self, signal: Signal) -> str | None:
        own = getattr(self, f"{signal.value}_endpoint")
        if own:
            return str(own)
        if self.endpoint:
            return self.endpoint.rstrip("/") + SIGNAL_PATHS[signal]
        return None


def rejected_from_body(signal: Signal, body: bytes, content_type: str) -> tuple[int, str]:
    """(rejected items, message) of a partial-success response body."""
    if not body:
        return 0, ""
    if "json" in content_type:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return 0, ""
        ps = data.get("partialSuccess") or data.get("partial_success") \
            if isinstance(data, dict) else None
        if not isinstance(ps, dict):
            return 0, ""
        raw = ps.get(REJECTED_JSON[signal], ps.get(REJECTED_FIELD[signal], 0))
        try:
            rejected = int(raw or 0)  # int64 travels as a JSON string
        except (TypeError, ValueError):
            rejected = 0
        msg = ps.get("errorMessage", ps.get("error_message", ""))
        return rejected, str(msg or "")[:MAX_MESSAGE_CHARS]
    resp = RESPONSE_TYPES[signal]()
    try:
        resp.ParseFromString(body)
    except DecodeError:
        return 0, ""
    ps = resp.partial_success
    return int(getattr(ps, REJECTED_FIELD[signal])), ps.error_message[:MAX_MESSAGE_CHARS]


class OTLPHTTPExporter(Exporter):
    def __init__(self, settings: ExporterCreateSettings, config: OTLPHTTPExporterConfig):
        super().__init__(settings, config)
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        self._json = config.encoding == "json"
        self._gzip = config.compression == "gzip"
        ctype = "application/json" if self._json else "application/x-protobuf"
        headers = {"User-Agent": f"otelpipe/{__version__}", **config.request_headers(),
                   "Content-Type": ctype}
        if self._gzip:
            headers["Content-Encoding"] = "gzip"
        self._headers = headers

    async def start_exporter(self, host: Host) -> None:
        c = self.config
        # Timeouts are the exporter helper's (`timeout`), around each send.
        self._session = client_session(c, (c.url(s) or "" for s in Signal),
                                       limit=c.max_idle_conns, headers=self._headers)

    async def shutdown_exporter(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _body(self, batch: Batch) -> bytes:
        body = encode_request(batch.message) if self._json else batch.to_bytes()
        return await gzip_body(body) if self._gzip else body

    async def send(self, batch: Batch) -> int | None:
        signal = batch.signal
        url = self.config.url(signal)
        if url is None:
            raise PermanentError(f"no endpoint configured for {signal.value}")
        assert self._session is not None
        resp = await post(self._session, url, await self._body(batch))
        if resp.ok:
            rejected, message = rejected_from_body(signal, resp.body, resp.content_type)
            if rejected or message:
                self.log.warning("the backend rejected part of a request", extra={
                    "rejected": rejected, "item": ITEM_NAME[signal], "server_message": message})
            return rejected or None
        message = resp.message()
        text = f"{safe_url(url)}: HTTP {resp.status}" + (f": {message}" if message else "")
        # OTLP/HTTP retries only these; any other 5xx is permanent.
        raise error_for_status(resp.status, text, resp.retry_after,
                               retryable=RETRYABLE_STATUS.__contains__)


def _create(settings: ExporterCreateSettings, config: OTLPHTTPExporterConfig) -> OTLPHTTPExporter:
    return OTLPHTTPExporter(settings, config)


factory = Factory(type="otlphttp", kind=Kind.EXPORTER, config_model=OTLPHTTPExporterConfig,
                  create=_create, signals=frozenset(Signal),
                  description="OTLP over HTTP, protobuf or JSON (any OTLP backend)",
                  aliases=("otlp_http",))
