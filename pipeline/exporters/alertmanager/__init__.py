"""`alertmanager` exporter: the `slo` connector's alert events to Prometheus Alertmanager.

```yaml
connectors:
  slo: {...}
exporters:
  alertmanager:
    endpoint: http://alertmanager:9093          # POSTs to <endpoint>/api/v2/alerts
    resend_interval: 1m                         # re-send active alerts (Prometheus' default)
    runbook_url: https://git.example.com/otelpipe/blob/main/docs/runbook.md
    generator_url: http://otelpipe:13133/status # optional: link back to the status page
    labels: {team: platform}                    # added to every alert
    auth: {bearer_token: ${env:AM_TOKEN}}        # and tls / headers: the shared client models
service:
  pipelines:
    logs/alerts: {receivers: [slo], exporters: [alertmanager]}
```

Input: the log records the `slo` connector emits when a burn-rate alert fires
or resolves (attributes `slo.name`, `service.name`, `alert.severity`
page|ticket, `alert.state` firing|resolved, `alert.windows`, burn rates).
Log records that are not alert events are ignored.

Each event becomes one Alertmanager alert (v2 API, `POST /api/v2/alerts`):

- labels: `alertname` (`SLOBurnRatePage` / `SLOBurnRateTicket` by default,
  see `alertname`), `slo`, `service`, `severity`, `window` (the alert's
  long/short window pair, e.g. `1h/5m`) and the configured static `labels`;
- annotations: `summary` (the event's `alert.summary`), `description` (burn
  rates, threshold, objective, budget left), `runbook_url`: `runbook_url`
  plus an anchor of docs/runbook.md, `#slo-<category>-<severity>` with
  category availability|latency|consistency guessed from the SLO's name
  (override per SLO with `runbook_anchors`); when `runbook_url` is not set
  here, an absolute `alert.runbook_url` of the event is used instead;
- `startsAt` (when the alert fired: `alert.starts_at`, else the record's
  time) and `endsAt`: while firing, now +
  `alert_ttl` (4 × resend_interval by default, as Prometheus does: if
  otelpipe stops re-sending, Alertmanager resolves the alert on its own);
  on the `resolved` event, now.

Alertmanager forgets an alert it is not told about again, so the exporter
keeps the alerts it has seen and re-sends the firing ones every
`resend_interval`, and resolved ones for `resolved_retention` (15m) more so a
lost resolution still gets through. Events are applied in event-time order: a
retried, older batch never re-fires an alert resolved since.

Delivery goes through the exporter helper: connection errors, timeouts, 429
and 5xx are retried with backoff; other 4xx are permanent (the batch is
dropped and counted). A re-send is one attempt per interval; the next
interval is its retry.

Modules: `config` (the keys), `events` (alert events read from log records),
`exporter` (the alerts kept, their payload, sending and re-sending).
"""

from __future__ import annotations

from pipeline.component import ExporterCreateSettings, Factory, Kind, Signal
from pipeline.exporters.alertmanager.config import AlertmanagerExporterConfig
from pipeline.exporters.alertmanager.exporter import AlertmanagerExporter


def _create(settings: ExporterCreateSettings,
            config: AlertmanagerExporterConfig) -> AlertmanagerExporter:
    return AlertmanagerExporter(settings, config)


factory = Factory(type="alertmanager", kind=Kind.EXPORTER,
                  config_model=AlertmanagerExporterConfig, create=_create,
                  signals=frozenset({Signal.LOGS}),
                  runs_once=lambda config: True,  # one alert state
                  description="SLO burn-rate alert events to Prometheus Alertmanager (v2 API), "
                              "resolved on recovery, re-sent periodically")
