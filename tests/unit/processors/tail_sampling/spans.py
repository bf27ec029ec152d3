"""Building known trace sets for the tail_sampling tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from pipeline.component import Signal
from pipeline.pdata.batch import Batch
from tests.builders import kv

T0 = 1_700_000_000_000_000_000
STATUS = {"UNSET": 0, "OK": 1, "ERROR": 2}
KINDS = {"internal": 1, "server": 2, "client": 3}


@dataclass
class S:
    """One span: trace number, name, start and duration in ms, status, attributes."""

    trace: int
    name: str = "op"
    start_ms: float = 0
    ms: float = 1
    status: str = "UNSET"
    attrs: Mapping[str, Any] = field(default_factory=dict)
    trace_state: str = ""
    kind: str = "server"
    service: str = "api"
    resource: Mapping[str, Any] = field(default_factory=dict)


def tid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def request(spans: Sequence[S]) -> ExportTraceServiceRequest:
    """One ResourceSpans per (service, resource attributes), in first-seen order."""
    req = ExportTraceServiceRequest()
    groups: dict[tuple[Any, ...], Any] = {}
    for i, s in enumerate(spans):
        key = (s.service, tuple(sorted(s.resource.items())))
        ss = groups.get(key)
        if ss is None:
            rs = req.resource_spans.add()
            rs.resource.attributes.append(kv("service.name", s.service))
            for k, v in s.resource.items():
                rs.resource.attributes.append(kv(k, v))
            ss = groups[key] = rs.scope_spans.add()
            ss.scope.name = "scope"
        sp = ss.spans.add()
        sp.trace_id = tid(s.trace)
        sp.span_id = (i + 1).to_bytes(8, "big")
        sp.name = s.name
        sp.kind = KINDS[s.kind]
        sp.start_time_unix_nano = T0 + int(s.start_ms * 1_000_000)
        sp.end_time_unix_nano = sp.start_time_unix_nano + int(s.ms * 1_000_000)
        sp.status.code = STATUS[s.status]
        sp.trace_state = s.trace_state
        for k, v in s.attrs.items():
            sp.attributes.append(kv(k, v))
    return req


def batch(spans: Sequence[S]) -> Batch:
    return Batch(Signal.TRACES, raw=request(spans).SerializeToString())


def trace_ids(batches: Sequence[Batch]) -> list[int]:
    """Trace numbers of every span emitted, in order."""
    out: list[int] = []
    for b in batches:
        for rs in b.message.resource_spans:
            for ss in rs.scope_spans:
                out.extend(int.from_bytes(sp.trace_id, "big") for sp in ss.spans)
    return out


def sampled(batches: Sequence[Batch]) -> set[int]:
    return set(trace_ids(batches))
