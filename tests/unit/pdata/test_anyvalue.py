from __future__ import annotations

import math

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from pipeline.pdata.anyvalue import any_value, any_value_to_python, label_text


def nested() -> AnyValue:
    inner = AnyValue(kvlist_value=KeyValueList(values=[
        KeyValue(key="k", value=AnyValue(bool_value=True)),
        KeyValue(key="e", value=AnyValue())]))
    return AnyValue(array_value=ArrayValue(values=[
        AnyValue(string_value="a"), AnyValue(int_value=1), AnyValue(bytes_value=b"\x01"),
        inner]))


def test_any_value_structured() -> None:
    assert any_value(AnyValue()) is None
    assert any_value(nested()) == ["a", 1, "AQ==", {"k": True, "e": None}]
    assert any_value(nested(), hex_bytes=True)[2] == "01"
    assert any_value(AnyValue(double_value=math.inf)) == math.inf
    assert any_value(AnyValue(double_value=-math.inf), nonfinite_text=True) == "-Inf"
    assert any_value(AnyValue(double_value=math.nan), nonfinite_text=True) == "NaN"


def test_scalar_form_for_series_and_conditions() -> None:
    assert any_value_to_python(AnyValue()) == ""
    assert any_value_to_python(AnyValue(int_value=429)) == 429
    assert any_value_to_python(AnyValue(bool_value=False)) is False
    assert any_value_to_python(AnyValue(bytes_value=b"\xab")) == "ab"
    assert any_value_to_python(nested()) == "[a,1,01,{k:true,e:}]"
    assert [label_text(v) for v in (True, 1, 1.5, "x")] == ["true", "1", "1.5", "x"]
