"""The otlp receiver's configuration models."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator, model_validator

from pipeline.component import ComponentConfig, Signal
from pipeline.config.tls import ServerAuthSettings, TLSServerSettings
from pipeline.config.types import Endpoint
from pipeline.pdata.otlp import AttributeLimits
from pipeline.receiverhelper.grpcserver import KeepaliveSettings
from pipeline.receiverhelper.http import (
    DEFAULT_MAX_CONNECTIONS,
    HTTPServerSettings,
    max_in_flight_bytes_field,
)
from pipeline.receiverhelper.peers import PeerErrorBudgetSettings


def _check_grpc_endpoint(value: object) -> str:
    if isinstance(value, str) and value.startswith("unix:"):
        if not value.removeprefix("unix:").strip("/") or "\x00" in value:
            raise ValueError(f"invalid endpoint {value!r}: expected unix:/path/to/socket")
        return value
    _host, sep, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid endpoint {value!r}: expected host:port, e.g. 0.0.0.0:4317, "
                         "or unix:/path/to/socket")
    return str(value)


GRPCEndpoint = Annotated[str, BeforeValidator(_check_grpc_endpoint),
                         Field(json_schema_extra={"pattern": r"^(unix:.+|.*:\d+)$"})]
"""host:port, or `unix:/path` (a unix socket, as gRPC spells it: the workers' links)."""


class GRPCSettings(ComponentConfig):
    endpoint: GRPCEndpoint = Field(
        "localhost:4317", description="host:port to listen on, or unix:/path/to/socket.")
    max_recv_msg_size_mib: int = Field(
        4, gt=0, description="Largest accepted request in MiB (RESOURCE_EXHAUSTED above).")
    max_concurrent_streams: int = Field(
        100, gt=0, description="Concurrent requests per client connection (HTTP/2 streams).")
    max_connections: int = Field(
        DEFAULT_MAX_CONNECTIONS, gt=0,
        description="Open connections of this listener; more are closed as they arrive.")
    max_in_flight_bytes: int = max_in_flight_bytes_field()
    peer_error_budget: PeerErrorBudgetSettings = Field(
        default_factory=PeerErrorBudgetSettings, description=(
            "Per remote address: enabled, errors_per_second, burst, max_peers. A peer whose "
            "calls keep failing (malformed, unauthenticated) is answered RESOURCE_EXHAUSTED "
            "with RetryInfo before its message is parsed."))
    keepalive: KeepaliveSettings = Field(
        default_factory=KeepaliveSettings,
        description="server_parameters (max_connection_idle, max_connection_age, "
                    "max_connection_age_grace, time, timeout) and enforcement_policy "
                    "(min_time, permit_without_stream), as in the Collector.")
    so_reuseport: bool = Field(
        False, description="Set SO_REUSEPORT so several worker processes share the port "
                           "(set by `service.workers` > 1).")
    tls: TLSServerSettings | None = Field(
        None, description="Serve TLS with this certificate (client_ca_file: mutual TLS).")
    auth: ServerAuthSettings | None = Field(
        None, description="Require `authorization: Bearer <token>` metadata; "
                          "UNAUTHENTICATED otherwise.")


class HTTPSettings(HTTPServerSettings):
    endpoint: Endpoint = Field("localhost:4318", description="host:port to listen on.")
    so_reuseport: bool = Field(
        False, description="Set SO_REUSEPORT so several worker processes share the port "
                           "(set by `service.workers` > 1).")
    traces_url_path: str = "/v1/traces"
    logs_url_path: str = "/v1/logs"
    metrics_url_path: str = "/v1/metrics"

    @field_validator("traces_url_path", "logs_url_path", "metrics_url_path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"URL path {v!r} must start with '/'")
        return v

    @model_validator(mode="after")
    def _distinct(self) -> HTTPSettings:
        paths = [self.traces_url_path, self.logs_url_path, self.metrics_url_path]
        if len(set(paths)) != 3:
            raise ValueError("traces_url_path, logs_url_path and metrics_url_path must differ")
        return self

    def url_path(self, signal: Signal) -> str:
        return str(getattr(self, f"{signal.value}_url_path"))


class Protocols(ComponentConfig):
    grpc: GRPCSettings | None = None
    http: HTTPSettings | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_means_defaults(cls, data: Any) -> Any:
        # Like the Collector: `grpc:` written with no value enables gRPC with defaults;
        # only an absent key disables a protocol.
        if isinstance(data, dict):
            data = {k: ({} if v is None and k in ("grpc", "http") else v)
                    for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _at_least_one(self) -> Protocols:
        if self.grpc is None and self.http is None:
            raise ValueError("must specify at least one protocol (grpc, http)")
        return self


class OTLPReceiverConfig(ComponentConfig):
    protocols: Protocols = Field(
        description="grpc and/or http; a protocol written with no settings uses its defaults.")
    max_attributes_per_item: int = Field(
        1000, ge=0, description="Attributes kept per list (resource, scope, span, event, "
        "link, log record, data point); the rest are dropped and counted in "
        "dropped_attributes_count. 0: no limit.")
    max_attribute_value_length: int = Field(
        65536, ge=0, description="String and bytes attribute values longer than this are "
        "cut to it (characters; bytes for bytes values). 0: no limit.")

    max_events_per_span: int = Field(
        1000, ge=0, description="Span events kept per span; the rest are dropped and counted "
        "in the span's dropped_events_count. 0: no limit.")
    max_links_per_span: int = Field(
        1000, ge=0, description="Span links kept per span; the rest are dropped and counted "
        "in the span's dropped_links_count. 0: no limit.")
    max_attribute_array_length: int = Field(
        32768, ge=0, description="Elements kept per array (and entries per key-value list) "
        "attribute value, at any depth; the rest are cut. 0: no limit. (The default costs "
        "nothing extra: only items over 64 KiB can hold a longer array, and those are "
        "walked for max_attribute_value_length anyway.)")

    @property
    def attribute_limits(self) -> AttributeLimits:
        return AttributeLimits(self.max_attributes_per_item, self.max_attribute_value_length,
                               self.max_events_per_span, self.max_links_per_span,
                               self.max_attribute_array_length)

    @model_validator(mode="before")
    @classmethod
    def _null_protocols(cls, data: Any) -> Any:
        if isinstance(data, dict) and "protocols" in data and data["protocols"] is None:
            data = {**data, "protocols": {}}
        return data
