from __future__ import annotations

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from pipeline.pdata.projection import build_projection


def test_projection_reads_declared_fields_and_attribute_map() -> None:
    types = build_projection("otelpipe_test_projection.proto", {
        "Span": [("name", 5, "string"), ("start", 7, "fixed64"),
                 ("attributes", 9, "attrmap")],
        "Scope": [("spans", 2, "repeated Span")],
        "Resource": [("scopes", 2, "repeated Scope")],
    }, syntax="proto2")
    span = Span(name="GET", start_time_unix_nano=7, trace_id=b"x" * 16,
                attributes=[KeyValue(key="a", value=AnyValue(int_value=1)),
                            KeyValue(key="a", value=AnyValue(int_value=2))])
    raw = ResourceSpans(scope_spans=[ScopeSpans(spans=[span])]).SerializeToString()
    got = types["Resource"].FromString(raw).scopes[0].spans[0]
    assert (got.name, got.start) == ("GET", 7)
    assert AnyValue.FromString(got.attributes.get("a")).int_value == 2  # the last wins
    assert got.attributes.get("b") is None


def test_package_and_unknown_types() -> None:
    types = build_projection("x.proto", {"M": [("v", 1, "double")]}, package="pkg")
    assert types["M"].DESCRIPTOR.full_name == "pkg.M"
    with pytest.raises(ValueError, match="unknown type"):
        build_projection("y.proto", {"M": [("v", 1, "Missing")]})
