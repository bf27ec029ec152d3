"""`filter` processor: drops spans, log records and metric data points by condition.

```yaml
processors:
  filter/noise:
    logs:
      exclude:                                   # drop records matching any of these
        - {not: {severity_at_least: INFO}}       # DEBUG and TRACE
        - {field: body, matches: '^GET /healthz'}
    traces:
      exclude:
        - {all: [{field: kind, equals: server}, {attribute: http.route, in: [/healthz, /ready]}]}
        - {all: [{field: name, matches: '^SELECT'}, {field: duration_ms, lt: 1}]}
    metrics:
      include:                                   # keep only data points matching one of these
        - {field: name, matches: '^http\\.server\\.'}
      exclude:
        - {attribute: env, equals: test}
```

Conditions are the `logmetrics` connector's (`pipeline.pdata.conditions.
Condition`): a selector — `attribute: KEY` (the item's attribute, else its
resource's), `resource_attribute: KEY` or `field: NAME` — with `equals`,
`not_equals`, `in`, `matches` (regex, searched), `exists`, `gt`/`gte`/`lt`/`lte`;
`severity_at_least` (logs); `all`, `any`, `not`. Fields per signal:

- logs: `body`, `severity_text`, `event_name` (and `severity_at_least`);
- traces: `name`, `kind` (`server`, `client`, `internal`, `producer`,
  `consumer`, `unspecified`), `status_code` (`unset`, `ok`, `error`),
  `status_message`, `duration_ms`;
- metrics: `name`, `type` (`gauge`, `sum`, `histogram`,
  `exponential_histogram`, `summary`), `unit` of the metric; attributes are
  the data point's. Conditions are evaluated per data point; a metric left
  without data points is removed.

Semantics (as the Collector's filter processor): with `include`, an item is
kept only if it matches at least one include condition; then an item matching
any `exclude` condition is dropped. A signal without a section passes
untouched. Resources and scopes left empty are removed; a batch left empty is
not forwarded (the sender is answered with success). Dropped items are counted
in `otelpipe_processor_dropped_items_total`.

Cost: conditions read only the attributes they name (one pass over an item's
attributes, a dict lookup per key), and only if some condition reads an
attribute. A batch from which nothing is dropped is forwarded as the bytes it
arrived in (decoded to evaluate, never re-encoded).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field, field_validator, model_validator

from pipeline.component import (
    Component,
    ComponentConfig,
    Consumer,
    Factory,
    Kind,
    ProcessorCreateSettings,
    Signal,
)
from pipeline.pdata.anyvalue import any_value_to_python
from pipeline.pdata.batch import Batch
from pipeline.pdata.conditions import Condition, ConditionCompiler, Predicate
from pipeline.processors._otlp import data_points, resources
from pipeline.telemetry.metrics import CounterSpec

DROPPED = CounterSpec(
    "otelpipe_processor_dropped_items",
    "Items a processor dropped on purpose (filter).", ("processor", "pipeline", "signal"))

_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
_STATUS = ("unset", "ok", "error")

FIELDS: dict[Signal, dict[str, Callable[[Any], Any]]] = {
    Signal.LOGS: {
        "body": lambda r: any_value_to_python(r.body) if r.HasField("body") else None,
        "severity_text": lambda r: r.severity_text or None,
        "event_name": lambda r: r.event_name or None,
    },
    Signal.TRACES: {
        "name": lambda s: s.name,
        "kind": lambda s: _KINDS[s.kind] if 0 <= s.kind < len(_KINDS) else str(s.kind),
        "status_code": lambda s: _STATUS[s.status.code] if 0 <= s.status.code < 3
        else str(s.status.code),
        "status_message": lambda s: s.status.message or None,
        "duration_ms": lambda s: (s.end_time_unix_nano - s.start_time_unix_nano) / 1e6
        if s.end_time_unix_nano >= s.start_time_unix_nano else None,
    },
    Signal.METRICS: {
        "name": lambda m: m.name,
        "type": lambda m: m.WhichOneof("data"),
        "unit": lambda m: m.unit or None,
    },
}


def _conditions(v: Any) -> Any:
    # One condition may be written without the list.
    return [v] if isinstance(v, dict) else v


class SignalFilter(ComponentConfig):
    include: list[Condition] | None = Field(
        None, description="keep only items matching at least one of these")
    exclude: list[Condition] = Field(
        default_factory=list, description="drop items matching any of these")

    @field_validator("include", "exclude", mode="before")
    @classmethod
    def _one(cls, v: Any) -> Any:
        return _conditions(v)

    def check(self, signal: Signal) -> None:
        for c in [*(self.include or ()), *self.exclude]:
            unknown = c.fields_used() - set(FIELDS[signal])
            if unknown:
                raise ValueError(f"{signal.value}: field {sorted(unknown)[0]!r} does not exist "
                                 f"for {signal.value} (use {', '.join(FIELDS[signal])})")
            if signal is not Signal.LOGS and c.uses_severity():
                raise ValueError(f"{signal.value}: severity_at_least applies to logs only")


class FilterConfig(ComponentConfig):
    logs: SignalFilter | None = None
    traces: SignalFilter | None = None
    metrics: SignalFilter | None = None

    @model_validator(mode="after")
    def _fields(self) -> FilterConfig:
        for signal in Signal:
            section = getattr(self, signal.value)
            if section is not None:
                section.check(signal)
        return self


class CompiledFilter:
    """The include/exclude predicates of one signal, and the attribute slots they read."""

    def __init__(self, signal: Signal, cfg: SignalFilter):
        self.signal = signal
        slots: dict[str, int] = {}
        resource_slots: dict[str, int] = {}
        compiler = ConditionCompiler(slots, resource_slots, fields=FIELDS[signal])
        self.include: list[Predicate] | None = \
            [compiler.compile(c) for c in cfg.include] if cfg.include is not None else None
        self.exclude: list[Predicate] = [compiler.compile(c) for c in cfg.exclude]
        self.slots = slots
        self.n = len(slots)
        self.resource_slots = resource_slots

    def keep(self, vals: list[Any], item: Any) -> bool:
        inc = self.include
        if inc is not None:
            for p in inc:
                if p(vals, item):
                    break
            else:
                return False
        for p in self.exclude:  # noqa: SIM110 - a plain loop: no generator per item
            if p(vals, item):
                return False
        return True

    def base(self, resource_attrs: Any) -> list[Any]:
        """Slot values from the resource: fallbacks for `attribute:`, then the list of
        `resource_attribute:` values as the last element."""
        slots = self.slots
        rslots = self.resource_slots
        vals: list[Any] = [None] * self.n
        rvals: list[Any] = [None] * len(rslots)
        if slots or rslots:
            for kv in resource_attrs:
                key = kv.key
                s = slots.get(key)
                r = rslots.get(key)
                if s is not None or r is not None:
                    v = any_value_to_python(kv.value)
                    if s is not None:
                        vals[s] = v
                    if r is not None:
                        rvals[r] = v
        vals.append(rvals)
        return vals

    def values(self, base: list[Any], attrs: Any) -> list[Any]:
        if not self.n:
            return base
        vals = base.copy()
        slots = self.slots
        for kv in attrs:
            s = slots.get(kv.key)
            if s is not None:
                vals[s] = any_value_to_python(kv.value)
        return vals


class FilterProcessor(Component, Consumer):
    def __init__(self, settings: ProcessorCreateSettings, config: FilterConfig):
        self.next = settings.next_consumer
        self.signal = settings.signal
        section: SignalFilter | None = getattr(config, self.signal.value)
        self.filter = CompiledFilter(self.signal, section) if section is not None and (
            section.include is not None or section.exclude) else None
        self._dropped = settings.telemetry.counter(DROPPED).labels(
            str(settings.id), settings.pipeline_id, self.signal.value)

    async def consume(self, batch: Batch) -> None:
        if self.filter is not None:
            dropped, empty = self.apply(batch)
            if dropped:
                self._dropped.inc(dropped)
            if empty:
                return
        await self.next.consume(batch)

    def apply(self, batch: Batch) -> tuple[int, bool]:
        """Drop what the conditions say; (items dropped, whether nothing is left)."""
        f = self.filter
        assert f is not None
        signal = self.signal
        # Decide on the (read-only) decoded request; edit only if something goes.
        drops = self._drops(f, batch.message)
        if not drops:
            return 0, False
        request = batch.mutable()
        dropped = 0
        res_list = resources(signal, request)
        for ri, scopes in drops.items():
            res = res_list[ri]
            scope_list = (res.scope_spans if signal is Signal.TRACES else
                          res.scope_logs if signal is Signal.LOGS else res.scope_metrics)
            for si, doomed in scopes.items():
                scope = scope_list[si]
                if signal is Signal.METRICS:
                    metrics = scope.metrics
                    for mi, points in doomed:
                        dps = data_points(metrics[mi])
                        for pi in reversed(points):
                            del dps[pi]
                        dropped += len(points)
                    for mi in range(len(metrics) - 1, -1, -1):
                        if not len(data_points(metrics[mi])):
                            del metrics[mi]
                else:
                    lst = scope.spans if signal is Signal.TRACES else scope.log_records
                    for i in reversed(doomed):
                        del lst[i]
                    dropped += len(doomed)
            for si in range(len(scope_list) - 1, -1, -1):
                sc = scope_list[si]
                n = len(sc.spans) if signal is Signal.TRACES else len(sc.log_records) \
                    if signal is Signal.LOGS else len(sc.metrics)
                if not n:
                    del scope_list[si]
        for ri in range(len(res_list) - 1, -1, -1):
            r = res_list[ri]
            n = len(r.scope_spans) if signal is Signal.TRACES else len(r.scope_logs) \
                if signal is Signal.LOGS else len(r.scope_metrics)
            if not n:
                del res_list[ri]
        return dropped, not len(res_list)

    def _drops(self, f: CompiledFilter, request: Any) -> dict[int, dict[int, Any]]:
        """{resource index: {scope index: item indices (metrics: [(metric, [points])])}}."""
        out: dict[int, dict[int, Any]] = {}
        signal = self.signal
        keep = f.keep
        values = f.values
        for ri, res in enumerate(resources(signal, request)):
            base = f.base(res.resource.attributes)
            scopes: dict[int, Any] = {}
            if signal is Signal.METRICS:
                for si, sm in enumerate(res.scope_metrics):
                    doomed_m = []
                    for mi, m in enumerate(sm.metrics):
                        dps = data_points(m)
                        if not f.n:  # nothing per point: one decision per metric
                            points = [] if keep(base, m) else list(range(len(dps)))
                        else:
                            points = [pi for pi, dp in enumerate(dps)
                                      if not keep(values(base, dp.attributes), m)]
                        if points:
                            doomed_m.append((mi, points))
                    if doomed_m:
                        scopes[si] = doomed_m
            else:
                scope_list = res.scope_spans if signal is Signal.TRACES else res.scope_logs
                for si, sc in enumerate(scope_list):
                    lst = sc.spans if signal is Signal.TRACES else sc.log_records
                    doomed = [i for i, it in enumerate(lst)
                              if not keep(values(base, it.attributes), it)]
                    if doomed:
                        scopes[si] = doomed
            if scopes:
                out[ri] = scopes
        return out


def _create(settings: ProcessorCreateSettings, config: FilterConfig) -> FilterProcessor:
    return FilterProcessor(settings, config)


factory = Factory(type="filter", kind=Kind.PROCESSOR, config_model=FilterConfig,
                  create=_create, signals=frozenset(Signal),
                  description="drops spans, log records and data points by condition "
                              "(include/exclude)")
