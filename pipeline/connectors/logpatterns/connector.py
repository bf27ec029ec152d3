"""The `logpatterns` connector: counts per pattern, events, state, status."""

from __future__ import annotations

import asyncio
import collections
import heapq
from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber

from pipeline import __version__
from pipeline.aggregation.connector import AggregatingConnector
from pipeline.aggregation.emit import MetricSpec
from pipeline.aggregation.keys import KeyTable, ValueCache
from pipeline.aggregation.series import Attrs, SumSeries, to_key_values
from pipeline.aggregation.store import Clock
from pipeline.component import (
    ConnectorCreateSettings,
    Factory,
    Kind,
    Signal,
)
from pipeline.connectors.logpatterns.config import (
    MAX_ID_CHARS,
    MAX_TEMPLATE_CHARS,
    METRIC,
    NO_TEMPLATE,
    RECENT_EVENTS,
    SCOPE,
    STATE_VERSION,
    TOP_PER_SERVICE,
    EventKind,
    LogPatternsConfig,
    LogsProjection,
)
from pipeline.connectors.logpatterns.model import (
    Pattern,
    PatternEvent,
    _body_text,
    _count,
    _event_json,
    _identity,
    _iso,
    _value_text,
    describe_event,
    severity_of,
)
from pipeline.errors import PermanentError, RetryableError
from pipeline.pdata.anyvalue import label_text
from pipeline.pdata.batch import Batch
from pipeline.pdata.logrecords import LogGroup
from pipeline.slo.persistence import StateFile
from pipeline.telemetry.metrics import CounterSpec, GaugeSpec

EVENTS = CounterSpec("otelpipe_logpatterns_events",
                     "Pattern events emitted, by kind (new, reappeared, rate_change, "
                     "resolved).", ("connector", "kind"))
UNTEMPLATED = CounterSpec("otelpipe_logpatterns_untemplated_records",
                          "Records without log.template_id (logstruct templates did not "
                          "run before the connector).", ("connector",))
EVICTED = CounterSpec("otelpipe_logpatterns_evicted_patterns",
                      "Patterns forgotten (least recently seen) beyond max_patterns.",
                      ("connector",))
PATTERNS = GaugeSpec("otelpipe_logpatterns_patterns", "Patterns the connector remembers.",
                     ("connector",))
DROPPED_EVENTS = CounterSpec("otelpipe_logpatterns_dropped_events",
                             "Events not delivered: refused beyond max_pending_events, "
                             "or rejected permanently.", ("connector",))

