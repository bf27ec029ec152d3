"""SLIs, error budgets, burn rates and multi-window multi-burn-rate alerts.

Events are counted as (good or bad, total) in time buckets per resolution
(`buckets.py`: which resolution serves a window, the rings of buckets; bounded memory
whatever the traffic); every window's counts are kept as running sums, so an
evaluation costs O(windows), not O(buckets). Events are attributed to the time they
reach the engine (the injected clock), not to data point timestamps.

Definitions (Google SRE workbook, chapter 5 "Alerting on SLOs")
---------------------------------------------------------------
- SLI(w) = good / total over window w (None without events);
- error budget = 1 - objective (e.g. 0.1% of events may be bad);
- burn rate(w) = (bad / total over w) / (1 - objective): 1 spends exactly the
  budget over the period, 14.4 spends 2% of a 30-day budget in one hour;
- budget remaining = 1 - (bad / total over the period) / (1 - objective): 1 is
  untouched, 0 spent, negative overspent.

Alerts
------
A rule (severity, long window, short window, threshold, for) holds when the
burn rate is >= the threshold over BOTH windows and each window has at least
`min_events` events; it fires once it has held for `for` (evaluated at each
`evaluate()`). A severity fires while any of its rules fires and resolves when
none does. A firing alert keeps the windows of the rule that fired it until it
resolves, even when another rule of its severity holds meanwhile: the alert
records, the Alertmanager labels (its identity there) and the status page name
the same windows for the whole episode.
Defaults: page = 14.4x over 1h and 5m, or 6x over 6h and 30m;
ticket = 3x over 1d and 2h, or 1x over 3d and 6h. The thresholds are for a 30d
period and scale with the SLO's period so that they keep meaning the same
budget consumption (see `BurnRateRule.threshold`).
"""

from __future__ import annotations

import abc
import collections
import hashlib
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.slo.buckets import Tier, resolution_for, window_name
from pipeline.slo.model import SLO, AlertingConfig, BurnRateRule

Clock = Callable[[], int]
"""Wall-clock time in nanoseconds since the epoch (injectable for tests)."""

STANDARD_WINDOWS: tuple[float, ...] = (300, 1800, 3600, 7200, 21600, 86400, 259200)
STATE_VERSION = 1


@dataclass(frozen=True)
class WindowStatus:
    """Counts and ratios of one rolling window."""

    name: str
    seconds: float
    good: float
    bad: float
    total: float
    sli: float | None  # good / total; None without events
    burn_rate: float | None  # (bad / total) / (1 - objective); None without events


@dataclass(frozen=True)
class AlertStatus:
    """One severity of one SLO."""

    severity: str
    firing: bool
    since: float | None  # epoch seconds the alert started firing
    pending: bool  # a rule holds but its `for` has not elapsed
    windows: tuple[str, ...]  # windows of the rule that fires (or last fired)
    burn_rates: Mapping[str, float]  # burn rates over those windows (now)
    threshold: float | None  # burn-rate threshold of that rule (scaled to the period)


@dataclass(frozen=True)
class SLOStatus:
    """Everything a status page or an alert sender needs about one SLO."""

    name: str
    service: str
    display_name: str
    description: str
    objective: float  # e.g. 0.999
    period: float  # seconds
    period_name: str  # e.g. 30d
    sli: float | None  # over the period
    error_budget_remaining: float  # 1 untouched, 0 spent, < 0 overspent
    windows: tuple[WindowStatus, ...]
    alerts: tuple[AlertStatus, ...]  # one per severity
    budget_history: tuple[tuple[float, float], ...]  # (epoch seconds, remaining), oldest first
    updated_at: float  # epoch seconds of this status

    @property
    def burn_rates(self) -> dict[str, float | None]:
        return {w.name: w.burn_rate for w in self.windows}

    @property
    def firing(self) -> tuple[str, ...]:
        return tuple(a.severity for a in self.alerts if a.firing)

    def window(self, name: str) -> WindowStatus:
        for w in self.windows:
            if w.name == name:
                return w
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "service": self.service, "display_name": self.display_name,
            "description": self.description, "objective": self.objective,
            "period": self.period_name, "sli": self.sli,
            "error_budget_remaining": self.error_budget_remaining,
            "windows": {w.name: {"sli": w.sli, "burn_rate": w.burn_rate, "good": w.good,
                                 "bad": w.bad, "total": w.total} for w in self.windows},
            "alerts": [{"severity": a.severity, "firing": a.firing, "since": a.since,
                        "pending": a.pending, "windows": list(a.windows),
                        "burn_rates": dict(a.burn_rates), "threshold": a.threshold}
                       for a in self.alerts],
            "budget_history": [list(p) for p in self.budget_history],
            "updated_at": self.updated_at,
        }


