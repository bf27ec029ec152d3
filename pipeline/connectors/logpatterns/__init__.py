"""`logpatterns` connector: logs in; pattern counts (metrics) and pattern events (logs) out.

Reads the templates `logstruct` mines (`templates: {enabled: true}` sets
`log.template` and `log.template_id` on every record) — it mines nothing itself,
so `logstruct` with templates must run before it in the logs pipeline:

```yaml
connectors:
  logpatterns:
    warmup: 10m              # patterns seen in the first 10m are the baseline: no events
    reappear_after: 24h      # a pattern silent this long that comes back: an event
    rate_change: {factor: 10, window: 5m, baseline: 1h, min_count: 20}
    max_patterns: 20000      # (service, template) pairs remembered; LRU beyond
    state_file: /var/lib/otelpipe/logpatterns.json
    alerts: {enabled: true, severity: ticket, resolve_after: 1h}
```

Metrics (pairs logs→metrics, through the aggregation engine of `redmetrics`:
cardinality limit with one `otel.metric.overflow="true"` series, expiry,
temporality, flush interval): `log.pattern.count`, a monotonic int sum of
records per (service.name, template id, severity), attributes
`log.template_id`, `log.template` (its text when the series was made),
`severity_text` (from the severity number when there is one: TRACE DEBUG INFO
WARN ERROR FATAL; else the record's severity text) and `service.name`. Records
without `log.template_id` are counted under `log.template_id="none"`.

Events (pairs logs→logs): one WARN log record (`event.name=log.pattern`) when

- `new`: a (service, template) first appears after `warmup` (measured from the
  connector's first start: with a `state_file`, a restart neither warms up again
  nor re-announces known patterns);
- `reappeared`: a known pattern comes back after `reappear_after` of silence;
- `rate_change`: in a `window` (tumbling, aligned to the clock) a pattern's count
  is above `factor` × its average per window over the previous `baseline`
  (`log.pattern.rate.direction=up`, needs at least `min_count` records in the
  window) or below that average / `factor` (`down`, needs an average of at least
  `min_count`). Only patterns known for `baseline` are judged; after an event
  the next one for that pattern waits for a window back within the factor of its
  baseline (a burst is one `up` event, not also a `down` once it inflated the
  baseline of the quiet windows after it).

Event attributes: `log.pattern.event` (new|reappeared|rate_change),
`log.template_id`, `log.template`, `service.name`, `log.pattern.first_line`
(the first record's body, at most `first_line_max` characters),
`log.pattern.count`, and for rate changes `log.pattern.rate.window_count`,
`log.pattern.rate.baseline_count` (average per window), `…factor`,
`…direction`. The body names service, template and first line.

With `alerts.enabled` the event records also carry the attributes the
`alertmanager` exporter reads (`slo.name` = `logpattern:<service>:<id>`,
`alert.state=firing`, `alert.severity`, `alert.summary`, `alert.starts_at`), and
after `alerts.resolve_after` an INFO record with `log.pattern.event=resolved` and
`alert.state=resolved` resolves the alert.

Time is the connector's clock (arrival time), injectable for tests. Per record:
two attribute lookups by prefix on the serialized attributes, a few dict
lookups; the body is decoded only for a pattern's first record. Rate windows
are rolled per pattern when it is seen and, for silent patterns, at each flush
(O(patterns), bounded by `max_patterns`). Events refused downstream
(RetryableError) are kept (at most `max_pending_events`) and sent again at the
next flush.

Read API for the status page: `pattern_status()`.
"""


from __future__ import annotations

from pipeline.connectors.logpatterns.connector import factory

__all__ = ["factory"]
