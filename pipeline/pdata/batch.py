"""A batch of one signal that keeps the bytes it arrived as and decodes lazily."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.component import Signal
from pipeline.pdata.logrecords import LogGroup, encode_groups
from pipeline.pdata.otlp import REQUEST_TYPES, count_items


class Batch:
    """One OTLP export request (traces, logs or metrics).

    `raw` is kept while nothing changes the data, so pass-through routes
    (OTLP in, Kafka out) never decode or re-encode. Call `mutable()` before
    changing the message: that drops the cached bytes.

    A logs batch may instead hold Python records (`logs`: a list of
    `LogGroup`, see pdata/logrecords.py), as receivers of text logs create
    them. They are then the data; `to_bytes()` and `message` encode them on
    demand (cached until `mutable_logs()` or `mutable()`), so components that
    only know OTLP work unchanged. `mutable()` turns such a batch into an OTLP
    one for good; `mutable_logs()` is the cheap way to change records.
    """

    __slots__ = ("_items", "_logs", "_message", "_raw", "metadata", "signal")

    def __init__(
        self,
        signal: Signal,
        *,
        raw: bytes | None = None,
        message: Any = None,
        logs: list[LogGroup] | None = None,
        items: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ):
        if raw is None and message is None and logs is None:
            raise ValueError("a batch needs raw bytes or a message (or log records)")
        if logs is not None and signal is not Signal.LOGS:
            raise ValueError("log records make a logs batch")
        self.signal = signal
        self._raw = raw
        self._message = message
        self._logs = logs
        self._items = items
        # Client metadata (e.g. selected request headers) travelling with the data.
        self.metadata: Mapping[str, str] = metadata or {}

    @property
    def message(self) -> Any:
        """The decoded request; treat as read-only (see `mutable`)."""
        if self._message is None:
            msg = REQUEST_TYPES[self.signal]()
            msg.ParseFromString(self.to_bytes())
            self._message = msg
        return self._message

    def mutable(self) -> Any:
        """The decoded request, for changing it; the cached bytes become stale.

        A batch of log records becomes an OTLP batch (its records are dropped)."""
        msg = self.message
        self._raw = None
        self._logs = None
        self._items = None
        return msg

    @property
    def logs(self) -> list[LogGroup] | None:
        """The log record groups of a records batch (treat as read-only), else None."""
        return self._logs

    def mutable_logs(self) -> list[LogGroup] | None:
        """The log record groups, for changing records in place (the item count must
        stay: add or remove records only through a new batch); None for an OTLP batch."""
        if self._logs is not None:
            self._raw = None
            self._message = None
        return self._logs

    @property
    def decoded(self) -> bool:
        return self._message is not None

    @property
    def has_raw(self) -> bool:
        return self._raw is not None

    def copy(self) -> Batch:
        """A batch over the same data that can be changed independently."""
        if self._logs is not None:
            return Batch(self.signal, logs=[g.copy() for g in self._logs],
                         metadata=self.metadata)
        return Batch(self.signal, raw=self.to_bytes(), items=self._items, metadata=self.metadata)

    def to_bytes(self) -> bytes:
        if self._raw is None:
            if self._logs is not None:
                self._raw = encode_groups(self._logs)
            else:
                self._raw = self._message.SerializeToString()
        return self._raw

    @property
    def items(self) -> int:
        """Number of spans, log records or data points."""
        if self._logs is not None:
            return sum(map(len, self._logs))
        if self._items is None:
            self._items = count_items(self.signal, self.to_bytes())
        return self._items

    def __len__(self) -> int:
        return self.items

    def __repr__(self) -> str:
        return f"Batch({self.signal}, items={self.items})"

    @classmethod
    def merge(cls, batches: Iterable[Batch]) -> Batch:
        """One batch holding all items. Serialized OTLP requests concatenate:
        repeated fields of concatenated protobuf messages append."""
        batches = list(batches)
        if len(batches) == 1:
            return batches[0]
        signal = batches[0].signal
        # Keep the metadata every part agrees on (the batch processor's metadata_keys).
        first = batches[0].metadata
        metadata = {k: v for k, v in first.items()
                    if all(b.metadata.get(k) == v for b in batches[1:])}
        if all(b._logs is not None for b in batches):
            # Record batches: the groups concatenate (as ResourceLogs would on the wire).
            return cls(signal, logs=[g for b in batches for g in b._logs or ()],
                       metadata=metadata)
        raw = b"".join(b.to_bytes() for b in batches)
        return cls(signal, raw=raw, items=sum(b.items for b in batches), metadata=metadata)

    def split(self, max_items: int) -> list[Batch]:
        """Batches of at most `max_items` items (a span is never cut)."""
        if self.items <= max_items:
            return [self]
        if self._logs is not None:
            return [Batch(self.signal, logs=groups, metadata=self.metadata)
                    for groups in split_groups(self._logs, max_items)]
        return [Batch(self.signal, message=m, metadata=self.metadata)
                for m in split_request(self.signal, self.message, max_items)]


def split_groups(groups: list[LogGroup], max_items: int) -> list[list[LogGroup]]:
    """Record groups cut into lists of at most `max_items` records each (in order)."""
    out: list[list[LogGroup]] = []
    current: list[LogGroup] = []
    room = max_items
    for g in groups:
        n = len(g)
        if not n:
            continue
        if n <= room:
            current.append(g)
            room -= n
        else:
            recs = g.records
            i = 0
            while i < n:
                if room == 0:
                    out.append(current)
                    current, room = [], max_items
                take = min(room, n - i)
                current.append(g.like(recs[i:i + take]))
                i += take
                room -= take
        if room == 0:
            out.append(current)
            current, room = [], max_items
    if current:
        out.append(current)
    return out


def _containers(signal: Signal, request: Any) -> tuple[Any, str, str]:
    if signal is Signal.TRACES:
        return request.resource_spans, "scope_spans", "spans"
    if signal is Signal.LOGS:
        return request.resource_logs, "scope_logs", "log_records"
    return request.resource_metrics, "scope_metrics", "metrics"


def split_request(signal: Signal, request: Any, max_items: int) -> list[Any]:
    """Split a request into requests of at most `max_items` items each.

    Metrics split by metric (a metric's data points stay together unless one
    metric alone exceeds the limit, which is rare and then kept whole).
    """
    out: list[Any] = []
    req_type = REQUEST_TYPES[signal]
    current = req_type()
    current_items = 0
    resources, scope_field, item_field = _containers(signal, request)
    for res in resources:
        cur_res = None
        for scope in getattr(res, scope_field):
            cur_scope = None
            for item in getattr(scope, item_field):
                n = _metric_points(item) if signal is Signal.METRICS else 1
                if current_items and current_items + n > max_items:
                    out.append(current)
                    current, current_items = req_type(), 0
                    cur_res = cur_scope = None
                if cur_res is None:
                    cur_res = _containers(signal, current)[0].add()
                    cur_res.resource.CopyFrom(res.resource)
                    cur_res.schema_url = res.schema_url
                if cur_scope is None:
                    cur_scope = getattr(cur_res, scope_field).add()
                    cur_scope.scope.CopyFrom(scope.scope)
                    cur_scope.schema_url = scope.schema_url
                getattr(cur_scope, item_field).add().CopyFrom(item)
                current_items += n
    if current_items:
        out.append(current)
    return out


def _metric_points(metric: Any) -> int:
    kind = metric.WhichOneof("data")
    return len(getattr(metric, kind).data_points) if kind else 0
