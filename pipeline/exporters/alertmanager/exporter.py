"""The `alertmanager` exporter: the alerts it keeps (one per label set, applied in
event-time order), their v2 API payload, sending and periodic re-sending."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from pipeline import __version__
from pipeline.component import ExporterCreateSettings, Host, Signal
from pipeline.config.secrets import mask_text
from pipeline.errors import PermanentError, RetryableError
from pipeline.exporterhelper import Exporter
from pipeline.exporterhelper.http import (
    client_session,
    error_for_status,
    post,
    retryable_status,
    safe_url,
)
from pipeline.exporters.alertmanager.config import AlertmanagerExporterConfig, placeholders
from pipeline.exporters.alertmanager.events import AlertEvent, events_from_batch
from pipeline.pdata.batch import Batch

if TYPE_CHECKING:
    import aiohttp

API_PATH = "/api/v2/alerts"
MAX_ERROR_BODY = 300
_ANCHOR_UNSAFE = re.compile(r"[^a-z0-9-]+")


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
        ph = placeholders(ev.slo, ev.service, ev.severity, ev.category)
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
