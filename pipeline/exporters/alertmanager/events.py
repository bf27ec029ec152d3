"""Alert events: the firing/resolved log records of the `slo` connector (or another
producer using the same attribute keys) read into `AlertEvent`s."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline.pdata.anyvalue import any_value
from pipeline.pdata.batch import Batch

# Attribute keys of the slo connector's alert events. The first key present wins,
# so events from other producers (or older connector versions) can be read too.
SLO_KEYS = ("slo.name", "slo")
SERVICE_KEYS = ("service.name", "slo.service", "service")
SEVERITY_KEYS = ("alert.severity", "severity")
STATE_KEYS = ("alert.state", "alert.status", "slo.alert.state", "state")
WINDOWS_KEYS = ("alert.windows", "alert.window", "window")
CATEGORY_KEYS = ("slo.category", "slo.type", "slo.kind", "slo.sli.type")
RUNBOOK_KEYS = ("alert.runbook_url", "slo.runbook_url", "runbook_url")
OBJECTIVE_KEYS = ("slo.objective", "slo.target")
SUMMARY_KEYS = ("alert.summary", "summary")
STARTS_AT_KEYS = ("alert.starts_at", "alert.started_at")
THRESHOLD_KEYS = ("alert.threshold",)
BUDGET_KEYS = ("slo.error_budget.remaining", "slo.error_budget_remaining")
FIRING_WORDS = frozenset({"firing", "fire", "fired", "active", "open", "triggered"})
RESOLVED_WORDS = frozenset({"resolved", "resolve", "inactive", "ok", "closed", "recovered"})
_BURN_KEY = re.compile(r"^(?:alert\.|slo\.)?burn_rate[._](?P<window>[0-9a-z]+)$")


@dataclass
class AlertEvent:
    """One firing/resolved event of the slo connector, read from a log record."""

    slo: str
    service: str
    severity: str
    firing: bool
    time: float  # seconds since the epoch (the record's time, else when it was read)
    windows: str = ""
    category: str = ""
    runbook_url: str | None = None
    objective: float | None = None
    burn_rates: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    threshold: float | None = None
    budget_remaining: float | None = None
    started_at: float | None = None  # when the alert started firing, if the event says
    summary: str = ""
    message: str = ""


def _first(attrs: Mapping[str, Any], keys: Iterable[str]) -> Any:
    for k in keys:
        v = attrs.get(k)
        if v is not None and v != "":
            return v
    return None


def _windows(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "/".join(str(v) for v in value)
    return str(value).replace(",", "/").replace(" ", "") if value is not None else ""


def _state(attrs: Mapping[str, Any], event_name: str, body: Any) -> bool | None:
    """True firing, False resolved, None: not an alert event."""
    words: list[str] = []
    raw = _first(attrs, STATE_KEYS)
    if raw is not None:
        words.append(str(raw))
    if isinstance(attrs.get("slo.alert.firing"), bool):
        return bool(attrs["slo.alert.firing"])
    for source in (event_name, attrs.get("event.name")):
        if isinstance(source, str) and source:
            words.append(source.rsplit(".", 1)[-1])
    if not words and isinstance(body, str) and body:
        words.append(body.split(None, 1)[0].strip(":[]()").lower())
    for w in words:
        w = w.lower()
        if w in FIRING_WORDS:
            return True
        if w in RESOLVED_WORDS:
            return False
    return None


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _rates(attrs: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """Burn rates by window from `alert.burn_rates` (a map) or `…burn_rate.<window>`."""
    out: dict[str, float] = {}
    nested = attrs.get(f"alert.{prefix}s") or attrs.get(f"slo.{prefix}s")
    if isinstance(nested, dict):
        for w, v in nested.items():
            n = _number(v)
            if n is not None:
                out[str(w)] = n
    pattern = _BURN_KEY if prefix == "burn_rate" else re.compile(
        rf"^(?:alert\.|slo\.)?{prefix}[._](?P<window>[0-9a-z]+)$")
    for k, v in attrs.items():
        m = pattern.match(k)
        if m:
            n = _number(v)
            if n is not None:
                out[m.group("window")] = n
    return out


def _epoch(v: Any) -> float | None:
    """Seconds since the epoch from an RFC 3339 string or a number (s, ms or ns)."""
    n = _number(v)
    if n is not None:
        return n / 1e9 if n > 1e14 else (n / 1e3 if n > 1e11 else n)
    if isinstance(v, str) and v:
        try:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    return None


def category_of(slo: str, explicit: Any = None) -> str:
    """availability | latency | consistency (the runbook's SLO sections), else `burn-rate`."""
    text = f"{explicit or ''} {slo}".lower()
    if any(w in text for w in ("latency", "duration", "slow", "p95", "p99")):
        return "latency"
    if any(w in text for w in ("consisten", "replication", "lag", "freshness")):
        return "consistency"
    if any(w in text for w in ("availab", "error", "success", "uptime", "health")):
        return "availability"
    return "burn-rate"


def event_from_record(attrs: Mapping[str, Any], *, event_name: str = "", body: Any = None,
                      time_unix_nano: int = 0, now: float) -> AlertEvent | None:
    """The alert event a log record carries (attributes merged over its resource's), or None."""
    slo = _first(attrs, SLO_KEYS)
    if slo is None:
        return None
    firing = _state(attrs, event_name, body)
    if firing is None:
        return None
    severity = str(_first(attrs, SEVERITY_KEYS) or "page").lower()
    objective = _number(_first(attrs, OBJECTIVE_KEYS))
    return AlertEvent(
        slo=str(slo), service=str(_first(attrs, SERVICE_KEYS) or ""), severity=severity,
        firing=firing, time=time_unix_nano / 1e9 if time_unix_nano else now,
        windows=_windows(_first(attrs, WINDOWS_KEYS)),
        category=category_of(str(slo), _first(attrs, CATEGORY_KEYS)),
        runbook_url=str(_first(attrs, RUNBOOK_KEYS) or "") or None,
        objective=objective, burn_rates=_rates(attrs, "burn_rate"),
        thresholds=_rates(attrs, "threshold"),
        threshold=_number(_first(attrs, THRESHOLD_KEYS)),
        budget_remaining=_number(_first(attrs, BUDGET_KEYS)),
        started_at=_epoch(_first(attrs, STARTS_AT_KEYS)),
        summary=str(_first(attrs, SUMMARY_KEYS) or ""),
        message=body if isinstance(body, str) else "")


def events_from_batch(batch: Batch, now: float) -> list[AlertEvent]:
    out = []
    for rl in batch.message.resource_logs:
        res = {kv.key: any_value(kv.value) for kv in rl.resource.attributes}
        for sl in rl.scope_logs:
            for lr in sl.log_records:
                attrs = {**res, **{kv.key: any_value(kv.value) for kv in lr.attributes}}
                ev = event_from_record(
                    attrs, event_name=getattr(lr, "event_name", "") or "",
                    body=any_value(lr.body), now=now,
                    time_unix_nano=lr.time_unix_nano or lr.observed_time_unix_nano)
                if ev is not None:
                    out.append(ev)
    return out
