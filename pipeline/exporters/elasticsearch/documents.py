"""The documents of log records: one `action\\ndocument\\n` pair per record, the
document per `mapping` (otel / ecs / raw, ECS names from the table below) and its
index (`mode: index`, strftime of the record time) or data stream."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import orjson

from pipeline.exporters.elasticsearch.config import ElasticsearchExporterConfig
from pipeline.pdata.anyvalue import any_value

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


class DocumentBuilder:
    """The bulk lines of the records of a request, for one exporter's config."""

    def __init__(self, config: ElasticsearchExporterConfig):
        self.config = config
        self._ts = _Timestamps()
        self._actions: dict[str, bytes] = {}
        self._data_stream = config.mode == "data_stream"
        fmt = config.index
        self._index_granularity = (0 if "%" not in fmt else 1 if "%S" in fmt or "%s" in fmt
                                   else 60 if "%M" in fmt else 3600)
        self._index_cache: tuple[int, str] = (-1, "")

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
