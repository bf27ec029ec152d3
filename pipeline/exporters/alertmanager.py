"""`alertmanager` exporter: the `slo` connector's alert events to Prometheus Alertmanager.

```yaml
connectors:
  slo: {...}
exporters:
  alertmanager:
    endpoint: http://alertmanager:9093          # POSTs to <endpoint>/api/v2/alerts
    resend_interval: 1m                         # re-send active alerts (Prometheus' default)
    runbook_url: https://git.example.com/otelpipe/blob/main/docs/runbook.md
    generator_url: http://otelpipe:13133/status # optional: link back to the status page
    labels: {team: platform}                    # added to every alert
    auth: {bearer_token: ${env:AM_TOKEN}}        # and tls / headers: the shared client models
service:
  pipelines:
    logs/alerts: {receivers: [slo], exporters: [alertmanager]}
```

Input: the log records the `slo` connector emits when a burn-rate alert fires
or resolves (attributes `slo.name`, `service.name`, `alert.severity`
page|ticket, `alert.state` firing|resolved, `alert.windows`, burn rates).
Log records that are not alert events are ignored.

Each event becomes one Alertmanager alert (v2 API, `POST /api/v2/alerts`):

- labels: `alertname` (`SLOBurnRatePage` / `SLOBurnRateTicket` by default,
  see `alertname`), `slo`, `service`, `severity`, `window` (the alert's
  long/short window pair, e.g. `1h/5m`) and the configured static `labels`;
- annotations: `summary` (the event's `alert.summary`), `description` (burn
  rates, threshold, objective, budget left), `runbook_url`: `runbook_url`
  plus an anchor of docs/runbook.md, `#slo-<category>-<severity>` with
  category availability|latency|consistency guessed from the SLO's name
  (override per SLO with `runbook_anchors`); when `runbook_url` is not set
  here, an absolute `alert.runbook_url` of the event is used instead;
- `startsAt` (when the alert fired: `alert.starts_at`, else the record's
  time) and `endsAt`: while firing, now +
  `alert_ttl` (4 × resend_interval by default, as Prometheus does: if
  otelpipe stops re-sending, Alertmanager resolves the alert on its own);
  on the `resolved` event, now.

Alertmanager forgets an alert it is not told about again, so the exporter
keeps the alerts it has seen and re-sends the firing ones every
`resend_interval`, and resolved ones for `resolved_retention` (15m) more so a
lost resolution still gets through. Events are applied in event-time order: a
retried, older batch never re-fires an alert resolved since.

Delivery goes through the exporter helper: connection errors, timeouts, 429
and 5xx are retried with backoff; other 4xx are permanent (the batch is
dropped and counted). A re-send is one attempt per interval; the next
interval is its retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import Field, field_validator

from pipeline import __version__
from pipeline.component import ExporterCreateSettings, Factory, Host, Kind, Signal
from pipeline.config.retry import ExporterSettings
from pipeline.config.secrets import mask_text, mask_url
from pipeline.config.tls import ClientSettings
from pipeline.config.types import Duration
from pipeline.errors import PermanentError, RetryableError
from pipeline.exporterhelper import Exporter
from pipeline.exporterhelper.http import (
    client_session,
    error_for_status,
    post,
    retryable_status,
    safe_url,
)
from pipeline.pdata.anyvalue import any_value
from pipeline.pdata.batch import Batch

if TYPE_CHECKING:
    import aiohttp

API_PATH = "/api/v2/alerts"
MAX_ERROR_BODY = 300
DEFAULT_RUNBOOK_URL = "https://github.com/otelpipe/otelpipe/blob/main/docs/runbook.md"

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
_ANCHOR_UNSAFE = re.compile(r"[^a-z0-9-]+")


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
            v.format(**_placeholders("s", "svc", "page", "availability"))
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"bad template {v!r}: {exc}") from None
        return v

    @property
    def ttl(self) -> float:
        return self.alert_ttl if self.alert_ttl is not None else 4 * self.resend_interval


def _placeholders(slo: str, service: str, severity: str, category: str) -> dict[str, str]:
    return {"slo": slo, "service": service, "severity": severity,
            "Severity": severity[:1].upper() + severity[1:], "category": category}


# --- alert events ------------------------------------------------------------------


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


# --- alert state -------------------------------------------------------------------

LabelKey = tuple[tuple[str, str], ...]


@dataclass
class Alert:
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    last_event: float           # event time of the newest event applied
    resolved_at: float | None = None  # wall-clock time the resolution was applied
    generator_url: str | None = None

    @property
    def firing(self) -> bool:
        return self.resolved_at is None

    @property
    def key(self) -> LabelKey:
        return tuple(sorted(self.labels.items()))


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _fmt_rate(v: float) -> str:
    return f"{v:.3g}"


def _retryable(status: int) -> bool:
    """408 (request timeout) too: Alertmanager may answer it under load."""
    return status == 408 or retryable_status(status)


class AlertmanagerExporter(Exporter):
    def __init__(self, settings: ExporterCreateSettings, config: AlertmanagerExporterConfig,
                 clock: Callable[[], float] = time.time):
        super().__init__(settings, config)
        self.config = config
        self.clock = clock
        self.url = config.endpoint + API_PATH
        self.alerts: dict[LabelKey, Alert] = {}
        self._session: aiohttp.ClientSession | None = None
        self._post_lock = asyncio.Lock()
        self._resender: asyncio.Task[None] | None = None
        self._headers = {"User-Agent": f"otelpipe/{__version__}", **config.request_headers(),
                         "Content-Type": "application/json"}

    # Lifecycle ------------------------------------------------------------------
    async def start_exporter(self, host: Host) -> None:
        # The helper's timeout applies.
        self._session = client_session(self.config, [self.url], limit=4, headers=self._headers)
        self._resender = asyncio.create_task(self._resend_loop(), name=f"{self.id}-resend")

    async def shutdown_exporter(self) -> None:
        if self._resender is not None:
            self._resender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resender
            self._resender = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # Alerts ---------------------------------------------------------------------
    def _alert_for(self, ev: AlertEvent) -> Alert:
        c = self.config
        ph = _placeholders(ev.slo, ev.service, ev.severity, ev.category)
        labels = {**c.labels, "alertname": c.alertname.format(**ph), "slo": ev.slo,
                  "severity": ev.severity}
        if ev.service:
            labels["service"] = ev.service
        if ev.windows:
            labels["window"] = ev.windows
        return Alert(labels=labels, annotations=self._annotations(ev, ph),
                     starts_at=ev.started_at if ev.started_at is not None else ev.time,
                     last_event=ev.time,
                     generator_url=c.generator_url.replace("{slo}", ev.slo)
                     if c.generator_url else None)

    def _annotations(self, ev: AlertEvent, ph: dict[str, str]) -> dict[str, str]:
        rates = ", ".join(f"{w}: {_fmt_rate(r)}×" for w, r in ev.burn_rates.items())
        worst = max(ev.burn_rates.values(), default=None)
        who = f"{ev.slo} ({ev.service})" if ev.service else ev.slo
        if ev.summary:
            summary = ev.summary
        elif worst is not None:
            summary = (f"SLO {who} burns its error budget {_fmt_rate(worst)}× too fast "
                       f"({ev.severity})")
        else:
            summary = f"SLO {who} burns its error budget too fast ({ev.severity})"
        if ev.message and ev.message != summary:
            description = ev.message
        else:
            parts = [f"{ev.severity} alert of SLO {ev.slo}"]
            if ev.objective is not None:
                parts.append(f"objective {ev.objective:g}")
            if ev.windows:
                parts.append(f"windows {ev.windows}")
            if rates:
                parts.append(f"burn rates {rates}")
            if ev.thresholds:
                parts.append("thresholds " + ", ".join(
                    f"{w}: {_fmt_rate(t)}×" for w, t in ev.thresholds.items()))
            if ev.threshold is not None:
                parts.append(f"threshold {_fmt_rate(ev.threshold)}×")
            if ev.budget_remaining is not None:
                parts.append(f"error budget left {ev.budget_remaining:.1%}")
            description = "; ".join(parts) + "."
        out = {"summary": summary, "description": description,
               "runbook_url": self._runbook(ev, ph)}
        if rates:
            out["burn_rates"] = rates
        return out

    def _runbook(self, ev: AlertEvent, ph: dict[str, str]) -> str:
        c = self.config
        anchor = c.runbook_anchors.get(ev.slo)
        if anchor and "://" in anchor:
            return anchor
        if (not anchor and ev.runbook_url and "://" in ev.runbook_url
                and "runbook_url" not in c.model_fields_set):
            return ev.runbook_url
        if not anchor:
            anchor = _ANCHOR_UNSAFE.sub("-", c.runbook_anchor.format(**ph).lower()).strip("-")
        return f"{c.runbook_url.split('#', 1)[0]}#{anchor.lstrip('#')}"

    def apply(self, events: Iterable[AlertEvent]) -> list[Alert]:
        """Update the alert table with events (newest event time wins); the alerts touched."""
        now = self.clock()
        touched: dict[LabelKey, Alert] = {}
        for ev in sorted(events, key=lambda e: e.time):
            new = self._alert_for(ev)
            key = new.key
            if ev.firing:
                cur = self.alerts.get(key)
                if cur is not None and ev.time < cur.last_event:
                    touched[key] = cur  # stale (a retried old batch): state stays
                    continue
                if cur is not None and cur.firing:
                    new.starts_at = cur.starts_at  # same alert still firing
                new.starts_at = min(new.starts_at, now)
                self.alerts[key] = new
                touched[key] = new
                continue
            # Resolved: this exact alert, else every firing alert of the same SLO,
            # service and severity (a resolution may name no windows, or others).
            exact = self.alerts.get(key)
            if exact is not None and exact.firing:
                targets = [key]
            else:
                targets = [k for k, a in self.alerts.items()
                           if a.firing and _same_slo(a.labels, new.labels)]
                if not targets and exact is not None:
                    targets = [key]
            if not targets:
                # Never saw it fire (e.g. restarted since): resolve it anyway.
                new.starts_at = min(new.starts_at, now)
                new.resolved_at = now
                self.alerts[key] = new
                touched[key] = new
                continue
            for k in targets:
                a = self.alerts[k]
                if ev.time < a.last_event:
                    touched[k] = a
                    continue
                a.last_event = ev.time
                if a.firing:
                    a.resolved_at = now
                touched[k] = a
        return list(touched.values())

    def payload(self, alerts: Iterable[Alert]) -> list[dict[str, Any]]:
        now = self.clock()
        ttl = self.config.ttl
        out = []
        for a in alerts:
            ends = a.resolved_at if a.resolved_at is not None else now + ttl
            item: dict[str, Any] = {"labels": a.labels, "annotations": a.annotations,
                                    "startsAt": rfc3339(min(a.starts_at, ends)),
                                    "endsAt": rfc3339(ends)}
            if a.generator_url:
                item["generatorURL"] = a.generator_url
            out.append(item)
        return out

    def active(self) -> list[Alert]:
        """Alerts still sent: firing ones and ones resolved within resolved_retention."""
        now = self.clock()
        keep = self.config.resolved_retention
        for k in [k for k, a in self.alerts.items()
                  if a.resolved_at is not None and now - a.resolved_at > keep]:
            del self.alerts[k]
        return list(self.alerts.values())

    # Sending --------------------------------------------------------------------
    async def send(self, batch: Batch) -> int | None:
        if batch.signal is not Signal.LOGS:
            raise PermanentError(f"alertmanager exports logs (alert events), not "
                                 f"{batch.signal.value}")
        touched = self.apply(events_from_batch(batch, self.clock()))
        if touched:
            await self._post(touched)
        return None

    async def _post(self, alerts: list[Alert]) -> None:
        assert self._session is not None, "exporter not started"
        async with self._post_lock:
            # Built under the lock, from the current state: a re-send and a
            # resolution never overtake each other with stale content.
            resp = await post(self._session, self.url, orjson.dumps(self.payload(alerts)))
        if resp.ok:
            return
        text = mask_text(resp.body[:MAX_ERROR_BODY].decode("utf-8", "replace").strip())
        msg = f"{safe_url(self.url)}: HTTP {resp.status}" + (f": {text}" if text else "")
        raise error_for_status(resp.status, msg, resp.retry_after, retryable=_retryable)

    async def resend(self) -> int:
        """Post every alert still tracked now; returns how many (one attempt)."""
        alerts = self.active()
        if not alerts or self._session is None:
            return 0
        timeout = self.config.timeout or None
        try:
            await asyncio.wait_for(self._post(alerts), timeout)
        except (RetryableError, PermanentError, TimeoutError, OSError) as exc:
            text = mask_text(exc) or "re-send timed out"
            self._note_error(text, healthy=not isinstance(exc, (RetryableError, TimeoutError,
                                                                OSError)))
            self.log.warning("re-sending alerts failed; next attempt in resend_interval",
                             extra={"alerts": len(alerts), "error": text})
            return 0
        self._healthy = True
        return len(alerts)

    async def _resend_loop(self) -> None:
        interval = self.config.resend_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self.resend()
            except Exception:  # never let the loop die
                self.log.exception("re-sending alerts failed unexpectedly")

    def firing_alerts(self) -> list[dict[str, Any]]:
        """The firing alerts as Alertmanager would get them (for status pages and tests)."""
        return self.payload([a for a in self.alerts.values() if a.firing])


def _same_slo(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    return all(a.get(k) == b.get(k) for k in ("alertname", "slo", "service", "severity"))


def _create(settings: ExporterCreateSettings,
            config: AlertmanagerExporterConfig) -> AlertmanagerExporter:
    return AlertmanagerExporter(settings, config)


factory = Factory(type="alertmanager", kind=Kind.EXPORTER,
                  config_model=AlertmanagerExporterConfig, create=_create,
                  signals=frozenset({Signal.LOGS}),
                  runs_once=lambda config: True,  # one alert state
                  description="SLO burn-rate alert events to Prometheus Alertmanager (v2 API), "
                              "resolved on recovery, re-sent periodically")

__all__ = ["AlertEvent", "AlertmanagerExporter", "AlertmanagerExporterConfig", "category_of",
           "event_from_record", "events_from_batch", "factory"]
