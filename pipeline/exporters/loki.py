"""`loki` exporter: logs to Loki's push API (and anything that speaks it: VictoriaLogs).

```yaml
exporters:
  loki:
    endpoint: http://loki:3100          # POSTs to /loki/api/v1/push
    # endpoint: http://vl:9428/insert/loki/api/v1/push   # a URL with a path is used as is
    encoding: protobuf                  # protobuf (snappy, default) | json
    compression: gzip                   # json only: gzip (default) | none
    tenant_id: team-a                   # X-Scope-OrgID
    labels:
      resource: [service.name, deployment.environment]   # -> service_name, ...
      attributes: [http.method]         # record attributes -> http_method
      severity: level                   # severity_text as the label `level` (optional)
      static: {source: otelpipe}        # fixed labels on every stream
    max_label_values: 1000              # cardinality guard, per label name
    label_values_ttl: 1h                # a label value unused this long frees its slot
    line_format: text                   # text (body) | json (the whole record)
    tls: {ca_file: /etc/ssl/ca.pem}
    auth: {bearer_token: ${env:LOKI_TOKEN}}
    headers: {X-Extra: v}
    sending_queue: {storage: disk, directory: /var/lib/otelpipe}
```

Mapping of a log record to a Loki entry:

- **Stream labels** are the configured resource attributes, record attributes
  and (optionally) the severity text, plus `static` labels. Names are
  sanitised to Loki's label syntax: every character outside `[a-zA-Z0-9_]`
  becomes `_` and a leading digit gets a `_` prefix (`service.name` ->
  `service_name`, as Loki's own OTLP ingestion does). A value that is not a
  string is rendered (`200`, `true`, JSON for lists and maps). A stream with
  no label at all gets `service_name="unknown_service"` (Loki refuses
  streams without labels, and this is what Loki's OTLP endpoint does).
- **Cardinality guard.** Each label name admits at most `max_label_values`
  distinct values. A record whose value would be one too many keeps the
  value as structured metadata (under the same label name) instead of as a
  label — nothing is lost, the stream simply does not split — and
  `otelpipe_loki_exporter_label_overflow_records{exporter, label}` counts it.
  A value not seen for `label_values_ttl` frees its slot, so slow churn
  (pods coming and going) is fine while a sudden burst (a request id
  configured as a label by mistake) is contained. The guard is per exporter
  process; `max_label_values: 0` turns it off.
- **Line.** `line_format: text` (default): the body as is when it is a
  string, else its JSON rendering. `line_format: json`: a JSON object of the
  whole record except the label attributes (`body`, `severity_text`,
  `severity_number`, `trace_id`, `span_id`, `scope.name`, then resource and
  record attributes by their own names, as the `file` exporter's flat
  records); then no structured metadata is sent (it is all in the line).
- **Structured metadata** (text lines): everything that is not a label —
  `severity_text`, `severity_number`, `trace_id`, `span_id` (hex),
  `scope_name`, every other resource and record attribute — with sanitised
  names and string values. JSON encoding sends it as the third element of
  each value (`[ts, line, {metadata}]`), protobuf as `structuredMetadata`.
- **Timestamp**: `time_unix_nano`, else `observed_time_unix_nano`, else
  the time of sending. Entries of a stream are sorted by timestamp (older
  Loki versions refuse out-of-order entries within a push).

Encodings: `protobuf` posts a Loki `PushRequest` (`logproto`) compressed
with snappy block format, `Content-Type: application/x-protobuf` (what
promtail sends); `json` posts `{"streams": [...]}` as `application/json`,
gzip-compressed unless `compression: none`.

Delivery (through exporterhelper): 2xx is success; 429 and 5xx are
retried, honouring `Retry-After`; every other status (400 for a malformed
or too-old entry, 401, 403, 404, 413 …) is permanent: the batch is dropped,
counted in `otelpipe_exporter_send_failed_items`, never retried.
Connection failures and timeouts are retried.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from operator import itemgetter
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import cramjam
import orjson
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from pydantic import Field, field_validator, model_validator

from pipeline import __version__
from pipeline.component import ComponentConfig, ExporterCreateSettings, Factory, Host, Kind, Signal
from pipeline.config.retry import ExporterSettings
from pipeline.config.secrets import mask_url
from pipeline.config.tls import ClientSettings
from pipeline.config.types import Duration
from pipeline.errors import PermanentError
from pipeline.exporterhelper import Exporter
from pipeline.exporterhelper.http import client_session, error_for_status, post, safe_url
from pipeline.exporters._lokilabels import (
    LabelGuard,
    render_labels,
    sanitize_label_name,
    value_text,
)
from pipeline.pdata.anyvalue import any_value
from pipeline.pdata.batch import Batch
from pipeline.pdata.wire import ld, read_varint, varint
from pipeline.proto.logproto import push_pb2
from pipeline.proto.otelpipe import loki_pb2
from pipeline.telemetry.metrics import CounterSpec

LABEL_OVERFLOW = CounterSpec(
    "otelpipe_loki_exporter_label_overflow_records",
    "Records whose label value was kept as structured metadata instead of a stream "
    "label because the label reached max_label_values distinct values.",
    ("exporter", "label"))

PUSH_PATH = "/loki/api/v1/push"
UNKNOWN_SERVICE = ("service_name", "unknown_service")

# --- schemas: Loki's push request (proto/logproto/push.proto) and the projection of an
# OTLP logs request this exporter reads (proto/otelpipe/loki.proto: AnyValues kept as
# bytes so that each distinct value is decoded once). Generated code in pipeline.proto.
PushRequest = push_pb2.PushRequest
StreamAdapter = push_pb2.StreamAdapter
EntryAdapter = push_pb2.EntryAdapter
LabelPairAdapter = push_pb2.LabelPairAdapter
LogsProjection = loki_pb2.LogsRequest
_CACHE_LIMIT = 20_000  # entries per decode/encode cache before it is cleared (memory bound)


# A structuredMetadata field (EntryAdapter field 3) holding trace_id (32 hex digits) /
# span_id (16), up to the value's bytes.
_TRACE_ID_PREFIX = ld(b"\x1a", ld(b"\x0a", b"trace_id") + ld(b"\x12", b"0" * 32))[:-32]
_SPAN_ID_PREFIX = ld(b"\x1a", ld(b"\x0a", b"span_id") + ld(b"\x12", b"0" * 16))[:-16]


def _string_of(v: bytes) -> str | None:
    """The string of a serialized AnyValue holding only a string_value, else None."""
    if len(v) < 2 or v[0] != 0x0A:  # field 1 (string_value), length-delimited
        return None
    n = v[1]
    pos = 2
    if n >= 0x80:
        try:
            n, pos = read_varint(v, 1)
        except (IndexError, ValueError):
            return None
    if pos + n != len(v):
        return None
    try:
        return v[pos:].decode()
    except UnicodeDecodeError:
        return None


def _body_value(v: bytes) -> Any:
    """Python value of a serialized AnyValue body (not cached: bodies rarely repeat)."""
    text = _string_of(v)
    return text if text is not None else any_value(AnyValue.FromString(v))


def _line_text(body: bytes) -> str:
    """The line of a text-line entry: a string body as is, else its JSON rendering."""
    text = _string_of(body)
    if text is None:
        return "" if not body else orjson.dumps(_body_value(body)).decode()
    return text


def _listed_metadata(lr: Any, extra: list[tuple[str, str]], scope_rest: list[tuple[str, Any]],
                     rec_rest: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The structured metadata of a text-line entry as (name, value) pairs (JSON)."""
    meta: list[tuple[str, Any]] = list(extra)
    if lr.severity_text:
        meta.append(("severity_text", lr.severity_text))
    if lr.severity_number:
        meta.append(("severity_number", str(lr.severity_number)))
    if lr.trace_id:
        meta.append(("trace_id", lr.trace_id.hex()))
    if lr.span_id:
        meta.append(("span_id", lr.span_id.hex()))
    meta += scope_rest
    meta += rec_rest
    return meta