class SLOStatusSource(abc.ABC):
    """What has SLOs to show (the `slo` connector): the health extension's status page
    finds them among the host's components by this type."""

    @abc.abstractmethod
    def status(self) -> list[SLOStatus]:
        """One status per SLO, as of now."""


@dataclass(frozen=True)
class AlertTransition:
    """An alert started firing or resolved."""

    slo: str
    service: str
    severity: str
    state: str  # firing | resolved
    at: float  # epoch seconds of the transition
    started_at: float  # when it (last) started firing
    windows: tuple[str, ...]
    burn_rates: Mapping[str, float]
    threshold: float
    objective: float
    error_budget_remaining: float
    summary: str
    replayed: bool = False  # re-announced after a restart (state loaded from disk)


@dataclass
class _RuleState:
    rule: BurnRateRule
    threshold: float
    long_name: str
    short_name: str
    pending_since: float | None = None


@dataclass
class _AlertState:
    severity: str
    firing: bool = False
    since: float | None = None
    rule: int | None = None  # index of the rule that fired it
    windows: tuple[str, ...] = ()
    threshold: float | None = None


@dataclass
class _Window:
    name: str
    seconds: float
    tier: Tier
    k: int
    min_events: int


def fingerprint(slo: SLO) -> str:
    """Identity of what an SLO counts (its indicator): a changed indicator resets its
    counts, a changed objective or period does not."""
    dumped = slo.indicator.model_dump(mode="json")
    # Fields added later leave the fingerprint of indicators that do not use them as it
    # was (a saved budget survives the upgrade).
    if dumped.get("interval") is None:
        dumped.pop("interval", None)
    for role in ("total", "good", "bad"):
        sel = dumped.get(role)
        if isinstance(sel, dict):
            if sel.get("divide_by") is None:
                sel.pop("divide_by", None)
            if not sel.get("plus"):
                sel.pop("plus", None)
    raw = orjson.dumps(dumped, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(raw).hexdigest()[:16]


class SLOTracker:
    """The counts, windows and alert state of one SLO."""

    def __init__(self, slo: SLO, alerting: AlertingConfig,
                 extra_windows: Iterable[float] = ()):
        self.slo = slo
        self.alerting = alerting
        self.budget = slo.error_budget
        self.fingerprint = fingerprint(slo)
        self.counts_good = slo.indicator.good is not None
        seconds: set[float] = {*STANDARD_WINDOWS, slo.period, *extra_windows}
        for r in alerting.rules:
            seconds.update((r.long_window, r.short_window))
        self.tiers: dict[int, Tier] = {}
        plan: list[tuple[float, int, int]] = []
        for w in sorted(seconds):
            res = resolution_for(w)
            k = max(1, math.ceil(w / res - 1e-9))
            plan.append((w, res, k))
        for _w, res, k in plan:
            tier = self.tiers.get(res)
            size = max(k2 for _, r2, k2 in plan if r2 == res)
            if tier is None:
                tier = self.tiers[res] = Tier(res, size)
            tier.add_window(k)
        self.windows: dict[str, _Window] = {}
        for w, res, k in plan:
            name = window_name(w)
            self.windows[name] = _Window(name, w, self.tiers[res], k,
                                         alerting.min_events_for(w))
        self.period_name = window_name(slo.period)
        self.rules = [_RuleState(r, r.threshold(slo.period, alerting.reference_period),
                                 window_name(r.long_window), window_name(r.short_window))
                      for r in alerting.rules]
        self.alerts = {sev: _AlertState(sev) for sev in alerting.severities}
        # Burn-down: remaining budget sampled once per period bucket.
        self.history_step = float(self.windows[self.period_name].tier.res)
        self.history: collections.deque[tuple[float, float]] = collections.deque(
            maxlen=math.ceil(slo.period / self.history_step) + 1)
        self.last_eval: float | None = None

    # -- counting -----------------------------------------------------------------

    def record(self, t: float, total: float, good: float | None = None,
               bad: float | None = None) -> None:
        """`total` events at time `t` (epoch seconds), `good` (or `bad`) of them good
        (bad). Buckets keep what the indicator counts (good or bad) next to the total,
        so a good count and its total may arrive in different calls."""
        if self.counts_good:
            x = good if good is not None else (total - (bad or 0.0))
        else:
            x = bad if bad is not None else (total - (good or 0.0))
        if not total and not x:
            return
        for tier in self.tiers.values():
            tier.add(int(t // tier.res), x, total)

    def advance(self, t: float) -> None:
        for tier in self.tiers.values():
            tier.advance(int(t // tier.res))

    def counts(self, name: str) -> tuple[float, float]:
        """(bad, total) over a window, by name (`5m`, `30d`, ...)."""
        w = self.windows[name]
        x, total = w.tier.window(w.k)
        bad = total - x if self.counts_good else x
        return min(max(bad, 0.0), total), total

    def window_status(self, w: _Window) -> WindowStatus:
        bad, total = self.counts(w.name)
        if total > 0:
            ratio = bad / total
            return WindowStatus(w.name, w.seconds, total - bad, bad, total, 1.0 - ratio,
                                ratio / self.budget)
        return WindowStatus(w.name, w.seconds, 0.0, 0.0, 0.0, None, None)

    def budget_remaining(self) -> float:
        bad, total = self.counts(self.period_name)
        if total <= 0:
            return 1.0
        return 1.0 - (bad / total) / self.budget

    # -- alerting -----------------------------------------------------------------

    def _holds(self, rs: _RuleState, by_name: Mapping[str, WindowStatus]) -> bool:
        for name in (rs.long_name, rs.short_name):
            w = by_name[name]
            need = self.windows[name].min_events
            if w.total <= 0 or w.total < need or w.burn_rate is None:
                return False
            if w.burn_rate < rs.threshold:
                return False
        return True

    def evaluate(self, t: float) -> list[AlertTransition]:
        self.advance(t)
        self.last_eval = t
        by_name = {w.name: self.window_status(w) for w in self.windows.values()}
        remaining = self.budget_remaining()
        step = self.history_step
        if not self.history or self.history[-1][0] // step != t // step:
            self.history.append((t, remaining))
        active: dict[str, int] = {}
        for i, rs in enumerate(self.rules):
            if self._holds(rs, by_name):
                if rs.pending_since is None:
                    rs.pending_since = t
                if t - rs.pending_since >= rs.rule.for_ and rs.rule.severity not in active:
                    active[rs.rule.severity] = i
            else:
                rs.pending_since = None
        out: list[AlertTransition] = []
        for sev, st in self.alerts.items():
            fired = active.get(sev)
            if fired is not None and not st.firing:
                rs = self.rules[fired]
                st.firing, st.since, st.rule = True, t, fired
                st.windows = (rs.long_name, rs.short_name)
                st.threshold = rs.threshold
                out.append(self._transition(st, "firing", t, by_name, remaining))
            elif fired is None and st.firing:
                out.append(self._transition(st, "resolved", t, by_name, remaining))
                st.firing = False
        return out

    def _transition(self, st: _AlertState, state: str, t: float,
                    by_name: Mapping[str, WindowStatus], remaining: float,
                    replayed: bool = False) -> AlertTransition:
        slo = self.slo
        rates = {n: (by_name[n].burn_rate or 0.0) for n in st.windows}
        threshold = st.threshold or 0.0
        since = st.since if st.since is not None else t
        if state == "firing":
            burn = " and ".join(f"{rates[n]:.1f}x over {n}" for n in st.windows)
            summary = (f"SLO {slo.name} ({slo.service}): error budget burning at {burn} "
                       f"(threshold {threshold:.3g}x); {remaining:.1%} of the "
                       f"{self.period_name} budget left")
        else:
            summary = (f"SLO {slo.name} ({slo.service}): {st.severity} alert resolved after "
                       f"{_human(t - since)}; {remaining:.1%} of the {self.period_name} "
                       "budget left")
        return AlertTransition(slo.name, slo.service, st.severity, state, t, since,
                               st.windows, rates, threshold, slo.objective, remaining,
                               summary, replayed)

    def firing_transitions(self, t: float) -> list[AlertTransition]:
        """`firing` events for the alerts firing now (to re-announce after a restart)."""
        by_name = {w.name: self.window_status(w) for w in self.windows.values()}
        remaining = self.budget_remaining()
        return [self._transition(st, "firing", t, by_name, remaining, replayed=True)
                for st in self.alerts.values() if st.firing]

    # -- reading ------------------------------------------------------------------

    def status(self, t: float) -> SLOStatus:
        slo = self.slo
        windows = tuple(self.window_status(w) for w in self.windows.values())
        by_name = {w.name: w for w in windows}
        remaining = self.budget_remaining()
        alerts = []
        for sev, st in self.alerts.items():
            pending = any(rs.pending_since is not None and rs.rule.severity == sev
                          for rs in self.rules)
            wins = st.windows
            threshold = st.threshold
            if not st.firing:
                # The rule of this severity closest to firing: the status page shows it.
                best = max((rs for rs in self.rules if rs.rule.severity == sev),
                           key=lambda rs: min((by_name[rs.long_name].burn_rate or 0.0),
                                              (by_name[rs.short_name].burn_rate or 0.0))
                           / rs.threshold)
                wins, threshold = (best.long_name, best.short_name), best.threshold
            alerts.append(AlertStatus(
                sev, st.firing, st.since if st.firing else None, pending and not st.firing,
                wins, {n: (by_name[n].burn_rate or 0.0) for n in wins}, threshold))
        history = list(self.history)
        if not history or history[-1][0] != t:
            history.append((t, remaining))
        return SLOStatus(slo.name, slo.service, slo.display_name, slo.description,
                         slo.objective, slo.period, self.period_name,
                         by_name[self.period_name].sli, remaining, windows, tuple(alerts),
                         tuple(history), t)

    # -- state --------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "tiers": [tier.dump() for tier in self.tiers.values()],
            "alerts": {sev: {"firing": st.firing, "since": st.since, "rule": st.rule,
                             "windows": list(st.windows), "threshold": st.threshold}
                       for sev, st in self.alerts.items()},
            "pending": [rs.pending_since for rs in self.rules],
            "history": [list(p) for p in self.history],
        }

    def load(self, data: Mapping[str, Any]) -> None:
        saved_tiers = {int(s["res"]): s for s in data.get("tiers", [])}
        for tier in self.tiers.values():
            # Each tier reloads from ONE saved tier: the same resolution, else the
            # coarsest finer one (re-bucketed), else the finest coarser one.
            finer = [r for r in saved_tiers if r <= tier.res]
            res = max(finer) if finer else min(saved_tiers, default=0)
            if not res:
                continue
            saved = saved_tiers[res]
            head = saved.get("head")
            if head is not None:
                tier.advance(int(head * res // tier.res))
            for idx, bad, total in saved.get("buckets", []):
                tier.add(int(idx * res // tier.res), float(bad), float(total))
        for sev, a in (data.get("alerts") or {}).items():
            st = self.alerts.get(sev)
            if st is None or not a.get("firing"):
                continue
            rule = a.get("rule")
            if not isinstance(rule, int) or not 0 <= rule < len(self.rules):
                rule = next(i for i, rs in enumerate(self.rules) if rs.rule.severity == sev)
            rs = self.rules[rule]
            st.firing, st.since, st.rule = True, float(a["since"]), rule
            st.windows, st.threshold = (rs.long_name, rs.short_name), rs.threshold
        pending = data.get("pending") or []
        if len(pending) == len(self.rules):
            for rs, since in zip(self.rules, pending, strict=True):
                rs.pending_since = float(since) if since is not None else None
        for t, remaining in data.get("history", []):
            self.history.append((float(t), float(remaining)))


def _human(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


@dataclass
class Engine:
    """All SLOs of one connector. Thread-unsafe; one event loop drives it."""

    slos: Sequence[SLO]
    alerting: AlertingConfig = field(default_factory=AlertingConfig)
    clock: Clock = time.time_ns

    def __post_init__(self) -> None:
        self.trackers: dict[str, SLOTracker] = {
            s.name: SLOTracker(s, self.alerting) for s in self.slos}

    def now(self) -> float:
        return self.clock() / 1e9

    def record(self, name: str, *, total: float, good: float | None = None,
               bad: float | None = None, at: float | None = None) -> None:
        """Count events of one SLO now (or at epoch seconds `at`)."""
        self.trackers[name].record(self.now() if at is None else at, total, good, bad)

    def evaluate(self) -> list[AlertTransition]:
        t = self.now()
        out: list[AlertTransition] = []
        for tracker in self.trackers.values():
            out.extend(tracker.evaluate(t))
        return out

    def status(self) -> list[SLOStatus]:
        t = self.now()
        return [tracker.status(t) for tracker in self.trackers.values()]

    def get(self, name: str) -> SLOStatus:
        return self.trackers[name].status(self.now())

    def firing_transitions(self) -> list[AlertTransition]:
        t = self.now()
        return [x for tr in self.trackers.values() for x in tr.firing_transitions(t)]

    def dump_state(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "saved_at": self.now(),
                "slos": {name: tr.dump() for name, tr in self.trackers.items()}}

    def load_state(self, state: Mapping[str, Any]) -> list[str]:
        """Restore counts and alert states; returns notes on what was not restored."""
        notes: list[str] = []
        if state.get("version") != STATE_VERSION:
            return [f"state version {state.get('version')!r} is not {STATE_VERSION}; "
                    "starting afresh"]
        saved = state.get("slos") or {}
        for name, tracker in self.trackers.items():
            data = saved.get(name)
            if data is None:
                notes.append(f"SLO {name}: no saved state (new SLO)")
                continue
            if data.get("fingerprint") != tracker.fingerprint:
                notes.append(f"SLO {name}: its indicator changed; counting afresh")
                continue
            tracker.load(data)
        for name in saved:
            if name not in self.trackers:
                notes.append(f"SLO {name}: saved state dropped (no longer defined)")
        return notes
