"""HTML and SVG of the status page: one self-contained document (inline CSS and SVG,
no scripts, no external assets), every text HTML-escaped. Renders the snapshot of
`pipeline.extensions._statuspage.view`."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping
from typing import Any

from pipeline.config.types import parse_duration
from pipeline.extensions._statuspage.patterns import render_patterns
from pipeline.extensions._statuspage.sampling import render_sampling
from pipeline.extensions._statuspage.view import ts

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
        f'{" since " + e(ts(a["since"])) if a.get("since") else ""}</div>'
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
    sli: Mapping[str, float | None] = s.get("sli") or {}
    if not sli:
        return None
    period = _duration(float(s.get("period_seconds") or 0))
    if period in sli:
        return sli[period]
    return sli[max(sli, key=_window_seconds)]  # the longest window


def _window_seconds(window: str) -> float:
    try:
        return float(parse_duration(window))
    except ValueError:
        return 0.0


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
        f'{render_sampling(list(snap.get("sampling") or []))}'
        f'{render_patterns(list(snap.get("patterns") or []), now)}'
        f"<h2>Pipelines</h2><table><tr><th>pipeline</th><th>signal</th><th>health</th>"
        f"<th>receivers → processors → exporters (items/s, last {e(window)})</th></tr>"
        f'{"".join(pipe_rows)}</table>'
        f"<h2>Components</h2><table><tr><th>kind</th><th>component</th><th>pipeline</th>"
        f"<th>items/s</th><th>failed/s</th><th>queue</th></tr>{''.join(comp_rows)}</table>"
        f'</main><footer>JSON: <a href="status.json">/status.json</a> · '
        f'<a href="health/detailed">/health/detailed</a> · <a href="metrics">/metrics</a>'
        f"</footer></body></html>")
