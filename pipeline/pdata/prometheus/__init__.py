"""OTLP metrics as Prometheus series, shared by the `prometheus` and
`prometheusremotewrite` exporters.

Translation follows the OpenTelemetry "Prometheus and OpenMetrics
compatibility" spec and the Collector's `otlptranslator`:

- Metric names: the OTLP name split on every non-alphanumeric character and
  joined with `_` (`traces.span.metrics.calls` → `traces_span_metrics_calls`),
  the unit appended as a word unless already part of the name (`s` →
  `_seconds`, `By` → `_bytes`, `ms` → `_milliseconds`, `m/s` →
  `_meters_per_second`; `{requests}` annotations dropped), `_ratio` for
  gauges of unit `1`, `_total` for monotonic sums (counters), an optional
  `namespace_` prefix, and `_` before a leading digit.
- Label names: invalid characters become `_` (`service.name` →
  `service_name`), a leading digit gets `key_`, a single leading `_` gets
  `key`; attributes that collide after sanitizing are joined with `;` in key
  order.
- Resources: `job` = `service.namespace/service.name`, `instance` =
  `service.instance.id` on every series; the other resource attributes go to
  one `target_info` series per resource, or onto every series with
  `resource_to_telemetry_conversion`. Data point attributes win over resource
  ones on conflicts. The instrumentation scope adds `otel_scope_name` /
  `otel_scope_version` (`add_scope_labels`).
- Types: gauge → gauge; monotonic sum → counter; non-monotonic sum → gauge;
  histogram → `_bucket{le}` (cumulative) / `_sum` / `_count`; exponential
  histogram → the same classic form with one `le` per exponential bucket
  (lossless: the bucket edges are `base**i`); summary → `{quantile}` /
  `_sum` / `_count`.
- Data points flagged NO_RECORDED_VALUE become staleness markers.

`Accumulator` keeps the latest state of every series: cumulative points are
stored as they come (an older point than the stored one is ignored), delta
sums and histograms are added up into cumulative ones, and series not
updated for `expiration` seconds are dropped.

Modules: `names` (metric and label names, label values, `le`), `series`
(`Series` and its samples), `translate` (OTLP → `Series`), `accumulator`
(latest state, delta → cumulative, expiry), `remotewrite` (the remote-write
1.0 protobuf types, generated from `proto/prompb/remote_write.proto`).
"""
