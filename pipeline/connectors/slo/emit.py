"""What the `slo` connector emits: the SLO gauges (metrics) and one log record per
alert transition (the attributes are listed in the package docstring)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber

from pipeline import __version__
from pipeline.aggregation.series import to_key_values
from pipeline.slo.engine import AlertTransition, SLOStatus

SCOPE = "otelpipe/slo"


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat().replace("+00:00", "Z")


def metrics_request(statuses: Sequence[SLOStatus], now_ns: int) -> ExportMetricsServiceRequest:
    """The SLO gauges of one evaluation, one resource per service."""
    req = ExportMetricsServiceRequest()
    by_service: dict[str, Any] = {}
    for st in statuses:
        sm = by_service.get(st.service)
        if sm is None:
            rm = req.resource_metrics.add()
            rm.resource.attributes.extend(to_key_values((("service.name", st.service),)))
            sm = by_service[st.service] = rm.scope_metrics.add()
            sm.scope.name = SCOPE
            sm.scope.version = __version__
        base = (("slo.name", st.name), ("service.name", st.service))

        def gauge(name: str, desc: str, points: list[tuple[tuple[tuple[str, Any], ...],
                                                             float]], sm: Any = sm) -> None:
            if not points:
                return
            m = sm.metrics.add(name=name, description=desc, unit="1")
            for attrs, value in points:
                dp = m.gauge.data_points.add()
                dp.time_unix_nano = now_ns
                dp.attributes.extend(to_key_values(attrs))
                dp.as_double = value

        gauge("slo.sli", "Good events / events over the window",
              [((*base, ("slo.window", w.name)), w.sli) for w in st.windows
               if w.sli is not None])
        gauge("slo.burn_rate", "Error rate over the window / (1 - objective)",
              [((*base, ("slo.window", w.name)), w.burn_rate) for w in st.windows
               if w.burn_rate is not None])
        gauge("slo.error_budget.remaining",
              f"Fraction of the {st.period_name} error budget left (1 untouched, <0 "
              "overspent)", [(base, st.error_budget_remaining)])
        gauge("slo.objective", "Target fraction of good events", [(base, st.objective)])
        gauge("slo.alert.firing", "1 while the alert of this severity fires",
              [((*base, ("alert.severity", a.severity)), 1.0 if a.firing else 0.0)
               for a in st.alerts])
    return req



def logs_request(events: Sequence[AlertTransition], now_ns: int,
                 runbook_url: str) -> ExportLogsServiceRequest:
    """One log record per alert transition; alerts link to
    `<runbook_url>#slo-burn-rate-<severity>`."""
    req = ExportLogsServiceRequest()
    scopes: dict[str, Any] = {}
    for ev in events:
        sl = scopes.get(ev.service)
        if sl is None:
            rl = req.resource_logs.add()
            rl.resource.attributes.extend(to_key_values((("service.name", ev.service),)))
            sl = scopes[ev.service] = rl.scope_logs.add()
            sl.scope.name = SCOPE
            sl.scope.version = __version__
        rec = sl.log_records.add()
        rec.time_unix_nano = int(ev.at * 1e9)
        rec.observed_time_unix_nano = now_ns
        firing = ev.state == "firing"
        rec.severity_number = (SeverityNumber.SEVERITY_NUMBER_WARN if firing
                               else SeverityNumber.SEVERITY_NUMBER_INFO)
        rec.severity_text = "WARN" if firing else "INFO"
        rec.body.string_value = ev.summary
        attrs: list[tuple[str, Any]] = [
            ("event.name", "slo.alert"), ("slo.name", ev.slo),
            ("service.name", ev.service), ("alert.severity", ev.severity),
            ("alert.state", ev.state), ("alert.windows", ",".join(ev.windows)),
            *((f"alert.burn_rate.{w}", float(r)) for w, r in ev.burn_rates.items()),
            ("alert.threshold", float(ev.threshold)),
            ("slo.objective", float(ev.objective)),
            ("slo.error_budget.remaining", float(ev.error_budget_remaining)),
            ("alert.summary", ev.summary),
            ("alert.runbook_url", f"{runbook_url}#slo-burn-rate-{ev.severity}"),
            ("alert.starts_at", _iso(ev.started_at)),
        ]
        if not firing:
            attrs.append(("alert.ends_at", _iso(ev.at)))
        if ev.replayed:
            attrs.append(("alert.replayed", True))
        rec.attributes.extend(to_key_values(tuple(attrs)))
    return req
