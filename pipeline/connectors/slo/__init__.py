"""`slo` connector: metrics in; SLO metrics and alert events out.

    connectors:
      slo:
        slos:                       # native form, or OpenSLO / native files:
          - name: api-availability  # slo_files: [/etc/otelpipe/slos.yaml]
            service: api
            objective: 99.9
            window: 30d
            sli: {type: availability, source: httpcheck,
                  match: {http.url: "http://api:8000/health"}}
        alerting: {min_events: 10}  # rules default to the SRE workbook's
        flush_interval: 15s
        state_file: /var/lib/otelpipe/slo-state.json

Pairs metrics→metrics and metrics→logs. It reads the metrics its SLOs name
(see `pipeline.slo.model`) and counts events per SLO:

- monotonic sums (`traces.span.metrics.calls`): the increase of each series
  (cumulative values turned into deltas per series; a value that goes down or
  a new start time is a reset, and the new value is the increase; delta sums
  are taken as they are). A series first seen with a start time after the
  connector began watching counts in full (the error series redmetrics creates
  with the first error of an outage), otherwise its first value is a baseline;
- histograms (`traces.span.metrics.duration`): the increase of the count, and
  for `op: lte` the increase of the observations <= the bound -- the bound
  must be one of the histogram's explicit bucket bounds (a problem is logged and
  the SLO gets no events otherwise);
- gauges and non-monotonic sums (`httpcheck.success`, `db.replication.lag`):
  one event per sample (a sample repeated with the same timestamp counts once),
  good when `sample op value`.

Events count at the time they arrive (the connector's clock). Every
`flush_interval` the engine (`pipeline.slo.engine`) evaluates every SLO and
the connector emits gauges -- `slo.sli` and `slo.burn_rate` (attribute
`slo.window`: 5m … 3d and the period), `slo.error_budget.remaining`,
`slo.objective`, `slo.alert.firing` (`alert.severity`) -- each with `slo.name`
and `service.name` (also the resource's `service.name`), and one log record per
alert transition (WARN when firing, INFO when resolved; attributes
`event.name=slo.alert`, `slo.name`, `service.name`, `alert.severity`,
`alert.state`, `alert.windows`, `alert.burn_rate.<window>`, `alert.threshold`,
`alert.summary`, `alert.runbook_url`, `alert.starts_at`, `alert.ends_at`).
Alert events refused downstream (RetryableError) are kept (up to 1000) and
sent again at the next flush; metrics are superseded by the next flush.

State: with `state_file`, the buckets, alert states and counter baselines are
saved every `state_save_interval` and at shutdown (atomically) and loaded at
creation, so a restart keeps the budget. Alerts still firing after a restart
are announced again (`alert.replayed=true`). What was counted after the last
save and before a crash may be counted again (at most one save interval).

Read API (the status page, the alertmanager exporter): `status()` returns one
`pipeline.slo.engine.SLOStatus` per SLO (name, service, objective, SLI and burn
rate per window, budget remaining, alerts with severity / since / windows /
burn rates, and `budget_history` for a burn-down chart); `slo_status(name)`
one; `problems` the input problems found per SLO. A running service's
connectors are found with `host.components()`; each is a
`pipeline.slo.engine.SLOStatusSource`.

Modules: `config` (the config model and its SLO definitions), `counting` (events
from metrics), `emit` (the SLO metrics and alert log records), `connector`
(flushes, state, read API).
"""

from __future__ import annotations

from pipeline.component import ConnectorCreateSettings, Factory, Kind, Signal
from pipeline.connectors.slo.config import SLOConnectorConfig
from pipeline.connectors.slo.connector import SLOConnector


def _create(settings: ConnectorCreateSettings, config: SLOConnectorConfig) -> SLOConnector:
    return SLOConnector(settings, config)


factory = Factory(type="slo", kind=Kind.CONNECTOR, config_model=SLOConnectorConfig,
                  create=_create,
                  connector_pairs=frozenset({(Signal.METRICS, Signal.METRICS),
                                             (Signal.METRICS, Signal.LOGS)}),
                  runs_once=lambda config: True,  # one engine and state file
                  description="SLIs, error budgets and burn-rate alerts from metrics")
