"""The masking helper: URLs, free text, userinfo splitting."""

from __future__ import annotations

import time

import pytest

from pipeline.config.secrets import (
    has_userinfo,
    is_secret_name,
    mask_text,
    mask_url,
    split_userinfo,
)


@pytest.mark.parametrize(("url", "masked"), [
    # userinfo: the password goes, the user name stays (Go's url.Redacted, the Collector)
    ("http://user:pw@host:4318/v1/logs", "http://user:***@host:4318/v1/logs"),
    ("https://user:@host/", "https://user:***@host/"),
    ("http://u:p@ss@host/x", "http://u:***@host/x"),  # '@' in the password
    ("http://user:p%40ss@[::1]:80/", "http://user:***@[::1]:80/"),
    # a lone user part is usually a token: masked whole
    ("https://ghp_token123@github.com/org/repo", "https://***@github.com/org/repo"),
    ("http://:pw@host", "http://***@host"),
    # secret query parameters, any case, percent-encoded names too
    ("http://h/p?api_key=S&q=1", "http://h/p?api_key=***&q=1"),
    ("http://h/?APIKEY=S", "http://h/?APIKEY=***"),
    ("http://h/?Token=a&access_token=b&password=c&secret=d&sig=e&signature=f&auth=g&key=h",
     "http://h/?Token=***&access_token=***&password=***&secret=***&sig=***&signature=***"
     "&auth=***&key=***"),
    ("http://h/?X-Amz-Signature=a&X-Amz-Credential=b&x-goog-signature=c",
     "http://h/?X-Amz-Signature=***&X-Amz-Credential=***&x-goog-signature=***"),
    ("http://h/?db_password=a&my-api-token=b&client_secret=c",
     "http://h/?db_password=***&my-api-token=***&client_secret=***"),
    ("http://h/?api%5Fkey=S", "http://h/?api%5Fkey=***"),
    ("http://u:p@h/?api_key=S#frag?token=x", "http://u:***@h/?api_key=***#frag?token=x"),
    # nothing secret: unchanged, byte for byte
    ("http://h:1/v1/traces?tenant=a&keys=1&monkey=2", "http://h:1/v1/traces?tenant=a&keys=1&monkey=2"),
    ("http://h/?token", "http://h/?token"),  # a name without a value
    ("http://h/?token=", "http://h/?token="),
    ("host:4317", "host:4317"),
    ("", ""),
    ("/v1/logs?api_key=S", "/v1/logs?api_key=***"),  # a path and query without scheme
])
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_url_takes_any_object() -> None:
    import yarl
    assert mask_url(yarl.URL("http://u:pw@h/?token=t")) == "http://u:***@h/?token=***"


@pytest.mark.parametrize(("text", "masked"), [
    ("http://u:pw@h:1/v1/traces: HTTP 400: bad",
     "http://u:***@h:1/v1/traces: HTTP 400: bad"),
    ('POST "https://tok@h/x?api_key=K" failed', 'POST "https://***@h/x?api_key=***" failed'),
    ("ClientConnectorError: Cannot connect to host h:1 ssl:default [Connection refused]",
     "ClientConnectorError: Cannot connect to host h:1 ssl:default [Connection refused]"),
    ("invalid request api_key=K token=T (key=V), rejected=3 user=bob",
     "invalid request api_key=*** token=*** (key=***), rejected=3 user=bob"),
    ("two: http://a:1@h and ftp://b:2@g/?sig=s", "two: http://a:***@h and ftp://b:***@g/?sig=***"),
    ("mail me at bob@example.com", "mail me at bob@example.com"),
    ("(Authorization: Basic YWxpY2U6cHc=; x)", "(Authorization: Basic ***; x)"),
    ("authorization: bearer eyJhbGciOi.x-y_z", "authorization: bearer ***"),
    ("basic arithmetic and a bearer bond", "basic arithmetic and a bearer bond"),
    ("no secrets here", "no secrets here"),
])
def test_mask_text(text: str, masked: str) -> None:
    assert mask_text(text) == masked


def test_mask_text_of_an_exception() -> None:
    assert mask_text(ValueError("http://u:pw@h/")) == "http://u:***@h/"


def test_masking_is_linear() -> None:
    # CPU time of this process: a loaded machine stretches wall time, not this
    hostile = "a=" * 200_000 + "http://" + "@" * 200_000 + "x" * 200_000
    start = time.process_time()
    mask_text(hostile)
    mask_url("http://" + "u:" * 200_000 + "@h/?" + "&k=v" * 100_000)
    assert time.process_time() - start < 1.0


@pytest.mark.parametrize(("name", "secret"), [
    ("api_key", True), ("ApiKey", True), ("SIG", True), ("x-api-token", True),
    ("refresh_token", True), ("DB_PASSWORD", True), ("tenant", False), ("keys", False),
    ("q", False), ("signal", False),
])
def test_is_secret_name(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_split_userinfo_decodes_like_curl() -> None:
    assert split_userinfo("http://us%40er:p%3Aw@h:1/x?q=1") == ("http://h:1/x?q=1", "us@er", "p:w")
    assert split_userinfo("https://tok@h/") == ("https://h/", "tok", None)
    assert split_userinfo("http://h/a@b") == ("http://h/a@b", None, None)  # '@' in the path
    assert split_userinfo("h:1") == ("h:1", None, None)
    assert has_userinfo("http://u@h")
    assert not has_userinfo("http://h/?u=a@b")
