"""Kafka settings shared by the `kafka` exporter and receiver: brokers, SASL, TLS,
the default topic per signal and the payload encodings.

Plain config models: importing them loads no Kafka client (the runtime part, turning
them into aiokafka arguments, is `pipeline.kafkahelper`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from pipeline.component import ComponentConfig, Signal

# The Collector's default topic per signal (exporter and receiver agree).
DEFAULT_TOPICS: dict[Signal, str] = {
    Signal.TRACES: "otlp_spans",
    Signal.LOGS: "otlp_logs",
    Signal.METRICS: "otlp_metrics",
}

Encoding = Literal["otlp_proto", "otlp_json"]


class SASLSettings(ComponentConfig):
    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    username: str
    password: SecretStr


class TLSSettings(ComponentConfig):
    """Present = connect with TLS. Files are PEM."""

    ca_file: str | None = Field(None, description="CA bundle; the system's when unset")
    cert_file: str | None = Field(None, description="client certificate (mutual TLS)")
    key_file: str | None = Field(None, description="client key (mutual TLS)")
    insecure_skip_verify: bool = Field(
        False, description="do not verify the broker's certificate (tests only)")


class ClientSettings(ComponentConfig):
    """Connection keys every kafka component has."""

    brokers: list[str] = Field(["localhost:9092"], min_length=1,
                               description="bootstrap brokers, host:port")
    client_id: str = "otelpipe"
    sasl: SASLSettings | None = None
    tls: TLSSettings | None = None

    @field_validator("brokers")
    @classmethod
    def _check_brokers(cls, v: list[str]) -> list[str]:
        for b in v:
            host, sep, port = b.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"invalid broker {b!r}: expected host:port")
        return v
