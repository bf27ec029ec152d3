"""The status page's view model: the snapshot `/status.json` serves and `/status`
renders, built from the health extension's component rows, the host's pipelines,
the sampled throughput and the SLO status of every `SLOStatusSource` (the `slo`
connector) among the host's components.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.component import ComponentHealth, ComponentID, Host, Kind
from pipeline.extensions._statuspage.sampler import Key

if TYPE_CHECKING:
    from pipeline.slo.engine import SLOStatus

MAX_CHART_POINTS = 600


class RowLike(Protocol):
    """A component row of the health extension (`kind`, `id`, `pipeline`, `health`)."""

    kind: Kind
    id: ComponentID
    pipeline: str | None
    health: ComponentHealth


def ts(t: float) -> str:
    """RFC 3339 in UTC with milliseconds."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _round(v: float | None, nd: int = 6) -> float | None:
    return None if v is None else round(v, nd)


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


# --- SLOs ---------------------------------------------------------------------------


@dataclass
class SLOView:
    """What the page shows of one SLO."""

    name: str
    service: str = ""
    objective: float | None = None  # e.g. 0.999
    period: float = 30 * 86400.0  # seconds
    sli: dict[str, float | None] = field(default_factory=dict)  # window → SLI (0..1)
    budget_remaining: float | None = None  # fraction of the error budget left (1 = all)
    burn_rates: dict[str, float | None] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # firing alerts
    series: list[tuple[float, float]] = field(default_factory=list)  # (unix s, remaining)
    connector: str = ""
    description: str = ""
    events: dict[str, float] = field(default_factory=dict)  # good, bad, total over the period


def slo_view(st: SLOStatus, connector: str) -> SLOView:
    """The view of one `SLOStatus` of the connector `connector`."""
    period_w = next((w for w in st.windows if w.name == st.period_name), None)
    events = ({"good": period_w.good, "bad": period_w.bad, "total": period_w.total}
              if period_w is not None else {})
    return SLOView(
        name=st.name, service=st.service, objective=_finite(st.objective),
        period=st.period,
        sli={w.name: _finite(w.sli) for w in st.windows},
        budget_remaining=_finite(st.error_budget_remaining),
        burn_rates={w.name: _finite(w.burn_rate) for w in st.windows},
        alerts=[{"severity": a.severity, "windows": "/".join(a.windows),
                 "since": _finite(a.since)} for a in st.alerts if a.firing],
        series=sorted((t, y) for t, y in st.budget_history
                      if math.isfinite(t) and math.isfinite(y)),
        connector=connector, description=st.display_name or st.description, events=events)


def read_slos(host: Host | None) -> list[SLOView]:
    """Every SLO of every `SLOStatusSource` the host runs, by component id."""
    if host is None:
        return []
    from pipeline.slo.engine import SLOStatusSource  # the SLO model loads on a page view

    out: list[SLOView] = []
    for (_, cid), comp in sorted(host.components().items(), key=lambda kv: str(kv[0][1])):
        if isinstance(comp, SLOStatusSource):
            out.extend(slo_view(st, str(cid)) for st in comp.status())
    return out


def _thin(points: list[tuple[float, float]], n: int) -> list[tuple[float, float]]:
    if len(points) <= n:
        return points
    step = len(points) / n
    out = [points[int(i * step)] for i in range(n)]
    out[-1] = points[-1]
    return out


def slo_json(v: SLOView) -> dict[str, Any]:
    return {
        "name": v.name, "service": v.service, "connector": v.connector,
        "objective": v.objective, "period_seconds": v.period,
        "sli": {w: _round(x) for w, x in v.sli.items()},
        "budget_remaining": _round(v.budget_remaining),
        "burn_rates": {w: _round(x, 3) for w, x in v.burn_rates.items()},
        "alerts": v.alerts, "description": v.description, "events": v.events,
        "budget_series": [[round(t, 3), round(y, 6)]
                          for t, y in _thin(v.series, MAX_CHART_POINTS)]}


# --- components and pipelines ----------------------------------------------------------


def component_views(rows: Sequence[RowLike], rates: dict[Key, float],
                    failed: dict[Key, float],
                    scrub: Callable[[str], str]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        key: Key = (r.kind.value, str(r.id), r.pipeline or "")
        if key not in rates and r.kind is not Kind.PROCESSOR:
            key = (r.kind.value, str(r.id), "")
        h = r.health
        out.append({
            "kind": r.kind.value, "id": str(r.id), "pipeline": r.pipeline,
            "healthy": h.healthy,
            "last_error": scrub(h.last_error) if h.last_error else None,
            "items_per_second": _round(rates.get(key), 3),
            "failed_per_second": _round(failed.get(key), 3)
            if r.kind is Kind.EXPORTER else None,
            "queue_size": h.queue_size, "queue_capacity": h.queue_capacity})
    return out


def pipeline_views(host: Host | None, components: list[dict[str, Any]],
                   rates: dict[Key, float]) -> list[dict[str, Any]]:
    if host is None:
        return []
    out = []
    for p in host.pipelines().values():
        members = {(Kind.RECEIVER.value, str(c)) for c in p.receivers} | \
                  {(Kind.EXPORTER.value, str(c)) for c in p.exporters} | \
                  {(Kind.CONNECTOR.value, str(c)) for c in (*p.receivers, *p.exporters)}
        mine = [c for c in components
                if (c["kind"] == Kind.PROCESSOR.value and c["pipeline"] == p.id)
                or (c["kind"] != Kind.PROCESSOR.value and (c["kind"], c["id"]) in members)]
        sig = "@" + p.signal.value
        per_signal = {
            f"{kind}/{c}": _round(rates.get((kind, str(c), sig)), 3)
            for kind, ids in (("receiver", p.receivers), ("exporter", p.exporters))
            for c in ids if (kind, str(c), sig) in rates}
        out.append({
            "id": p.id, "signal": p.signal.value,
            "healthy": all(c["healthy"] for c in mine),
            "items_per_second": per_signal,
            "receivers": [str(c) for c in p.receivers],
            "processors": [str(c) for c in p.processors],
            "exporters": [str(c) for c in p.exporters]})
    return out
