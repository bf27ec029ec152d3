"""Listeners bind to localhost unless told otherwise (as the Collector does since
v0.104): every component's default endpoint and the embedded default config say
`localhost`, and a real `otelpipe run` listening on `localhost:<port>` answers on
127.0.0.1 and refuses connections to the machine's other addresses."""

from __future__ import annotations

import re
import socket
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import pytest
from pydantic import BaseModel

from pipeline.config.loader import load_config
from pipeline.registry import default_registry
from tests.support import OtelpipeProcess, free_port

HOST_PORT = re.compile(r"^(?P<host>[^/]*):\d+$")


def models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) in (Union, types.UnionType, list, dict):
        return [m for arg in get_args(annotation) for m in models_in(arg)]
    return []


def default_endpoints(model: type[BaseModel], prefix: str, seen: set[type]) -> dict[str, str]:
    """Every field default that looks like host:port, by key path, nested models too."""
    if model in seen:
        return {}
    seen.add(model)
    found: dict[str, str] = {}
    for name, field in model.model_fields.items():
        if isinstance(field.default, str) and HOST_PORT.match(field.default):
            found[f"{prefix}.{name}"] = field.default
        for sub in models_in(field.annotation):
            found |= default_endpoints(sub, f"{prefix}.{name}", seen)
    return found


def test_every_default_endpoint_is_localhost() -> None:
    found: dict[str, str] = {}
    for f in default_registry().factories():
        found |= default_endpoints(f.config_model, f"{f.kind.value}s.{f.type}", set())
    assert found  # otlp, jsonlogs, health, prometheus at least
    assert {"receivers.otlp.protocols.grpc.endpoint", "receivers.otlp.protocols.http.endpoint",
            "receivers.jsonlogs.endpoint", "extensions.health.endpoint",
            "exporters.prometheus.endpoint"} <= set(found), found
    wrong = {k: v for k, v in found.items()
             if (m := HOST_PORT.match(v)) and m["host"] != "localhost"}
    assert wrong == {}


def endpoints(raw: dict[str, Any]) -> dict[str, str]:
    otlp = raw["receivers"]["otlp"]["protocols"]
    return {"grpc": otlp["grpc"]["endpoint"], "http": otlp["http"]["endpoint"],
            "jsonlogs": raw["receivers"]["jsonlogs"]["endpoint"],
            "health": raw["extensions"]["health"]["endpoint"]}


def test_embedded_default_config_listens_on_localhost_unless_the_env_says() -> None:
    assert endpoints(load_config([], env={})) == {
        "grpc": "localhost:4317", "http": "localhost:4318", "jsonlogs": "localhost:8081",
        "health": "localhost:13133"}
    env = {"OTELPIPE_OTLP_GRPC_ENDPOINT": "0.0.0.0:4317",
           "OTELPIPE_OTLP_HTTP_ENDPOINT": "0.0.0.0:4318",
           "OTELPIPE_JSONLOGS_ENDPOINT": "0.0.0.0:8081",
           "OTELPIPE_HEALTH_ENDPOINT": "0.0.0.0:13133"}
    assert endpoints(load_config([], env=env)) == {
        "grpc": "0.0.0.0:4317", "http": "0.0.0.0:4318", "jsonlogs": "0.0.0.0:8081",
        "health": "0.0.0.0:13133"}


def other_address() -> str:
    """This machine's address on its default route (not loopback), or skip."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # UDP: no packet is sent
        except OSError:
            pytest.skip("no non-loopback route")
        addr: str = s.getsockname()[0]
    if addr.startswith("127."):
        pytest.skip("no non-loopback address")
    return addr


def connects(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(5)
        return s.connect_ex((host, port)) == 0


def test_localhost_listeners_are_not_reachable_from_other_addresses(tmp_path: Path) -> None:
    addr = other_address()
    ports = {name: free_port() for name in ("grpc", "http", "jsonlogs", "health", "prom")}
    config = {
        "receivers": {
            "otlp": {"protocols": {"grpc": {"endpoint": f"localhost:{ports['grpc']}"},
                                   "http": {"endpoint": f"localhost:{ports['http']}"}}},
            "jsonlogs": {"endpoint": f"localhost:{ports['jsonlogs']}"}},
        "exporters": {"prometheus": {"endpoint": f"localhost:{ports['prom']}"},
                      "nop": {}},
        "extensions": {"health": {"endpoint": f"localhost:{ports['health']}"}},
        "service": {"extensions": ["health"], "pipelines": {
            "metrics": {"receivers": ["otlp"], "exporters": ["prometheus"]},
            "logs": {"receivers": ["otlp", "jsonlogs"], "exporters": ["nop"]}}},
    }
    with OtelpipeProcess(config, tmp_path, wait_ports=tuple(ports.values())) as proc:
        assert {n: connects("127.0.0.1", p) for n, p in ports.items()} == dict.fromkeys(
            ports, True)
        assert {n: connects(addr, p) for n, p in ports.items()} == dict.fromkeys(
            ports, False), addr
        assert proc.stop() == 0, proc.logs()
