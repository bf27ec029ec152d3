"""Config of the `slo` connector: SLOs inline (native form) or from files."""

from __future__ import annotations

from pydantic import Field, PrivateAttr, model_validator

from pipeline.component import ComponentConfig
from pipeline.config.types import Duration
from pipeline.slo.loader import load_slo_file
from pipeline.slo.model import SLO, AlertingConfig, SLODefinitionError
from pipeline.slo.native import NativeSLO

DEFAULT_RUNBOOK = "docs/runbook.md"


class SLOConnectorConfig(ComponentConfig):
    slos: list[NativeSLO] = Field(default_factory=list, description="SLOs in the native form")
    slo_files: list[str] = Field(default_factory=list, description="YAML files with OpenSLO v1 "
                                 "documents or a native slos: list (relative to the working "
                                 "directory)")
    alerting: AlertingConfig = Field(default_factory=AlertingConfig)
    flush_interval: Duration = Field(15.0, gt=0, description="evaluate and emit this often")
    state_file: str | None = Field(None, description="where the budget survives restarts; "
                                                     "without it a restart starts afresh")
    state_save_interval: Duration = Field(60.0, gt=0)
    runbook_url: str = Field(DEFAULT_RUNBOOK, description="alerts link to "
                             "<runbook_url>#slo-burn-rate-<severity>")
    series_limit: int = Field(100_000, ge=1, description="input series tracked for deltas")
    series_expiry: Duration = Field(3600.0, gt=0, description="forget an input series unseen "
                                                              "this long")

    _slos: list[SLO] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _load(self) -> SLOConnectorConfig:
        slos = [s.to_slo() for s in self.slos]
        problems: list[str] = []
        for path in self.slo_files:
            try:
                slos.extend(load_slo_file(path))
            except SLODefinitionError as exc:
                problems.extend(exc.problems)
        if problems:
            raise ValueError("; ".join(problems))
        if not slos:
            raise ValueError("no SLOs: define some under slos or slo_files")
        seen: set[str] = set()
        for s in slos:
            if s.name in seen:
                raise ValueError(f"SLO {s.name!r} is defined twice")
            seen.add(s.name)
        self._slos = slos
        return self

    @property
    def definitions(self) -> list[SLO]:
        return list(self._slos)

