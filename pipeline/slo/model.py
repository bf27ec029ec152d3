"""SLO definitions: one typed model, whatever form they are written in.

The forms parse into it: `pipeline.slo.native` (the connector's compact `slos:`
list) and `pipeline.slo.openslo` (OpenSLO v1 documents); `pipeline.slo.loader`
reads YAML files of either.

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
  unit;
- `divide_by` -- a gauge whose value divides the selector's gauge, series joined
  on equal attributes (`db_pool_checked_out / db_pool_size`): the threshold applies
  to the quotient; such selectors are sampled per interval (below);
- `plus` -- further counters whose increases add to the selector's (the total of a
  cache-hit ratio: hits plus misses).

An `Indicator` with `interval` counts *time slices*: each gauge series (or
quotient) is sampled once per interval -- its latest value, as a Prometheus
rule evaluation sees it -- and each sample is one event ("pool use < 80% in 99%
of minutes").
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

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


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- the typed model --------------------------------------------------------------


class Selector(StrictModel):
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
    divide_by: str | None = Field(None, min_length=1, description="a gauge dividing this "
                                  "one (series joined on equal attributes); op/value apply "
                                  "to the quotient")
    plus: list[str] = Field(default_factory=list, description="counters whose increases add "
                            "to this one's (e.g. cache misses next to hits for the total)")

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
        if self.divide_by is not None:
            for name in (self.metric, self.divide_by):
                known = KNOWN_METRICS.get(name)
                if known and known[0] not in ("gauge", "updowncounter"):
                    raise ValueError(f"divide_by joins gauges; {name} is a {known[0]}")
            if self.plus:
                raise ValueError("plus (counters) and divide_by (gauges) do not go together")
        if self.plus:
            if self.op is not None:
                raise ValueError("plus adds counters: a threshold (op/value) does not apply")
            for name in (self.metric, *self.plus):
                known = KNOWN_METRICS.get(name)
                if known and known[0] != "counter":
                    raise ValueError(f"plus adds counters; {name} is a {known[0]}")
            if len(set(self.plus) | {self.metric}) != len(self.plus) + 1:
                raise ValueError("plus names a metric twice")
        return self

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every metric the selector reads."""
        extra = (self.divide_by,) if self.divide_by is not None else ()
        return (self.metric, *self.plus, *extra)

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


class Indicator(StrictModel):
    """good / total (or 1 - bad / total) over the events the selectors pick."""

    total: Selector
    good: Selector | None = None
    bad: Selector | None = None
    interval: Duration | None = Field(
        None, ge=1, le=3600, description="time slices: sample every gauge series once per "
        "interval (its latest value), each sample one event")

    @model_validator(mode="after")
    def _one(self) -> Indicator:
        if (self.good is None) == (self.bad is None):
            raise ValueError("an indicator has exactly one of good and bad (with total)")
        sels = [s for _, s in self.selectors()]
        if self.interval is None and any(s.divide_by is not None for s in sels):
            raise ValueError("divide_by needs an interval (the quotient is sampled per "
                             "interval)")
        if self.interval is not None:
            for sel in sels:
                known = KNOWN_METRICS.get(sel.metric)
                if sel.plus or (known and known[0] not in ("gauge", "updowncounter")):
                    raise ValueError(f"interval samples gauges; {sel.metric} is a counter")
            if 3600 % self.interval:
                raise ValueError("interval must divide an hour (e.g. 10s, 1m, 5m)")
        return self

    @property
    def sampled(self) -> bool:
        """Counted in time slices (gauges sampled once per interval)."""
        return self.interval is not None

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


class SLO(StrictModel):
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


class BurnRateRule(StrictModel):
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


class AlertingConfig(StrictModel):
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



# --- validation problems ---------------------------------------------------------


def validation_problems(prefix: str, exc: ValidationError) -> list[str]:
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


def check_unique(slos: Sequence[SLO], problems: list[str]) -> None:
    seen: set[str] = set()
    for s in slos:
        if s.name in seen:
            problems.append(f"SLO {s.name!r} is defined twice")
        seen.add(s.name)
    if problems:
        raise SLODefinitionError(problems)