# --- config ---------------------------------------------------------------------------


class LokiLabels(ComponentConfig):
    resource: list[str] = Field(default_factory=list,
                                description="resource attributes to use as stream labels")
    attributes: list[str] = Field(default_factory=list,
                                  description="log record attributes to use as stream labels")
    severity: str | None = Field(None, description="label name for severity_text (e.g. level)")
    static: dict[str, str] = Field(default_factory=dict,
                                   description="fixed labels added to every stream")


class LokiExporterConfig(ClientSettings, ExporterSettings):
    endpoint: str = Field(description="base URL (the push path is appended) or the full "
                                      "push URL when it has a path")
    encoding: Literal["protobuf", "json"] = "protobuf"
    compression: Literal["gzip", "none"] = Field(
        "gzip", description="json only; protobuf is always snappy-compressed")
    tenant_id: str | None = Field(None, description="sent as X-Scope-OrgID")
    labels: LokiLabels = LokiLabels()
    max_label_values: int = Field(
        1000, ge=0, description="distinct values per label name before further values go "
                                "to structured metadata (0: unlimited)")
    label_values_ttl: Duration = Field(
        3600.0, description="a label value unused this long frees its slot (0: never)")
    line_format: Literal["text", "json"] = "text"
    max_idle_conns: int = Field(100, gt=0, description="connection pool size")

    @field_validator("endpoint")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"{mask_url(v)!r}: expected an http:// or https:// URL")
        return v

    @model_validator(mode="after")
    def _distinct_labels(self) -> LokiExporterConfig:
        seen: dict[str, str] = {}
        lab = self.labels
        sources = ([(f"resource {k}", k) for k in lab.resource]
                   + [(f"attribute {k}", k) for k in lab.attributes]
                   + ([("severity", lab.severity)] if lab.severity else [])
                   + [(f"static {k}", k) for k in lab.static])
        for what, key in sources:
            name = sanitize_label_name(key)
            if name in seen:
                raise ValueError(f"labels: {what} and {seen[name]} both become the label "
                                 f"{name!r}")
            seen[name] = what
        return self

    def url(self) -> str:
        path = urlsplit(self.endpoint).path
        if path and path != "/":
            return self.endpoint
        return self.endpoint.rstrip("/") + PUSH_PATH


