"""Service level objectives: definitions, the error-budget engine, its state, and
the equivalent Prometheus rules.

- `pipeline.slo.model`: the typed model of an SLO definition (`SLO`, its
  `Indicator` and `Selector`s) and the alerting rules;
- `pipeline.slo.native`, `pipeline.slo.openslo`: the compact native form and
  OpenSLO v1 documents, parsed into that model; `pipeline.slo.loader` reads
  YAML files of either.
- `pipeline.slo.engine`: SLIs over rolling windows, error budget, burn rates and
  multi-window multi-burn-rate alerts, with an injectable clock.
- `pipeline.slo.persistence`: the engine's state in a file (atomic writes).
- `pipeline.slo.rules`: Prometheus recording and alerting rules that compute the
  same thing from the series the `prometheus` exporter serves.

The `slo` connector (`pipeline.connectors.slo`) feeds the engine from metrics
flowing through a pipeline.
"""

from pipeline.slo.loader import load_slo_file, parse_documents
from pipeline.slo.model import (
    SLO,
    AlertingConfig,
    BurnRateRule,
    Indicator,
    Selector,
    SLODefinitionError,
)

__all__ = [
    "SLO",
    "AlertingConfig",
    "BurnRateRule",
    "Indicator",
    "SLODefinitionError",
    "Selector",
    "load_slo_file",
    "parse_documents",
]
