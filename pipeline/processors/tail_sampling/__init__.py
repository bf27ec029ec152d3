"""`tail_sampling` processor: keeps whole traces chosen by policies after waiting for
their spans — the Collector's `tail_sampling` config, plus an `slo` policy type and
durable waiting (`storage: disk`).

```yaml
processors:
  tail_sampling:
    decision_wait: 10s
    num_traces: 50000
    decision_cache: {sampled_cache_size: 100000, non_sampled_cache_size: 100000}
    policies:
      - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
      - {name: slow, type: latency, latency: {threshold_ms: 500}}
      - {name: burning, type: slo, slo: {slo_files: [configs/slo-definitions.yaml]}}
      - {name: baseline, type: probabilistic, probabilistic: {sampling_percentage: 10}}
    storage: disk                   # waiting traces survive a crash
    directory: /var/lib/otelpipe/tail_sampling
```

Modules: `config` (the keys), `facts` (the trace summary and per-span facts policies
read), `policies` (evaluators, the decision rules), `slo`
(does a span count against an SLO), `waiting` (spans joining their waiting traces,
decided ids, eviction), `processor` (lifecycle, the tick, emitting),
`encode` (sampled spans back to OTLP), `durable` (storage disk), `telemetry`.
See docs/tail_sampling.md.
"""

from __future__ import annotations

from pipeline.component import Factory, Kind, ProcessorCreateSettings, Signal
from pipeline.processors.tail_sampling.config import TailSamplingConfig
from pipeline.processors.tail_sampling.processor import TailSamplingProcessor


def _create(settings: ProcessorCreateSettings,
            config: TailSamplingConfig) -> TailSamplingProcessor:
    return TailSamplingProcessor(settings, config)


factory = Factory(type="tail_sampling", kind=Kind.PROCESSOR, config_model=TailSamplingConfig,
                  create=_create, signals=frozenset({Signal.TRACES}),
                  runs_once=lambda config: True,  # sees every span of a trace
                  description="samples whole traces by policy after decision_wait "
                              "(the Collector's tail_sampling; slo policy; storage: disk)")
