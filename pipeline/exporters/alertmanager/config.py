"""The `alertmanager` exporter's config keys."""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import Field, field_validator

from pipeline.config.retry import ExporterSettings
from pipeline.config.secrets import mask_url
from pipeline.config.tls import ClientSettings
from pipeline.config.types import Duration

DEFAULT_RUNBOOK_URL = "https://github.com/otelpipe/otelpipe/blob/main/docs/runbook.md"


class AlertmanagerExporterConfig(ClientSettings, ExporterSettings):
    endpoint: str = Field(
        "http://localhost:9093",
        description="Alertmanager base URL; alerts are POSTed to <endpoint>/api/v2/alerts")
    timeout: Duration = Field(10.0, description="per request, as Prometheus' notifier")
    resend_interval: Duration = Field(
        60.0, gt=0, description="re-send firing alerts this often so Alertmanager keeps them")
    alert_ttl: Duration | None = Field(
        None, description="endsAt of a firing alert is now + alert_ttl (default 4 × "
                          "resend_interval): Alertmanager resolves it if re-sends stop")
    resolved_retention: Duration = Field(
        900.0, description="keep re-sending a resolved alert this long (a lost resolution "
                           "still arrives)")
    alertname: str = Field(
        "SLOBurnRate{Severity}",
        description="alertname label; placeholders {slo} {service} {severity} {Severity} "
                    "{category}")
    labels: dict[str, str] = Field(default_factory=dict,
                                   description="static labels added to every alert")
    runbook_url: str = Field(DEFAULT_RUNBOOK_URL,
                             description="base URL of docs/runbook.md; the anchor is appended")
    runbook_anchor: str = Field(
        "slo-{category}-{severity}",
        description="anchor appended to runbook_url; placeholders as alertname")
    runbook_anchors: dict[str, str] = Field(
        default_factory=dict, description="per SLO name: an anchor or a full URL")
    generator_url: str | None = Field(
        None, description="generatorURL of each alert (e.g. the status page), {slo} allowed")

    @field_validator("endpoint")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"{mask_url(v)!r}: expected an http:// or https:// URL")
        return v.rstrip("/")

    @field_validator("labels")
    @classmethod
    def _label_names(cls, v: Mapping[str, str]) -> Mapping[str, str]:
        for name in v:
            if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name):
                raise ValueError(f"invalid Alertmanager label name {name!r}")
        return v

    @field_validator("alertname", "runbook_anchor")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            v.format(**placeholders("s", "svc", "page", "availability"))
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"bad template {v!r}: {exc}") from None
        return v

    @property
    def ttl(self) -> float:
        return self.alert_ttl if self.alert_ttl is not None else 4 * self.resend_interval


def placeholders(slo: str, service: str, severity: str, category: str) -> dict[str, str]:
    return {"slo": slo, "service": service, "severity": severity,
            "Severity": severity[:1].upper() + severity[1:], "category": category}
