"""`elasticsearch` exporter: logs through the Bulk API (Elasticsearch, OpenSearch, VictoriaLogs).

```yaml
exporters:
  elasticsearch:
    endpoint: https://es:9200           # POSTs to /_bulk (a URL ending in /_bulk is used as is)
    mode: data_stream                   # data_stream (default) | index
    data_stream: {dataset: generic, namespace: default}   # -> logs-generic-default
    # mode: index
    # index: "otelpipe-%Y.%m.%d"        # strftime of the record's time (UTC)
    mapping: otel                       # otel (default) | ecs | raw
    compression: none                   # none (default) | gzip
    max_request_bytes: 5242880          # a batch larger than this goes as several requests
    auth: {basic: {username: elastic, password: ${env:ES_PASSWORD}}}
    tls: {ca_file: /etc/ssl/es-ca.pem}
  elasticsearch/victorialogs:
    endpoint: http://vl:9428/insert/elasticsearch
    victorialogs: {stream_fields: [resource.attributes.service.name]}
```

**Documents** (one per log record; `@timestamp` is `time_unix_nano`, else
`observed_time_unix_nano`, else the time of sending, RFC 3339 in UTC with
nanoseconds):

- `mapping: otel` — `@timestamp`, `body` (a string; a structured body as its
  JSON text, so an index never sees `body` both as text and as an object),
  `severity_text`, `severity_number`, `trace_id`, `span_id` (hex),
  `scope: {name}`, `attributes: {…}`, `resource: {attributes: {…}}`, and
  in data-stream mode `data_stream: {type, dataset, namespace}`.
- `mapping: ecs` — Elastic Common Schema: `@timestamp`, `message`,
  `log.level`, `event.severity`, `trace.id`, `span.id`, `log.logger` (scope),
  resource attributes renamed where ECS has a field (`service.name`,
  `service.version`, `service.node.name` ← `service.instance.id`,
  `service.environment` ← `deployment.environment[.name]`, `host.name`,
  `host.architecture` ← `host.arch`, `host.os.platform` ← `os.type`,
  `process.pid`, `process.name` ← `process.executable.name`,
  `container.*`, `kubernetes.pod.name` ← `k8s.pod.name`,
  `kubernetes.namespace` ← `k8s.namespace.name`, `kubernetes.node.name`, …),
  every other resource and record attribute under its own dotted name
  (record attributes win), and `data_stream.*` in data-stream mode.
- `mapping: raw` — the flat record of the `file` exporter's `json` format
  (`body` as is, `severity_text`, `trace_id`, …, resource and record
  attributes as top-level keys) with its time as `@timestamp`.

**Targets.** `mode: data_stream` sends `create` actions to
`logs-{dataset}-{namespace}`; a record (or its resource) attribute
`data_stream.dataset` / `data_stream.namespace` overrides the configured
value. `mode: index` sends `create` actions to `index` formatted with
strftime on the record's time in UTC (`otelpipe-%Y.%m.%d`); a name without
`%` is a fixed index.

**VictoriaLogs** ingests the bulk API at `/insert/elasticsearch/_bulk` but
must be told which fields hold the message, the time and the stream: with
`victorialogs: {}` the exporter adds `_msg_field` (`body`, or `message` for
ECS), `_time_field` (`@timestamp`) and, if given, `_stream_fields` as query
arguments (`msg_field`, `time_field`, `extra_fields`, `ignore_fields`
override or add). `params` adds any other query arguments verbatim.

**Per-document results.** Every bulk response's `items` are read:

- 2xx (and 409, a `create` of a document that already exists) — delivered;
- 429 and 5xx — retried, and only those: the exporter remembers which
  documents of the batch are still pending and raises a retryable error; the
  exporterhelper's retry (backoff, `max_elapsed_time`, the queue) calls
  `send` again with the same batch, and only the pending documents are
  posted. Documents already accepted are never sent again (unless the
  process restarts with the batch still in a disk queue: at-least-once);
- any other status (mapping errors such as `mapper_parsing_exception`,
  `document_parsing_exception`, `illegal_argument_exception`) — dropped,
  counted in `otelpipe_elasticsearch_exporter_rejected_documents{reason}` and
  reported to the exporterhelper as rejected items (partial success), never
  retried.

A whole request answered 429 or 5xx is retried the same way; any other
non-2xx status (400, 401, 403, 404, 413 …) is permanent for the documents
still pending: dropped and counted (raised as a permanent error when none
of the batch was delivered). Connection failures and timeouts are retried.
`otelpipe_elasticsearch_exporter_bulk_items{outcome=ok|retry|rejected}`
counts the per-document outcomes. If retries run out, the exporterhelper
counts the whole batch as failed, including documents delivered by earlier
attempts.

Size: a few lines over the ~600-line guideline, left in one module: the config,
the document building per mode (otel / ecs / raw, from the field tables at the
top) and the bulk-response bookkeeping of one exporter, each small; it becomes a
package (config / documents / exporter) when one of them grows.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode, urlsplit

import orjson
from pydantic import Field, field_validator, model_validator

from pipeline import __version__
from pipeline.component import ComponentConfig, ExporterCreateSettings, Factory, Host, Kind, Signal
from pipeline.config.retry import ExporterSettings
from pipeline.config.secrets import mask_url
from pipeline.config.tls import ClientSettings
from pipeline.errors import PermanentError, RetryableError
from pipeline.exporterhelper import Exporter
from pipeline.exporterhelper.http import client_session, error_for_status, gzip_body, post, safe_url
from pipeline.pdata.anyvalue import any_value
from pipeline.pdata.batch import Batch
from pipeline.telemetry.metrics import CounterSpec

if TYPE_CHECKING:
    import aiohttp

BULK_ITEMS = CounterSpec(
    "otelpipe_elasticsearch_exporter_bulk_items",
    "Per-document results of bulk requests: ok (indexed or already there), retry "
    "(429/5xx, sent again alone), rejected (other 4xx such as mapping errors; dropped).",
    ("exporter", "outcome"))
REJECTED_DOCUMENTS = CounterSpec(
    "otelpipe_elasticsearch_exporter_rejected_documents",
    "Documents the backend rejected permanently, by error type "
    "(mapper_parsing_exception …).", ("exporter", "reason"))

BULK_PATH = "/_bulk"

# Resource attribute -> ECS field (where ECS has a field of its own).
ECS_RESOURCE = {
    "service.instance.id": "service.node.name",
    "deployment.environment": "service.environment",
    "deployment.environment.name": "service.environment",
    "host.arch": "host.architecture",
    "os.type": "host.os.platform",
    "os.description": "host.os.full",
    "os.version": "host.os.version",
    "process.executable.name": "process.name",
    "process.executable.path": "process.executable",
    "process.command_line": "process.command_line",
    "process.runtime.name": "service.runtime.name",
    "process.runtime.version": "service.runtime.version",
    "container.image.tag": "container.image.tag",
    "k8s.pod.name": "kubernetes.pod.name",
    "k8s.pod.uid": "kubernetes.pod.uid",
    "k8s.namespace.name": "kubernetes.namespace",
    "k8s.node.name": "kubernetes.node.name",
    "k8s.deployment.name": "kubernetes.deployment.name",
    "k8s.statefulset.name": "kubernetes.statefulset.name",
    "k8s.daemonset.name": "kubernetes.daemonset.name",
    "k8s.container.name": "kubernetes.container.name",
    "telemetry.sdk.name": "agent.name",
    "telemetry.sdk.version": "agent.version",
}
MSG_FIELD = {"otel": "body", "ecs": "message", "raw": "body"}


class DataStreamSettings(ComponentConfig):
    dataset: str = "generic"
    namespace: str = "default"


class VictoriaLogsSettings(ComponentConfig):
    """Query arguments VictoriaLogs' bulk endpoint needs (derived from `mapping`)."""

    stream_fields: list[str] = Field(default_factory=list,
                                     description="fields forming the log stream (_stream_fields)")
    msg_field: str | None = Field(None, description="default: body (otel, raw) or message (ecs)")
    time_field: str = "@timestamp"
    extra_fields: dict[str, str] = Field(default_factory=dict,
                                         description="fields added to every document")
    ignore_fields: list[str] = Field(default_factory=list)


