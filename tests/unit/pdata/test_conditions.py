from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.pdata.conditions import Condition, ConditionCompiler, severity_number


def compiled(cond: dict[str, Any]) -> tuple[Any, dict[str, int]]:
    slots: dict[str, int] = {}
    compiler = ConditionCompiler(slots, {}, decode_body=lambda b: b.decode())
    return compiler.compile(Condition.model_validate(cond)), slots


def rec(**kw: Any) -> Any:
    base = {"severity_number": 0, "severity_text": "", "body": b"", "event_name": ""}
    return SimpleNamespace(**{**base, **kw})


def test_numbers_compare_as_numbers_and_text_as_text() -> None:
    p, slots = compiled({"attribute": "code", "in": [429, "teapot"]})
    assert slots == {"code": 0}
    assert [p([v, []], rec()) for v in (429, "429", 429.0, "teapot", True, None)] == \
        [True, True, True, True, False, False]
    p, _ = compiled({"attribute": "ok", "equals": "true"})
    assert p([True, []], rec())


def test_fields_severity_and_combinators() -> None:
    p, _ = compiled({"all": [{"severity_at_least": "WARN"},
                             {"not": {"field": "body", "matches": "^GET /healthz"}}]})
    assert p([[]], rec(severity_number=17, body=b"boom"))
    assert p([[]], rec(severity_text="error", body=b"boom"))
    assert not p([[]], rec(severity_number=17, body=b"GET /healthz 200"))
    assert not p([[]], rec(severity_number=9, body=b"boom"))
    assert severity_number("warn2") == 14


def test_shape_is_validated() -> None:
    with pytest.raises(ValidationError, match="one selector"):
        Condition.model_validate({"attribute": "a", "field": "body"})
    with pytest.raises(ValidationError, match="needs attribute"):
        Condition.model_validate({"equals": 1})
    with pytest.raises(ValueError, match="not available here"):
        ConditionCompiler({}, {}, fields={"name": lambda x: x}).compile(
            Condition.model_validate({"field": "body"}))
