"""The status page the `health` extension serves at `/status` (HTML) and `/status.json`.

```yaml
extensions:
  health:
    endpoint: 0.0.0.0:13133
    status_page:
      refresh: 10s           # the page reloads itself this often (0: never)
      sample_interval: 5s    # how often the telemetry counters are sampled
      throughput_window: 1m  # items/s are averaged over this window
```

What it shows, all of it server-rendered (inline CSS and SVG, no external
assets, no JavaScript; the page refreshes itself with `<meta http-equiv=refresh>`):

- overall status (healthy / degraded / unhealthy), version, uptime;
- each pipeline with its receivers → processors → exporters, each
  component's health, throughput (items/s over the last minute, derived from
  the pipeline's own counters sampled every `sample_interval`: receivers'
  `otelpipe_receiver_accepted_items`, the batch processor's
  `otelpipe_processor_batch_send_size` sum, connectors'
  `otelpipe_connector_emitted_points`, exporters' `otelpipe_exporter_sent_items`
  and `…_send_failed_items`), queue depth and last error (scrubbed);
- each SLO of every `slo` connector: objective, SLI per window, error budget
  remaining, burn rates, firing alerts, and a burn-down chart of the budget
  over the SLO period (`<svg class="burndown" data-slo="NAME">`).

`/status.json` carries the same data. Only component ids, health fields and
SLO state are shown — never configuration, so no secrets; every text is
HTML-escaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from aiohttp import web
from pydantic import Field

from pipeline import __version__
from pipeline.component import ComponentConfig, ComponentHealth, ComponentID, Host, Kind
from pipeline.config.types import Duration
from pipeline.telemetry.metrics import Telemetry

PATHS = ("/status", "/status.json")
SLO_CONNECTOR_TYPE = "slo"
MAX_SAMPLES = 512
MAX_CHART_POINTS = 600


class StatusPageSettings(ComponentConfig):
    enabled: bool = Field(True, description="serve /status and /status.json")
    refresh: Duration = Field(10.0, description="the page reloads itself this often; 0: never")
    sample_interval: Duration = Field(5.0, gt=0,
                                      description="how often throughput counters are sampled")
    throughput_window: Duration = Field(60.0, gt=0,
                                        description="items/s are averaged over this window")


class RowLike(Protocol):
    """A component row of the health extension (`kind`, `id`, `pipeline`, `health`)."""

    kind: Kind
    id: ComponentID
    pipeline: str | None
    health: ComponentHealth


# --- throughput ----------------------------------------------------------------------

# (kind, component id, pipeline or "" or "@<signal>") → a running total
Key = tuple[str, str, str]


def _family_samples(metric: Any, suffix: str) -> Iterable[tuple[dict[str, str], float]]:
    for family in metric.collect():
        for s in family.samples:
            if s.name.endswith(suffix):
                yield s.labels, s.value


def counter_totals(t: Telemetry) -> tuple[dict[Key, float], dict[Key, float]]:
    """(items through each component, items each exporter failed) since the start."""
    through: dict[Key, float] = {}
    failed: dict[Key, float] = {}

    def add(d: dict[Key, float], key: Key, v: float) -> None:
        d[key] = d.get(key, 0.0) + v

    for labels, v in _family_samples(t.receiver_accepted, "_total"):
        add(through, ("receiver", labels.get("receiver", ""), ""), v)
        add(through, ("receiver", labels.get("receiver", ""), "@" + labels.get("signal", "")), v)
    for labels, v in _family_samples(t.batch_send_size, "_sum"):
        add(through, ("processor", labels.get("processor", ""), labels.get("pipeline", "")), v)
    for labels, v in _family_samples(t.connector_emitted_points, "_total"):
        add(through, ("connector", labels.get("connector", ""), ""), v)
    for labels, v in _family_samples(t.exporter_sent, "_total"):
        add(through, ("exporter", labels.get("exporter", ""), ""), v)
        add(through, ("exporter", labels.get("exporter", ""), "@" + labels.get("signal", "")), v)
    for metric in (t.exporter_send_failed, t.exporter_enqueue_failed):
        for labels, v in _family_samples(metric, "_total"):
            add(failed, ("exporter", labels.get("exporter", ""), ""), v)
    return through, failed


@dataclass
class _Sample:
    t: float
    through: dict[Key, float]
    failed: dict[Key, float]


class ThroughputSampler:
    """Samples the counters periodically; rates are items/s over the last `window`."""

    def __init__(self, telemetry: Telemetry, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.telemetry = telemetry
        self.window = window
        self.clock = clock
        self.samples: deque[_Sample] = deque(maxlen=MAX_SAMPLES)

    def _take(self) -> _Sample:
        through, failed = counter_totals(self.telemetry)
        return _Sample(self.clock(), through, failed)

    def sample(self) -> None:
        s = self._take()
        self.samples.append(s)
        # Keep one sample older than the window, so a full window is covered.
        while len(self.samples) > 2 and self.samples[1].t <= s.t - self.window:
            self.samples.popleft()

    def rates(self) -> tuple[dict[Key, float], dict[Key, float]]:
        """(items/s, failed items/s) per component, from the oldest kept sample to now."""
        now = self._take()
        base = next((s for s in reversed(self.samples) if s.t <= now.t - self.window), None)
        if base is None:
            base = self.samples[0] if self.samples else None
        if base is None or now.t - base.t <= 0:
            return {}, {}

        def per_second(cur: dict[Key, float], old: dict[Key, float]) -> dict[Key, float]:
            dt = now.t - base.t
            return {k: max(0.0, v - old.get(k, 0.0)) / dt for k, v in cur.items()}

        return per_second(now.through, base.through), per_second(now.failed, base.failed)

    async def run(self, interval: float) -> None:
        while True:
            with contextlib.suppress(Exception):  # a broken collector must not end sampling
                self.sample()
            await asyncio.sleep(interval)


# --- SLO state -----------------------------------------------------------------------


@dataclass
class SLOView:
    """What the page shows of one SLO (normalised from the connector's read API)."""

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
    events: dict[str, float] = field(default_factory=dict)  # e.g. total, good over the period


class SLOStateSource(Protocol):
    """The read API of the `slo` connector, as the page uses it: one
    `pipeline.slo.engine.SLOStatus` (or a mapping with the SLOView keys) per SLO."""

    def status(self) -> Sequence[Any]: ...


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        if isinstance(obj, Mapping):
            if n in obj and obj[n] is not None:
                return obj[n]
        else:
            v = getattr(obj, n, None)
            if v is not None:
                return v
    return default


def _float(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _window_map(v: Any) -> dict[str, float | None]:
    if isinstance(v, Mapping):
        return {str(k): _float(x) for k, x in v.items()}
    if isinstance(v, Iterable) and not isinstance(v, (str, bytes)):
        out: dict[str, float | None] = {}
        for item in v:
            w = _get(item, "window", "name")
            if w is not None:
                out[str(w)] = _float(_get(item, "value", "sli", "burn_rate", "rate"))
        return out
    return {}


def _duration_seconds(v: Any) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if hasattr(v, "total_seconds"):
        return float(v.total_seconds())
    if isinstance(v, str):
        from pipeline.config.types import parse_duration
        with contextlib.suppress(Exception):
            return float(parse_duration(v))
    return None


def _series(v: Any) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    if not isinstance(v, Iterable) or isinstance(v, (str, bytes)):
        return out
    for p in v:
        if isinstance(p, (tuple, list)) and len(p) >= 2:
            t, y = _float(p[0]), _float(p[1])
        else:
            t = _float(_get(p, "t", "time", "timestamp", "ts"))
            y = _float(_get(p, "remaining", "budget_remaining", "value", "y"))
        if t is not None and y is not None:
            if t > 1e14:  # nanoseconds
                t /= 1e9
            elif t > 1e11:  # milliseconds
                t /= 1e3
            out.append((t, y))
    out.sort()
    return out


def _alerts(v: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(v, Iterable) and not isinstance(v, (str, bytes, Mapping)):
        for a in v:
            if isinstance(a, str):
                out.append({"severity": a})
                continue
            windows = _get(a, "windows", "window", default="")
            if isinstance(windows, (list, tuple)):
                windows = "/".join(str(w) for w in windows)
            since = _float(_get(a, "since", "starts_at", "started_at", "fired_at"))
            out.append({"severity": str(_get(a, "severity", default="")),
                        "windows": str(windows), "since": since})
    return out


def _from_engine_status(st: Any, connector: str) -> SLOView:
    """`pipeline.slo.engine.SLOStatus` (the connector's read API) to an SLOView."""
    windows = list(st.windows)
    period_w = next((w for w in windows if w.name == st.period_name), None)
    events = ({"good": period_w.good, "bad": period_w.bad, "total": period_w.total}
              if period_w is not None else {})
    return SLOView(
        name=str(st.name), service=str(st.service), objective=_float(st.objective),
        period=float(st.period),
        sli={w.name: _float(w.sli) for w in windows},
        budget_remaining=_float(st.error_budget_remaining),
        burn_rates={w.name: _float(w.burn_rate) for w in windows},
        alerts=[{"severity": a.severity, "windows": "/".join(a.windows),
                 "since": _float(a.since)} for a in st.alerts if a.firing],
        series=_series(st.budget_history), connector=connector,
        description=str(st.display_name or st.description or ""), events=events)


def slo_view(obj: Any, connector: str = "") -> SLOView:
    """An SLOView from a state object or mapping of the slo connector's read API."""
    if hasattr(obj, "error_budget_remaining") and hasattr(obj, "period_name") \
            and hasattr(obj, "windows"):
        return _from_engine_status(obj, connector)
    period = _duration_seconds(_get(obj, "period", "period_seconds", "time_window",
                                    "window")) or 30 * 86400.0
    objective = _float(_get(obj, "objective", "target"))
    if objective is not None and objective > 1:  # given in percent
        objective /= 100
    remaining = _float(_get(obj, "budget_remaining", "error_budget_remaining", "remaining"))
    events = _get(obj, "events", default={})
    return SLOView(
        name=str(_get(obj, "name", "slo", default="?")),
        service=str(_get(obj, "service", "service_name", default="")),
        objective=objective, period=period,
        sli=_window_map(_get(obj, "sli", "slis", default={})),
        budget_remaining=remaining,
        burn_rates=_window_map(_get(obj, "burn_rates", "burn_rate", default={})),
        alerts=_alerts(_get(obj, "alerts", "firing", "firing_alerts", default=[])),
        series=_series(_get(obj, "budget_series", "burndown", "series", "history",
                            default=[])),
        connector=connector,
        description=str(_get(obj, "description", default="")),
        events={str(k): float(x) for k, x in events.items() if _float(x) is not None}
        if isinstance(events, Mapping) else {})


def read_slos(host: Host | None) -> list[SLOView]:
    """Every SLO of every `slo` connector the host runs."""
    if host is None:
        return []
    out: list[SLOView] = []
    for (kind, cid), comp in sorted(host.components().items(), key=lambda kv: str(kv[0][1])):
        if kind is not Kind.CONNECTOR or cid.type != SLO_CONNECTOR_TYPE:
            continue
        states = _call_read_api(comp)
        out.extend(slo_view(s, str(cid)) for s in states)
    return out


def _call_read_api(comp: Any) -> list[Any]:
    """`status()` of `pipeline.connectors.slo.SLOConnector` (a list of SLOStatus); other
    shapes (`slo_states()`, a mapping by name) are accepted for third-party connectors."""
    for name in ("status", "slo_states", "states"):
        fn = getattr(comp, name, None)
        if callable(fn):
            result = fn()
            if isinstance(result, Mapping):
                return [{"name": k, **v} if isinstance(v, Mapping) else v
                        for k, v in result.items()]
            return list(result)
    return []


# --- snapshot -----------------------------------------------------------------------


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _round(v: float | None, nd: int = 6) -> float | None:
    return None if v is None else round(v, nd)


class StatusPage:
    """Builds the status snapshot and renders it; the health extension serves it."""

    def __init__(self, settings: StatusPageSettings, telemetry: Telemetry, *,
                 host: Callable[[], Host | None], rows: Callable[[], Sequence[RowLike]],
                 running: Callable[[], bool], scrub: Callable[[str], str],
                 started_at: Callable[[], float], clock: Callable[[], float] = time.time):
        self.settings = settings
        self.host = host
        self.rows = rows
        self.running = running
        self.scrub = scrub
        self.started_at = started_at
        self.clock = clock
        self.sampler = ThroughputSampler(telemetry, settings.throughput_window)
        self._task: asyncio.Task[None] | None = None

    def install(self, app: web.Application) -> None:
        if self.settings.enabled:
            app.router.add_get("/status", self.handle_html)
            app.router.add_get("/status.json", self.handle_json)

    async def start(self) -> None:
        if self.settings.enabled:
            self._task = asyncio.create_task(self.sampler.run(self.settings.sample_interval),
                                             name="statuspage-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        running = self.running()
        rows = list(self.rows())
        rates, failed = self.sampler.rates()
        components = []
        for r in rows:
            key: Key = (r.kind.value, str(r.id), r.pipeline or "")
            if key not in rates and r.kind is not Kind.PROCESSOR:
                key = (r.kind.value, str(r.id), "")
            h = r.health
            components.append({
                "kind": r.kind.value, "id": str(r.id), "pipeline": r.pipeline,
                "healthy": h.healthy,
                "last_error": self.scrub(h.last_error) if h.last_error else None,
                "items_per_second": _round(rates.get(key), 3),
                "failed_per_second": _round(failed.get(key), 3)
                if r.kind is Kind.EXPORTER else None,
                "queue_size": h.queue_size, "queue_capacity": h.queue_capacity})
        host = self.host()
        pipelines = []
        if host is not None:
            for p in host.pipelines().values():
                members = {(Kind.RECEIVER.value, str(c)) for c in p.receivers} | \
                          {(Kind.EXPORTER.value, str(c)) for c in p.exporters} | \
                          {(Kind.CONNECTOR.value, str(c)) for c in (*p.receivers, *p.exporters)}
                mine = [c for c in components
                        if (c["kind"] == Kind.PROCESSOR.value and c["pipeline"] == p.id)
                        or (c["kind"] != Kind.PROCESSOR.value
                            and (c["kind"], c["id"]) in members)]
                sig = "@" + p.signal.value
                per_signal = {
                    f"{kind}/{c}": _round(rates.get((kind, str(c), sig)), 3)
                    for kind, ids in (("receiver", p.receivers), ("exporter", p.exporters))
                    for c in ids if (kind, str(c), sig) in rates}
                pipelines.append({
                    "id": p.id, "signal": p.signal.value,
                    "healthy": all(c["healthy"] for c in mine),
                    "items_per_second": per_signal,
                    "receivers": [str(c) for c in p.receivers],
                    "processors": [str(c) for c in p.processors],
                    "exporters": [str(c) for c in p.exporters]})
        slos = []
        try:
            views = read_slos(host)
        except Exception as exc:  # a broken read API must not take the page down
            views = []
            slos_error: str | None = f"SLO state unavailable: {type(exc).__name__}"
        else:
            slos_error = None
        for v in views:
            slos.append({
                "name": v.name, "service": v.service, "connector": v.connector,
                "objective": v.objective, "period_seconds": v.period,
                "sli": {w: _round(x) for w, x in v.sli.items()},
                "budget_remaining": _round(v.budget_remaining),
                "burn_rates": {w: _round(x, 3) for w, x in v.burn_rates.items()},
                "alerts": v.alerts, "description": v.description, "events": v.events,
                "budget_series": [[round(t, 3), round(y, 6)]
                                  for t, y in _thin(v.series, MAX_CHART_POINTS)]})
        healthy = all(c["healthy"] for c in components)
        status = ("healthy" if healthy else "degraded") if running else "unhealthy"
        started = self.started_at()
        body: dict[str, Any] = {
            "status": status, "version": __version__, "timestamp": _ts(now),
            "uptime_seconds": round(max(0.0, now - started), 3),
            "refresh_seconds": self.settings.refresh,
            "throughput_window_seconds": self.settings.throughput_window,
            "pipelines": pipelines, "components": components, "slos": slos}
        if slos_error:
            body["slos_error"] = slos_error
        return body

    # Handlers -----------------------------------------------------------------------
    async def handle_json(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.snapshot()), content_type="application/json",
                            headers={"Cache-Control": "no-store"})

    async def handle_html(self, request: web.Request) -> web.Response:
        return web.Response(text=render_html(self.snapshot(), self.clock()),
                            content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store",
                                     "Content-Security-Policy":
                                         "default-src 'none'; style-src 'unsafe-inline'; "
                                         "img-src data:"})


def _thin(points: list[tuple[float, float]], n: int) -> list[tuple[float, float]]:
    if len(points) <= n:
        return points
    step = len(points) / n
    out = [points[int(i * step)] for i in range(n)]
    out[-1] = points[-1]
    return out


# --- rendering ----------------------------------------------------------------------

e = html.escape
_SLUG = re.compile(r"[^a-zA-Z0-9_-]+")

CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
margin:0;background:#f5f6f8;color:#1d2330}
header{background:#1d2330;color:#fff;padding:14px 24px;display:flex;gap:18px;
align-items:baseline;flex-wrap:wrap}
header h1{font-size:20px;margin:0}
header .meta{color:#b9c0cf;font-size:13px}
main{padding:18px 24px;max-width:1240px}
h2{font-size:16px;margin:22px 0 10px}
.badge{display:inline-block;padding:1px 9px;border-radius:10px;font-weight:600;font-size:12px;
color:#fff}
.ok{background:#1f9d55}.warn{background:#d97706}.bad{background:#dc2626}.idle{background:#6b7280}
.dot{display:inline-block;width:9px;height:9px;border-radius:50%;margin-right:5px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:14px}
.card{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:14px 16px}
.card h3{margin:0 0 4px;font-size:15px}
.sub{color:#5b6475;font-size:12px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e8}
th,td{text-align:left;padding:5px 9px;border-bottom:1px solid #edf0f4;font-size:13px;
vertical-align:top}
th{background:#f0f2f6;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.chain{font-size:13px}.chain span.c{white-space:nowrap}
.err{color:#b91c1c;font-size:12px;max-width:420px;overflow-wrap:anywhere}
.bar{display:inline-block;width:70px;height:8px;background:#e5e7eb;border-radius:4px;
vertical-align:middle;margin-left:6px;overflow:hidden}
.bar i{display:block;height:100%}
.kv{display:flex;gap:22px;flex-wrap:wrap;margin:8px 0}
.kv div b{display:block;font-size:18px}
.kv div span{color:#5b6475;font-size:12px}
svg.burndown{display:block;width:100%;height:auto;margin-top:6px}
.alert{margin:4px 0;font-size:13px}
.ok-text{color:#1f9d55}.warn-text{color:#d97706}.bad-text{color:#dc2626}.idle-text{color:#6b7280}
footer{color:#6b7280;font-size:12px;padding:10px 24px 24px}
"""


def _badge(status: str) -> str:
    cls = {"healthy": "ok", "ready": "ok", "ok": "ok", "firing": "bad", "degraded": "warn",
           "unhealthy": "bad"}.get(status, "idle")
    return f'<span class="badge {cls}">{e(status)}</span>'


def _dot(healthy: bool) -> str:
    color = "#1f9d55" if healthy else "#dc2626"
    label = "healthy" if healthy else "unhealthy"
    return f'<span class="dot" style="background:{color}" title="{label}"></span>'


def _rate(v: float | None) -> str:
    if v is None:
        return "—"
    if v >= 100:
        return f"{v:,.0f}/s"
    if v >= 1:
        return f"{v:.1f}/s"
    if v == 0:
        return "0/s"
    return f"{v:.2f}/s"


def _pct(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "—"
    return f"{v * 100:.{digits}f}%"


def _duration(seconds: float) -> str:
    s = abs(seconds)
    if (s >= 86400 and s % 86400 == 0) or s >= 3 * 86400:
        return f"{seconds / 86400:.0f}d"
    if s >= 3600:
        return f"{seconds / 3600:.0f}h" if s % 3600 == 0 else f"{seconds / 3600:.1f}h"
    if s >= 60:
        return f"{seconds / 60:.0f}m"
    return f"{seconds:.0f}s"


def _budget_class(v: float | None) -> str:
    if v is None:
        return "idle"
    return "ok" if v > 0.5 else ("warn" if v > 0 else "bad")


def render_burndown(slo: Mapping[str, Any], now: float, width: int = 560,
                    height: int = 210) -> str:
    """An inline SVG line chart of the error budget remaining over the SLO period."""
    name = str(slo["name"])
    period = float(slo.get("period_seconds") or 30 * 86400)
    points = [(float(t), float(y)) for t, y in slo.get("budget_series") or []]
    left, right, top, bottom = 52, 14, 14, 30
    pw, ph = width - left - right, height - top - bottom
    t1 = max([now] + [t for t, _ in points])
    t0 = t1 - period
    ys = [y for _, y in points]
    ymin = min([0.0, *ys])
    ymin = math.floor(ymin * 4) / 4  # quarter steps below zero
    ymax = max([1.0, *ys])

    def x(t: float) -> float:
        return left + (min(max(t, t0), t1) - t0) / period * pw

    def y(v: float) -> float:
        return top + (ymax - v) / (ymax - ymin) * ph

    slug = _SLUG.sub("-", name)
    out = [f'<svg class="burndown" id="burndown-{e(slug)}" data-slo="{e(name)}" '
           f'xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" role="img" '
           f'aria-label="{e(f"Error budget burn-down of {name}")}">',
           f"<title>{e(f'Error budget remaining of {name} over {_duration(period)}')}</title>",
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fbfcfd" '
           f'stroke="#dde1e8"/>']
    # y axis: gridlines every 25 %
    steps = round((ymax - ymin) / 0.25)
    for i in range(steps + 1):
        v = ymin + i * 0.25
        yy = y(v)
        stroke = "#9ca3af" if abs(v) < 1e-9 else "#e5e7eb"
        out.append(f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{yy:.1f}" '
                   f'y2="{yy:.1f}" stroke="{stroke}" stroke-width="1"/>')
        out.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end" font-size="11" '
                   f'fill="#5b6475">{v * 100:.0f}%</text>')
    # x axis: 6 ticks, relative to now
    out.append(f'<line class="axis" x1="{left}" x2="{left + pw}" y1="{top + ph}" '
               f'y2="{top + ph}" stroke="#374151"/>')
    out.append(f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}" '
               f'stroke="#374151"/>')
    for i in range(6):
        t = t0 + period * i / 5
        xx = x(t)
        label = "now" if i == 5 else "−" + _duration(t1 - t)
        out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{top + ph}" y2="{top + ph + 4}" '
                   f'stroke="#374151"/>')
        out.append(f'<text x="{xx:.1f}" y="{top + ph + 17}" text-anchor="middle" '
                   f'font-size="11" fill="#5b6475">{label}</text>')
    if points:
        last = points[-1][1]
        color = {"ok": "#1f9d55", "warn": "#d97706", "bad": "#dc2626"}[_budget_class(last)]
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
        if len(points) > 1:
            area = f"{x(points[0][0]):.1f},{y(ymin):.1f} {coords} {x(points[-1][0]):.1f}," \
                   f"{y(ymin):.1f}"
            out.append(f'<polygon class="area" points="{area}" fill="{color}" '
                       f'fill-opacity="0.10"/>')
        out.append(f'<polyline class="budget" points="{coords}" fill="none" stroke="{color}" '
                   f'stroke-width="2" stroke-linejoin="round"/>')
        lx, ly = x(points[-1][0]), y(last)
        out.append(f'<circle cx="{lx:.1f}" cy="{ly:.1f}" r="3.5" fill="{color}"/>')
        anchor = "end" if lx > left + pw - 60 else "start"
        dx = -6 if anchor == "end" else 6
        out.append(f'<text x="{lx + dx:.1f}" y="{max(ly - 7, top + 11):.1f}" '
                   f'text-anchor="{anchor}" font-size="12" font-weight="600" '
                   f'fill="{color}">{last * 100:.1f}%</text>')
    else:
        out.append(f'<text x="{left + pw / 2}" y="{top + ph / 2}" text-anchor="middle" '
                   f'font-size="13" fill="#6b7280">no data yet</text>')
    out.append(f'<text x="14" y="{top + ph / 2}" font-size="11" fill="#5b6475" '
               f'transform="rotate(-90 14 {top + ph / 2})" text-anchor="middle">'
               f'budget left</text>')
    out.append("</svg>")
    return "".join(out)


def _slo_card(s: Mapping[str, Any], now: float) -> str:
    name = str(s["name"])
    alerts = s.get("alerts") or []
    state = "firing" if alerts else "ok"
    remaining = s.get("budget_remaining")
    objective = s.get("objective")
    sli_rows = "".join(
        f"<tr><td>{e(w)}</td><td class=num>{e(_pct(v, 3))}</td>"
        f"<td class=num>{e(_burn(s.get('burn_rates', {}).get(w)))}</td></tr>"
        for w, v in (s.get("sli") or {}).items())
    extra_burn = [w for w in (s.get("burn_rates") or {}) if w not in (s.get("sli") or {})]
    sli_rows += "".join(
        f"<tr><td>{e(w)}</td><td class=num>—</td>"
        f"<td class=num>{e(_burn(s['burn_rates'][w]))}</td></tr>" for w in extra_burn)
    alert_html = "".join(
        f'<div class="alert">{_badge("firing")} <b>{e(str(a.get("severity") or "alert"))}</b>'
        f'{" windows " + e(str(a["windows"])) if a.get("windows") else ""}'
        f'{" since " + e(_ts(a["since"])) if a.get("since") else ""}</div>'
        for a in alerts)
    period = float(s.get("period_seconds") or 0)
    service = f' · service <b>{e(str(s["service"]))}</b>' if s.get("service") else ""
    desc = f'<div class="sub">{e(str(s["description"]))}</div>' if s.get("description") else ""
    return (
        f'<section class="card slo" id="slo-{e(_SLUG.sub("-", name))}" data-slo="{e(name)}">'
        f'<h3>{e(name)} {_badge(state)}</h3>'
        f'<div class="sub">connector {e(str(s.get("connector", "")))}{service}'
        f' · period {e(_duration(period))}</div>{desc}'
        f'<div class="kv">'
        f'<div><b>{e(_pct(objective, 2) if objective is not None else "—")}</b>'
        f'<span>objective</span></div>'
        f'<div><b>{e(_pct(_period_sli(s), 3))}</b><span>SLI over the period</span></div>'
        f'<div><b class="budget-left {_budget_class(remaining)}-text">'
        f'{e(_pct(remaining, 1))}</b><span>error budget remaining</span></div>'
        f'</div>{alert_html}'
        f'{render_burndown(s, now)}'
        f'<table class="windows"><tr><th>window</th><th>SLI</th><th>burn rate</th></tr>'
        f'{sli_rows}</table></section>')


def _period_sli(s: Mapping[str, Any]) -> float | None:
    sli = s.get("sli") or {}
    if not sli:
        return None
    period = _duration(float(s.get("period_seconds") or 0))
    if period in sli:
        return sli[period]
    # the longest window
    def seconds(w: str) -> float:
        return _duration_seconds(w) or 0.0
    return sli[max(sli, key=seconds)]


def _burn(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"


def _queue(c: Mapping[str, Any]) -> str:
    size, cap = c.get("queue_size"), c.get("queue_capacity")
    if size is None:
        return "—"
    if not cap:
        return f"{size}"
    frac = min(1.0, size / cap)
    color = "#1f9d55" if frac < 0.5 else ("#d97706" if frac < 0.9 else "#dc2626")
    return (f'{size} / {cap}<span class="bar"><i style="width:{frac * 100:.0f}%;'
            f'background:{color}"></i></span>')


def render_html(snap: Mapping[str, Any], now: float) -> str:
    refresh = float(snap.get("refresh_seconds") or 0)
    meta_refresh = (f'<meta http-equiv="refresh" content="{max(1, round(refresh))}">'
                    if refresh > 0 else "")
    comps = list(snap.get("components") or [])
    by_key = {(c["kind"], c["id"], c.get("pipeline")): c for c in comps}

    def chip(kind: str, cid: str, p: Mapping[str, Any]) -> str:
        c = by_key.get((kind, cid, p["id"])) or by_key.get((kind, cid, None)) \
            or by_key.get(("connector", cid, None))
        if c is None:
            return f'<span class="c">{e(cid)}</span>'
        # receivers and exporters: the rate of this pipeline's signal
        rate = (p.get("items_per_second") or {}).get(f"{kind}/{cid}",
                                                      c.get("items_per_second"))
        return (f'<span class="c">{_dot(bool(c["healthy"]))}{e(cid)} '
                f'<span class="sub">{e(_rate(rate))}</span></span>')

    pipe_rows = []
    for p in snap.get("pipelines") or []:
        chain = " → ".join(filter(None, [
            ", ".join(chip("receiver", r, p) for r in p["receivers"]),
            ", ".join(chip("processor", x, p) for x in p["processors"]),
            ", ".join(chip("exporter", x, p) for x in p["exporters"])]))
        pipe_rows.append(
            f'<tr class="pipeline" data-pipeline="{e(p["id"])}"><td><b>{e(p["id"])}</b></td>'
            f'<td>{e(p["signal"])}</td>'
            f'<td>{_badge("healthy" if p["healthy"] else "degraded")}</td>'
            f'<td class="chain">{chain}</td></tr>')
    comp_rows = []
    for c in comps:
        err = f'<div class="err">{e(c["last_error"])}</div>' if c.get("last_error") else ""
        comp_rows.append(
            f'<tr class="component" data-kind="{e(c["kind"])}" data-id="{e(c["id"])}">'
            f'<td>{e(c["kind"])}</td><td>{_dot(bool(c["healthy"]))}{e(c["id"])}{err}</td>'
            f'<td>{e(c.get("pipeline") or "")}</td>'
            f'<td class=num>{e(_rate(c.get("items_per_second")))}</td>'
            f'<td class=num>{e(_rate(c.get("failed_per_second")))}</td>'
            f'<td class=num>{_queue(c)}</td></tr>')
    slos = list(snap.get("slos") or [])
    if slos:
        slo_html = '<div class="cards">' + "".join(_slo_card(s, now) for s in slos) + "</div>"
    else:
        slo_html = ('<p class="sub">No SLOs: add an <code>slo</code> connector to the '
                    'configuration.</p>')
    if snap.get("slos_error"):
        slo_html = f'<p class="err">{e(str(snap["slos_error"]))}</p>' + slo_html
    window = _duration(float(snap.get("throughput_window_seconds") or 60))
    status = str(snap.get("status", "unknown"))
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8">{meta_refresh}'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>otelpipe status — {e(status)}</title><style>{CSS}</style></head>"
        f'<body data-status="{e(status)}"><header><h1>otelpipe</h1>{_badge(status)}'
        f'<span class="meta">version {e(str(snap.get("version", "")))} · up '
        f'{e(_duration(float(snap.get("uptime_seconds") or 0)))} · '
        f'{e(str(snap.get("timestamp", "")))}'
        f'{" · refreshes every " + e(_duration(refresh)) if refresh > 0 else ""}</span>'
        f"</header><main>"
        f'<h2>Service level objectives</h2>{slo_html}'
        f"<h2>Pipelines</h2><table><tr><th>pipeline</th><th>signal</th><th>health</th>"
        f"<th>receivers → processors → exporters (items/s, last {e(window)})</th></tr>"
        f'{"".join(pipe_rows)}</table>'
        f"<h2>Components</h2><table><tr><th>kind</th><th>component</th><th>pipeline</th>"
        f"<th>items/s</th><th>failed/s</th><th>queue</th></tr>{''.join(comp_rows)}</table>"
        f'</main><footer>JSON: <a href="status.json">/status.json</a> · '
        f'<a href="health/detailed">/health/detailed</a> · <a href="metrics">/metrics</a>'
        f"</footer></body></html>")
