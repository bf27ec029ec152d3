"""pipeline.exporterhelper.http: the HTTP exporters' shared response handling."""

from __future__ import annotations

import pytest

from pipeline.errors import PermanentError, RetryableError
from pipeline.exporterhelper.http import (
    MAX_MESSAGE_CHARS,
    error_for_status,
    retryable_status,
    status_message,
)


@pytest.mark.parametrize(("status", "retryable"), [
    (400, False), (401, False), (404, False), (408, False), (413, False),
    (429, True), (500, True), (502, True), (503, True), (504, True)])
def test_usual_rule(status: int, retryable: bool) -> None:
    assert retryable_status(status) is retryable
    err = error_for_status(status, f"HTTP {status}", "3")
    assert isinstance(err, RetryableError if retryable else PermanentError)
    assert str(err) == f"HTTP {status}"
    if retryable:
        assert isinstance(err, RetryableError)
        assert err.retry_after == 3.0
        assert err.throttle is (status == 429)


def test_own_rule() -> None:
    otlp = frozenset({429, 502, 503, 504}).__contains__
    assert isinstance(error_for_status(500, "x", None, retryable=otlp), PermanentError)
    err = error_for_status(503, "x", "Wed, 21 Oct 2015 07:28:00 GMT", retryable=otlp)
    assert isinstance(err, RetryableError)
    assert err.retry_after == 0.0


def test_status_message() -> None:
    assert status_message(b'{"message": "bad"}', "application/json") == "bad"
    assert status_message(b"", "text/plain") == ""
    assert status_message(b"x" * 1000, "text/plain") == "x" * MAX_MESSAGE_CHARS