# --- the exporter ---------------------------------------------------------------------

Entry = tuple[int, str, Any]  # (time_ns, line, metadata pairs or encoded metadata)


class LokiExporter(Exporter):
    def __init__(self, settings: ExporterCreateSettings, config: LokiExporterConfig,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(settings, config)
        self.config = config
        self.url = config.url()
        self._session: aiohttp.ClientSession | None = None
        self._proto = config.encoding == "protobuf"
        self._gzip = not self._proto and config.compression == "gzip"
        self._json_lines = config.line_format == "json"
        lab = config.labels
        self._res_labels = [(k, sanitize_label_name(k)) for k in lab.resource]
        self._attr_labels = {k: sanitize_label_name(k) for k in lab.attributes}
        self._res_label_keys = frozenset(lab.resource)
        self._severity_label = sanitize_label_name(lab.severity) if lab.severity else None
        self._static = tuple((sanitize_label_name(k), v) for k, v in lab.static.items())
        self.guard = LabelGuard(config.max_label_values, config.label_values_ttl, clock)
        self._clock = clock
        self._overflow = settings.telemetry.counter(LABEL_OVERFLOW)
        self._texts: dict[bytes, str] = {}    # serialized AnyValue -> label/metadata text
        self._values: dict[bytes, Any] = {}   # serialized AnyValue -> Python value
        self._pairs: dict[tuple[str, str], bytes] = {}  # metadata pair -> protobuf bytes
        # (attribute key, serialized AnyValue) -> its structuredMetadata field bytes
        self._attr_pairs: dict[tuple[str, bytes], bytes] = {}
        # label pairs in record order -> sorted stream key
        self._keys: dict[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = {}
        headers = {"User-Agent": f"otelpipe/{__version__}", **config.request_headers()}
        if config.tenant_id:
            headers["X-Scope-OrgID"] = config.tenant_id
        if self._proto:
            headers["Content-Type"] = "application/x-protobuf"
        else:
            headers["Content-Type"] = "application/json"
            if self._gzip:
                headers["Content-Encoding"] = "gzip"
        self._headers = headers

    async def start_exporter(self, host: Host) -> None:
        self._session = client_session(self.config, [self.url],
                                       limit=self.config.max_idle_conns, headers=self._headers)

    async def shutdown_exporter(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # Encoding ---------------------------------------------------------------------

    def streams(self, raw: bytes, *, encoded_metadata: bool = False
                ) -> dict[tuple[tuple[str, str], ...], list[Entry]]:
        """Entries of a serialized OTLP logs request grouped by stream labels (sorted
        label pairs), each list sorted by time.

        An entry is `(time_ns, line, metadata)`: metadata is a list of (name, value)
        pairs, or with `encoded_metadata` (the protobuf path) the serialized
        `structuredMetadata` fields, built from cached per-pair encodings.

        Per record this is one pass over the attributes (`_split_attributes`) and one
        metadata builder; everything per resource and scope is computed once.
        """
        request = LogsProjection.FromString(raw)
        now = self._clock()
        now_ns = time.time_ns()
        json_lines = self._json_lines
        enc = encoded_metadata and not json_lines
        severity_label = self._severity_label
        keys = self._keys
        pair_bytes = self._pair_bytes
        split = self._split_attributes
        admit = self._admit
        self._trim_caches()
        # Guard decisions are the same for a (name, value) all through one call (one
        # `now`), so each distinct pair is asked once per call.
        admitted: dict[tuple[str, str], bool] = {}
        out: dict[tuple[tuple[str, str], ...], list[Entry]] = {}
        for rl in request.resource_logs:
            res_ordered, res_rest = self._resource_parts(rl.resource.attributes)
            for sl in rl.scope_logs:
                scope_name = sl.scope.name
                scope_rest = ([("scope_name", scope_name)] if scope_name else []) + res_rest
                scope_blob = b"".join([pair_bytes(p) for p in scope_rest]) if enc else b""
                for lr in sl.log_records:
                    sev = lr.severity_text
                    candidates = res_ordered
                    if severity_label is not None and sev:
                        candidates = [*res_ordered, (severity_label, sev)]
                    candidates, rec_rest, parts = split(lr.attributes, candidates, enc)
                    labels, extra = admit(candidates, admitted, now)
                    meta: Any
                    if json_lines:
                        line = self._json_line(lr, scope_name, res_rest, rec_rest, extra)
                        meta = b"" if encoded_metadata else []  # all of it is in the line
                    else:
                        line = _line_text(lr.body)
                        if enc:
                            meta = self._encoded_metadata(lr, extra, scope_blob, parts)
                        else:
                            meta = _listed_metadata(lr, extra, scope_rest, rec_rest)
                    key: tuple[tuple[str, str], ...] = (UNKNOWN_SERVICE,)
                    if labels:
                        unsorted = tuple(labels)
                        key = keys.get(unsorted) or keys.setdefault(unsorted,
                                                                    tuple(sorted(unsorted)))
                    entries = out.get(key)
                    if entries is None:
                        entries = out[key] = []
                    entries.append(
                        (lr.time_unix_nano or lr.observed_time_unix_nano or now_ns, line, meta))
        by_time = itemgetter(0)
        for entries in out.values():
            entries.sort(key=by_time)
        return out

    def _trim_caches(self) -> None:
        """Bound the decode/encode caches: cleared when one grows past `_CACHE_LIMIT`."""
        caches: list[dict[Any, Any]] = [self._texts, self._values, self._pairs,
                                        self._attr_pairs, self._keys]
        if any(len(c) > _CACHE_LIMIT for c in caches):
            for c in caches:
                c.clear()

    def _pair_bytes(self, pair: tuple[str, str]) -> bytes:
        """A structuredMetadata field (EntryAdapter field 3) of one pair, cached."""
        b = self._pairs.get(pair)
        if b is None:
            b = self._pairs[pair] = ld(b"\x1a", ld(b"\x0a", pair[0].encode())
                                       + ld(b"\x12", pair[1].encode()))
        return b

    def _resource_parts(self, attributes: Any
                        ) -> tuple[list[tuple[str, str]], list[tuple[str, Any]]]:
        """A resource's label candidates (in configured order) and the rest of its
        attributes (structured metadata, or fields of a JSON line)."""
        texts = self._texts
        by_key: dict[str, str] = {}
        rest: list[tuple[str, Any]] = []
        for kv in attributes:
            key, v = kv.key, kv.value
            if key in self._res_label_keys:
                text = texts.get(v) or self._text(v)
                if text is not None:
                    by_key[key] = text
            elif self._json_lines:
                rest.append((key, self._value(v)))
            else:
                text = texts.get(v) or self._text(v)
                if text is not None:
                    rest.append((sanitize_label_name(key), text))
        return [(name, by_key[key]) for key, name in self._res_labels if key in by_key], rest

    def _split_attributes(self, attributes: Any, candidates: list[tuple[str, str]], enc: bool
                          ) -> tuple[list[tuple[str, str]], list[tuple[str, Any]], list[bytes]]:
        """A record's attributes: label candidates added to `candidates` (copied first),
        the rest as (name, value) pairs, or with `enc` as encoded metadata fields."""
        texts = self._texts
        attr_labels = self._attr_labels
        rest: list[tuple[str, Any]] = []
        parts: list[bytes] = []
        copied = False
        for kv in attributes:
            key, v = kv.key, kv.value
            lname = attr_labels.get(key)
            if lname is not None:
                text = texts.get(v) or self._text(v)
                if text is not None:
                    if not copied:
                        candidates, copied = list(candidates), True
                    candidates.append((lname, text))
                    continue
            if enc:
                b = self._attr_pairs.get((key, v))
                if b is None:
                    text = texts.get(v) or self._text(v)
                    b = self._attr_pairs[(key, v)] = b"" if text is None else \
                        self._pair_bytes((sanitize_label_name(key), text))
                parts.append(b)
            elif self._json_lines:
                rest.append((key, self._value(v)))
            else:
                text = texts.get(v) or self._text(v)
                if text is not None:
                    rest.append((sanitize_label_name(key), text))
        return candidates, rest, parts

    def _admit(self, candidates: list[tuple[str, str]], admitted: dict[tuple[str, str], bool],
               now: float) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The stream labels (static ones first) and the candidates the guard turned away
        (counted; they become structured metadata)."""
        labels = list(self._static)
        extra: list[tuple[str, str]] = []
        for pair in candidates:
            ok = admitted.get(pair)
            if ok is None:
                ok = admitted[pair] = self.guard.admit(pair[0], pair[1], now)
            if ok:
                labels.append(pair)
            else:
                extra.append(pair)
                self._overflow.labels(self.id, pair[0]).inc()
        return labels, extra

    def _encoded_metadata(self, lr: Any, extra: list[tuple[str, str]], scope_blob: bytes,
                          parts: list[bytes]) -> bytes:
        """The serialized structuredMetadata fields of a text-line entry."""
        pair_bytes = self._pair_bytes
        head = [pair_bytes(p) for p in extra]
        if lr.severity_text:
            head.append(pair_bytes(("severity_text", lr.severity_text)))
        if lr.severity_number:
            head.append(pair_bytes(("severity_number", str(lr.severity_number))))
        trace_id, span_id = lr.trace_id, lr.span_id
        if trace_id:
            head.append(_TRACE_ID_PREFIX + trace_id.hex().encode() if len(trace_id) == 16
                        else pair_bytes(("trace_id", trace_id.hex())))
        if span_id:
            head.append(_SPAN_ID_PREFIX + span_id.hex().encode() if len(span_id) == 8
                        else pair_bytes(("span_id", span_id.hex())))
        head.append(scope_blob)
        head += parts
        return b"".join(head)

    def _text(self, v: bytes) -> str | None:
        """Text of a serialized AnyValue (cached: attribute values repeat)."""
        text = _string_of(v)
        if text is None and v:
            text = value_text(AnyValue.FromString(v))
        if text is not None:
            self._texts[v] = text
        return text

    def _value(self, v: bytes) -> Any:
        """Python value of a serialized AnyValue (cached)."""
        try:
            return self._values[v]
        except KeyError:
            pass
        value = _string_of(v)
        if value is None:
            value = any_value(AnyValue.FromString(v))
        self._values[v] = value
        return value

    def _json_line(self, lr: Any, scope_name: str, res_rest: list[tuple[str, Any]],
                   rec_rest: list[tuple[str, Any]], overflow: list[tuple[str, str]]) -> str:
        rec: dict[str, Any] = {}
        if lr.body:
            rec["body"] = _body_value(lr.body)
        if lr.severity_text:
            rec["severity_text"] = lr.severity_text
        if lr.severity_number:
            rec["severity_number"] = lr.severity_number
        if lr.trace_id:
            rec["trace_id"] = lr.trace_id.hex()
        if lr.span_id:
            rec["span_id"] = lr.span_id.hex()
        if scope_name:
            rec["scope.name"] = scope_name
        rec.update(res_rest)
        rec.update(rec_rest)
        rec.update(overflow)
        return orjson.dumps(rec).decode()

    def encode(self, raw: bytes) -> bytes:
        """The request body for a serialized OTLP logs request, compressed as sent."""
        if self._proto:
            streams = self.streams(raw, encoded_metadata=True)
            return bytes(cramjam.snappy.compress_raw(self.encode_protobuf(streams)))
        body = self.encode_json(self.streams(raw))
        return zlib.compress(body, 6, 31) if self._gzip else body

    def encode_protobuf(self, streams: dict[tuple[tuple[str, str], ...], list[Entry]]) -> bytes:
        """A serialized Loki PushRequest, written by hand from `streams(...,
        encoded_metadata=True)` (structured-metadata pairs repeat across entries, so
        each distinct pair is encoded once and cached)."""
        parts: list[bytes] = []
        for labels, entries in streams.items():
            stream = [ld(b"\x0a", render_labels(labels).encode())]
            for ts, line, meta in entries:
                secs, nanos = divmod(ts, 1_000_000_000)
                tsb = b"\x08" + varint(secs) + (b"\x10" + varint(nanos) if nanos else b"")
                lb = line.encode()
                eb = b"".join((b"\x0a", varint(len(tsb)), tsb, b"\x12", varint(len(lb)), lb,
                               meta))
                stream.append(ld(b"\x12", eb))
            parts.append(ld(b"\x0a", b"".join(stream)))
        return b"".join(parts)

    @staticmethod
    def encode_json(streams: dict[tuple[tuple[str, str], ...], list[Entry]]) -> bytes:
        out = []
        for labels, entries in streams.items():
            values = [[str(ts), line, dict(meta)] if meta else [str(ts), line]
                      for ts, line, meta in entries]
            out.append({"stream": dict(labels), "values": values})
        return orjson.dumps({"streams": out})

    # Sending ----------------------------------------------------------------------

    async def send(self, batch: Batch) -> None:
        if batch.signal is not Signal.LOGS:
            raise PermanentError(f"the loki exporter takes logs, not {batch.signal.value}")
        assert self._session is not None
        resp = await post(self._session, self.url, self.encode(batch.to_bytes()))
        if resp.ok:
            return
        message = resp.message()
        text = f"{safe_url(self.url)}: HTTP {resp.status}" + (f": {message}" if message else "")
        raise error_for_status(resp.status, text, resp.retry_after)


def _create(settings: ExporterCreateSettings, config: LokiExporterConfig) -> LokiExporter:
    return LokiExporter(settings, config)


factory = Factory(type="loki", kind=Kind.EXPORTER, config_model=LokiExporterConfig,
                  create=_create, signals=frozenset({Signal.LOGS}),
                  description="Loki push API (protobuf + snappy or JSON), also VictoriaLogs")
