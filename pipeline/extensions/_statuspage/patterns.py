"""The status page's log patterns section: one card per `logpatterns` connector with
the top patterns by count per service, the patterns new (or back) in the last hour with
their first line, and the rate changes of the last hour.

A connector offers its state through a method `pattern_status() -> dict` (matched by
shape, `sources.py`). The dict it returns is passed through to `/status.json` under
`patterns`; `render_patterns` draws it, every text escaped.
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.component import Host, Kind
from pipeline.extensions._statuspage.sources import component_states

e = html.escape
MAX_TEXT = 300  # characters of a template or first line shown (the JSON has them whole)

STYLE = ("<style>.patterns code{white-space:pre-wrap;word-break:break-all;font-size:12px}"
         ".patterns table{margin:6px 0 10px}.patterns td{vertical-align:top}"
         ".patterns .up{color:#dc2626;font-weight:600}"
         ".patterns .down{color:#d97706;font-weight:600}</style>")


def read_patterns(host: Host | None) -> list[dict[str, Any]]:
    """The state of every log patterns connector the host runs (once each)."""
    return component_states(host, Kind.CONNECTOR, "pattern_status")


def _clip(v: Any) -> str:
    text = str(v if v is not None else "")
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"


def _time(t: Any) -> str:
    try:
        return datetime.datetime.fromtimestamp(float(t), datetime.UTC).strftime("%H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "—"


def _ago(t: Any, now: float) -> str:
    try:
        s = max(0.0, now - float(t))
    except (TypeError, ValueError):
        return "—"
    if s < 120:
        return f"{s:.0f} s ago"
    if s < 7200:
        return f"{s / 60:.0f} min ago"
    if s < 172800:
        return f"{s / 3600:.0f} h ago"
    return f"{s / 86400:.0f} d ago"


def _top(service: str, patterns: Sequence[Mapping[str, Any]], now: float) -> str:
    rows = "".join(
        f'<tr class="pattern" data-template-id="{e(str(p.get("template_id", "")))}">'
        f'<td class=num>{int(p.get("count") or 0):,}</td>'
        f'<td><code>{e(_clip(p.get("template")))}</code></td>'
        f'<td class="sub">{e(_ago(p.get("last_seen"), now))}</td></tr>'
        for p in patterns)
    return (f'<h4>{e(service or "(no service.name)")}</h4>'
            f'<table class="top" data-service="{e(service)}"><tr><th>count</th>'
            f'<th>template</th><th>last seen</th></tr>{rows}</table>')


def _new_rows(events: Sequence[Mapping[str, Any]]) -> str:
    if not events:
        return '<p class="sub none">No new patterns in the last hour.</p>'
    rows = "".join(
        f'<tr class="new-pattern" data-template-id="{e(str(ev.get("template_id", "")))}" '
        f'data-kind="{e(str(ev.get("kind", "")))}">'
        f'<td>{e(_time(ev.get("at")))}</td><td>{e(str(ev.get("service") or ""))}</td>'
        f'<td>{e(str(ev.get("kind", "")))}</td>'
        f'<td><code>{e(_clip(ev.get("template")))}</code><div class="sub first-line">'
        f'first line: <code>{e(_clip(ev.get("first_line")))}</code></div></td></tr>'
        for ev in events)
    return (f'<table class="new-patterns"><tr><th>at (UTC)</th><th>service</th><th>event</th>'
            f'<th>template</th></tr>{rows}</table>')


def _rate_rows(events: Sequence[Mapping[str, Any]]) -> str:
    if not events:
        return '<p class="sub none">No rate changes in the last hour.</p>'
    rows = []
    for ev in events:
        direction = "up" if ev.get("direction") == "up" else "down"
        base = ev.get("baseline_count")
        base_text = f"{float(base):.1f}" if isinstance(base, int | float) else "—"
        rows.append(
            f'<tr class="rate-change" data-template-id="{e(str(ev.get("template_id", "")))}" '
            f'data-direction="{direction}">'
            f'<td>{e(_time(ev.get("at")))}</td><td>{e(str(ev.get("service") or ""))}</td>'
            f'<td class="{direction}">{"▲" if direction == "up" else "▼"} {direction}</td>'
            f'<td class=num>{int(ev.get("window_count") or 0):,} vs {e(base_text)}</td>'
            f'<td><code>{e(_clip(ev.get("template")))}</code></td></tr>')
    return ('<table class="rate-changes"><tr><th>at (UTC)</th><th>service</th>'
            '<th>rate</th><th>window vs baseline</th><th>template</th></tr>'
            + "".join(rows) + "</table>")


def _card(s: Mapping[str, Any], now: float) -> str:
    cid = str(s.get("connector", ""))
    top = s.get("top") or {}
    warm = (f' · warming up until {e(_time(s.get("warmup_ends")))} UTC (patterns seen '
            f'until then are the baseline)' if s.get("warming_up") else "")
    tops = "".join(_top(str(svc), ps, now) for svc, ps in top.items()) or \
        '<p class="sub none">No patterns yet.</p>'
    return (f'<section class="card patterns" data-connector="{e(cid)}">'
            f'<h3>{e(cid)}</h3><div class="sub">{int(s.get("patterns") or 0):,} patterns'
            f'{warm}</div>'
            f'<h4>New patterns (last hour)</h4>{_new_rows(list(s.get("new") or []))}'
            f'<h4>Rate changes (last hour)</h4>{_rate_rows(list(s.get("rate_changes") or []))}'
            f'<h4>Top patterns by count</h4>{tops}</section>')


def render_patterns(items: Sequence[Mapping[str, Any]], now: float) -> str:
    """The section's HTML; empty when no log patterns connector runs."""
    if not items:
        return ""
    return (f'<h2>Log patterns</h2>{STYLE}<div class="cards">'
            + "".join(_card(s, now) for s in items) + "</div>")
