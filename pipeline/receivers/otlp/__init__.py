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
Per span, `max_events_per_span` events and `max_links_per_span` links are kept
(the SDK's span limits), the rest added to `dropped_events_count` /
`dropped_links_count`; array (and key-value list) values keep their first
`max_attribute_array_length` elements. Counted in
`otelpipe_receiver_span_events_dropped`, `otelpipe_receiver_span_links_dropped`,
`otelpipe_receiver_attribute_arrays_truncated`.

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

Modules: `config` (the models), `receiver` (the component: state, batches,
lifecycle), `grpcservice` (the gRPC Export handlers and server), `httpservice`
(the HTTP handlers, their answers and server), `common` (what both share).
This module holds only the factory; the receiver's modules load when one is created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.component import Factory, Kind, ReceiverCreateSettings, Signal
from pipeline.receivers.otlp.config import OTLPReceiverConfig

if TYPE_CHECKING:
    from pipeline.receivers.otlp.receiver import OTLPReceiver


def _create(settings: ReceiverCreateSettings, config: OTLPReceiverConfig) -> OTLPReceiver:
    from pipeline.receivers.otlp.receiver import OTLPReceiver

    return OTLPReceiver(settings, config)


factory = Factory(
    type="otlp",
    kind=Kind.RECEIVER,
    signals=frozenset(Signal),
    config_model=OTLPReceiverConfig,
    create=_create,
    description="OTLP over gRPC and HTTP (protobuf and JSON)",
)
