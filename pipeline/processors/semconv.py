"""`semconv` processor: upgrades deprecated semantic-convention attribute names to the
stable ones, on spans, span events, log records, metric data points and resources.

```yaml
processors:
  semconv:
    mode: upgrade          # rename (default); duplicate: add the stable names, keep the old
    groups: [http, url, network, db, rpc, messaging, resource]   # default: all
```

An app instrumented with an older convention (e.g. Flask under
`opentelemetry-instrument` without `OTEL_SEMCONV_STABILITY_OPT_IN=http`) sends
`http.method`, `http.status_code`, `http.target`, `net.peer.ip` …; after this
processor its spans carry `http.request.method`, `http.response.status_code`,
`url.path` + `url.query`, `client.address` … as if it had opted in. The table
(`pipeline.pdata.semconv.RULES`) follows the semantic-conventions migration guides;
`upgrade` is the guides' `http` opt-in, `duplicate` their `http/dup`. When both
names are present the stable one wins (`upgrade` drops the old one).

Cost: a batch is first read through a projection that keeps only attribute keys
(serialized KeyValues, values not decoded) and span kinds; each item's keys are
checked against the set of old names. Only items that have one are rewritten, in
the decoded request; a batch without any keeps its bytes (no decode, no
re-encode downstream). See docs/processors.md for measured costs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from google.protobuf.message import DecodeError
from pydantic import Field, field_validator

from pipeline.component import (
    Component,
    ComponentConfig,
    Consumer,
    Factory,
    Kind,
    ProcessorCreateSettings,
    Signal,
)
from pipeline.errors import PermanentError
from pipeline.pdata.batch import Batch
from pipeline.pdata.logrecords import LogGroup
from pipeline.pdata.projection import build_projection
from pipeline.pdata.semconv import ANY, GROUPS, Group, Upgrader, kind_category

# Attribute keys only: KeyValues stay serialized (`repeated bytes`), values are skipped.
_P = build_projection("otelpipe_semconv.proto", {
    "Resource": [("attributes", 1, "repeated bytes")],
    "Event": [("attributes", 3, "repeated bytes")],
    "Span": [("kind", 6, "int32"), ("attributes", 9, "repeated bytes"),
             ("events", 11, "repeated Event")],
    "ScopeSpans": [("spans", 2, "repeated Span")],
    "ResourceSpans": [("resource", 1, "Resource"), ("scopes", 2, "repeated ScopeSpans")],
    "TracesRequest": [("resources", 1, "repeated ResourceSpans")],
    "LogRecord": [("attributes", 6, "repeated bytes")],
    "ScopeLogs": [("records", 2, "repeated LogRecord")],
    "ResourceLogs": [("resource", 1, "Resource"), ("scopes", 2, "repeated ScopeLogs")],
    "LogsRequest": [("resources", 1, "repeated ResourceLogs")],
    "NumberPoint": [("attributes", 7, "repeated bytes")],
    "HistogramPoint": [("attributes", 9, "repeated bytes")],
    "ExpHistogramPoint": [("attributes", 1, "repeated bytes")],
    "Numbers": [("points", 1, "repeated NumberPoint")],
    "Histograms": [("points", 1, "repeated HistogramPoint")],
    "ExpHistograms": [("points", 1, "repeated ExpHistogramPoint")],
    "Metric": [("gauge", 5, "Numbers"), ("sum", 7, "Numbers"), ("histogram", 9, "Histograms"),
               ("exponential_histogram", 10, "ExpHistograms"), ("summary", 11, "Numbers")],
    "ScopeMetrics": [("metrics", 2, "repeated Metric")],
    "ResourceMetrics": [("resource", 1, "Resource"), ("scopes", 2, "repeated ScopeMetrics")],
    "MetricsRequest": [("resources", 1, "repeated ResourceMetrics")],
})
_REQUESTS = {Signal.TRACES: _P["TracesRequest"], Signal.LOGS: _P["LogsRequest"],
             Signal.METRICS: _P["MetricsRequest"]}
_METRIC_KINDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")

Path = tuple[int, ...]
"""Where an item with old names is: (resource,) for a resource; (resource, scope, item)
for a span, log record or metric; (resource, scope, span, event) for a span event and
(resource, scope, metric, point) for a data point."""


class SemconvConfig(ComponentConfig):
    mode: Literal["upgrade", "duplicate"] = Field(
        "upgrade", description="upgrade: rename deprecated attributes (the stable name wins "
        "when both exist); duplicate: add the stable names and keep the old ones")
    groups: list[Group] = Field(
        default_factory=lambda: list(GROUPS),
        description="convention groups to upgrade: http, url, network, db, rpc, messaging, "
                    "resource")

    @field_validator("groups")
    @classmethod
    def _groups(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("name at least one group")
        if len(set(v)) != len(v):
            raise ValueError("a group is listed twice")
        return v


def _has_old(attrs: Iterable[bytes], old: frozenset[bytes]) -> bool:
    """True if a serialized KeyValue's key is one of `old` (keys under 128 bytes:
    tag 0x0a, one length byte, the key; anything else cannot be an old name)."""
    try:
        for kv in attrs:
            if kv[2:2 + kv[1]] in old:
                return True
    except IndexError:  # an empty KeyValue: let the decoded request decide
        return True
    return False


class SemconvProcessor(Component, Consumer):
    def __init__(self, settings: ProcessorCreateSettings, config: SemconvConfig):
        self.next = settings.next_consumer
        self.signal = settings.signal
        self.upgrader = Upgrader(config.groups, config.mode)
        self.old = frozenset(n.encode() for n in self.upgrader.old_names)
        self.projection = _REQUESTS[self.signal]

    async def consume(self, batch: Batch) -> None:
        self.apply(batch)
        await self.next.consume(batch)

    def apply(self, batch: Batch) -> int:
        """Upgrade the batch in place; the number of items (resources included) changed."""
        if batch.logs is not None:
            return self._records(batch)
        try:
            req = self.projection.FromString(batch.to_bytes())
        except DecodeError as exc:
            raise PermanentError(f"undecodable {self.signal} request: {exc}") from exc
        if self.signal is Signal.TRACES:
            paths = self._span_paths(req)
        elif self.signal is Signal.LOGS:
            paths = self._log_paths(req)
        else:
            paths = self._point_paths(req)
        if not paths:
            return 0
        msg = batch.mutable()
        changed = 0
        for path, kind in paths:
            changed += self.upgrader.upgrade_kvs(self._attributes(msg, path), kind)
        return changed

    # Finding the items with old names (projection: keys only) -------------------------

    def _span_paths(self, req: Any) -> list[tuple[Path, int]]:
        old = self.old
        out: list[tuple[Path, int]] = []
        for ri, rs in enumerate(req.resources):
            if _has_old(rs.resource.attributes, old):
                out.append(((ri,), ANY))
            for si, scope in enumerate(rs.scopes):
                for pi, sp in enumerate(scope.spans):
                    kind = -1
                    if _has_old(sp.attributes, old):
                        kind = kind_category(sp.kind)
                        out.append(((ri, si, pi), kind))
                    if sp.events:
                        for ei, ev in enumerate(sp.events):
                            if _has_old(ev.attributes, old):
                                if kind < 0:
                                    kind = kind_category(sp.kind)
                                out.append(((ri, si, pi, ei), kind))
        return out

    def _log_paths(self, req: Any) -> list[tuple[Path, int]]:
        old = self.old
        out: list[tuple[Path, int]] = []
        for ri, rl in enumerate(req.resources):
            if _has_old(rl.resource.attributes, old):
                out.append(((ri,), ANY))
            for si, scope in enumerate(rl.scopes):
                for li, rec in enumerate(scope.records):
                    if _has_old(rec.attributes, old):
                        out.append(((ri, si, li), ANY))
        return out

    def _point_paths(self, req: Any) -> list[tuple[Path, int]]:
        old = self.old
        out: list[tuple[Path, int]] = []
        for ri, rm in enumerate(req.resources):
            if _has_old(rm.resource.attributes, old):
                out.append(((ri,), ANY))
            for si, scope in enumerate(rm.scopes):
                for mi, m in enumerate(scope.metrics):
                    for name in _METRIC_KINDS:
                        if m.HasField(name):
                            for di, dp in enumerate(getattr(m, name).points):
                                if _has_old(dp.attributes, old):
                                    out.append(((ri, si, mi, di), ANY))
        return out

    def _attributes(self, msg: Any, path: Path) -> Any:
        """The repeated KeyValue field of the item at `path` in the decoded request."""
        signal = self.signal
        if signal is Signal.TRACES:
            res = msg.resource_spans[path[0]]
            if len(path) == 1:
                return res.resource.attributes
            sp = res.scope_spans[path[1]].spans[path[2]]
            return sp.attributes if len(path) == 3 else sp.events[path[3]].attributes
        if signal is Signal.LOGS:
            res = msg.resource_logs[path[0]]
            if len(path) == 1:
                return res.resource.attributes
            return res.scope_logs[path[1]].log_records[path[2]].attributes
        res = msg.resource_metrics[path[0]]
        if len(path) == 1:
            return res.resource.attributes
        metric = res.scope_metrics[path[1]].metrics[path[2]]
        data = getattr(metric, metric.WhichOneof("data"))
        return data.data_points[path[3]].attributes

    # Log records held as Python objects -------------------------------------------------

    def _records(self, batch: Batch) -> int:
        groups = batch.logs
        assert groups is not None
        old = self.upgrader.old_names
        todo = [g for g in groups if not old.isdisjoint(g.resource) or _group_has_old(g, old)]
        if not todo:
            return 0
        batch.mutable_logs()
        up = self.upgrader
        changed = 0
        for g in todo:
            changed += up.upgrade_dict(g.resource)
            for r in g.records:
                changed += up.upgrade_dict(r.attributes)
        return changed


def _group_has_old(g: LogGroup, old: frozenset[str]) -> bool:
    if g.materialized:
        return any(not old.isdisjoint(r.attributes) for r in g.records)
    if not old.isdisjoint(g.line_attributes):
        return True
    extras = g.extras
    return extras is not None and any(e and not old.isdisjoint(e) for e in extras)


def _create(settings: ProcessorCreateSettings, config: SemconvConfig) -> SemconvProcessor:
    return SemconvProcessor(settings, config)


factory = Factory(type="semconv", kind=Kind.PROCESSOR, config_model=SemconvConfig,
                  create=_create, signals=frozenset(Signal),
                  description="upgrade deprecated semantic-convention attribute names "
                              "(http.method, net.peer.name, db.statement …) to the stable ones")
