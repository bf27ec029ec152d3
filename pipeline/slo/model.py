"""SLO definitions: OpenSLO v1 documents and a compact native form, one typed model.

The typed model
---------------
An `SLO` counts *events* (requests, probes, samples) as good or bad over a
rolling `period` and compares the good fraction with `objective`:

    SLO(name, service, objective=0.999, period=30d,
        indicator=Indicator(total=Selector(...), good=Selector(...) | bad=Selector(...)))

A `Selector` says which events of the metrics flowing through the pipeline
count (see `pipeline.connectors.slo` for how each metric type is counted):

- `metric` -- the OTLP metric name; `match` -- attribute values the data point
  (or its resource) must have;
- `op` / `value` -- only events satisfying `<observation> op value` count. On a
  histogram only `op: lte` is possible and `value` must be one of its bucket
  bounds (the count of observations <= value is read from the bucket counts);
  on a gauge (or non-monotonic sum) each sample is compared; counters (monotonic
  sums) cannot take a threshold.
- thresholds on time-unit metrics (`s`, `ms`, ...) are in **seconds** (a number,
  or a duration such as `200ms`); the connector converts them to the metric's
  unit.

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
      - name: custom
        service: api
        objective: 99
        sli: {type: ratio, bad: {metric: ..., match: {...}}, total: {metric: ...}}

OpenSLO v1 (`apiVersion: openslo/v1`, `kind: SLO`) with `budgetingMethod:
Occurrences`, one rolling `timeWindow`, `indicator` (inline) or
`indicatorRef` (a `kind: SLI` document in the same file), `ratioMetric`
(`good` or `bad`, and `total`) or `thresholdMetric` (good = `op value` of the
objective). Metric sources are `type: otelpipe` with the selector as `spec`::

    ratioMetric:
      counter: true
      bad:   {metricSource: {type: otelpipe, spec: {metric: traces.span.metrics.calls,
                             match: {service.name: api, status.code: STATUS_CODE_ERROR}}}}
      total: {metricSource: {type: otelpipe, spec: {metric: traces.span.metrics.calls,
                             match: {service.name: api}}}}

Several objectives in one OpenSLO SLO become several SLOs, named
`<metadata.name>-<objective name>` (the objective's `name`, else its
`displayName` made into a slug, else its position). `kind: Service`,
`DataSource`, `AlertPolicy`, `AlertCondition` and `AlertNotificationTarget`
documents are accepted and ignored (alerting is configured on the connector).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from pipeline.config.types import Duration, parse_duration

DAY = 86400.0
DEFAULT_PERIOD = 30 * DAY
DEFAULT_RED_CALLS = "traces.span.metrics.calls"
DEFAULT_RED_DURATION = "traces.span.metrics.duration"
DEFAULT_HTTPCHECK = "httpcheck.success"
STATUS_ATTRIBUTE = "status.code"
STATUS_ERROR = "STATUS_CODE_ERROR"

OPS = ("lt", "lte", "gt", "gte", "eq", "ne")
Op = Literal["lt", "lte", "gt", "gte", "eq", "ne"]
_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")

# Metrics otelpipe's own components emit: (OTLP type, unit). Used to check
# selectors early (a threshold on a counter, a bucket bound on a gauge) and by
# `pipeline.slo.rules` to derive Prometheus names. Others take `unit` from the
# selector and their type from its shape.
KNOWN_METRICS: dict[str, tuple[str, str]] = {
    DEFAULT_RED_CALLS: ("counter", ""),
    DEFAULT_RED_DURATION: ("histogram", "s"),
    "httpcheck.success": ("gauge", "1"),
    "httpcheck.status": ("updowncounter", "1"),
    "httpcheck.duration": ("gauge", "ms"),
    "db.replication.lag": ("gauge", "s"),
    "db.replication.lag_bytes": ("gauge", "By"),
    "db.replication.up": ("gauge", "1"),
}
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "min": 60.0, "h": 3600.0,
              "d": DAY}


class SLODefinitionError(ValueError):
    """One or more SLO definitions are invalid; `problems` has one line each."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


# --- value types ------------------------------------------------------------------


