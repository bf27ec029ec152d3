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

Modules: `config` (the keys and the bulk URL), `documents` (the document of a
record per mapping: otel / ecs / raw, and its index or data stream), `exporter`
(bulk requests, the per-document outcomes, retrying what is left of a batch).
"""

from __future__ import annotations

from pipeline.component import ExporterCreateSettings, Factory, Kind, Signal
from pipeline.exporters.elasticsearch.config import ElasticsearchExporterConfig
from pipeline.exporters.elasticsearch.exporter import ElasticsearchExporter


def _create(settings: ExporterCreateSettings,
            config: ElasticsearchExporterConfig) -> ElasticsearchExporter:
    return ElasticsearchExporter(settings, config)


factory = Factory(type="elasticsearch", kind=Kind.EXPORTER,
                  config_model=ElasticsearchExporterConfig, create=_create,
                  signals=frozenset({Signal.LOGS}),
                  description="Elasticsearch Bulk API (data streams or dated indices), "
                              "also OpenSearch and VictoriaLogs")