class ElasticsearchExporterConfig(ClientSettings, ExporterSettings):
    endpoint: str = Field(description="base URL (/_bulk is appended) or the bulk URL itself")
    mode: Literal["data_stream", "index"] = "data_stream"
    data_stream: DataStreamSettings = DataStreamSettings()
    index: str = Field("otelpipe-%Y.%m.%d",
                       description="mode index: strftime of the record time (UTC)")
    mapping: Literal["otel", "ecs", "raw"] = "otel"
    compression: Literal["none", "gzip"] = "none"
    max_request_bytes: int = Field(5 * 1024 * 1024, gt=0,
                                   description="split a batch's bulk body above this size")
    victorialogs: VictoriaLogsSettings | None = Field(
        None, description="add the query arguments VictoriaLogs needs")
    params: dict[str, str] = Field(default_factory=dict, description="extra query arguments")
    max_idle_conns: int = Field(100, gt=0, description="connection pool size")

    @field_validator("endpoint")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"{mask_url(v)!r}: expected an http:// or https:// URL")
        if urlsplit(v).query:
            raise ValueError("endpoint: give query arguments in `params`, not in the URL")
        return v

    @model_validator(mode="after")
    def _index(self) -> ElasticsearchExporterConfig:
        if self.mode == "index" and not self.index.strip():
            raise ValueError("index: must not be empty")
        return self

    def url(self) -> str:
        base = self.endpoint.rstrip("/")
        url = base if base.endswith(BULK_PATH) else base + BULK_PATH
        params: dict[str, str] = {}
        vl = self.victorialogs
        if vl is not None:
            params["_msg_field"] = vl.msg_field or MSG_FIELD[self.mapping]
            params["_time_field"] = vl.time_field
            if vl.stream_fields:
                params["_stream_fields"] = ",".join(vl.stream_fields)
            if vl.extra_fields:
                params["extra_fields"] = ",".join(f"{k}={v}" for k, v in vl.extra_fields.items())
            if vl.ignore_fields:
                params["ignore_fields"] = ",".join(vl.ignore_fields)
        params.update(self.params)
        return url + ("?" + urlencode(params) if params else "")


