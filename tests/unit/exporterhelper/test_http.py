"""pipeline.exporterhelper.http: the HTTP exporters' shared response handling."""

from __future__ import annotations

import aiohttp
import pytest

from pipeline.errors import PermanentError, RetryableError
from pipeline.exporterhelper.http import (
    MAX_MESSAGE_CHARS,
    error_for_status,
    post,
    retryable_status,
    safe_url,
    status_message,
)
from tests.support import free_port


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


def test_messages_and_errors_are_masked() -> None:
    body = b'{"message": "denied for http://alice:pw@h/x?api_key=K"}'
    assert status_message(body, "application/json") == "denied for http://alice:***@h/x?api_key=***"
    assert status_message(b"token=T rejected", "text/plain") == "token=*** rejected"
    err = error_for_status(400, "http://alice:pw@h/x: HTTP 400", None)
    assert str(err) == "http://alice:***@h/x: HTTP 400"
    assert safe_url("http://alice:pw@h/?sig=s") == "http://alice:***@h/?sig=***"


async def test_post_connection_error_is_masked() -> None:
    port = free_port()  # nothing listens
    async with aiohttp.ClientSession() as session:
        with pytest.raises(RetryableError) as exc:
            await post(session, f"http://127.0.0.1:{port}/x?api_key=K", b"")
    assert f"http://127.0.0.1:{port}/x?api_key=***: ClientConnectorError" in str(exc.value)
    assert "=K" not in str(exc.value)
