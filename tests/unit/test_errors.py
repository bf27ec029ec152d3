"""What a sender learns about an error: generic for an exporter's, as is otherwise."""

from __future__ import annotations

from pipeline.errors import PermanentError, RetryableError, sender_message


def test_an_exporters_error_is_answered_generically() -> None:
    err = RetryableError("http://u:pw@h/v1/logs: HTTP 503: busy").from_origin(
        "exporter otlphttp/backend")
    assert sender_message(err) == "exporter otlphttp/backend unavailable: retry later"
    perm = PermanentError("http://u:pw@h: HTTP 400: token=T").from_origin("exporter loki")
    assert sender_message(perm) == "exporter loki rejected the data: do not retry"


def test_the_first_origin_wins() -> None:
    err = RetryableError("x").from_origin("exporter a").from_origin("exporter b")
    assert err.origin == "exporter a"


def test_errors_without_origin_keep_their_message() -> None:
    assert sender_message(RetryableError("memory limit reached")) == "memory limit reached"
    assert sender_message(RetryableError("")) == "retry later"
    assert sender_message(PermanentError("undecodable traces request")) == \
        "undecodable traces request"
    assert sender_message(PermanentError("")) == "rejected"
