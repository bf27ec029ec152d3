"""Prometheus recording and alerting rules equivalent to the SLO engine.

For users who evaluate SLOs in Prometheus, from the series otelpipe's
`prometheus` exporter serves (names translated as `pipeline.pdata.prometheus`
does: `traces.span.metrics.calls` → `traces_span_metrics_calls_total`,
`traces.span.metrics.duration` (s) → `traces_span_metrics_duration_seconds_bucket`,
`httpcheck.success` (gauge, unit 1) → `httpcheck_success_ratio`,
`db.replication.lag` (s) → `db_replication_lag_seconds`; attribute keys with
dots become underscores: `service.name` → `service_name`).

Per SLO, one rule group `otelpipe-slo-<name>`:

- for every window the engine keeps (5m … 3d and the period):
  `slo:sli_error:ratio_rate<w>` = bad / total events over the window and
  `slo:sli_events:total<w>` = the events (for the `min_events` guard; for gauges
  the scraped samples);
- `slo:error_budget:remaining` = 1 - error ratio over the period / (1 - objective),
  `slo:objective:ratio`;
- one alert per severity (`SLOErrorBudgetBurn`, labels severity / slo / service,
  annotations summary, description, runbook_url) whose expression is the OR of
  the severity's rules: error ratio >= burn-rate threshold × (1 - objective)
  over BOTH windows, and both windows have at least `min_events` events, held
  for the rule's `for`. When a severity's rules have different `for`, there is
  one alert per rule.

Counting, as the engine does: counters and histograms by `increase()` over the
window (a selector with `plus` adds the increases of its counters:
`sum(increase(cache_hits_total[w])) + (sum(increase(cache_misses_total[w])) or
vector(0))`); gauges through `slo:sli_samples:<good|bad|total>`, recorded at every
evaluation as the number of series satisfying the threshold now
(`count(db_replication_lag_seconds{method="heartbeat"} < 0.1)`), summed over
the window. The engine counts each sample the pipeline carries, Prometheus each
evaluation step: the ratios agree when samples are regular. The `min_events`
guard of a gauge SLO counts the scraped samples (`count_over_time`).

Time-slice SLOs (`interval`, e.g. pool use < 80% in 99% of minutes): the group is
evaluated every `interval`, so `slo:sli_samples:<role>` holds one sample per series
per slice, exactly what the connector counts -- the quotient of `divide_by`
selectors joined on equal labels (`app_db_pool_checked_out / app_db_pool_size`),
x/0 being +Inf as in PromQL; their `min_events` guard counts those slices too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from pipeline.pdata.prometheus.names import (
    COUNTER,
    GAUGE,
    HISTOGRAM,
    format_le,
    label_name,
    metric_name,
)
from pipeline.slo.buckets import window_name
from pipeline.slo.engine import SLOTracker
from pipeline.slo.model import SLO, TIME_UNITS, AlertingConfig, Selector

DEFAULT_RUNBOOK = "docs/runbook.md"
ALERT_NAME = "SLOErrorBudgetBurn"
_PROM_OPS = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">=", "eq": "==", "ne": "!="}


def _num(x: float) -> str:
    return f"{x:.12g}"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _matchers(match: dict[str, str], extra: Sequence[tuple[str, str]] = ()) -> str:
    pairs = [(label_name(k), v) for k, v in sorted(match.items())] + list(extra)
    return "{" + ",".join(f"{k}={_quote(v)}" for k, v in pairs) + "}"


def selector_kind(sel: Selector) -> str:
    """counter | histogram | gauge | updowncounter: known, else from the selector's shape."""
    kind = sel.metric_type
    if kind is not None:
        return kind
    return "gauge" if sel.op is not None or sel.divide_by is not None else "counter"


def _threshold(sel: Selector) -> float:
    assert sel.value is not None
    scale = TIME_UNITS.get(sel.metric_unit)
    return sel.value / scale if scale else sel.value


