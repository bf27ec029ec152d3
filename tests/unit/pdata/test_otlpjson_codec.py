"""The OTLP JSON codec agrees with google.protobuf.json_format (the codec it replaced).

`reference_dict` / `reference_decode` are the old implementation: json_format with
integer enums, trace and span ids converted between hex and base64.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from pipeline.component import Signal
from pipeline.pdata.otlp import REQUEST_TYPES
from pipeline.pdata.otlpjson import (
    OTLPJSONError,
    decode_message,
    decode_request,
    encode_request,
    message_to_otlp_dict,
)
from tests.builders import logs_request, traces_request

_IDS = {"traceId", "spanId", "parentSpanId"}


def _convert_ids(node: Any, conv: Any) -> Any:
    if isinstance(node, dict):
        return {k: conv(v) if k in _IDS and isinstance(v, str) else _convert_ids(v, conv)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_convert_ids(v, conv) for v in node]
    return node


def reference_dict(message: Message) -> dict[str, Any]:
    d = json_format.MessageToDict(message, use_integers_for_enums=True)
    out: dict[str, Any] = _convert_ids(d, lambda v: base64.b64decode(v).hex())
    return out


def reference_decode(message_type: type[Message], data: dict[str, Any]) -> Message:
    b64 = _convert_ids(data, lambda v: base64.b64encode(bytes.fromhex(v)).decode())
    msg = message_type()
    json_format.ParseDict(b64, msg, ignore_unknown_fields=True)
    return msg


# A varied corpus ------------------------------------------------------------------------

def _any_values(av: Any) -> None:
    """Every AnyValue kind, nested."""
    kvl = av.kvlist_value.values
    setters: list[tuple[str, Callable[[Any], None]]] = [
                        ("s", lambda v: setattr(v, "string_value", "ü€ \"x\"\n")),
                        ("b", lambda v: setattr(v, "bool_value", False)),
                        ("i", lambda v: setattr(v, "int_value", -(2**63))),
                        ("d", lambda v: setattr(v, "double_value", -0.5)),
                        ("inf", lambda v: setattr(v, "double_value", math.inf)),
                        ("by", lambda v: setattr(v, "bytes_value", b"\x00\xff\xfe?>")),
                        ("empty", lambda v: v.SetInParent())]
    for key, setter in setters:
        kv = kvl.add(key=key)
        setter(kv.value)
    arr = kvl.add(key="arr").value.array_value.values
    arr.add(int_value=0)
    arr.add(string_value="")
    arr.add().array_value.values.add(double_value=1e300)


def corpus() -> list[Message]:
    traces = traces_request(3, resources=2)
    sp = traces.resource_spans[0].scope_spans[0].spans[0]
    sp.parent_span_id = b"\x09" * 8
    sp.trace_state = "a=b"
    sp.flags = 0x301
    sp.dropped_attributes_count = 4
    _any_values(sp.attributes.add(key="all").value)
    ev = sp.events.add(name="exception", time_unix_nano=2**64 - 1)
    ev.attributes.add(key="exception.message").value.string_value = "boom"
    link = sp.links.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, flags=1)
    link.attributes.add(key="l").value.int_value = 7
    sp.status.message = "failed"
    traces.resource_spans[1].scope_spans[0].scope.version = "1.2"
    traces.resource_spans[1].schema_url = "https://opentelemetry.io/schemas/1.21.0"

    logs = logs_request(2)
    lr = logs.resource_logs[0].scope_logs[0].log_records[0]
    lr.trace_id = b"\x07" * 16
    lr.span_id = b"\x08" * 8
    lr.observed_time_unix_nano = 1
    lr.event_name = "device.app.lifecycle"
    _any_values(lr.body)

    metrics = ExportMetricsServiceRequest()
    sm = metrics.resource_metrics.add().scope_metrics.add()
    g = sm.metrics.add(name="g", unit="1", description="gauge")
    g.gauge.data_points.add(as_int=-3, time_unix_nano=5).attributes.add(key="k")
    g.gauge.data_points.add(as_double=math.nan)
    s = sm.metrics.add(name="s").sum
    s.is_monotonic, s.aggregation_temporality = True, 2
    dp = s.data_points.add(as_double=0.0, start_time_unix_nano=1)
    ex = dp.exemplars.add(as_int=1, span_id=b"\x03" * 8, trace_id=b"\x04" * 16)
    ex.filtered_attributes.add(key="f").value.bool_value = True
    h = sm.metrics.add(name="h").histogram
    h.data_points.add(count=3, sum=0.0, bucket_counts=[1, 2], explicit_bounds=[1.5],
                      min=-math.inf, max=2.0)
    e = sm.metrics.add(name="e").exponential_histogram
    ep = e.data_points.add(scale=-2, zero_count=1, zero_threshold=1e-9)
    ep.positive.offset, ep.positive.bucket_counts[:] = -3, [1, 0, 5]
    sq = sm.metrics.add(name="q").summary.data_points.add(count=2, sum=3.5)
    sq.quantile_values.add(quantile=0.99, value=1.0)
    sm.metrics.add(name="empty")

    trace_resp = ExportTraceServiceResponse()
    trace_resp.partial_success.rejected_spans = 3
    trace_resp.partial_success.error_message = "3 spans with malformed ids were dropped"
    log_resp = ExportLogsServiceResponse()
    log_resp.partial_success.SetInParent()
    return [traces, logs, metrics, trace_resp, log_resp, REQUEST_TYPES[Signal.LOGS]()]


@pytest.mark.parametrize("message", corpus(), ids=lambda m: type(m).__name__)
def test_encode_is_byte_identical_to_json_format(message: Message) -> None:
    assert encode_request(message) == orjson.dumps(reference_dict(message))
    assert message_to_otlp_dict(message) == reference_dict(message)


@pytest.mark.parametrize("message", corpus(), ids=lambda m: type(m).__name__)
def test_round_trip_and_agreement_on_the_corpus(message: Message) -> None:
    data = orjson.loads(encode_request(message))
    decoded = decode_message(type(message), data)
    # NaN != NaN: compare the serialized forms
    assert decoded.SerializeToString() == message.SerializeToString()
    assert decoded.SerializeToString() == \
        reference_decode(type(message), data).SerializeToString()


def test_json_format_spellings_are_accepted() -> None:
    """snake_case keys, enum names, int64 as numbers or strings, special floats."""
    for message in corpus():
        for kwargs in ({"preserving_proto_field_name": True},
                       {"use_integers_for_enums": False}, {}):
            data = _convert_ids(json_format.MessageToDict(message, **kwargs),
                                lambda v: base64.b64decode(v).hex())
            if kwargs.get("preserving_proto_field_name"):
                data = _snake_ids_to_hex(data)
            assert decode_message(type(message), data).SerializeToString() == \
                message.SerializeToString()


def _snake_ids_to_hex(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: base64.b64decode(v).hex()
                if k in ("trace_id", "span_id", "parent_span_id") and isinstance(v, str)
                else _snake_ids_to_hex(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_snake_ids_to_hex(v) for v in node]
    return node


@pytest.mark.parametrize(("value", "expected"), [
    ("12", 12), (12, 12), (12.0, 12), ("1e2", 100), ("-5", -5),
])
def test_int64_forms(value: Any, expected: int) -> None:
    span: dict[str, Any] = {"attributes": [{"key": "n", "value": {"intValue": value}}]}
    if expected >= 0:  # fixed64
        span["startTimeUnixNano"] = value
    msg = decode_request(Signal.TRACES, orjson.dumps(
        {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}))
    sp = msg.resource_spans[0].scope_spans[0].spans[0]
    assert sp.attributes[0].value.int_value == expected
    if expected >= 0:
        assert sp.start_time_unix_nano == expected


@pytest.mark.parametrize(("body", "message"), [
    ({"resourceSpans": {"a": 1}}, "invalid OTLP JSON: repeated field resourceSpans must be "
                                  "an array, not an object"),
    ({"resourceSpans": [5]}, "invalid OTLP JSON: opentelemetry.proto.trace.v1.ResourceSpans "
                             "must be an object, not a number"),
    ({"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5}]}]}]},
     "invalid OTLP JSON: field name: "),
    ({"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": [1]}]}]}]},
     "invalid OTLP JSON: field kind: "),
    ({"resourceSpans": [{"scopeSpans": [{"spans": [{"droppedAttributesCount": -1}]}]}]},
     "invalid OTLP JSON: "),
    ({"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [
        {"key": "k", "value": {"stringValue": "a", "intValue": 1}}]}]}]}]},
     "invalid OTLP JSON: opentelemetry.proto.common.v1.AnyValue has more than one field "
     "of oneof 'value'"),
    ({"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": 5}]}]}]},
     "spanId 5 is not a hex string"),
])
def test_decode_errors(body: Any, message: str) -> None:
    with pytest.raises(OTLPJSONError) as exc:
        decode_request(Signal.TRACES, orjson.dumps(body))
    assert str(exc.value).startswith(message), str(exc.value)


def test_unknown_enum_name_and_nulls_are_ignored() -> None:
    msg = decode_request(Signal.TRACES, orjson.dumps({"resourceSpans": [{"scopeSpans": [{
        "spans": [{"kind": "SPAN_KIND_FROM_THE_FUTURE", "name": None, "status": None,
                   "events": None}]}]}], "extra": [1, {"deep": [[[]]]}]}))
    sp = msg.resource_spans[0].scope_spans[0].spans[0]
    assert (sp.kind, sp.name, sp.HasField("status"), len(sp.events)) == (0, "", False, 0)


# Property: random OTLP messages ---------------------------------------------------------

_INT_RANGES = {
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),  # ExponentialHistogram.scale
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
}


def _scalar(fd: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = fd.type
    if t == FieldDescriptor.TYPE_STRING:
        return st.text(max_size=8)
    if t == FieldDescriptor.TYPE_BYTES:
        if fd.name in ("trace_id", "span_id", "parent_span_id"):
            return st.sampled_from([b"", b"\x01" * 8, b"\xab" * 16, b"\x00\x01\x02"])
        return st.binary(max_size=8)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == FieldDescriptor.TYPE_DOUBLE:
        return st.floats(allow_nan=False)  # NaN != NaN: covered by the corpus
    if t == FieldDescriptor.TYPE_ENUM:
        return st.one_of(st.sampled_from([v.number for v in fd.enum_type.values]),
                         st.integers(0, 99))
    lo, hi = _INT_RANGES[t]
    return st.integers(lo, hi)


@st.composite
def _message(draw: st.DrawFn, desc: Descriptor, depth: int) -> dict[str, Any]:
    """Constructor kwargs for a random message of `desc`."""
    out: dict[str, Any] = {}
    oneofs_done: set[str] = set()
    for fd in desc.fields:
        if not draw(st.booleans()):
            continue
        if fd.containing_oneof is not None:
            if fd.containing_oneof.name in oneofs_done:
                continue
            oneofs_done.add(fd.containing_oneof.name)
        repeated = fd.is_repeated if hasattr(fd, "is_repeated") \
            else fd.label == FieldDescriptor.LABEL_REPEATED
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            if depth <= 0:
                continue
            sub = _message(fd.message_type, depth - 1)
            out[fd.name] = draw(st.lists(sub, max_size=2)) if repeated else draw(sub)
        else:
            out[fd.name] = draw(st.lists(_scalar(fd), max_size=3)) if repeated \
                else draw(_scalar(fd))
    return out


_TYPES = [*REQUEST_TYPES.values(), ExportTraceServiceResponse]


@st.composite
def otlp_messages(draw: st.DrawFn) -> Message:
    message_type = draw(st.sampled_from(_TYPES))
    desc: Descriptor = message_type.DESCRIPTOR  # type: ignore[attr-defined]
    return message_type(**draw(_message(desc, 6)))


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(otlp_messages())
def test_property_round_trip_and_agreement(message: Message) -> None:
    body = encode_request(message)
    assert body == orjson.dumps(reference_dict(message))
    data = orjson.loads(body)
    decoded = decode_message(type(message), data)
    assert decoded == message
    assert decoded == reference_decode(type(message), data)
    # protobuf's own JSON spellings (names, snake_case, int64 strings) decode alike
    names = _convert_ids(json_format.MessageToDict(message),
                         lambda v: base64.b64decode(v).hex())
    assert decode_message(type(message), names) == message
