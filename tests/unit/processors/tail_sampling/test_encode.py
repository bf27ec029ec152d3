"""Span bytes cut from the request's wire bytes, and requests written back by hand."""

from __future__ import annotations

import random
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from pipeline.component import Signal
from pipeline.pdata.batch import Batch
from pipeline.processors.tail_sampling.config import TailSamplingConfig
from pipeline.processors.tail_sampling.encode import (
    WireError,
    encode_request,
    span_slices,
)
from pipeline.processors.tail_sampling.processor import TailSamplingProcessor
from pipeline.processors.tail_sampling.waiting import _cut
from tests.support import Sink, processor_settings
from tests.unit.processors.tail_sampling.spans import S, request


def three_resources() -> ExportTraceServiceRequest:
    req = request([S(1, "a", attrs={"k": "v" * 300}), S(2, "b", service="web"),
                   S(3, "c", resource={"zone": "eu"}), S(1, "d")])
    req.resource_spans[0].schema_url = "https://opentelemetry.io/schemas/1.26.0"
    req.resource_spans[0].scope_spans.add().scope.name = "empty-scope"
    return req


def test_slices_are_the_spans_encodings() -> None:
    req = three_resources()
    cut = span_slices(req.SerializeToString())
    assert [[len(s) for s in r] for r in cut] == \
        [[len(ss.spans) for ss in rs.scope_spans] for rs in req.resource_spans]
    for cr, rs in zip(cut, req.resource_spans, strict=True):
        for cs, ss in zip(cr, rs.scope_spans, strict=True):
            assert cs == [sp.SerializeToString() for sp in ss.spans]


def test_concatenated_requests_cut_in_message_order() -> None:
    a, b = three_resources(), request([S(9, "z")])
    merged = Batch.merge([Batch(Signal.TRACES, raw=a.SerializeToString()),
                          Batch(Signal.TRACES, raw=b.SerializeToString())])
    cut = _cut(merged.message, merged.to_bytes())
    names = [sp.name for rs in merged.message.resource_spans for ss in rs.scope_spans
             for sp in ss.spans]
    assert len([s for r in cut for sc in r for s in sc]) == len(names) == 5


@pytest.mark.parametrize("raw", [b"\x0a\x05\x12\x03\x12\x09", b"\x0f", b"\x0a\xff"])
def test_malformed_bytes_raise_wire_error(raw: bytes) -> None:
    with pytest.raises(WireError):
        span_slices(raw)


def test_without_bytes_spans_are_encoded_one_by_one() -> None:
    req = three_resources()
    cut = _cut(req, None)
    assert cut[0][0][0] == req.resource_spans[0].scope_spans[0].spans[0].SerializeToString()


def test_encode_request_groups_by_resource_and_scope() -> None:
    req = three_resources()
    cut = span_slices(req.SerializeToString())
    pairs: list[tuple[tuple[bytes, bytes, bytes, bytes], list[bytes]]] = []
    for cr, rs in zip(cut, req.resource_spans, strict=True):
        renv = (rs.resource.SerializeToString(), rs.schema_url.encode())
        for cs, ss in zip(cr, rs.scope_spans, strict=True):
            env = (*renv, ss.scope.SerializeToString(), ss.schema_url.encode())
            pairs.append((env, cs[:1]))
            pairs.append((env, cs[1:]))
    out = ExportTraceServiceRequest()
    out.ParseFromString(encode_request(pairs))
    # the empty scope has no spans, so it is not written; everything else round-trips
    del req.resource_spans[0].scope_spans[1]
    assert out == req


def _status_and_state(rnd: random.Random, sp: Any) -> None:
    if rnd.random() < 0.3:
        sp.status.message = "m" * rnd.randint(1, 3)
    if rnd.random() < 0.3:
        sp.trace_state = rnd.choice(["ot=th:8", "a=b,ot=th:c", "x"])


