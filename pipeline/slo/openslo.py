"""OpenSLO v1 documents, parsed into `pipeline.slo.model.SLO`.

OpenSLO v1 (`apiVersion: openslo/v1`, `kind: SLO`) with `budgetingMethod:
Occurrences` (or `Timeslices` over a `thresholdMetric`: each gauge series sampled
once per objective's `timeSliceWindow`, good when `op value` holds), one rolling
`timeWindow`, `indicator` (inline) or `indicatorRef` (a `kind: SLI` document in
the same file), `ratioMetric` (`good` or `bad`, and `total`) or `thresholdMetric`
(good = `op value` of the objective). Metric sources are `type: otelpipe` with the
selector as `spec`::

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

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.config.types import Duration
from pipeline.slo.model import (
    SLO,
    Indicator,
    Op,
    Period,
    Selector,
    SLOName,
    StrictModel,
    Threshold,
    validation_problems,
)

OPENSLO_API = "openslo/v1"
IGNORED_KINDS = {"Service", "DataSource", "AlertPolicy", "AlertCondition",
                 "AlertNotificationTarget"}


class _OSMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: SLOName
    displayName: str = ""


class _OSMetricSource(StrictModel):
    type: str
    spec: dict[str, Any]
    metricSourceRef: str | None = None


class _OSMetricRef(StrictModel):
    metricSource: _OSMetricSource

    def selector(self) -> Selector:
        src = self.metricSource
        if src.type.lower() != "otelpipe":
            raise ValueError(f"metricSource.type must be otelpipe (the slo connector counts "
                             f"metrics flowing through the pipeline), not {src.type!r}")
        return Selector.model_validate(src.spec)


class _OSRatio(StrictModel):
    counter: bool = True
    rawType: str | None = None
    good: _OSMetricRef | None = None
    bad: _OSMetricRef | None = None
    total: _OSMetricRef


class _OSThreshold(StrictModel):
    metricSource: _OSMetricSource


class _OSIndicatorSpec(StrictModel):
    description: str = ""
    ratioMetric: _OSRatio | None = None
    thresholdMetric: _OSThreshold | None = None

    @model_validator(mode="after")
    def _one(self) -> _OSIndicatorSpec:
        if (self.ratioMetric is None) == (self.thresholdMetric is None):
            raise ValueError("an indicator has exactly one of ratioMetric and thresholdMetric")
        return self


class _OSIndicator(StrictModel):
    metadata: _OSMetadata | None = None
    spec: _OSIndicatorSpec


class _OSTimeWindow(StrictModel):
    duration: Period
    isRolling: bool = True
    calendar: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _rolling(self) -> _OSTimeWindow:
        if not self.isRolling or self.calendar is not None:
            raise ValueError("only rolling time windows (isRolling: true) are supported")
        return self


class _OSObjective(StrictModel):
    name: str | None = None
    displayName: str = ""
    target: float | None = Field(None, gt=0, lt=1)
    targetPercent: float | None = Field(None, gt=0, lt=100)
    op: Op | None = None
    value: Threshold | None = None
    timeSliceTarget: float | None = Field(None, gt=0, le=1)
    timeSliceWindow: Duration | None = Field(None, gt=0)
    indicator: Any = None
    indicatorRef: str | None = None
    compositeWeight: float | None = None

    @model_validator(mode="after")
    def _target(self) -> _OSObjective:
        if (self.target is None) == (self.targetPercent is None):
            raise ValueError("an objective has exactly one of target and targetPercent")
        if self.indicator is not None or self.indicatorRef is not None:
            raise ValueError("per-objective indicators (composite SLOs) are not supported")
        return self

    @property
    def fraction(self) -> float:
        if self.target is not None:
            return self.target
        assert self.targetPercent is not None
        return self.targetPercent / 100


class _OSSLOSpec(StrictModel):
    description: str = ""
    service: str = Field(min_length=1)
    indicator: _OSIndicator | None = None
    indicatorRef: str | None = None
    timeWindow: list[_OSTimeWindow] = Field(min_length=1, max_length=1)
    budgetingMethod: Literal["Occurrences", "Timeslices"] = Field(
        description="Occurrences, or Timeslices with a thresholdMetric (RatioTimeslices is "
                    "not supported)")
    objectives: list[_OSObjective] = Field(min_length=1)
    alertPolicies: list[Any] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one(self) -> _OSSLOSpec:
        if (self.indicator is None) == (self.indicatorRef is None):
            raise ValueError("a spec has exactly one of indicator and indicatorRef")
        for i, obj in enumerate(self.objectives):
            sliced = obj.timeSliceTarget is not None or obj.timeSliceWindow is not None
            if self.budgetingMethod == "Occurrences" and sliced:
                raise ValueError(f"objectives.{i}: timeSliceTarget/timeSliceWindow go with "
                                 "budgetingMethod: Timeslices")
            if self.budgetingMethod == "Timeslices" and obj.timeSliceWindow is None:
                raise ValueError(f"objectives.{i}: budgetingMethod Timeslices needs "
                                 "timeSliceWindow (e.g. 1m)")
        return self


class _OSDoc(StrictModel):
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
            if spec.budgetingMethod == "Timeslices":
                raise ValueError("budgetingMethod Timeslices is supported with a "
                                 "thresholdMetric indicator (gauges sampled per slice)")
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
            # Timeslices: each series sampled once per timeSliceWindow is one slice, good
            # when its sample satisfies op value (with one sample per slice, any
            # timeSliceTarget means just that).
            indicator = Indicator(total=base, good=Selector.model_validate(good.model_dump()),
                                  interval=obj.timeSliceWindow)
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



class OpenSLODocuments:
    """The OpenSLO documents of one file: `kind: SLI` documents are collected first, as
    an SLO may refer to one defined after it (`indicatorRef`)."""

    def __init__(self) -> None:
        self.indicators: dict[str, _OSIndicatorSpec] = {}
        self.slo_docs: list[tuple[str, _OSDoc]] = []

    def add(self, raw: Mapping[str, Any], where: str, problems: list[str]) -> None:
        """Validate one document (`where`: `<file>: document <n>`); problems go to
        `problems`."""
        api = raw.get("apiVersion")
        if api != OPENSLO_API:
            hint = (" (v1alpha documents: convert to openslo/v1)" if isinstance(api, str)
                    and api.startswith("openslo/") else "")
            problems.append(f"{where}: apiVersion must be {OPENSLO_API}, got {api!r}{hint} "
                            "(or use the native form: a document with a slos: list)")
            return
        try:
            doc = _OSDoc.model_validate(raw)
        except ValidationError as exc:
            problems.extend(validation_problems(f"{where}: ", exc))
            return
        named = f"{where} ({doc.kind} {doc.metadata.name})"
        if doc.kind == "SLI":
            try:
                self.indicators[doc.metadata.name] = _OSIndicatorSpec.model_validate(doc.spec)
            except ValidationError as exc:
                problems.extend(validation_problems(f"{named}: spec.", exc))
        elif doc.kind == "SLO":
            self.slo_docs.append((where, doc))
        elif doc.kind not in IGNORED_KINDS:
            problems.append(f"{named}: unsupported kind {doc.kind!r} (expected SLO or SLI)")

    def slos(self, problems: list[str]) -> list[SLO]:
        """The SLOs of every `kind: SLO` document added; problems go to `problems`."""
        out: list[SLO] = []
        for where, doc in self.slo_docs:
            named = f"{where} (SLO {doc.metadata.name})"
            try:
                out.extend(_openslo_slos(doc, self.indicators))
            except ValidationError as exc:
                problems.extend(validation_problems(f"{named}: spec.", exc))
            except ValueError as exc:
                problems.append(f"{named}: {exc}")
        return out
