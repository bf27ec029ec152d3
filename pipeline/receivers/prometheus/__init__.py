"""`prometheus` receiver: scrapes Prometheus / OpenMetrics endpoints into OTLP metrics,
with the Collector's config shape (a Prometheus configuration under `config`).

    receivers:
      prometheus:
        config:
          scrape_configs:
            - job_name: app
              scrape_interval: 15s
              static_configs:
                - targets: ["127.0.0.1:8000"]
                  labels: {env: prod}
              metric_relabel_configs:
                - {source_labels: [__name__], regex: "go_.*", action: drop}

Supported scrape_config keys, the conversion rules (counter -> cumulative
monotonic Sum with start times, histograms, summaries, staleness as
NO_RECORDED_VALUE, `job`/`instance` -> `service.name`/`service.instance.id`)
and what is not supported: docs/prometheus-receiver.md.

Modules: `config` (typed Prometheus keys; unsupported ones are errors naming
the key), `relabel` (relabel_configs semantics), `discovery` (static and
file_sd groups -> targets), `textparse` (labels, exemplars, metadata lines),
`target` (per-target series cache, exposition -> OTLP bytes, staleness),
`receiver` (pools, jittered loops, fetch with timeout and body limit, chunked
parsing so a 100k-series body never stalls the event loop). aiohttp loads
when a receiver is created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.component import Factory, Kind, ReceiverCreateSettings, Signal
from pipeline.receivers.prometheus.config import PrometheusReceiverConfig

if TYPE_CHECKING:
    from pipeline.receivers.prometheus.receiver import PrometheusReceiver


def _create(settings: ReceiverCreateSettings,
            config: PrometheusReceiverConfig) -> PrometheusReceiver:
    from pipeline.receivers.prometheus.receiver import PrometheusReceiver

    return PrometheusReceiver(settings, config)


factory = Factory(
    type="prometheus",
    kind=Kind.RECEIVER,
    config_model=PrometheusReceiverConfig,
    create=_create,
    signals=frozenset({Signal.METRICS}),
    runs_once=lambda config: True,  # one scrape per target
    description="Scrapes Prometheus and OpenMetrics endpoints (static and file_sd targets, "
                "relabelling) into OTLP metrics, as the Collector's prometheus receiver.",
)
