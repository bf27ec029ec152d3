"""`logpatterns` settings and the names they share."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.aggregation.connector import AggregationSettings
from pipeline.component import (
    ComponentConfig,
)
from pipeline.config.types import Duration
from pipeline.proto.otelpipe import logpatterns_pb2

METRIC = "log.pattern.count"
SCOPE = "otelpipe/logpatterns"
NO_TEMPLATE = "none"
STATE_VERSION = 1
RECENT_EVENTS = 200  # kept for the status page
TOP_PER_SERVICE = 10
MAX_ID_CHARS = 128  # longer client-sent ids / templates are cut (they become labels)
MAX_TEMPLATE_CHARS = 2048
SEVERITIES = ("", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")

LogsProjection = logpatterns_pb2.LogsRequest  # proto/otelpipe/logpatterns.proto

EventKind = Literal["new", "reappeared", "rate_change", "resolved"]
AlertKind = Literal["new", "reappeared", "rate_change"]
ALERT_KINDS: tuple[AlertKind, ...] = ("new", "reappeared", "rate_change")


class RateChangeConfig(ComponentConfig):
    enabled: bool = True
    factor: float = Field(10.0, gt=1, description="a window count beyond factor × (or below "
                          "1/factor of) the baseline average per window is a change")
    window: Duration = Field(300.0, gt=0, description="the window counted (tumbling)")
    baseline: Duration = Field(3600.0, gt=0, description="the windows before it that make "
                               "the baseline (a multiple of window)")
    min_count: int = Field(20, ge=1, description="up: records in the window, down: baseline "
                           "average, at least this (quiet patterns do not flap)")


class AlertsConfig(ComponentConfig):
    enabled: bool = Field(False, description="add the alertmanager exporter's attributes to "
                          "events, and resolve them after resolve_after")
    severity: str = Field("ticket", min_length=1, description="alert.severity label")
    resolve_after: Duration = Field(3600.0, gt=0, description="emit the resolved event this "
                                    "long after the alert fired")
    kinds: list[AlertKind] = Field(
        default_factory=lambda: list(ALERT_KINDS),
        description="which events alert")


class LogPatternsConfig(AggregationSettings):
    warmup: Duration = Field(600.0, ge=0, description="patterns first seen this soon after "
                             "the first start are the baseline: no new-pattern events")
    reappear_after: Duration = Field(86400.0, ge=0, description="a pattern silent this long "
                                     "that comes back is announced again; 0: never")
    rate_change: RateChangeConfig = Field(default_factory=RateChangeConfig)
    max_patterns: int = Field(20_000, ge=1, description="(service, template) pairs remembered; "
                              "the least recently seen is forgotten beyond it")
    first_line_max: int = Field(512, ge=16, description="characters of the first line kept")
    severity_dimension: bool = Field(True, description="count per severity too")
    state_file: str | None = Field(None, description="where patterns survive restarts")
    state_save_interval: Duration = Field(60.0, gt=0)
    max_pending_events: int = Field(1000, ge=1, description="events kept while the logs "
                                    "pipeline refuses them")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