def prometheus_name(sel: Selector, metric: str | None = None) -> str:
    """The Prometheus family name the exporter gives the selector's metric (or another
    metric of the selector of the same kind: a `plus` counter, the `divide_by` gauge).
    Names scraped from Prometheus targets (`app_cache_hits_total`) come back as they
    were."""
    kind = selector_kind(sel)
    unit = sel.metric_unit
    name = metric or sel.metric
    if kind == "counter":
        return metric_name(name, unit, COUNTER) + "_total"
    if kind == "histogram":
        return metric_name(name, unit, HISTOGRAM)
    return metric_name(name, unit, GAUGE, gauge_ratio=(kind == "gauge"))


def _gauge_expr(sel: Selector) -> str:
    """The sampled gauge, or the quotient of two (joined on equal labels)."""
    series = f"{prometheus_name(sel)}{_matchers(sel.match)}"
    if sel.divide_by is None:
        return series
    return f"({series} / {prometheus_name(sel, sel.divide_by)}{_matchers(sel.match)})"


def is_sampled(sel: Selector) -> bool:
    """Gauges (and non-monotonic sums) count samples, not increases."""
    return selector_kind(sel) in ("gauge", "updowncounter")


def samples_expr(sel: Selector) -> str:
    """Instant count of the selector's series that are good now (a recording rule):
    each evaluation counts every series once, as the pipeline counts each sample."""
    series = _gauge_expr(sel)
    if sel.op is None:
        return f"count({series}) or vector(0)"
    threshold = sel.value if sel.divide_by is not None else _threshold(sel)
    assert threshold is not None
    return f"count({series} {_PROM_OPS[sel.op]} {_num(threshold)}) or vector(0)"


def events_expr(sel: Selector, window: str, role: str = "total", slo: str = "",
                raw_samples: bool = False) -> str:
    """PromQL for the number of events the selector counts over `window`.

    Gauges: the `slo:sli_samples:<role>` series recorded at every evaluation, summed
    over the window (cheap even over 30d); with `raw_samples` (the min_events guard)
    the scraped samples, as the pipeline counts each sample it carries."""
    kind = selector_kind(sel)
    name = prometheus_name(sel)
    if kind == "counter":
        if sel.plus:
            # One sum per counter (increase() drops the name: two counters with the same
            # labels would collide); a `plus` counter not there yet adds 0.
            terms = [f"sum(increase({name}{_matchers(sel.match)}[{window}]))"]
            terms += [f"(sum(increase({prometheus_name(sel, m)}{_matchers(sel.match)}"
                      f"[{window}])) or vector(0))" for m in sel.plus]
            return "(" + " + ".join(terms) + ")"
        return f"sum(increase({name}{_matchers(sel.match)}[{window}]))"
    if kind == "histogram":
        if sel.op is None:
            return f"sum(increase({name}_count{_matchers(sel.match)}[{window}]))"
        le = format_le(_threshold(sel))
        return f"sum(increase({name}_bucket{_matchers(sel.match, [('le', le)])}[{window}]))"
    if raw_samples and sel.op is None:
        return f"sum(count_over_time({name}{_matchers(sel.match)}[{window}]))"
    return (f"sum(sum_over_time(slo:sli_samples:{role}{_matchers({}, [('slo', slo)])}"
            f"[{window}]))")


def error_ratio_expr(slo: SLO, window: str) -> str:
    ind = slo.indicator
    total = events_expr(ind.total, window, "total", slo.name)
    # `or vector(0)`: no bad (good) series at all means 0 such events, not "no data".
    if ind.bad is not None:
        return f"({events_expr(ind.bad, window, 'bad', slo.name)} or vector(0)) / {total}"
    assert ind.good is not None
    return f"1 - ({events_expr(ind.good, window, 'good', slo.name)} or vector(0)) / {total}"


