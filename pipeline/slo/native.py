"""The native (compact) SLO form, parsed into `pipeline.slo.model.SLO`.

Native form (the connector's `slos:` key, or a YAML file with a `slos:` key)::

    slos:
      - name: api-availability
        service: api
        objective: 99.9            # percent of good events
        window: 30d                # rolling period (default 30d)
        sli:
          type: availability       # red (default): non-error calls / calls
          source: httpcheck        #  httpcheck: httpcheck.success == 1 / probes
          match: {http.url: "http://api:8000/health"}
      - name: api-latency-p95
        service: api
        objective: 95
        sli: {type: latency, threshold: 200ms, match: {service.name: api}}
      - name: db-consistency
        service: postgres
        objective: 99.99
        sli: {type: threshold, metric: db.replication.lag, op: lt, threshold: 100ms,
              match: {method: heartbeat}}
      - name: db-pool-headroom         # pool use < 80% in 99% of minutes
        service: api
        objective: 99
        sli: {type: threshold, metric: app_db_pool_checked_out, divide_by: app_db_pool_size,
              op: lt, threshold: 0.8, interval: 1m}
      - name: cache-hit-ratio          # hits / (hits + misses) >= 90%
        service: api
        objective: 90
        sli: {type: ratio, good: {metric: app_cache_hits_total},
              total: {metric: app_cache_hits_total, plus: [app_cache_misses_total]}}
      - name: custom
        service: api
        objective: 99
        sli: {type: ratio, bad: {metric: ..., match: {...}}, total: {metric: ...}}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from pipeline.config.types import Duration
from pipeline.slo.model import (
    DEFAULT_HTTPCHECK,
    DEFAULT_PERIOD,
    DEFAULT_RED_CALLS,
    DEFAULT_RED_DURATION,
    SLO,
    STATUS_ATTRIBUTE,
    STATUS_ERROR,
    AttrValue,
    Indicator,
    Op,
    Period,
    Selector,
    SLODefinitionError,
    SLOName,
    StrictModel,
    Threshold,
    check_unique,
    validation_problems,
)


class _NativeSLI(StrictModel):
    match: dict[str, AttrValue] = Field(default_factory=dict,
                                        description="attribute values the data points must have")


class AvailabilitySLI(_NativeSLI):
    type: Literal["availability"]
    source: Literal["red", "httpcheck"] = Field(
        "red", description="red: non-error calls / calls (traces.span.metrics.calls, "
                           "status.code); httpcheck: successful probes / probes "
                           "(httpcheck.success == 1)")
    metric: str | None = Field(None, description="override the metric name")

    def indicator(self) -> Indicator:
        if self.source == "httpcheck":
            metric = self.metric or DEFAULT_HTTPCHECK
            return Indicator(total=Selector(metric=metric, match=self.match),
                             good=Selector(metric=metric, match=self.match, op="eq", value=1))
        metric = self.metric or DEFAULT_RED_CALLS
        if STATUS_ATTRIBUTE in self.match:
            raise ValueError(f"{STATUS_ATTRIBUTE} cannot be matched in an availability SLI "
                             "(it tells errors from the rest)")
        return Indicator(total=Selector(metric=metric, match=self.match),
                         bad=Selector(metric=metric,
                                      match={**self.match, STATUS_ATTRIBUTE: STATUS_ERROR}))


class LatencySLI(_NativeSLI):
    type: Literal["latency"]
    threshold: Threshold = Field(gt=0, description="e.g. 200ms: good requests take at most "
                                 "this long; must be a bucket bound of the histogram")
    metric: str = Field(DEFAULT_RED_DURATION, description="a duration histogram")

    def indicator(self) -> Indicator:
        return Indicator(total=Selector(metric=self.metric, match=self.match),
                         good=Selector(metric=self.metric, match=self.match, op="lte",
                                       value=self.threshold))


class ThresholdSLI(_NativeSLI):
    type: Literal["threshold"]
    metric: str = Field(min_length=1, description="a gauge, e.g. db.replication.lag")
    divide_by: str | None = Field(None, min_length=1, description="a gauge dividing metric "
                                  "(series joined on equal attributes), e.g. db_pool_size")
    op: Op = Field(description="a sample is good when `sample op threshold`")
    threshold: Threshold
    unit: str | None = None
    interval: Duration | None = Field(
        None, description="time slices: sample each series once per interval (default 1m "
                          "with divide_by; without: every sample counts)")

    def indicator(self) -> Indicator:
        interval = self.interval
        if interval is None and self.divide_by is not None:
            interval = 60.0
        return Indicator(total=Selector(metric=self.metric, match=self.match, unit=self.unit,
                                        divide_by=self.divide_by),
                         good=Selector(metric=self.metric, match=self.match, op=self.op,
                                       value=self.threshold, unit=self.unit,
                                       divide_by=self.divide_by),
                         interval=interval)


class RatioSLI(StrictModel):
    type: Literal["ratio"]
    total: Selector
    good: Selector | None = None
    bad: Selector | None = None

    def indicator(self) -> Indicator:
        return Indicator(total=self.total, good=self.good, bad=self.bad)


NativeSLI = Annotated[AvailabilitySLI | LatencySLI | ThresholdSLI | RatioSLI,
                      Field(discriminator="type")]


class NativeSLO(StrictModel):
    """The compact form."""

    name: SLOName
    service: str = Field(min_length=1)
    display_name: str = ""
    description: str = ""
    objective: float = Field(gt=0, lt=100, description="percent of good events, e.g. 99.9")
    window: Period = Field(DEFAULT_PERIOD, description="rolling period, e.g. 30d")
    sli: NativeSLI

    def to_slo(self) -> SLO:
        return SLO(name=self.name, service=self.service, display_name=self.display_name,
                   description=self.description, objective=self.objective / 100,
                   period=self.window, indicator=self.sli.indicator())



def parse_native(items: Iterable[Any], where: str = "slos") -> list[SLO]:
    """Native definitions (the items of a `slos:` list)."""
    out: list[SLO] = []
    problems: list[str] = []
    for i, item in enumerate(items):
        try:
            out.append(NativeSLO.model_validate(item).to_slo())
        except ValidationError as exc:
            problems.extend(validation_problems(f"{where}[{i}].", exc))
        except ValueError as exc:
            problems.append(f"{where}[{i}]: {exc}")
    if problems:
        raise SLODefinitionError(problems)
    check_unique(out, problems)
    return out

