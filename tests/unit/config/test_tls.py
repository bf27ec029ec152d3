"""Client settings: credentials in an exporter's URL become basic auth, or a clear error."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from pipeline.config.model import pydantic_problems
from pipeline.exporters.alertmanager.config import AlertmanagerExporterConfig
from pipeline.exporters.elasticsearch.config import ElasticsearchExporterConfig
from pipeline.exporters.loki import LokiExporterConfig
from pipeline.exporters.otlp import OTLPExporterConfig
from pipeline.exporters.otlphttp import OTLPHTTPExporterConfig
from pipeline.exporters.prometheusremotewrite import RemoteWriteConfig

MODELS: list[type[BaseModel]] = [OTLPHTTPExporterConfig, LokiExporterConfig,
                                 ElasticsearchExporterConfig, AlertmanagerExporterConfig,
                                 RemoteWriteConfig, OTLPExporterConfig]


def problems(model: type[BaseModel], data: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as exc:
        model.model_validate(data)
    return pydantic_problems("exporters.x", exc.value, model)


@pytest.mark.parametrize("model", MODELS)
def test_userinfo_becomes_basic_auth(model: type[Any]) -> None:
    c = model.model_validate({"endpoint": "http://alice:p%40ss@127.0.0.1:1/path"})
    assert c.endpoint == "http://127.0.0.1:1/path"
    assert c.auth.basic.username == "alice"
    assert c.auth.basic.password.get_secret_value() == "p@ss"
    expected = "Basic " + base64.b64encode(b"alice:p@ss").decode()
    assert c.request_headers()["Authorization"] == expected
    assert "p@ss" not in repr(c)
    assert "p%40ss" not in repr(c)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("other", "key"), [
    ({"auth": {"basic": {"username": "bob", "password": "x"}}}, "auth.basic"),
    ({"auth": {"bearer_token": "t"}}, "auth.bearer_token"),
    ({"headers": {"Authorization": "Bearer t"}}, "headers.Authorization"),
])
def test_userinfo_and_auth_is_an_error_naming_the_key(model: type[BaseModel],
                                                      other: dict[str, Any], key: str) -> None:
    got = problems(model, {"endpoint": "http://alice:pw@127.0.0.1:1", **other})
    assert got == [f"exporters.x.endpoint: credentials in the URL and {key} both set; use one"]


def test_per_signal_urls_share_one_credential() -> None:
    c = OTLPHTTPExporterConfig.model_validate({
        "endpoint": "http://a:pw@h:1", "traces_endpoint": "http://a:pw@h:2/t"})
    assert (c.endpoint, c.traces_endpoint) == ("http://h:1", "http://h:2/t")
    assert c.auth.basic is not None
    got = problems(OTLPHTTPExporterConfig, {
        "endpoint": "http://a:pw@h:1", "logs_endpoint": "http://b:other@h:2/l"})
    assert got == [
        "exporters.x.endpoint: the URLs carry different credentials; give them once, "
        "in auth.basic",
        "exporters.x.logs_endpoint: the URLs carry different credentials; give them once, "
        "in auth.basic"]


def test_a_bad_url_is_reported_without_its_password() -> None:
    got = problems(OTLPHTTPExporterConfig, {"endpoint": "ftp://a:pw@h/?token=T"})
    assert got == ["exporters.x.endpoint: 'ftp://h/?token=***': expected an http:// or "
                   "https:// URL"]
    got = problems(LokiExporterConfig, {"endpoint": "ftp://a:pw@h/",
                                        "auth": {"bearer_token": "t"}})
    assert all("pw" not in p for p in got)


def test_no_userinfo_changes_nothing() -> None:
    c = OTLPHTTPExporterConfig.model_validate({"endpoint": "http://h:1/?a=b@c"})
    assert c.endpoint == "http://h:1/?a=b@c"
    assert c.auth.basic is None
