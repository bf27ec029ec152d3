"""The status page's tail sampling section: one card per `tail_sampling` processor
(per pipeline) with traces waiting, decisions, late spans, evictions and each policy's
votes.

A processor offers its state through a method `sampling_status() -> dict` (matched by
shape, `sources.py`). The dict it returns is passed through to `/status.json` under
`sampling`; `render_sampling` draws it.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.component import Host, Kind
from pipeline.extensions._statuspage.sources import component_states

e = html.escape


def read_sampling(host: Host | None) -> list[dict[str, Any]]:
    """The state of every tail sampling processor the host runs (once per pipeline)."""
    return component_states(host, Kind.PROCESSOR, "sampling_status")


def _num(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.3f}"
    return f"{int(v):,}"


def _share(part: Any, whole: Any) -> str:
    try:
        return f"{100 * float(part) / float(whole):.1f}%" if whole else "—"
    except (TypeError, ValueError):
        return "—"


def _card(s: Mapping[str, Any]) -> str:
    sampled = s.get("traces_sampled") or 0
    decided = sampled + (s.get("traces_not_sampled") or 0)
    in_memory = s.get("traces_in_memory") or 0
    capacity = s.get("num_traces") or 0
    pid = f'{s.get("processor", "")} in {s.get("pipeline", "")}'
    rows = "".join(
        f'<tr class="policy" data-policy="{e(str(p.get("name", "")))}">'
        f'<td>{e(str(p.get("name", "")))}</td>'
        f'<td class=num>{e(_num(p.get("sampled")))}</td>'
        f'<td class=num>{e(_num(p.get("not_sampled")))}</td>'
        f'<td class=num>{e(_share(p.get("sampled"), (p.get("sampled") or 0) + (p.get("not_sampled") or 0)))}</td></tr>'  # noqa: E501
        for p in s.get("policies") or [])
    err = f'<div class="err">{e(str(s["last_error"]))}</div>' if s.get("last_error") else ""
    wait = s.get("decision_wait_seconds")
    return (
        f'<section class="card sampling" data-processor="{e(str(s.get("processor", "")))}" '
        f'data-pipeline="{e(str(s.get("pipeline", "")))}">'
        f'<h3>{e(pid)}</h3>'
        f'<div class="sub">decision_wait {e(_num(wait))} s · storage '
        f'{e(str(s.get("storage", "")))}</div>{err}'
        f'<div class="kv">'
        f'<div><b class="in-memory">{e(_num(in_memory))}</b><span>traces waiting '
        f'(of {e(_num(capacity))})</span></div>'
        f'<div><b class="sampled">{e(_num(sampled))}</b><span>traces sampled '
        f'({e(_share(sampled, decided))} of {e(_num(decided))})</span></div>'
        f'<div><b>{e(_num(s.get("late_spans_sampled", 0)))} / '
        f'{e(_num(s.get("late_spans_dropped", 0)))}</b><span>late spans kept / dropped</span>'
        f'</div>'
        f'<div><b class="evicted">{e(_num(s.get("evicted_traces")))}</b>'
        f'<span>evicted before a decision</span></div>'
        f'<div><b>{e(_num(s.get("recovered_traces")))}</b><span>recovered from disk</span>'
        f'</div>'
        f'<div><b>{e(_num((s.get("last_tick_seconds") or 0) * 1000))} ms</b>'
        f'<span>last decision round</span></div></div>'
        f'<table class="policies"><tr><th>policy</th><th>sampled</th><th>not sampled</th>'
        f'<th>share</th></tr>{rows}</table></section>')


def render_sampling(items: Sequence[Mapping[str, Any]]) -> str:
    """The section's HTML; empty when no tail sampling processor runs."""
    if not items:
        return ""
    return ('<h2>Tail sampling</h2><div class="cards">'
            + "".join(_card(s) for s in items) + "</div>")
