"""`slo` connector: metrics in; SLO metrics and alert events out.

    connectors:
      slo:
        slos:                       # native form, or OpenSLO / native files:
          - name: api-availability  # slo_files: [/etc/otelpipe/slos.yaml]
            service: api
            objective: 99.9
            window: 30d
            sli: {type: availability, source: httpcheck,
                  match: {http.url: "http://api:8000/health"}}
        alerting: {min_events: 10}  # rules default to the SRE workbook's
        flush_interval: 15s
        state_file: /var/lib/otelpipe/slo-state.json

Pairs metrics→metrics and metrics→logs. It reads the metrics its SLOs name
(see `pipeline.slo.model`) and counts events per SLO:

- monotonic sums (`traces.span.metrics.calls`): the increase of each series
  (cumulative values turned into deltas per series; a value that goes down or
  a new start time is a reset, and the new value is the increase; delta sums
  are taken as they are). A series first seen with a start time after the
  connector began watching counts in full (the error series redmetrics creates
  with the first error of an outage), otherwise its first value is a baseline;
- histograms (`traces.span.metrics.duration`): the increase of the count, and
  for `op: lte` the increase of the observations <= the bound -- the bound
  must be one of the histogram's explicit bucket bounds (a problem is logged and
  the SLO gets no events otherwise);
- gauges and non-monotonic sums (`httpcheck.success`, `db.replication.lag`):
  one event per sample (a sample repeated with the same timestamp counts once),
  good when `sample op value`.

Events count at the time they arrive (the connector's clock). Every
`flush_interval` the engine (`pipeline.slo.engine`) evaluates every SLO and
the connector emits gauges -- `slo.sli` and `slo.burn_rate` (attribute
`slo.window`: 5m … 3d and the period), `slo.error_budget.remaining`,
`slo.objective`, `slo.alert.firing` (`alert.severity`) -- each with `slo.name`
and `service.name` (also the resource's `service.name`), and one log record per
alert transition (WARN when firing, INFO when resolved; attributes
`event.name=slo.alert`, `slo.name`, `service.name`, `alert.severity`,
`alert.state`, `alert.windows`, `alert.burn_rate.<window>`, `alert.threshold`,
`alert.summary`, `alert.runbook_url`, `alert.starts_at`, `alert.ends_at`).
Alert events refused downstream (RetryableError) are kept (up to 1000) and
sent again at the next flush; metrics are superseded by the next flush.

State: with `state_file`, the buckets, alert states and counter baselines are
saved every `state_save_interval` and at shutdown (atomically) and loaded at
creation, so a restart keeps the budget. Alerts still firing after a restart
are announced again (`alert.replayed=true`). What was counted after the last
save and before a crash may be counted again (at most one save interval).

Read API (the status page, the alertmanager exporter): `status()` returns one
`pipeline.slo.engine.SLOStatus` per SLO (name, service, objective, SLI and burn
rate per window, budget remaining, alerts with severity / since / windows /
burn rates, and `budget_history` for a burn-down chart); `slo_status(name)`
one; `problems` the input problems found per SLO. A running service's
connectors are found with `host.components()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import math
import operator
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber
from pydantic import Field, PrivateAttr, model_validator

from pipeline import __version__
from pipeline.aggregation.series import to_key_values
from pipeline.component import (
    Component,
    ComponentConfig,
    Consumer,
    CreateSettings,
    Factory,
    Kind,
    Signal,
)
from pipeline.config.types import Duration
from pipeline.errors import ConfigError, PermanentError, RetryableError
from pipeline.pdata.anyvalue import any_value_to_python, label_text
from pipeline.pdata.batch import Batch
from pipeline.slo.engine import AlertTransition, Engine, SLOStatus
from pipeline.slo.model import (
    SLO,
    TIME_UNITS,
    AlertingConfig,
    NativeSLO,
    Selector,
    SLODefinitionError,
    load_slo_file,
)
from pipeline.slo.persistence import StateFile

Clock = Callable[[], int]
SCOPE = "otelpipe/slo"
DEFAULT_RUNBOOK = "docs/runbook.md"
MAX_PENDING_EVENTS = 1000
_OPS: dict[str, Callable[[float, float], bool]] = {
    "lt": operator.lt, "lte": operator.le, "gt": operator.gt, "ge": operator.ge,
    "gte": operator.ge, "eq": operator.eq, "ne": operator.ne}


class SLOConnectorConfig(ComponentConfig):
    slos: list[NativeSLO] = Field(default_factory=list, description="SLOs in the native form")
    slo_files: list[str] = Field(default_factory=list, description="YAML files with OpenSLO v1 "
                                 "documents or a native slos: list (relative to the working "
                                 "directory)")
    alerting: AlertingConfig = Field(default_factory=AlertingConfig)
    flush_interval: Duration = Field(15.0, gt=0, description="evaluate and emit this often")
    state_file: str | None = Field(None, description="where the budget survives restarts; "
                                                     "without it a restart starts afresh")
    state_save_interval: Duration = Field(60.0, gt=0)
    runbook_url: str = Field(DEFAULT_RUNBOOK, description="alerts link to "
                             "<runbook_url>#slo-burn-rate-<severity>")
    series_limit: int = Field(100_000, ge=1, description="input series tracked for deltas")
    series_expiry: Duration = Field(3600.0, gt=0, description="forget an input series unseen "
                                                              "this long")

    _slos: list[SLO] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _load(self) -> SLOConnectorConfig:
        slos = [s.to_slo() for s in self.slos]
        problems: list[str] = []
        for path in self.slo_files:
            try:
                slos.extend(load_slo_file(path))
            except SLODefinitionError as exc:
                problems.extend(exc.problems)
        if problems:
            raise ValueError("; ".join(problems))
        if not slos:
            raise ValueError("no SLOs: define some under slos or slo_files")
        seen: set[str] = set()
        for s in slos:
            if s.name in seen:
                raise ValueError(f"SLO {s.name!r} is defined twice")
            seen.add(s.name)
        self._slos = slos
        return self

    @property
    def definitions(self) -> list[SLO]:
        return list(self._slos)


@dataclass
class _Entry:
    slo: str
    role: str  # good | bad | total
    selector: Selector
    match: tuple[tuple[str, str], ...]


class _Series:
    __slots__ = ("last_seen", "start", "value")

    def __init__(self, start: int, value: Any, last_seen: float):
        self.start = start
        self.value = value
        self.last_seen = last_seen


def _threshold_in(selector: Selector, unit: str) -> float:
    """The selector's threshold in the metric's unit (thresholds on time units are
    written in seconds)."""
    assert selector.value is not None
    scale = TIME_UNITS.get(unit.strip())
    if scale is None:
        return selector.value
    return selector.value / scale


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat().replace("+00:00", "Z")


class SLOConnector(Component, Consumer):
    def __init__(self, settings: CreateSettings, config: SLOConnectorConfig,
                 clock: Clock | None = None):
        self.id = str(settings.id)
        self.logger = settings.logger
        self.config = config
        self.clock: Clock = clock or time.time_ns
        self.metrics_out: Consumer | None = settings.consumers.get(Signal.METRICS)
        self.logs_out: Consumer | None = settings.consumers.get(Signal.LOGS)
        self.slos = config.definitions
        self.engine = Engine(self.slos, config.alerting, self.clock)
        self.index: dict[str, list[_Entry]] = {}
        for slo in self.slos:
            for role, sel in slo.indicator.selectors():
                self.index.setdefault(sel.metric, []).append(
                    _Entry(slo.name, role, sel, tuple(sorted(sel.match.items()))))
        self.series: dict[tuple[Any, ...], _Series] = {}
        self.watch_start = self.clock()
        self.problems: dict[str, list[str]] = {s.name: [] for s in self.slos}
        self.pending_events: list[AlertTransition] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._last_save = self.engine.now()
        self.state = StateFile(config.state_file) if config.state_file else None
        if self.state is not None:
            self._restore()

    # --- read API -------------------------------------------------------------

    def status(self) -> list[SLOStatus]:
        """One status per SLO, as of now (windows advanced to the clock)."""
        return self.engine.status()

    def slo_status(self, name: str) -> SLOStatus:
        return self.engine.get(name)

    def definitions(self) -> list[SLO]:
        return list(self.slos)

    # --- input ----------------------------------------------------------------

    async def consume(self, batch: Batch) -> None:
        if batch.signal is not Signal.METRICS:
            raise PermanentError(f"slo connector takes metrics, not {batch.signal}")
        try:
            req = batch.message
        except Exception as exc:  # DecodeError
            raise PermanentError(f"undecodable metrics request: {exc}") from exc
        self.ingest(req)

    def ingest(self, req: ExportMetricsServiceRequest) -> None:
        """Count the events of one metrics request."""
        index = self.index
        now_s = self.engine.now()
        acc: dict[str, list[float]] = {}  # slo -> [good, bad, total]
        skip: set[str] = set()  # SLOs with an input problem in this request
        for rm in req.resource_metrics:
            res_attrs: dict[str, str] | None = None
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    entries = index.get(m.name)
                    if not entries:
                        continue
                    if res_attrs is None:
                        res_attrs = {kv.key: label_text(any_value_to_python(kv.value))
                                     for kv in rm.resource.attributes}
                    self._metric(m, entries, res_attrs, now_s, acc, skip)
        for name, (good, bad, total) in acc.items():
            if name in skip:
                continue  # a total without its good (or bad) count would skew the SLI
            tracker = self.engine.trackers[name]
            if tracker.counts_good:
                tracker.record(now_s, total, good=good)
            else:
                tracker.record(now_s, total, bad=bad)

    def _metric(self, m: Any, entries: list[_Entry], res_attrs: dict[str, str], now_s: float,
                acc: dict[str, list[float]], skip: set[str]) -> None:
        kind = m.WhichOneof("data")
        if kind is None:
            return
        data = getattr(m, kind)
        unit = m.unit
        for dp in data.data_points:
            attrs = dict(res_attrs)
            for kv in dp.attributes:
                attrs[kv.key] = label_text(any_value_to_python(kv.value))
            matching = [e for e in entries
                        if all(attrs.get(k) == v for k, v in e.match)]
            if not matching:
                continue
            key = (m.name, *sorted(attrs.items()))
            if kind == "sum" and data.is_monotonic:
                value = dp.as_int if dp.WhichOneof("value") == "as_int" else dp.as_double
                delta = (value if data.aggregation_temporality == 1
                         else self._cumulative(key, dp.start_time_unix_nano, value, now_s))
                for e in matching:
                    if e.selector.op is not None:
                        self._problem(e.slo, f"{m.name} is a counter: a threshold "
                                             "(op/value) cannot be applied to it")
                        skip.add(e.slo)
                        continue
                    acc.setdefault(e.slo, [0.0, 0.0, 0.0])[_ROLE[e.role]] += delta
            elif kind in ("gauge", "sum"):
                if not self._new_sample(key, dp.time_unix_nano, now_s):
                    continue
                value = dp.as_int if dp.WhichOneof("value") == "as_int" else dp.as_double
                for e in matching:
                    sel = e.selector
                    ok = (sel.op is None
                          or _OPS[sel.op](value, _threshold_in(sel, unit)))
                    if ok:
                        acc.setdefault(e.slo, [0.0, 0.0, 0.0])[_ROLE[e.role]] += 1
            elif kind == "histogram":
                bounds = list(dp.explicit_bounds)
                current = (dp.count, tuple(dp.bucket_counts))
                if data.aggregation_temporality == 1:
                    count, buckets = current
                else:
                    count, buckets = self._cumulative_hist(key, dp.start_time_unix_nano,
                                                           current, now_s)
                for e in matching:
                    sel = e.selector
                    if sel.op is None:
                        n: float = count
                    else:
                        i = self._bound_index(e, m.name, bounds, _threshold_in(sel, unit), unit)
                        if i is None:
                            skip.add(e.slo)
                            continue
                        n = sum(buckets[:i + 1])
                    acc.setdefault(e.slo, [0.0, 0.0, 0.0])[_ROLE[e.role]] += n
            elif kind in ("exponential_histogram", "summary"):
                current_count = dp.count
                if getattr(data, "aggregation_temporality", 2) == 1:
                    count = current_count
                else:
                    count = self._cumulative(key, dp.start_time_unix_nano, current_count, now_s)
                for e in matching:
                    if e.selector.op is not None:
                        self._problem(e.slo, f"{m.name} is an {kind.replace('_', ' ')}: "
                                             "observations <= a threshold can only be read "
                                             "from explicit bucket bounds")
                        skip.add(e.slo)
                        continue
                    acc.setdefault(e.slo, [0.0, 0.0, 0.0])[_ROLE[e.role]] += count

    def _bound_index(self, e: _Entry, metric: str, bounds: list[float], value: float,
                     unit: str) -> int | None:
        for i, b in enumerate(bounds):
            if math.isclose(b, value, rel_tol=1e-9, abs_tol=1e-12):
                return i
        shown = ", ".join(f"{b:g}" for b in bounds)
        self._problem(e.slo, f"threshold {e.selector.value:g} s ({value:g} {unit or 'units'}) "
                             f"is not a bucket bound of {metric} (bounds: {shown}); add it to "
                             "the histogram's buckets (redmetrics histogram.explicit.buckets)")
        return None

    def _problem(self, slo: str, text: str) -> None:
        found = self.problems.setdefault(slo, [])
        if text not in found:
            found.append(text)
            self.logger.error("SLO input problem", extra={"slo": slo, "problem": text})

    def _track(self, key: tuple[Any, ...], series: _Series) -> bool:
        if len(self.series) >= self.config.series_limit:
            return False
        self.series[key] = series
        return True

    def _born_while_watching(self, start: int) -> bool:
        return bool(start) and start >= self.watch_start

    def _cumulative(self, key: tuple[Any, ...], start: int, value: float, now_s: float) -> float:
        prev = self.series.get(key)
        if prev is None:
            self._track(key, _Series(start, value, now_s))
            return value if self._born_while_watching(start) else 0.0
        prev.last_seen = now_s
        reset = bool(start and start != prev.start) or value < prev.value
        delta = value if reset else value - prev.value  # a reset: restarted from 0
        prev.start, prev.value = start, value
        return delta

    def _cumulative_hist(self, key: tuple[Any, ...], start: int,
                         current: tuple[int, tuple[int, ...]],
                         now_s: float) -> tuple[float, tuple[float, ...]]:
        count, buckets = current
        prev = self.series.get(key)
        if prev is None:
            self._track(key, _Series(start, current, now_s))
            if self._born_while_watching(start):
                return count, buckets
            return 0, (0,) * len(buckets)
        prev.last_seen = now_s
        p_count, p_buckets = prev.value
        prev.start, prev.value, old_start = start, current, prev.start
        if ((start and start != old_start) or count < p_count
                or len(p_buckets) != len(buckets)):
            return count, buckets
        return count - p_count, tuple(b - a for a, b in zip(p_buckets, buckets, strict=True))

    def _new_sample(self, key: tuple[Any, ...], t: int, now_s: float) -> bool:
        prev = self.series.get(key)
        if prev is None:
            self._track(key, _Series(0, t, now_s))
            return True
        prev.last_seen = now_s
        if t and prev.value == t:
            return False  # the same sample delivered again
        prev.value = t
        return True

    # --- output ---------------------------------------------------------------

    async def start(self, host: Any) -> None:
        if host is not None:
            self._check_buckets(host)
        replay = self.engine.firing_transitions()
        if replay:
            self.pending_events.extend(replay)
        self._task = asyncio.create_task(self._loop(), name=f"flush {self.id}")

    def _check_buckets(self, host: Any) -> None:
        """Fail at start when a latency threshold is not a bucket bound of a
        redmetrics connector of this service that emits the metric."""
        try:
            components = host.components()
        except Exception:  # a host without components (tests)
            return
        problems: list[str] = []
        for (kind, cid), comp in components.items():
            cfg = getattr(comp, "config", None)
            hist = getattr(cfg, "histogram", None)
            namespace = getattr(cfg, "namespace", None)
            if kind is not Kind.CONNECTOR or hist is None or namespace is None:
                continue
            if getattr(hist, "disable", False) or getattr(hist, "exponential", None) is not None:
                continue
            explicit = getattr(hist, "explicit", None)
            if explicit is None:
                from pipeline.connectors.redmetrics import DEFAULT_BUCKETS_S
                bounds = list(DEFAULT_BUCKETS_S)
            else:
                bounds = list(explicit.buckets)
            metric = f"{namespace}.duration"
            for e in self.index.get(metric, []):
                if e.selector.op is None:
                    continue
                v = e.selector.value
                assert v is not None
                if not any(math.isclose(b, v, rel_tol=1e-9) for b in bounds):
                    problems.append(
                        f"connectors.{self.id}: SLO {e.slo}: latency threshold {v:g} s is "
                        f"not a bucket bound of {metric} (connectors.{cid} buckets: "
                        f"{', '.join(f'{b:g}' for b in bounds)}); add {v:g} to "
                        f"connectors.{cid}.histogram.explicit.buckets")
        if problems:
            raise ConfigError(problems)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.flush_interval
        deadline = loop.time()
        while True:
            deadline += interval
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            if loop.time() - deadline > interval:
                deadline = loop.time()
            try:
                await self.flush()
            except Exception:
                self.logger.exception("SLO evaluation failed")

    async def flush(self) -> list[AlertTransition]:
        """Evaluate, emit metrics and alert events, save the state when due.
        Returns the alert transitions of this evaluation."""
        async with self._lock:
            transitions = self.engine.evaluate()
            for tr in transitions:
                log = self.logger.warning if tr.state == "firing" else self.logger.info
                log(tr.summary, extra={"slo": tr.slo, "severity": tr.severity,
                                       "state": tr.state})
            statuses = self.engine.status()
            now_ns = self.clock()
            if self.metrics_out is not None:
                req = self.metrics_request(statuses, now_ns)
                try:
                    await self.metrics_out.consume(Batch(Signal.METRICS, message=req))
                except (RetryableError, PermanentError) as exc:
                    self.logger.warning("SLO metrics not delivered (the next flush supersedes "
                                        "them)", extra={"error": str(exc)})
            self.pending_events.extend(transitions)
            if len(self.pending_events) > MAX_PENDING_EVENTS:
                dropped = len(self.pending_events) - MAX_PENDING_EVENTS
                self.logger.error("dropping undelivered SLO alert events",
                                  extra={"dropped": dropped})
                del self.pending_events[:dropped]
            if self.pending_events and self.logs_out is not None:
                req_logs = self.logs_request(self.pending_events, now_ns)
                try:
                    await self.logs_out.consume(Batch(Signal.LOGS, message=req_logs))
                    self.pending_events.clear()
                except RetryableError as exc:
                    self.logger.warning("alert events refused; sending them again at the "
                                        "next flush", extra={"error": str(exc)})
                except PermanentError as exc:
                    self.logger.error("alert events rejected", extra={"error": str(exc)})
                    self.pending_events.clear()
            elif self.logs_out is None:
                self.pending_events.clear()
            self._expire_series()
            if self.state is not None and (self.engine.now() - self._last_save
                                           >= self.config.state_save_interval):
                self.save()
            return transitions

    def metrics_request(self, statuses: list[SLOStatus],
                        now_ns: int) -> ExportMetricsServiceRequest:
        req = ExportMetricsServiceRequest()
        by_service: dict[str, Any] = {}
        for st in statuses:
            sm = by_service.get(st.service)
            if sm is None:
                rm = req.resource_metrics.add()
                rm.resource.attributes.extend(to_key_values((("service.name", st.service),)))
                sm = by_service[st.service] = rm.scope_metrics.add()
                sm.scope.name = SCOPE
                sm.scope.version = __version__
            base = (("slo.name", st.name), ("service.name", st.service))

            def gauge(name: str, desc: str, points: list[tuple[tuple[tuple[str, Any], ...],
                                                                 float]], sm: Any = sm) -> None:
                if not points:
                    return
                m = sm.metrics.add(name=name, description=desc, unit="1")
                for attrs, value in points:
                    dp = m.gauge.data_points.add()
                    dp.time_unix_nano = now_ns
                    dp.attributes.extend(to_key_values(attrs))
                    dp.as_double = value

            gauge("slo.sli", "Good events / events over the window",
                  [((*base, ("slo.window", w.name)), w.sli) for w in st.windows
                   if w.sli is not None])
            gauge("slo.burn_rate", "Error rate over the window / (1 - objective)",
                  [((*base, ("slo.window", w.name)), w.burn_rate) for w in st.windows
                   if w.burn_rate is not None])
            gauge("slo.error_budget.remaining",
                  f"Fraction of the {st.period_name} error budget left (1 untouched, <0 "
                  "overspent)", [(base, st.error_budget_remaining)])
            gauge("slo.objective", "Target fraction of good events", [(base, st.objective)])
            gauge("slo.alert.firing", "1 while the alert of this severity fires",
                  [((*base, ("alert.severity", a.severity)), 1.0 if a.firing else 0.0)
                   for a in st.alerts])
        return req

    def runbook_url(self, severity: str) -> str:
        return f"{self.config.runbook_url}#slo-burn-rate-{severity}"

    def logs_request(self, events: list[AlertTransition], now_ns: int) -> ExportLogsServiceRequest:
        req = ExportLogsServiceRequest()
        scopes: dict[str, Any] = {}
        for ev in events:
            sl = scopes.get(ev.service)
            if sl is None:
                rl = req.resource_logs.add()
                rl.resource.attributes.extend(to_key_values((("service.name", ev.service),)))
                sl = scopes[ev.service] = rl.scope_logs.add()
                sl.scope.name = SCOPE
                sl.scope.version = __version__
            rec = sl.log_records.add()
            rec.time_unix_nano = int(ev.at * 1e9)
            rec.observed_time_unix_nano = now_ns
            firing = ev.state == "firing"
            rec.severity_number = (SeverityNumber.SEVERITY_NUMBER_WARN if firing
                                   else SeverityNumber.SEVERITY_NUMBER_INFO)
            rec.severity_text = "WARN" if firing else "INFO"
            rec.body.string_value = ev.summary
            attrs: list[tuple[str, Any]] = [
                ("event.name", "slo.alert"), ("slo.name", ev.slo),
                ("service.name", ev.service), ("alert.severity", ev.severity),
                ("alert.state", ev.state), ("alert.windows", ",".join(ev.windows)),
                *((f"alert.burn_rate.{w}", float(r)) for w, r in ev.burn_rates.items()),
                ("alert.threshold", float(ev.threshold)),
                ("slo.objective", float(ev.objective)),
                ("slo.error_budget.remaining", float(ev.error_budget_remaining)),
                ("alert.summary", ev.summary),
                ("alert.runbook_url", self.runbook_url(ev.severity)),
                ("alert.starts_at", _iso(ev.started_at)),
            ]
            if not firing:
                attrs.append(("alert.ends_at", _iso(ev.at)))
            if ev.replayed:
                attrs.append(("alert.replayed", True))
            rec.attributes.extend(to_key_values(tuple(attrs)))
        return req

    # --- state ----------------------------------------------------------------

    def _expire_series(self) -> None:
        cutoff = self.engine.now() - self.config.series_expiry
        stale = [k for k, s in self.series.items() if s.last_seen < cutoff]
        for k in stale:
            del self.series[k]

    def dump_state(self) -> dict[str, Any]:
        state = self.engine.dump_state()
        state["watch_start"] = self.watch_start
        state["series"] = [[[k[0], *(list(p) for p in k[1:])], s.start,
                            [s.value[0], list(s.value[1])] if isinstance(s.value, tuple)
                            else s.value, s.last_seen]
                           for k, s in self.series.items()]
        return state

    def save(self) -> None:
        if self.state is None:
            return
        try:
            self.state.save(self.dump_state())
            self._last_save = self.engine.now()
        except OSError as exc:
            self.logger.error("cannot save SLO state", extra={"path": str(self.state.path),
                                                              "error": str(exc)})

    def _restore(self) -> None:
        assert self.state is not None
        try:
            state = self.state.load()
        except ValueError as exc:
            self.logger.error(str(exc))
            return
        if state is None:
            self.logger.info("no saved SLO state; starting afresh",
                             extra={"path": str(self.state.path)})
            return
        for note in self.engine.load_state(state):
            self.logger.warning(note)
        saved_at = state.get("saved_at")
        if isinstance(saved_at, int | float):
            # Series born after the last save were not counted: count them in full.
            self.watch_start = int(saved_at * 1e9)
        for row in state.get("series", []):
            try:
                name, *pairs = row[0]
                key = (str(name), *(tuple(p) for p in pairs))
                value = row[2]
                if isinstance(value, list):
                    value = (value[0], tuple(value[1]))
                self.series[key] = _Series(int(row[1]), value, float(row[3]))
            except (TypeError, ValueError, IndexError):
                continue
        self.logger.info("SLO state restored", extra={
            "path": str(self.state.path), "saved_at": saved_at,
            "slos": len(self.engine.trackers), "series": len(self.series)})

    async def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        finally:
            self.save()


_ROLE = {"good": 0, "bad": 1, "total": 2}


def _create(settings: CreateSettings, config: Any) -> SLOConnector:
    return SLOConnector(settings, config)


def find_slo_connectors(components: Mapping[Any, Any]) -> list[SLOConnector]:
    """The `slo` connectors among a host's components (for the status page)."""
    return [c for c in components.values() if isinstance(c, SLOConnector)]


factory = Factory(type="slo", kind=Kind.CONNECTOR, config_model=SLOConnectorConfig,
                  create=_create,
                  connector_pairs=frozenset({(Signal.METRICS, Signal.METRICS),
                                             (Signal.METRICS, Signal.LOGS)}),
                  description="SLIs, error budgets and burn-rate alerts from metrics")