def slo_rule_group(slo: SLO, alerting: AlertingConfig,
                   runbook_url: str = DEFAULT_RUNBOOK) -> dict[str, Any]:
    tracker = SLOTracker(slo, alerting)  # the engine's windows and thresholds
    labels = {"slo": slo.name, "service": slo.service}
    sel = _matchers({}, [("slo", slo.name)])
    rules: list[dict[str, Any]] = []
    for role, selector in slo.indicator.selectors():
        if is_sampled(selector):
            rules.append({"record": f"slo:sli_samples:{role}", "expr": samples_expr(selector),
                          "labels": dict(labels)})
    for w in tracker.windows.values():
        rules.append({"record": f"slo:sli_error:ratio_rate{w.name}",
                      "expr": error_ratio_expr(slo, w.name), "labels": dict(labels)})
        rules.append({"record": f"slo:sli_events:total{w.name}",
                      "expr": events_expr(slo.indicator.total, w.name, "total", slo.name,
                                          raw_samples=not slo.indicator.sampled),
                      "labels": dict(labels)})
    period = tracker.period_name
    rules.append({"record": "slo:objective:ratio", "expr": f"vector({_num(slo.objective)})",
                  "labels": dict(labels)})
    rules.append({"record": "slo:error_budget:remaining",
                  "expr": f"1 - slo:sli_error:ratio_rate{period}{sel} / "
                          f"{_num(slo.error_budget)}",
                  "labels": dict(labels)})

    by_severity: dict[str, list[Any]] = {}
    for rs in tracker.rules:
        by_severity.setdefault(rs.rule.severity, []).append(rs)
    for severity, rule_states in by_severity.items():
        fors = {rs.rule.for_ for rs in rule_states}
        groups = [rule_states] if len(fors) == 1 else [[rs] for rs in rule_states]
        for group in groups:
            parts = []
            for rs in group:
                ratio = rs.threshold * slo.error_budget
                conds = [f"slo:sli_error:ratio_rate{rs.long_name}{sel} >= {_num(ratio)}",
                         f"slo:sli_error:ratio_rate{rs.short_name}{sel} >= {_num(ratio)}"]
                for wname in (rs.long_name, rs.short_name):
                    n = tracker.windows[wname].min_events
                    conds.append(f"slo:sli_events:total{wname}{sel} >= {max(n, 1)}")
                parts.append("(\n  " + "\n  and ".join(conds) + "\n)")
            windows = ", ".join(f"{rs.threshold:.3g}x over {rs.long_name} and {rs.short_name}"
                                for rs in group)
            alert: dict[str, Any] = {
                "alert": ALERT_NAME,
                "expr": "\nor\n".join(parts) + "\n",
                "for": window_name(group[0].rule.for_) if group[0].rule.for_ else "0s",
                "labels": {"severity": severity, **labels},
                "annotations": {
                    "summary": f"SLO {slo.name} ({slo.service}): error budget burning "
                               f"too fast ({severity})",
                    "description": (f"Burn rate >= {windows} (objective "
                                    f"{slo.objective * 100:g}% over {period}). See the "
                                    "slo:sli_error:ratio_rate<window> series."),
                    "runbook_url": f"{runbook_url}#slo-burn-rate-{severity}",
                },
            }
            if len(groups) > 1:
                alert["labels"]["window"] = f"{group[0].long_name}/{group[0].short_name}"
            rules.append(alert)
    out: dict[str, Any] = {"name": f"otelpipe-slo-{slo.name}"}
    if slo.indicator.interval is not None:
        # Time slices: one sample per series per interval, as the connector counts them.
        out["interval"] = window_name(slo.indicator.interval)
    out["rules"] = rules
    return out


def rules_document(slos: Sequence[SLO], alerting: AlertingConfig | None = None,
                   runbook_url: str = DEFAULT_RUNBOOK) -> dict[str, Any]:
    alerting = alerting or AlertingConfig()
    return {"groups": [slo_rule_group(s, alerting, runbook_url) for s in slos]}


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def render(doc: dict[str, Any], header: str = "") -> str:
    text = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
    return header + text
