"""The `replication_lag` receiver's config: the primary, the replicas (a bare DSN or
{name, dsn, application_name}), timing and the heartbeat table."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from pipeline.component import ComponentConfig
from pipeline.config.types import Duration

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")


def dsn_name(dsn: str, fallback: str) -> str:
    """host:port of a URL or key=value DSN, for naming a replica (never the password)."""
    text = dsn.strip()
    if "://" in text:
        try:
            parts = urlsplit(text)
            host = parts.hostname or ""
            port = parts.port
        except ValueError:
            return fallback
        return f"{host}:{port}" if host and port else host or fallback
    kv = dict(re.findall(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", text))
    host = kv.get("host", "").strip("'")
    port = kv.get("port", "").strip("'")
    if not host:
        return fallback
    return f"{host}:{port}" if port else host


class ReplicaConfig(ComponentConfig):
    name: str = Field(description="Value of the db.replica attribute.")
    dsn: SecretStr = Field(description="libpq connection string or postgresql:// URL.")
    application_name: str | None = Field(
        None, description="application_name of this replica's WAL receiver in the primary's "
                          "pg_stat_replication (default: name).")

    @property
    def match_name(self) -> str:
        return self.application_name or self.name


def _replicas_schema(schema: dict[str, Any]) -> None:
    """A replica may also be written as a bare DSN string."""
    schema["items"] = {"anyOf": [schema["items"], {"type": "string"}]}


class ReplicationLagConfig(ComponentConfig):
    primary: SecretStr = Field(description="DSN of the primary (libpq string or URL).")
    primary_name: str = Field("primary", description="db.instance attribute of the primary.")
    replicas: list[ReplicaConfig] = Field(
        default_factory=list,
        description="Replicas to read the heartbeat on: DSNs or {name, dsn, application_name}.",
        json_schema_extra=_replicas_schema)
    interval: Duration = Field(0.1, gt=0, description="How often to write, read and emit.")
    timeout: Duration = Field(
        1.0, gt=0, description="Limit for connecting and for each query; a slower target "
                               "counts as down.")
    reconnect_backoff: Duration = Field(0.1, gt=0, description="First reconnect delay.")
    max_reconnect_backoff: Duration = Field(5.0, gt=0, description="Largest reconnect delay.")
    heartbeat_table: str = Field(
        "otelpipe_heartbeat", description="[schema.]table holding the heartbeat rows.")
    heartbeat_id: str | None = Field(
        None, description="Row id of this instance (default: <hostname>/<component id>).")
    create_table: bool = Field(True, description="CREATE TABLE IF NOT EXISTS on the primary.")
    stat_replication: bool = Field(
        True, description="Also read pg_stat_replication on the primary.")

    @field_validator("replicas", mode="before")
    @classmethod
    def _replica_strings(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        out: list[Any] = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append({"name": dsn_name(item, f"replica{i + 1}"), "dsn": item})
            elif isinstance(item, dict) and "dsn" in item and "name" not in item:
                out.append({**item, "name": dsn_name(str(item["dsn"]), f"replica{i + 1}")})
            else:
                out.append(item)
        return out

    @field_validator("heartbeat_table")
    @classmethod
    def _table_name(cls, value: str) -> str:
        if not _IDENT.match(value):
            raise ValueError("expected an unquoted identifier, optionally schema-qualified "
                             "(e.g. otelpipe_heartbeat or monitoring.heartbeat)")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> ReplicationLagConfig:
        names = [r.name for r in self.replicas]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"replica names must be unique, repeated: {', '.join(dup)} "
                             "(give each replica a name)")
        if self.max_reconnect_backoff < self.reconnect_backoff:
            raise ValueError("max_reconnect_backoff must be >= reconnect_backoff")
        return self
