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

Cost: a batch is first read through a projection that keeps attributes as
serialized KeyValues (values not decoded) and span kinds; each item's keys are
sliced out of those bytes and checked against the set of old names. A batch
without any keeps its bytes (no decode, no re-encode downstream). Otherwise the
new attribute list of each such item is built from the serialized KeyValues
(a rename puts a new key field in front of the old value bytes) and parsed back
into the decoded request in one call. See docs/processors.md for measured costs.
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
from pipeline.pdata.semconv import ANY, GROUPS, Group, Upgrader, kind_category
from pipeline.pdata.wire import SMALL_VARINTS, varint
from pipeline.proto.otelpipe import semconv_pb2

# proto/otelpipe/semconv.proto: attribute keys only (KeyValues stay serialized,
# values are skipped).
_REQUESTS: dict[Signal, Any] = {
    Signal.TRACES: semconv_pb2.TracesRequest, Signal.LOGS: semconv_pb2.LogsRequest,
    Signal.METRICS: semconv_pb2.MetricsRequest}
_METRIC_KINDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")
# Tag of the `attributes` field of each data point type (field 7, 7, 9, 1, 7).
_POINT_TAGS = {"gauge": b"\x3a", "sum": b"\x3a", "histogram": b"\x4a",
               "exponential_histogram": b"\x0a", "summary": b"\x3a"}

Path = tuple[int, ...]
"""Where an item with old names is: (resource,) for a resource; (resource, scope, item)
for a span, log record or metric; (resource, scope, span, event) for a span event and
(resource, scope, metric, point) for a data point."""
Found = tuple[Path, int, Any]
"""(path, kind category, the item's serialized KeyValues)."""


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
            found = self._spans(req)
        elif self.signal is Signal.LOGS:
            found = self._logs(req)
        else:
            found = self._points(req)
        upgrade = self.upgrader.upgrade_serialized
        todo: list[tuple[Path, list[bytes]]] = []
        for path, kind, kvs in found:
            new = upgrade(list(kvs), kind)
            if new is not None:
                todo.append((path, new))
        if not todo:
            return 0
        msg = batch.mutable()
        small = SMALL_VARINTS
        for path, new in todo:
            item, tag = self._item(msg, path)
            item.ClearField("attributes")
            item.MergeFromString(b"".join([
                tag + (small[n] if (n := len(kv)) < 0x80 else varint(n)) + kv for kv in new]))
        return len(todo)

    # Finding the items with old names (projection: keys only) -------------------------

    def _spans(self, req: Any) -> list[Found]:
        old = self.old
        out: list[Found] = []
        for ri, rs in enumerate(req.resources):
            attrs = rs.resource.attributes
            if _has_old(attrs, old):
                out.append(((ri,), ANY, attrs))
            for si, scope in enumerate(rs.scopes):
                for pi, sp in enumerate(scope.spans):
                    attrs = sp.attributes
                    if _has_old(attrs, old):
                        out.append(((ri, si, pi), kind_category(sp.kind), attrs))
                    if sp.events:
                        for ei, ev in enumerate(sp.events):
                            attrs = ev.attributes
                            if _has_old(attrs, old):
                                out.append(((ri, si, pi, ei), kind_category(sp.kind), attrs))
        return out

    def _logs(self, req: Any) -> list[Found]:
        old = self.old
        out: list[Found] = []
        for ri, rl in enumerate(req.resources):
            attrs = rl.resource.attributes
            if _has_old(attrs, old):
                out.append(((ri,), ANY, attrs))
            for si, scope in enumerate(rl.scopes):
                for li, rec in enumerate(scope.records):
                    attrs = rec.attributes
                    if _has_old(attrs, old):
                        out.append(((ri, si, li), ANY, attrs))
        return out

    def _points(self, req: Any) -> list[Found]:
        old = self.old
        out: list[Found] = []
        for ri, rm in enumerate(req.resources):
            attrs = rm.resource.attributes
            if _has_old(attrs, old):
                out.append(((ri,), ANY, attrs))
            for si, scope in enumerate(rm.scopes):
                for mi, m in enumerate(scope.metrics):
                    for name in _METRIC_KINDS:
                        if m.HasField(name):
                            for di, dp in enumerate(getattr(m, name).points):
                                attrs = dp.attributes
                                if _has_old(attrs, old):
                                    out.append(((ri, si, mi, di), ANY, attrs))
        return out

    def _item(self, msg: Any, path: Path) -> tuple[Any, bytes]:
        """The item at `path` in the decoded request and the tag of its attributes field."""
        signal = self.signal
        if signal is Signal.TRACES:
            res = msg.resource_spans[path[0]]
            if len(path) == 1:
                return res.resource, b"\x0a"
            sp = res.scope_spans[path[1]].spans[path[2]]
            return (sp, b"\x4a") if len(path) == 3 else (sp.events[path[3]], b"\x1a")
        if signal is Signal.LOGS:
            res = msg.resource_logs[path[0]]
            if len(path) == 1:
                return res.resource, b"\x0a"
            return res.scope_logs[path[1]].log_records[path[2]], b"\x32"
        res = msg.resource_metrics[path[0]]
        if len(path) == 1:
            return res.resource, b"\x0a"
        metric = res.scope_metrics[path[1]].metrics[path[2]]
        kind = metric.WhichOneof("data")
        return getattr(metric, kind).data_points[path[3]], _POINT_TAGS[kind]

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