def parse_threshold(value: object) -> float:
    """A number, or a duration string (`200ms`, `1.5s`) as seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a number or a duration such as 200ms")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("expected a finite number")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        return parse_duration(text)
    raise ValueError("expected a number or a duration such as 200ms")


def parse_period(value: object) -> float:
    """A rolling period: a duration (`30d`, `4w`, `720h`) or seconds."""
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*w\s*", value):
        return int(value.strip()[:-1]) * 7 * DAY
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*[MQY]\s*", value):
        raise ValueError(f"{value!r}: calendar units (M, Q, Y) are not supported for rolling "
                         "windows; use days, e.g. 30d")
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("a period must be longer than 0")
    return seconds


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str | int | float):
        return str(value)
    raise ValueError("attribute values are strings or numbers")


Threshold = Annotated[float, BeforeValidator(parse_threshold), WithJsonSchema(
    {"anyOf": [{"type": "number"}, {"type": "string"}],
     "description": "a number, or a duration such as 200ms (as seconds)"})]
Period = Annotated[float, BeforeValidator(parse_period), WithJsonSchema(
    {"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "string"}],
     "description": "seconds, or a duration such as 30d, 4w, 720h"})]
AttrValue = Annotated[str, BeforeValidator(_as_text)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- the typed model --------------------------------------------------------------


class Selector(_Model):
    """Which events of the incoming metrics count."""

    metric: str = Field(min_length=1, description="OTLP metric name")
    match: dict[str, AttrValue] = Field(
        default_factory=dict, description="attribute values a data point (or its resource) "
                                          "must have")
    op: Op | None = Field(None, description="count only observations `op value` (histograms: "
                                            "lte only, value a bucket bound)")
    value: Threshold | None = Field(None, description="threshold; seconds for time units")
    unit: str | None = Field(None, description="unit of the metric, when otelpipe does not "
                                               "know it (for thresholds and Prometheus names)")

    @model_validator(mode="before")
    @classmethod
    def _le_sugar(cls, data: Any) -> Any:
        # `le: 0.2` is short for `op: lte, value: 0.2` (a histogram bucket bound).
        if isinstance(data, Mapping) and "le" in data:
            data = dict(data)
            if "op" in data or "value" in data:
                raise ValueError("give either le or op/value, not both")
            data["op"] = "lte"
            data["value"] = data.pop("le")
        return data

    @model_validator(mode="after")
    def _check(self) -> Selector:
        if (self.op is None) != (self.value is None):
            raise ValueError("op and value go together")
        kind = self.metric_type
        if self.op is not None and kind == "counter":
            raise ValueError(f"{self.metric} is a counter: a threshold (op/value) applies to "
                             "histograms (lte a bucket bound) and gauges only")
        if self.op is not None and kind == "histogram" and self.op != "lte":
            raise ValueError(f"{self.metric} is a histogram: only `op: lte` (at most a bucket "
                             f"bound) can be counted, not {self.op}")
        return self

    @property
    def metric_type(self) -> str | None:
        """counter | updowncounter | gauge | histogram, when known."""
        known = KNOWN_METRICS.get(self.metric)
        return known[0] if known else None

    @property
    def metric_unit(self) -> str:
        if self.unit is not None:
            return self.unit
        known = KNOWN_METRICS.get(self.metric)
        return known[1] if known else ""


class Indicator(_Model):
    """good / total (or 1 - bad / total) over the events the selectors pick."""

    total: Selector
    good: Selector | None = None
    bad: Selector | None = None

    @model_validator(mode="after")
    def _one(self) -> Indicator:
        if (self.good is None) == (self.bad is None):
            raise ValueError("an indicator has exactly one of good and bad (with total)")
        return self

    def selectors(self) -> list[tuple[str, Selector]]:
        """(role, selector) pairs: role is good, bad or total."""
        out: list[tuple[str, Selector]] = [("total", self.total)]
        if self.good is not None:
            out.append(("good", self.good))
        if self.bad is not None:
            out.append(("bad", self.bad))
        return out


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"invalid SLO name {value!r}: lowercase letters, digits, '-', '_' "
                         "and '.', starting and ending with a letter or digit, at most 63 "
                         "characters")
    return value


SLOName = Annotated[str, BeforeValidator(lambda v: _check_name(str(v)))]


class SLO(_Model):
    """One objective over one indicator and one rolling period."""

    name: SLOName
    service: str = Field(min_length=1)
    display_name: str = ""
    description: str = ""
    objective: float = Field(gt=0, lt=1, description="target fraction of good events, "
                                                     "e.g. 0.999")
    period: float = Field(gt=0, description="rolling period in seconds")
    indicator: Indicator

    @field_validator("objective")
    @classmethod
    def _round(cls, v: float) -> float:
        return round(v, 12)  # 99.9 / 100 is 0.9990000000000001

    @property
    def error_budget(self) -> float:
        """Allowed fraction of bad events (1 - objective)."""
        return round(1.0 - self.objective, 12)


# --- alerting ---------------------------------------------------------------------


def _fraction(value: object) -> float:
    if isinstance(value, str) and value.strip().endswith("%"):
        return float(value.strip()[:-1]) / 100
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected a fraction such as 0.02 or a percentage such as 2%")
    return float(value)


class BurnRateRule(_Model):
    """One multi-window condition: burn rate >= threshold over BOTH windows."""

    severity: str = Field(pattern=r"^[a-z][a-z0-9_-]*$", description="page, ticket, ...")
    long_window: Duration = Field(gt=0)
    short_window: Duration = Field(gt=0)
    burn_rate: float | None = Field(None, gt=0, description="threshold as defined for "
                                                            "`reference_period` (30d)")
    budget_consumed: Annotated[float, BeforeValidator(_fraction)] | None = Field(
        None, gt=0, le=1, description="alternative to burn_rate: fraction of the budget "
                                      "consumed over long_window (2% = 14.4x over 1h of 30d)")
    for_: Duration = Field(0.0, alias="for", description="the condition must hold this long "
                                                         "before the alert fires")

    @model_validator(mode="after")
    def _check(self) -> BurnRateRule:
        if (self.burn_rate is None) == (self.budget_consumed is None):
            raise ValueError("give exactly one of burn_rate and budget_consumed")
        if self.short_window >= self.long_window:
            raise ValueError("short_window must be shorter than long_window")
        return self

    def threshold(self, period: float, reference_period: float) -> float:
        """The burn-rate threshold for an SLO over `period`.

        A burn rate of B over window W consumes B * W / period of the budget. The
        workbook thresholds are for a 30d period (14.4x over 1h = 2% of the budget);
        to keep the *budget consumption* for another period, the threshold scales
        with it: B' = B * period / reference_period (7d: 14.4 * 7/30 = 3.36x).
        """
        if self.budget_consumed is not None:
            return self.budget_consumed * period / self.long_window
        assert self.burn_rate is not None
        return self.burn_rate * period / reference_period


DEFAULT_RULES: tuple[dict[str, Any], ...] = (
    {"severity": "page", "long_window": "1h", "short_window": "5m", "burn_rate": 14.4,
     "for": "2m"},
    {"severity": "page", "long_window": "6h", "short_window": "30m", "burn_rate": 6,
     "for": "2m"},
    {"severity": "ticket", "long_window": "1d", "short_window": "2h", "burn_rate": 3,
     "for": "15m"},
    {"severity": "ticket", "long_window": "3d", "short_window": "6h", "burn_rate": 1,
     "for": "15m"},
)


class AlertingConfig(_Model):
    """Multi-window multi-burn-rate alerting (the SRE workbook's, by default)."""

    reference_period: Period = Field(DEFAULT_PERIOD, description="the period burn_rate "
                                     "thresholds are written for; scaled to each SLO's period")
    min_events: int | dict[str, int] = Field(
        10, description="a window with fewer events never satisfies a condition (low "
                        "traffic guard); an int for every window or {window: n}, e.g. "
                        "{5m: 20, default: 10}")
    rules: list[BurnRateRule] = Field(
        default_factory=lambda: [BurnRateRule.model_validate(r) for r in DEFAULT_RULES])

    @field_validator("min_events")
    @classmethod
    def _min_events(cls, v: int | dict[str, int]) -> int | dict[str, int]:
        if isinstance(v, int):
            if v < 0:
                raise ValueError("min_events cannot be negative")
            return v
        for key, n in v.items():
            if key != "default":
                parse_duration(key)
            if n < 0:
                raise ValueError("min_events cannot be negative")
        return v

    def min_events_for(self, window: float) -> int:
        if isinstance(self.min_events, int):
            return self.min_events
        for key, n in self.min_events.items():
            if key != "default" and abs(parse_duration(key) - window) < 1e-6:
                return n
        return self.min_events.get("default", 10)

    @property
    def severities(self) -> list[str]:
        out: list[str] = []
        for r in self.rules:
            if r.severity not in out:
                out.append(r.severity)
        return out


# --- native form ------------------------------------------------------------------


class _NativeSLI(_Model):
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
    op: Op = Field(description="a sample is good when `sample op threshold`")
    threshold: Threshold
    unit: str | None = None

    def indicator(self) -> Indicator:
        return Indicator(total=Selector(metric=self.metric, match=self.match, unit=self.unit),
                         good=Selector(metric=self.metric, match=self.match, op=self.op,
                                       value=self.threshold, unit=self.unit))


class RatioSLI(_Model):
    type: Literal["ratio"]
    total: Selector
    good: Selector | None = None
    bad: Selector | None = None

    def indicator(self) -> Indicator:
        return Indicator(total=self.total, good=self.good, bad=self.bad)


NativeSLI = Annotated[AvailabilitySLI | LatencySLI | ThresholdSLI | RatioSLI,
                      Field(discriminator="type")]


class NativeSLO(_Model):
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


# --- OpenSLO v1 -------------------------------------------------------------------

OPENSLO_API = "openslo/v1"
IGNORED_KINDS = {"Service", "DataSource", "AlertPolicy", "AlertCondition",
                 "AlertNotificationTarget"}


class _OSMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: SLOName
    displayName: str = ""


class _OSMetricSource(_Model):
    type: str
    spec: dict[str, Any]
    metricSourceRef: str | None = None


class _OSMetricRef(_Model):
    metricSource: _OSMetricSource

    def selector(self) -> Selector:
        src = self.metricSource
        if src.type.lower() != "otelpipe":
            raise ValueError(f"metricSource.type must be otelpipe (the slo connector counts "
                             f"metrics flowing through the pipeline), not {src.type!r}")
        return Selector.model_validate(src.spec)


class _OSRatio(_Model):
    counter: bool = True
    rawType: str | None = None
    good: _OSMetricRef | None = None
    bad: _OSMetricRef | None = None
    total: _OSMetricRef


class _OSThreshold(_Model):
    metricSource: _OSMetricSource


class _OSIndicatorSpec(_Model):
    description: str = ""
    ratioMetric: _OSRatio | None = None
    thresholdMetric: _OSThreshold | None = None

    @model_validator(mode="after")
    def _one(self) -> _OSIndicatorSpec:
        if (self.ratioMetric is None) == (self.thresholdMetric is None):
            raise ValueError("an indicator has exactly one of ratioMetric and thresholdMetric")
        return self


class _OSIndicator(_Model):
    metadata: _OSMetadata | None = None
    spec: _OSIndicatorSpec


class _OSTimeWindow(_Model):
    duration: Period
    isRolling: bool = True
    calendar: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _rolling(self) -> _OSTimeWindow:
        if not self.isRolling or self.calendar is not None:
            raise ValueError("only rolling time windows (isRolling: true) are supported")
        return self


class _OSObjective(_Model):
    name: str | None = None
    displayName: str = ""
    target: float | None = Field(None, gt=0, lt=1)
    targetPercent: float | None = Field(None, gt=0, lt=100)
    op: Op | None = None
    value: Threshold | None = None
    timeSliceTarget: float | None = None
    timeSliceWindow: str | None = None
    indicator: Any = None
    indicatorRef: str | None = None
    compositeWeight: float | None = None

    @model_validator(mode="after")
    def _target(self) -> _OSObjective:
        if (self.target is None) == (self.targetPercent is None):
            raise ValueError("an objective has exactly one of target and targetPercent")
        if self.timeSliceTarget is not None or self.timeSliceWindow is not None:
            raise ValueError("timeslice objectives are not supported (budgetingMethod: "
                             "Occurrences)")
        if self.indicator is not None or self.indicatorRef is not None:
            raise ValueError("per-objective indicators (composite SLOs) are not supported")
        return self

    @property
    def fraction(self) -> float:
        if self.target is not None:
            return self.target
        assert self.targetPercent is not None
        return self.targetPercent / 100


class _OSSLOSpec(_Model):
    description: str = ""
    service: str = Field(min_length=1)
    indicator: _OSIndicator | None = None
    indicatorRef: str | None = None
    timeWindow: list[_OSTimeWindow] = Field(min_length=1, max_length=1)
    budgetingMethod: Literal["Occurrences"] = Field(
        description="only Occurrences (Timeslices and RatioTimeslices are not supported)")
    objectives: list[_OSObjective] = Field(min_length=1)
    alertPolicies: list[Any] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one(self) -> _OSSLOSpec:
        if (self.indicator is None) == (self.indicatorRef is None):
            raise ValueError("a spec has exactly one of indicator and indicatorRef")
        return self


class _OSDoc(_Model):
    apiVersion: str
    kind: str
    metadata: _OSMetadata
    spec: dict[str, Any]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _openslo_slos(doc: _OSDoc, indicators: Mapping[str, _OSIndicatorSpec]) -> list[SLO]:
    spec = _OSSLOSpec.model_validate(doc.spec)
    if spec.indicator is not None:
        ind = spec.indicator.spec
    else:
        assert spec.indicatorRef is not None
        found = indicators.get(spec.indicatorRef)
        if found is None:
            raise ValueError(f"spec.indicatorRef: no kind: SLI document named "
                             f"{spec.indicatorRef!r} in this file"
                             + (f" (have: {', '.join(sorted(indicators))})" if indicators else ""))
        ind = found
    period = spec.timeWindow[0].duration
    out = []
    multi = len(spec.objectives) > 1
    for i, obj in enumerate(spec.objectives):
        where = f"spec.objectives[{i}]"
        if ind.ratioMetric is not None:
            if obj.op is not None or obj.value is not None:
                raise ValueError(f"{where}: op/value belong to thresholdMetric indicators")
            r = ind.ratioMetric
            if (r.good is None) == (r.bad is None):
                raise ValueError("ratioMetric: give exactly one of good and bad (with total)")
            indicator = Indicator(total=r.total.selector(),
                                  good=r.good.selector() if r.good else None,
                                  bad=r.bad.selector() if r.bad else None)
        else:
            assert ind.thresholdMetric is not None
            if obj.op is None or obj.value is None:
                raise ValueError(f"{where}: a thresholdMetric objective needs op and value "
                                 "(a sample is good when `sample op value`)")
            base = _OSMetricRef(metricSource=ind.thresholdMetric.metricSource).selector()
            if base.op is not None:
                raise ValueError("thresholdMetric: the threshold goes in the objective "
                                 "(op/value), not in the metric source")
            good = base.model_copy(update={"op": obj.op, "value": obj.value})
            indicator = Indicator(total=base, good=Selector.model_validate(good.model_dump()))
        name = doc.metadata.name
        if multi:
            suffix = obj.name or _slug(obj.displayName) or str(i + 1)
            name = f"{name}-{suffix}"
        out.append(SLO(name=name, service=spec.service,
                       display_name=(obj.displayName if multi and obj.displayName
                                     else doc.metadata.displayName),
                       description=spec.description, objective=obj.fraction, period=period,
                       indicator=indicator))
    return out


# --- entry points -----------------------------------------------------------------


def _problems(prefix: str, exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "missing":
            msg = "field required"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "value_error" and "error" in err.get("ctx", {}):
            msg = str(err["ctx"]["error"])
        else:
            msg = err["msg"]
            msg = msg[0].lower() + msg[1:]
        out.append(f"{prefix}{loc}: {msg}" if loc else f"{prefix}{msg}".rstrip(": "))
    return out


def parse_native(items: Iterable[Any], where: str = "slos") -> list[SLO]:
    """Native definitions (the items of a `slos:` list)."""
    out: list[SLO] = []
    problems: list[str] = []
    for i, item in enumerate(items):
        try:
            out.append(NativeSLO.model_validate(item).to_slo())
        except ValidationError as exc:
            problems.extend(_problems(f"{where}[{i}].", exc))
        except ValueError as exc:
            problems.append(f"{where}[{i}]: {exc}")
    if problems:
        raise SLODefinitionError(problems)
    _check_unique(out, problems)
    return out


def parse_documents(docs: Iterable[Any], source: str = "<input>") -> list[SLO]:
    """SLOs from YAML documents: OpenSLO v1 documents and/or native `slos:` documents."""
    problems: list[str] = []
    out: list[SLO] = []
    docs = [d for d in docs if d is not None]
    indicators: dict[str, _OSIndicatorSpec] = {}
    slo_docs: list[tuple[int, _OSDoc]] = []
    for n, raw in enumerate(docs, 1):
        where = f"{source}: document {n}"
        if not isinstance(raw, Mapping):
            problems.append(f"{where}: expected a mapping, got {type(raw).__name__}")
            continue
        if "slos" in raw and "apiVersion" not in raw:
            extra = sorted(set(raw) - {"slos"})
            if extra:
                problems.append(f"{where}: unknown key(s) {', '.join(extra)} next to slos")
            items = raw["slos"]
            if not isinstance(items, list):
                problems.append(f"{where}: slos must be a list")
                continue
            try:
                out.extend(parse_native(items, f"{where}: slos"))
            except SLODefinitionError as exc:
                problems.extend(exc.problems)
            continue
        api = raw.get("apiVersion")
        if api != OPENSLO_API:
            hint = (" (v1alpha documents: convert to openslo/v1)" if isinstance(api, str)
                    and api.startswith("openslo/") else "")
            problems.append(f"{where}: apiVersion must be {OPENSLO_API}, got {api!r}{hint} "
                            "(or use the native form: a document with a slos: list)")
            continue
        try:
            doc = _OSDoc.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_problems(f"{where}: ", exc))
            continue
        where = f"{where} ({doc.kind} {doc.metadata.name})"
        if doc.kind == "SLI":
            try:
                indicators[doc.metadata.name] = _OSIndicatorSpec.model_validate(doc.spec)
            except ValidationError as exc:
                problems.extend(_problems(f"{where}: spec.", exc))
        elif doc.kind == "SLO":
            slo_docs.append((n, doc))
        elif doc.kind not in IGNORED_KINDS:
            problems.append(f"{where}: unsupported kind {doc.kind!r} (expected SLO or SLI)")
    for n, doc in slo_docs:
        where = f"{source}: document {n} (SLO {doc.metadata.name})"
        try:
            out.extend(_openslo_slos(doc, indicators))
        except ValidationError as exc:
            problems.extend(_problems(f"{where}: spec.", exc))
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    if not problems:
        _check_unique(out, problems)
    if problems:
        raise SLODefinitionError(problems)
    return out


def _check_unique(slos: Sequence[SLO], problems: list[str]) -> None:
    seen: set[str] = set()
    for s in slos:
        if s.name in seen:
            problems.append(f"SLO {s.name!r} is defined twice")
        seen.add(s.name)
    if problems:
        raise SLODefinitionError(problems)


def parse_yaml_text(text: str, source: str = "<input>") -> list[SLO]:
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SLODefinitionError([f"{source}: invalid YAML{at}: "
                                  f"{getattr(exc, 'problem', None) or exc}"]) from None
    if not docs:
        raise SLODefinitionError([f"{source}: no SLO definitions"])
    return parse_documents(docs, source)


def load_slo_file(path: str | Path) -> list[SLO]:
    """SLOs from a YAML file (OpenSLO multi-doc, or a native `slos:` document)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SLODefinitionError([f"{p}: cannot read: {exc.strerror or exc}"]) from None
    return parse_yaml_text(text, str(p))