def _random_request(rnd: random.Random) -> bytes:
    """A request with random nesting, sizes (multi-byte lengths), attribute types, events,
    links — and unknown fields of every wire type, which the cut keeps verbatim."""
    req = ExportTraceServiceRequest()
    for _ in range(rnd.randint(0, 3)):
        rs = req.resource_spans.add()
        if rnd.random() < 0.8:
            rs.resource.attributes.add(key="service.name").value.string_value = "s" * \
                rnd.randint(0, 300)
        rs.schema_url = "u" * rnd.randint(0, 3)
        for _ in range(rnd.randint(0, 3)):
            ss = rs.scope_spans.add()
            if rnd.random() < 0.5:
                ss.scope.name = "scope"
            for _ in range(rnd.randint(0, 5)):
                sp = ss.spans.add()
                sp.trace_id = rnd.randbytes(16)
                sp.span_id = rnd.randbytes(8)
                sp.name = "n" * rnd.randint(0, 200)
                sp.start_time_unix_nano = rnd.getrandbits(63)
                sp.end_time_unix_nano = rnd.getrandbits(63)
                for k in range(rnd.randint(0, 6)):
                    v = sp.attributes.add(key=f"k{k}").value
                    kind = rnd.randrange(5)
                    if kind == 0:
                        v.string_value = "x" * rnd.randint(0, 500)
                    elif kind == 1:
                        v.int_value = rnd.getrandbits(63) - (1 << 62)
                    elif kind == 2:
                        v.double_value = rnd.random()
                    elif kind == 3:
                        v.array_value.values.add().bool_value = True
                    else:
                        v.kvlist_value.values.add(key="in").value.int_value = -1
                for _ in range(rnd.randint(0, 2)):
                    sp.events.add(name="e", time_unix_nano=rnd.getrandbits(40))
                if rnd.random() < 0.3:
                    sp.links.add(trace_id=rnd.randbytes(16), span_id=rnd.randbytes(8))
                sp.status.code = rnd.randrange(3)
                _status_and_state(rnd, sp)
    raw = bytes(req.SerializeToString())
    if rnd.random() < 0.5:  # an unknown top-level field of each wire type
        raw += b"\x78\x96\x01" + b"\x81\x01" + bytes(8) + b"\x8d\x01" + bytes(4) + \
            b"\x92\x01\x02ab"
    return raw


def test_random_requests_cut_into_their_spans() -> None:
    rnd = random.Random(2024)
    for _ in range(300):
        raw = _random_request(rnd)
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(raw)
        cut = span_slices(raw)
        assert _cut(msg, raw) is not None
        for cr, rs in zip(cut, msg.resource_spans, strict=True):
            for cs, ss in zip(cr, rs.scope_spans, strict=True):
                assert len(cs) == len(ss.spans)
                for sb, sp in zip(cs, ss.spans, strict=True):
                    again = type(sp)()
                    again.ParseFromString(sb)
                    assert again == sp


def watching(keys: list[str]) -> TailSamplingProcessor:
    """A processor whose policies read attributes of each value type of `_random_request`
    (and the resource's service.name)."""
    policies = [
        {"name": "re", "type": "string_attribute",
         "string_attribute": {"key": "k0", "values": ["^x{3,}$"],
                              "enabled_regex_matching": True}},
        {"name": "num", "type": "numeric_attribute",
         "numeric_attribute": {"key": "k1", "min_value": 0, "max_value": 1 << 62}},
        {"name": "flag", "type": "boolean_attribute",
         "boolean_attribute": {"key": "k3", "value": True}},
        {"name": "svc", "type": "string_attribute",
         "string_attribute": {"key": "service.name", "values": ["sss"],
                              "enabled_regex_matching": True}},
        {"name": "ts", "type": "trace_state",
         "trace_state": {"key": "ot", "values": ["th:8"]}},
        *({"name": f"s{k}", "type": "string_attribute",
           "string_attribute": {"key": k, "values": ["x"]}} for k in keys),
    ]
    return TailSamplingProcessor(
        processor_settings("tail_sampling", next_consumer=Sink(), signal=Signal.TRACES),
        TailSamplingConfig.model_validate({"policies": policies}))


def _summary(p: TailSamplingProcessor) -> list[tuple[object, ...]]:
    return [(t.trace_id, [(env.key, sbs) for env, sbs in t.groups()], t.start, t.end, t.status,
             t.facts, t.nbytes) for t in p.pending.values()]


def test_projection_ingest_is_the_decoded_one() -> None:
    """The two upb projections (spans as bytes, facts) read exactly what the walk over
    the decoded message reads: same spans and envelopes, times, status, facts; and the
    request written back from them is the original one (empty scopes aside)."""
    rnd = random.Random(77)
    seen = 0
    for i in range(200):
        raw = _random_request(rnd)
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(raw)
        a, b = watching(["k1", "k3"]), watching(["k1", "k3"])
        views = a._views(raw)
        assert views is not None
        a._ingest_views(views, raw, 0.0, None)
        b._ingest(msg, 0.0, None, raw)
        assert _summary(a) == _summary(b), i
        for t in a.pending.values():
            seen |= t.facts
        groups = [g for t in a.pending.values() for g in t.groups()]
        again = ExportTraceServiceRequest.FromString(encode_request(groups))
        assert sorted(sp.SerializeToString() for rs in again.resource_spans
                      for ss in rs.scope_spans for sp in ss.spans) == \
            sorted(sp.SerializeToString() for rs in msg.resource_spans
                   for ss in rs.scope_spans for sp in ss.spans)
    # the regex, numeric, resource and trace state facts held somewhere
    assert seen & 0b11011 == 0b11011