class LogPatternsConnector(AggregatingConnector):
    scope_name = SCOPE

    def __init__(self, settings: ConnectorCreateSettings, config: LogPatternsConfig,
                 clock: Clock | None = None):
        super().__init__(settings, flush_interval=config.metrics_flush_interval, clock=clock)
        self.config = config
        self.logs_out = settings.consumers.get(Signal.LOGS)
        self.series = config.series_set(METRIC, SumSeries, self.clock)
        self.sets = [self.series]
        self.specs = [MetricSpec(METRIC, "sum", self.series, integer=True,
                                 description="Log records per mined template (log.template_id)"
                                             ", service and severity")]
        self.record_keys = KeyTable(["log.template_id", "log.template"])
        self.resource_keys = KeyTable(["service.name"])
        self.decode = ValueCache()
        self.patterns: OrderedDict[tuple[str, str], Pattern] = OrderedDict()
        self.recent: deque[PatternEvent] = deque(maxlen=RECENT_EVENTS)
        self.pending: list[PatternEvent] = []
        self.alerts: dict[tuple[str, str], PatternEvent] = {}  # firing, by pattern
        rc = config.rate_change
        self.window_ns = int(rc.window * 1e9)
        self.n_baseline = max(1, round(rc.baseline / rc.window))
        self.warmup_ns = int(config.warmup * 1e9)
        self.reappear_ns = int(config.reappear_after * 1e9)
        self.started_at = self.clock()
        tel = settings.telemetry
        events = tel.counter(EVENTS)
        self._events = {k: events.labels(self.id, k)
                        for k in ("new", "reappeared", "rate_change", "resolved")}
        self._untemplated = tel.counter(UNTEMPLATED).labels(self.id)
        self._evicted = tel.counter(EVICTED).labels(self.id)
        self._dropped = tel.counter(DROPPED_EVENTS).labels(self.id)
        self._patterns_gauge = tel.gauge(PATTERNS).labels(self.id)
        self._warned_untemplated = False
        self._tmpl = ""
        self._relabel = False
        self._py = False  # aggregating Python records (bodies are values, not bytes)
        self.state = StateFile(config.state_file) if config.state_file else None
        self._last_save = self.clock()
        if self.state is not None:
            self._restore()

    # --- input ----------------------------------------------------------------

    async def consume(self, batch: Batch) -> None:
        groups = batch.logs
        await self.settled()  # not while a flush takes its snapshot
        if groups is not None:  # Python records (text receivers, logstruct): no encoding
            self.aggregate_groups(groups)
        else:
            try:
                req = LogsProjection.FromString(batch.to_bytes())
            except DecodeError as exc:
                raise PermanentError(f"undecodable logs request: {exc}") from exc
            self.aggregate(req)
        if self.pending:
            await self._send_events()

    def aggregate(self, req: Any, now: int | None = None) -> None:
        """Count the records of one (projected) logs request; queue their events."""
        if now is None:
            now = self.clock()
        decode = self.decode
        table = self.record_keys.table
        sset = self.series
        cache = sset.cache
        with_sev = self.config.severity_dimension
        untemplated = 0
        for rl in req.resources:
            found: list[Any] = [None]
            self.resource_keys.scan(rl.resource.attributes, found)
            svc = label_text(decode(found[0])) if found[0] is not None else ""
            for scope in rl.scopes:
                for rec in scope.records:
                    tid_kv = tmpl_kv = None
                    for kv in rec.attributes:
                        if len(kv) > 1 and table[kv[1]] is not None:
                            if kv.startswith(b"\x0a\x0flog.template_id"):
                                tid_kv = kv
                            elif kv.startswith(b"\x0a\x0clog.template"):
                                tmpl_kv = kv
                    sev = severity_of(rec.severity_number, rec.severity_text) \
                        if with_sev else ""
                    if tid_kv is None:
                        untemplated += 1
                        tid = NO_TEMPLATE
                        self._tmpl = ""
                    else:
                        tid = label_text(decode(tid_kv))[:MAX_ID_CHARS]
                        self._tmpl = label_text(decode(tmpl_kv))[:MAX_TEMPLATE_CHARS] \
                            if tmpl_kv is not None else ""
                        self._see(svc, tid, rec, now, tmpl_kv or b"")
                    key = (svc, tid, sev)
                    s = cache.get(key)
                    if s is None:
                        s = sset.resolve(key, _identity, self._describe)
                    s.add(1)  # type: ignore[attr-defined]
        self._note_untemplated(untemplated)

    def aggregate_groups(self, groups: list[LogGroup], now: int | None = None) -> None:
        """`aggregate` for a batch of Python records (`pipeline.pdata.logrecords`)."""
        if now is None:
            now = self.clock()
        sset = self.series
        cache = sset.cache
        with_sev = self.config.severity_dimension
        untemplated = 0
        self._py = True
        try:
            for g in groups:
                svc = g.resource.get("service.name")
                svc = label_text(svc) if svc is not None else ""
                for rec in g.records:
                    attrs = rec.attributes
                    tid_v = attrs.get("log.template_id")
                    sev = severity_of(rec.severity_number, rec.severity_text) \
                        if with_sev else ""
                    if tid_v is None:
                        untemplated += 1
                        tid = NO_TEMPLATE
                        self._tmpl = ""
                    else:
                        tid = label_text(tid_v)[:MAX_ID_CHARS]
                        tmpl_v = attrs.get("log.template")
                        self._tmpl = label_text(tmpl_v)[:MAX_TEMPLATE_CHARS] \
                            if tmpl_v is not None else ""
                        self._see(svc, tid, rec, now, self._tmpl)
                    key = (svc, tid, sev)
                    s = cache.get(key)
                    if s is None:
                        s = sset.resolve(key, _identity, self._describe)
                    s.add(1)  # type: ignore[attr-defined]
        finally:
            self._py = False
        self._note_untemplated(untemplated)

    def _note_untemplated(self, untemplated: int) -> None:
        if untemplated:
            self._untemplated.inc(untemplated)
            if not self._warned_untemplated:
                self._warned_untemplated = True
                self.logger.warning(
                    "log records without log.template_id: put the logstruct processor with "
                    "templates: {enabled: true} before this connector; counting them under "
                    "log.template_id=none")

    def _describe(self, key: Hashable) -> tuple[Attrs, Attrs]:
        parts: tuple[str, str, str] = key  # type: ignore[assignment]
        svc, tid, sev = parts
        attrs: list[tuple[str, Any]] = [("log.template_id", tid)]
        if tid != NO_TEMPLATE:
            attrs.append(("log.template", self._tmpl))
        if sev:
            attrs.append(("severity_text", sev))
        if svc:
            attrs.append(("service.name", svc))
        return tuple(attrs), ((("service.name", svc),) if svc else ())

    def _see(self, svc: str, tid: str, rec: Any, now: int, tmpl_raw: bytes | str) -> None:
        key = (svc, tid)
        p = self.patterns.get(key)
        if p is None:
            self._new_pattern(key, rec, now, tmpl_raw)
            return
        p.count += 1
        if tmpl_raw != p.template_raw and tmpl_raw:
            # The miner generalised the template (same id): show its latest text.
            p.template_raw = tmpl_raw
            p.template = self._tmpl
            self._relabel = True
        if p.last_seen != now:
            if self.reappear_ns and now - p.last_seen >= self.reappear_ns:
                p.template = self._tmpl or p.template
                self._event("reappeared", p, now)
            p.last_seen = now
            self.patterns.move_to_end(key)
        if now // self.window_ns != p.bucket:
            self._roll(p, now)
        p.window_count += 1

    def _new_pattern(self, key: tuple[str, str], rec: Any, now: int,
                     tmpl_raw: bytes | str) -> None:
        body = _value_text(rec.body) if self._py else _body_text(rec.body)
        line = body.split("\n", 1)[0][:self.config.first_line_max]
        p = Pattern(key[0], key[1], self._tmpl, line, now, now, count=1,
                    bucket=now // self.window_ns, window_count=1,
                    history=deque(maxlen=self.n_baseline), template_raw=tmpl_raw)
        self.patterns[key] = p
        if len(self.patterns) > self.config.max_patterns:
            old_key, _ = self.patterns.popitem(last=False)
            self.alerts.pop(old_key, None)
            self._evicted.inc()
        if now - self.started_at >= self.warmup_ns:
            self._event("new", p, now)

    def _roll(self, p: Pattern, now: int) -> None:
        """Close the windows of `p` up to now's window, judging each closed one against
        the `n_baseline` windows before it (only when the pattern was known for all of
        them). Silent windows count 0 (a pattern that stopped is a drop)."""
        b = now // self.window_ns
        if b <= p.bucket:
            return
        n = self.n_baseline
        wns = self.window_ns
        judge = self.config.rate_change.enabled
        w = p.bucket
        count = p.window_count
        last = min(b, w + n + 1)  # beyond that the history is all silent windows
        while w < last:
            if judge and len(p.history) == n and p.first_seen <= (w - n) * wns:
                self._judge(p, count, sum(p.history) / n, now)
            p.history.append(count)
            w += 1
            count = 0
        if w < b:
            p.rate_state = "normal"  # silent for the whole baseline: 0 vs 0 is normal
        p.bucket = b
        p.window_count = 0

    def _judge(self, p: Pattern, count: int, base: float, now: int) -> None:
        rc = self.config.rate_change
        if count >= rc.min_count and count > rc.factor * base:
            state = "up"
        elif base >= rc.min_count and count * rc.factor < base:
            state = "down"
        else:
            p.rate_state = "normal"
            return
        previous, p.rate_state = p.rate_state, state
        if previous == "normal":
            # Once changed, the next event waits for a window back within the factor: a
            # burst is one event, not "up" then "down" when its window inflates the
            # baseline of the quiet windows after it.
            self._event("rate_change", p, now, window_count=count, baseline_count=base,
                        direction=state)

    def _event(self, kind: EventKind, p: Pattern, now: int, **extra: Any) -> None:
        ev = PatternEvent(kind, now, p.service, p.template_id, p.template, p.first_line,
                          p.count, **extra)
        self._events[kind].inc()
        self.recent.append(ev)
        self.pending.append(ev)
        al = self.config.alerts
        if al.enabled and kind in al.kinds:
            self.alerts[(p.service, p.template_id)] = ev

    # --- output ---------------------------------------------------------------

    def relabel(self) -> None:
        """Series whose pattern's template text changed since they were made get the
        latest text (a new label set in Prometheus, with the count carried on)."""
        self._relabel = False
        for key, s in self.series.series.items():
            parts: tuple[str, str, str] = key  # type: ignore[assignment]
            p = self.patterns.get((parts[0], parts[1]))
            if p is not None and len(s.attrs) > 1 and s.attrs[1][1] != p.template:
                attrs = list(s.attrs)
                attrs[1] = ("log.template", p.template)
                s.attrs = tuple(attrs)
                s.kvs = None

    async def flush(self) -> bool:
        if self._relabel:
            self.relabel()
        ok = await super().flush()
        await self.tick()
        return ok

    async def tick(self) -> None:
        """Roll silent patterns' windows, resolve due alerts, send events, save state."""
        now = self.clock()
        if self.config.rate_change.enabled:
            wb = now // self.window_ns
            for p in self.patterns.values():
                if p.bucket != wb:
                    self._roll(p, now)
        if self.alerts:
            due = now - int(self.config.alerts.resolve_after * 1e9)
            for key, ev in list(self.alerts.items()):
                if ev.at <= due:
                    del self.alerts[key]
                    res = PatternEvent("resolved", now, ev.service, ev.template_id, ev.template,
                                       ev.first_line, ev.count, alert_started=ev.at,
                                       alert_kind=ev.kind)
                    self._events["resolved"].inc()
                    self.pending.append(res)
        self._patterns_gauge.set(len(self.patterns))
        if self.pending:
            await self._send_events()
        if self.state is not None and now - self._last_save >= \
                self.config.state_save_interval * 1e9:
            await self.save_async()

    async def _send_events(self) -> None:
        if self.logs_out is None:
            self.pending.clear()
            return
        limit = self.config.max_pending_events
        if len(self.pending) > limit:
            dropped = len(self.pending) - limit
            self._dropped.inc(dropped)
            self.logger.error("dropping undelivered pattern events", extra={"dropped": dropped})
            del self.pending[:dropped]
        events = self.pending
        self.pending = []
        try:
            await self.logs_out.consume(Batch(Signal.LOGS, message=self.logs_request(events),
                                              items=len(events)))
        except RetryableError as exc:
            self.pending = events + self.pending
            self.logger.warning("pattern events refused; sending them again at the next "
                                "flush", extra={"error": str(exc), "events": len(events)})
        except PermanentError as exc:
            self._dropped.inc(len(events))
            self.logger.error("pattern events rejected", extra={"error": str(exc)})

    def logs_request(self, events: list[PatternEvent]) -> ExportLogsServiceRequest:
        req = ExportLogsServiceRequest()
        scopes: dict[str, Any] = {}
        alerting = self.config.alerts
        for ev in events:
            sl = scopes.get(ev.service)
            if sl is None:
                rl = req.resource_logs.add()
                if ev.service:
                    rl.resource.attributes.extend(
                        to_key_values((("service.name", ev.service),)))
                sl = scopes[ev.service] = rl.scope_logs.add()
                sl.scope.name = SCOPE
                sl.scope.version = __version__
            rec = sl.log_records.add()
            rec.time_unix_nano = rec.observed_time_unix_nano = ev.at
            resolved = ev.kind == "resolved"
            rec.severity_number = (SeverityNumber.SEVERITY_NUMBER_INFO if resolved
                                   else SeverityNumber.SEVERITY_NUMBER_WARN)
            rec.severity_text = "INFO" if resolved else "WARN"
            body = describe_event(ev)
            rec.body.string_value = body
            attrs: list[tuple[str, Any]] = [
                ("event.name", "log.pattern"), ("log.pattern.event", ev.kind),
                ("log.template_id", ev.template_id), ("log.template", ev.template),
                ("service.name", ev.service), ("log.pattern.first_line", ev.first_line),
                ("log.pattern.count", ev.count)]
            if ev.kind == "rate_change":
                attrs += [("log.pattern.rate.window_count", ev.window_count or 0),
                          ("log.pattern.rate.baseline_count", float(ev.baseline_count or 0)),
                          ("log.pattern.rate.factor", float(self.config.rate_change.factor)),
                          ("log.pattern.rate.direction", ev.direction or "")]
            if alerting.enabled and (resolved or ev.kind in alerting.kinds):
                started = ev.alert_started if resolved and ev.alert_started else ev.at
                attrs += [("slo.name", f"logpattern:{ev.service}:{ev.template_id}"),
                          ("alert.severity", alerting.severity),
                          ("alert.state", "resolved" if resolved else "firing"),
                          ("alert.windows", ev.alert_kind or ev.kind),
                          ("alert.summary", body),
                          ("alert.starts_at", _iso(started))]
                if resolved:
                    attrs.append(("alert.ends_at", _iso(ev.at)))
            rec.attributes.extend(to_key_values(tuple(attrs)))
        return req

    # --- read API (status page) -----------------------------------------------

    def pattern_status(self, window_s: float = 3600.0) -> dict[str, Any]:
        """Top patterns by count per service, and the events of the last `window_s`."""
        now = self.clock()
        by_service: dict[str, list[Pattern]] = collections.defaultdict(list)
        for p in self.patterns.values():
            by_service[p.service].append(p)
        top = {svc: [{"template_id": p.template_id, "template": p.template,
                      "count": p.count, "first_seen": p.first_seen / 1e9,
                      "last_seen": p.last_seen / 1e9, "first_line": p.first_line,
                      "rate_state": p.rate_state}
                     for p in heapq.nlargest(TOP_PER_SERVICE, ps, key=_count)]
               for svc, ps in sorted(by_service.items())}
        since = now - int(window_s * 1e9)
        recent = [ev for ev in self.recent if ev.at >= since]
        return {
            "connector": self.id, "patterns": len(self.patterns),
            "warming_up": now - self.started_at < self.warmup_ns,
            "warmup_ends": (self.started_at + self.warmup_ns) / 1e9,
            "top": top,
            "new": [_event_json(ev) for ev in reversed(recent)
                    if ev.kind in ("new", "reappeared")],
            "rate_changes": [_event_json(ev) for ev in reversed(recent)
                             if ev.kind == "rate_change"],
        }

    # --- state ----------------------------------------------------------------

    def dump_state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION, "saved_at": self.clock(), "started_at": self.started_at,
            "patterns": [[p.service, p.template_id, p.template, p.first_line, p.first_seen,
                          p.last_seen, p.count, p.bucket, p.window_count, list(p.history),
                          p.rate_state] for p in self.patterns.values()],
            "alerts": [ev.to_json() for ev in self.alerts.values()],
            "recent": [ev.to_json() for ev in self.recent],
        }

    async def save_async(self) -> None:
        """Save off the event loop (the file is written and fsynced in a thread)."""
        if self.state is None:
            return
        try:
            await asyncio.to_thread(self.state.save, self.dump_state())
            self._last_save = self.clock()
        except OSError as exc:
            self.logger.error("cannot save log pattern state",
                              extra={"path": str(self.state.path), "error": str(exc)})

    def save(self) -> None:
        if self.state is None:
            return
        try:
            self.state.save(self.dump_state())
            self._last_save = self.clock()
        except OSError as exc:
            self.logger.error("cannot save log pattern state",
                              extra={"path": str(self.state.path), "error": str(exc)})

    def _restore(self) -> None:
        assert self.state is not None
        try:
            state = self.state.load()
        except ValueError as exc:
            self.logger.error(str(exc).replace("SLO state", "log pattern state"))
            return
        if state is None:
            return
        try:
            self._load(state)
        except (KeyError, TypeError, ValueError) as exc:
            self.patterns.clear()
            self.alerts.clear()
            self.recent.clear()
            self.started_at = self.clock()
            self.logger.error("log pattern state unusable; starting afresh",
                              extra={"path": str(self.state.path), "error": repr(exc)})
            return
        self.logger.info("log pattern state restored", extra={
            "path": str(self.state.path), "patterns": len(self.patterns)})

    def _load(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"state version {state.get('version')!r}")
        self.started_at = int(state["started_at"])
        rows = state["patterns"][-self.config.max_patterns:]
        for (svc, tid, tmpl, line, first, last, count, bucket, wcount, hist,
             rstate) in rows:
            p = Pattern(str(svc), str(tid), str(tmpl), str(line), int(first), int(last),
                        int(count), int(bucket), int(wcount),
                        deque((int(h) for h in hist), maxlen=self.n_baseline), str(rstate))
            self.patterns[(p.service, p.template_id)] = p
        for d in state.get("alerts", []):
            ev = PatternEvent(**d)
            self.alerts[(ev.service, ev.template_id)] = ev
        for d in state.get("recent", []):
            self.recent.append(PatternEvent(**d))

    async def shutdown(self) -> None:
        try:
            await super().shutdown()
            await self.tick()
        finally:
            self.save()


def _create(settings: ConnectorCreateSettings, config: LogPatternsConfig
            ) -> LogPatternsConnector:
    return LogPatternsConnector(settings, config)


factory = Factory(type="logpatterns", kind=Kind.CONNECTOR, config_model=LogPatternsConfig,
                  create=_create,
                  connector_pairs=frozenset({(Signal.LOGS, Signal.METRICS),
                                             (Signal.LOGS, Signal.LOGS)}),
                  runs_once=lambda config: True,  # sees every record
                  description="log pattern counts, and events on new, reappearing and "
                              "rate-changing patterns (from logstruct templates)")