class _RequestRefused(PermanentError):
    """A whole bulk request answered with a non-retryable status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass
class _Progress:
    """What is left of a batch after a partly failed bulk request."""

    batch: Batch
    pending: list[bytes]          # action + document lines still to deliver
    ok: int = 0                   # documents delivered
    rejected: int = 0             # documents dropped for good
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class BulkResult:
    ok: int = 0
    retry: list[bytes] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)
    first_error: str = ""
    throttled: bool = False


class _Timestamps:
    """RFC 3339 with nanoseconds; the seconds part is cached (logs come in time order)."""

    __slots__ = ("_prefix", "_secs")

    def __init__(self) -> None:
        self._secs = -1
        self._prefix = ""

    def __call__(self, ns: int) -> str:
        secs, frac = divmod(ns, 1_000_000_000)
        if secs != self._secs:
            self._secs = secs
            self._prefix = dt.datetime.fromtimestamp(secs, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{frac:09d}Z"


def _body_text(body: Any) -> str | None:
    """A message text for a body: a string as is, any other value as JSON, None if empty."""
    kind = body.WhichOneof("value")
    if kind == "string_value":
        return str(body.string_value)
    if kind is None:
        return None
    v = any_value(body)
    return v if isinstance(v, str) else orjson.dumps(v).decode()


class ElasticsearchExporter(Exporter):
    def __init__(self, settings: ExporterCreateSettings, config: ElasticsearchExporterConfig):
        super().__init__(settings, config)
        self.config = config
        self.url = config.url()
        self._session: aiohttp.ClientSession | None = None
        self._gzip = config.compression == "gzip"
        headers = {"User-Agent": f"otelpipe/{__version__}", **config.request_headers(),
                   "Content-Type": "application/x-ndjson"}
        if self._gzip:
            headers["Content-Encoding"] = "gzip"
        self._headers = headers
        self._ts = _Timestamps()
        self._actions: dict[str, bytes] = {}
        self._data_stream = config.mode == "data_stream"
        fmt = config.index
        self._index_granularity = (0 if "%" not in fmt else 1 if "%S" in fmt or "%s" in fmt
                                   else 60 if "%M" in fmt else 3600)
        self._index_cache: tuple[int, str] = (-1, "")
        self._progress: OrderedDict[int, _Progress] = OrderedDict()
        # Batches in a retry at once: one per queue consumer, or per waiting caller
        # without a queue. Evicting one costs duplicates (it is sent whole), never loss.
        self._max_progress = config.sending_queue.num_consumers + 64
        t = settings.telemetry
        bulk_items = t.counter(BULK_ITEMS)
        self._items = {o: bulk_items.labels(self.id, o) for o in ("ok", "retry", "rejected")}
        self._rejected_docs = t.counter(REJECTED_DOCUMENTS)

    async def start_exporter(self, host: Host) -> None:
        self._session = client_session(self.config, [self.url],
                                       limit=self.config.max_idle_conns, headers=self._headers)

    async def shutdown_exporter(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._progress.clear()

    # Encoding -------------------------------------------------------------------------

    def _action(self, index: str) -> bytes:
        line = self._actions.get(index)
        if line is None:
            if len(self._actions) > 10_000:
                self._actions.clear()
            line = self._actions[index] = orjson.dumps({"create": {"_index": index}}) + b"\n"
        return line

    def _index_name(self, ts: int) -> str:
        g = self._index_granularity
        if not g:
            return self.config.index
        key = ts // (g * 1_000_000_000)
        if key != self._index_cache[0]:
            when = dt.datetime.fromtimestamp(key * g, dt.UTC)
            self._index_cache = (key, when.strftime(self.config.index))
        return self._index_cache[1]

    def _target(self, ts: int, res: dict[str, Any], attrs: dict[str, Any]) -> tuple[str, Any]:
        """(index or data stream name, data_stream field or None)."""
        if not self._data_stream:
            return self._index_name(ts), None
        ds = self.config.data_stream
        dataset = attrs.get("data_stream.dataset") or res.get("data_stream.dataset") \
            or ds.dataset
        namespace = attrs.get("data_stream.namespace") or res.get("data_stream.namespace") \
            or ds.namespace
        return f"logs-{dataset}-{namespace}", {"type": "logs", "dataset": dataset,
                                               "namespace": namespace}

    def documents(self, request: Any) -> list[bytes]:
        """One `action\\ndocument\\n` pair per log record, in request order."""
        mapping = self.config.mapping
        build = {"raw": self._raw_document, "ecs": self._ecs_document}.get(
            mapping, self._otel_document)
        now_ns = time.time_ns()
        dumps = orjson.dumps
        action = self._action
        target = self._target
        out: list[bytes] = []
        append = out.append
        for rl in request.resource_logs:
            res = {kv.key: any_value(kv.value) for kv in rl.resource.attributes}
            # The resource as the document shows it: ECS renames some attributes.
            res_doc = {ECS_RESOURCE.get(k, k): v for k, v in res.items()} \
                if mapping == "ecs" else res
            for sl in rl.scope_logs:
                scope_name = sl.scope.name
                for lr in sl.log_records:
                    ts = lr.time_unix_nano or lr.observed_time_unix_nano or now_ns
                    attrs = {kv.key: any_value(kv.value) for kv in lr.attributes}
                    index, data_stream = target(ts, res, attrs)
                    doc = build(lr, ts, scope_name, res_doc, attrs, data_stream)
                    append(action(index) + dumps(doc) + b"\n")
        return out

    def _raw_document(self, lr: Any, ts: int, scope_name: str, res: dict[str, Any],
                      attrs: dict[str, Any], data_stream: Any) -> dict[str, Any]:
        """`mapping: raw`: the record's fields, then resource and record attributes, flat."""
        doc: dict[str, Any] = {"@timestamp": self._ts(ts)}
        if lr.severity_text:
            doc["severity_text"] = lr.severity_text
        if lr.severity_number:
            doc["severity_number"] = lr.severity_number
        if lr.body.WhichOneof("value") is not None:
            doc["body"] = any_value(lr.body)
        if lr.trace_id:
            doc["trace_id"] = lr.trace_id.hex()
        if lr.span_id:
            doc["span_id"] = lr.span_id.hex()
        if scope_name:
            doc["scope.name"] = scope_name
        doc.update(res)
        doc.update(attrs)
        return doc

    def _ecs_document(self, lr: Any, ts: int, scope_name: str, res: dict[str, Any],
                      attrs: dict[str, Any], data_stream: Any) -> dict[str, Any]:
        """`mapping: ecs`: ECS field names; `res` is the resource with ECS names."""
        doc: dict[str, Any] = {"@timestamp": self._ts(ts)}
        text = _body_text(lr.body)
        if text is not None:
            doc["message"] = text
        if lr.severity_text:
            doc["log.level"] = lr.severity_text
        if lr.severity_number:
            doc["event.severity"] = lr.severity_number
        if lr.trace_id:
            doc["trace.id"] = lr.trace_id.hex()
        if lr.span_id:
            doc["span.id"] = lr.span_id.hex()
        if scope_name:
            doc["log.logger"] = scope_name
        doc.update(res)
        doc.update(attrs)
        if data_stream is not None:
            doc["data_stream.type"] = "logs"
            doc["data_stream.dataset"] = data_stream["dataset"]
            doc["data_stream.namespace"] = data_stream["namespace"]
        return doc

    def _otel_document(self, lr: Any, ts: int, scope_name: str, res: dict[str, Any],
                       attrs: dict[str, Any], data_stream: Any) -> dict[str, Any]:
        """`mapping: otel`: OTel field names, attributes nested as Elastic's OTel mapping."""
        doc: dict[str, Any] = {"@timestamp": self._ts(ts)}
        text = _body_text(lr.body)
        if text is not None:
            doc["body"] = text
        if lr.severity_text:
            doc["severity_text"] = lr.severity_text
        if lr.severity_number:
            doc["severity_number"] = lr.severity_number
        if lr.trace_id:
            doc["trace_id"] = lr.trace_id.hex()
        if lr.span_id:
            doc["span_id"] = lr.span_id.hex()
        if scope_name:
            doc["scope"] = {"name": scope_name}
        if attrs:
            doc["attributes"] = attrs
        if res:
            doc["resource"] = {"attributes": res}
        if data_stream is not None:
            doc["data_stream"] = data_stream
        return doc

    # Sending --------------------------------------------------------------------------

    def _progress_for(self, batch: Batch) -> _Progress:
        key = id(batch)
        prog = self._progress.get(key)
        if prog is not None and prog.batch is batch:
            self._progress.move_to_end(key)
            return prog
        prog = _Progress(batch, self.documents(batch.message))
        self._progress[key] = prog
        while len(self._progress) > self._max_progress:
            # A batch whose retries ran out is never sent again: forget the oldest.
            self._progress.popitem(last=False)
        return prog

    def _chunks_end(self, docs: list[bytes], start: int) -> int:
        size, end, limit = 0, start, self.config.max_request_bytes
        while end < len(docs):
            size += len(docs[end])
            if size > limit and end > start:
                break
            end += 1
        return end

    async def send(self, batch: Batch) -> int | None:
        if batch.signal is not Signal.LOGS:
            raise PermanentError(f"the elasticsearch exporter takes logs, not "
                                 f"{batch.signal.value}")
        prog = self._progress_for(batch)
        docs = prog.pending
        retry: list[bytes] = []
        start = 0
        retry_after: float | None = None
        throttled = False
        errors: list[str] = []
        fatal: PermanentError | None = None
        try:
            while start < len(docs):
                end = self._chunks_end(docs, start)
                chunk = docs[start:end]
                try:
                    result = await self._bulk(chunk)
                except RetryableError as exc:
                    # The whole request was refused for now: keep all of it pending.
                    retry.extend(chunk)
                    retry.extend(docs[end:])
                    start = len(docs)
                    retry_after, throttled = exc.retry_after, exc.throttle
                    errors.append(str(exc))
                    break
                except PermanentError as exc:
                    fatal = exc
                    dropped = len(docs) - start
                    prog.rejected += dropped
                    self._items["rejected"].inc(dropped)
                    reason = f"http_{exc.status}" if isinstance(exc, _RequestRefused) \
                        else "request"
                    prog.reasons[reason] = prog.reasons.get(reason, 0) + dropped
                    self._rejected_docs.labels(self.id, reason).inc(dropped)
                    start = len(docs)
                    break
                start = end
                prog.ok += result.ok
                self._items["ok"].inc(result.ok)
                if result.retry:
                    retry.extend(result.retry)
                    self._items["retry"].inc(len(result.retry))
                    throttled = throttled or result.throttled
                    errors.append(result.first_error)
                for reason, n in result.rejected.items():
                    prog.rejected += n
                    prog.reasons[reason] = prog.reasons.get(reason, 0) + n
                    self._items["rejected"].inc(n)
                    self._rejected_docs.labels(self.id, reason).inc(n)
                if result.rejected:
                    self.log.warning("the backend rejected documents; dropped", extra={
                        "rejected": sum(result.rejected.values()),
                        "reasons": dict(result.rejected), "error": result.first_error})
        finally:
            # Also on cancellation (timeout): what was not answered stays pending.
            prog.pending = retry + docs[start:]
        if prog.pending:
            n = len(prog.pending)
            raise RetryableError(
                f"{safe_url(self.url.split('?')[0])}: {n} of {batch.items} documents refused "
                f"for now, sending those again: {errors[-1] if errors else ''}".rstrip(": "),
                retry_after=retry_after, throttle=throttled)
        self._progress.pop(id(batch), None)
        if fatal is not None and prog.ok == 0:
            raise PermanentError(str(fatal), rejected=batch.items)
        if fatal is not None:
            self.log.warning("the backend refused a bulk request; its documents are dropped",
                             extra={"error": str(fatal), "rejected": prog.rejected})
        return prog.rejected or None

    async def _bulk(self, docs: list[bytes]) -> BulkResult:
        """Post one bulk request; per-document results. Raises for whole-request failures."""
        assert self._session is not None
        body = b"".join(docs)
        if self._gzip:
            body = await gzip_body(body)
        resp = await post(self._session, self.url, body)
        if resp.ok:
            return self.parse_bulk_response(resp.body, docs)
        message = resp.message()
        text = f"HTTP {resp.status}" + (f": {message}" if message else "")
        err = error_for_status(resp.status, text, resp.retry_after)
        if isinstance(err, RetryableError):
            raise err
        raise _RequestRefused(text, resp.status)

    @staticmethod
    def parse_bulk_response(content: bytes, docs: list[bytes]) -> BulkResult:
        """Sort the documents of a 2xx bulk response into ok / retry / rejected."""
        result = BulkResult()
        try:
            data = orjson.loads(content) if content else {}
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            # Unreadable: nothing says any document was taken; send them all again.
            result.retry = list(docs)
            result.first_error = "unreadable bulk response"
            return result
        if not data.get("errors"):
            result.ok = len(docs)
            return result
        items = data.get("items")
        if not isinstance(items, list):
            items = []
        for i, doc in enumerate(docs):
            res: Any = None
            if i < len(items) and isinstance(items[i], dict) and items[i]:
                res = next(iter(items[i].values()))
            if not isinstance(res, dict):
                result.retry.append(doc)  # no answer for this document
                continue
            try:
                st = int(res.get("status", 0))
            except (TypeError, ValueError):
                st = 0
            if 200 <= st < 300 or st == 409:
                result.ok += 1
                continue
            err = res.get("error")
            if isinstance(err, dict):
                reason = str(err.get("type") or "error")
                detail = f"{reason}: {err.get('reason', '')}"
            else:
                reason = "error"
                detail = str(err or f"status {st}")
            if st == 429 or st >= 500 or st == 0:
                result.retry.append(doc)
                result.throttled = result.throttled or st == 429
            else:
                result.rejected[reason] = result.rejected.get(reason, 0) + 1
            if not result.first_error:
                result.first_error = f"status {st}: {detail}"[:500]
        return result


def _create(settings: ExporterCreateSettings,
            config: ElasticsearchExporterConfig) -> ElasticsearchExporter:
    return ElasticsearchExporter(settings, config)


factory = Factory(type="elasticsearch", kind=Kind.EXPORTER,
                  config_model=ElasticsearchExporterConfig, create=_create,
                  signals=frozenset({Signal.LOGS}),
                  description="Elasticsearch Bulk API (data streams or dated indices), "
                              "also OpenSearch and VictoriaLogs")

__all__ = ["BulkResult", "ElasticsearchExporter", "ElasticsearchExporterConfig", "factory"]
