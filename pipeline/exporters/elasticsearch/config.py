"""The `elasticsearch` exporter's config keys and the bulk URL they give."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlencode, urlsplit

from pydantic import Field, field_validator, model_validator

from pipeline.component import ComponentConfig
from pipeline.config.retry import ExporterSettings
from pipeline.config.secrets import mask_url
from pipeline.config.tls import ClientSettings

BULK_PATH = "/_bulk"
MSG_FIELD = {"otel": "body", "ecs": "message", "raw": "body"}


class DataStreamSettings(ComponentConfig):
    dataset: str = "generic"
    namespace: str = "default"


class VictoriaLogsSettings(ComponentConfig):
    """Query arguments VictoriaLogs' bulk endpoint needs (derived from `mapping`)."""

    stream_fields: list[str] = Field(default_factory=list,
                                     description="fields forming the log stream (_stream_fields)")
    msg_field: str | None = Field(None, description="default: body (otel, raw) or message (ecs)")
    time_field: str = "@timestamp"
    extra_fields: dict[str, str] = Field(default_factory=dict,
                                         description="fields added to every document")
    ignore_fields: list[str] = Field(default_factory=list)


class ElasticsearchExporterConfig(ClientSettings, ExporterSettings):
    endpoint: str = Field(description="base URL (/_bulk is appended) or the bulk URL itself")
    mode: Literal["data_stream", "index"] = "data_stream"
    data_stream: DataStreamSettings = DataStreamSettings()
    index: str = Field("otelpipe-%Y.%m.%d",
                       description="mode index: strftime of the record time (UTC)")
    mapping: Literal["otel", "ecs", "raw"] = "otel"
    compression: Literal["none", "gzip"] = "none"
    max_request_bytes: int = Field(5 * 1024 * 1024, gt=0,
                                   description="split a batch's bulk body above this size")
    victorialogs: VictoriaLogsSettings | None = Field(
        None, description="add the query arguments VictoriaLogs needs")
    params: dict[str, str] = Field(default_factory=dict, description="extra query arguments")
    max_idle_conns: int = Field(100, gt=0, description="connection pool size")

    @field_validator("endpoint")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"{mask_url(v)!r}: expected an http:// or https:// URL")
        if urlsplit(v).query:
            raise ValueError("endpoint: give query arguments in `params`, not in the URL")
        return v

    @model_validator(mode="after")
    def _index(self) -> ElasticsearchExporterConfig:
        if self.mode == "index" and not self.index.strip():
            raise ValueError("index: must not be empty")
        return self

    def url(self) -> str:
        base = self.endpoint.rstrip("/")
        url = base if base.endswith(BULK_PATH) else base + BULK_PATH
        params: dict[str, str] = {}
        vl = self.victorialogs
        if vl is not None:
            params["_msg_field"] = vl.msg_field or MSG_FIELD[self.mapping]
            params["_time_field"] = vl.time_field
            if vl.stream_fields:
                params["_stream_fields"] = ",".join(vl.stream_fields)
            if vl.extra_fields:
                params["extra_fields"] = ",".join(f"{k}={v}" for k, v in vl.extra_fields.items())
            if vl.ignore_fields:
                params["ignore_fields"] = ",".join(vl.ignore_fields)
        params.update(self.params)
        return url + ("?" + urlencode(params) if params else "")
