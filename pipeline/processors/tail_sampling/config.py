"""Config of the `tail_sampling` processor: the Collector's keys (contrib
`tailsamplingprocessor`), plus `storage` (durable waiting) and the `slo` policy type.

Nesting follows the Collector (v0.161): a top-level policy may be of any type; a
`composite_sub_policy` of a simple (leaf) type or `and`; `and_sub_policy` and
`drop_sub_policy` of a simple type or `not`; `not_sub_policy` of a simple type.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from pipeline.component import ComponentConfig
from pipeline.config.types import Duration
from pipeline.slo.loader import load_slo_file
from pipeline.slo.model import SLO, SLODefinitionError
from pipeline.slo.native import NativeSLO

LEAF_TYPES = ("always_sample", "latency", "numeric_attribute", "probabilistic", "status_code",
              "string_attribute", "rate_limiting", "bytes_limiting", "span_count", "trace_state",
              "boolean_attribute", "slo")
LeafType = Literal["always_sample", "latency", "numeric_attribute", "probabilistic",
                   "status_code", "string_attribute", "rate_limiting", "bytes_limiting",
                   "span_count",
                   "trace_state", "boolean_attribute", "slo"]
CompositeSubType = Literal[LeafType, "and"]
PolicyType = Literal[LeafType, "and", "drop", "not", "composite"]
STATUS_CODES = ("UNSET", "OK", "ERROR")  # the index is the OTLP status code


class LatencyCfg(ComponentConfig):
    threshold_ms: int = Field(0, ge=0, description="the trace duration (earliest span "
                              "start to latest span end, whole ms) must exceed this")
    upper_threshold_ms: int = Field(0, ge=0, description="and be at most this; 0: no upper "
                                    "bound")

    @model_validator(mode="after")
    def _bounds(self) -> LatencyCfg:
        if self.upper_threshold_ms and self.upper_threshold_ms < self.threshold_ms:
            raise ValueError("upper_threshold_ms must be at least threshold_ms")
        return self


class NumericAttributeCfg(ComponentConfig):
    key: str = Field(min_length=1, description="span or resource attribute (an int)")
    min_value: int | None = Field(None, description="inclusive; none: no lower bound")
    max_value: int | None = Field(None, description="inclusive; none: no upper bound")
    invert_match: bool = Field(False, description="sample traces without a matching value "
                               "(an inverted decision)")

    @model_validator(mode="after")
    def _bounds(self) -> NumericAttributeCfg:
        if self.min_value is None and self.max_value is None:
            raise ValueError("give min_value, max_value or both")
        if (self.min_value is not None and self.max_value is not None
                and self.max_value < self.min_value):
            raise ValueError("max_value must be at least min_value")
        return self


class ProbabilisticCfg(ComponentConfig):
    hash_salt: str = Field("", description="salt of the trace id hash (FNV-1a, as the "
                           "Collector); empty: the Collector's default salt")
    sampling_percentage: float = Field(0.0, ge=0, description="percent of traces; >= 100: all")


class StatusCodeCfg(ComponentConfig):
    status_codes: list[Literal["OK", "ERROR", "UNSET"]] = Field(min_length=1)


class StringAttributeCfg(ComponentConfig):
    key: str = Field(min_length=1, description="span or resource attribute (a string)")
    values: list[str] = Field(min_length=1, description="exact values, or regular "
                              "expressions with enabled_regex_matching (searched, as Go's "
                              "MatchString)")
    enabled_regex_matching: bool = False
    cache_max_size: int = Field(128, ge=0, description="regex matching: results remembered "
                                "per distinct value (LRU)")
    invert_match: bool = Field(False, description="sample traces without a matching value "
                               "(an inverted decision)")

    @model_validator(mode="after")
    def _regex(self) -> StringAttributeCfg:
        if self.enabled_regex_matching:
            for v in self.values:
                try:
                    re.compile(v)
                except re.error as exc:
                    raise ValueError(f"invalid regular expression {v!r}: {exc}") from None
        return self


class RateLimitingCfg(ComponentConfig):
    spans_per_second: int = Field(gt=0, description="token bucket refilled at this rate")
    burst_capacity: int = Field(0, ge=0, description="the bucket's size (also the largest "
                                "trace that can pass); 0: twice spans_per_second")


class BytesLimitingCfg(ComponentConfig):
    bytes_per_second: int = Field(gt=0, description="token bucket refilled at this rate; a "
                                  "trace costs the OTLP-encoded size of its spans")
    burst_capacity: int = Field(0, ge=0, description="the bucket's size; 0: twice "
                                "bytes_per_second")


class SpanCountCfg(ComponentConfig):
    min_spans: int = Field(0, ge=0)
    max_spans: int = Field(0, ge=0, description="inclusive; 0: no upper bound")

    @model_validator(mode="after")
    def _bounds(self) -> SpanCountCfg:
        if self.max_spans and self.max_spans < self.min_spans:
            raise ValueError("max_spans must be at least min_spans")
        return self


class TraceStateCfg(ComponentConfig):
    key: str = Field(min_length=1, max_length=256)
    values: list[str] = Field(min_length=1)


class BooleanAttributeCfg(ComponentConfig):
    key: str = Field(min_length=1)
    value: bool
    invert_match: bool = False


class SLOPolicyCfg(ComponentConfig):
    """Keep traces holding a span that counts against an SLO (bad for its SLI)."""

    names: list[str] = Field(default_factory=list, description="SLOs to watch; empty: every "
                             "SLO defined here whose SLI spans can be classified for (RED "
                             "availability and latency)")
    slos: list[NativeSLO] = Field(default_factory=list, description="SLOs in the native form "
                                  "(as the slo connector's slos:)")
    slo_files: list[str] = Field(default_factory=list, description="YAML files with OpenSLO "
                                 "v1 documents or a native slos: list (as the connector's)")
    http_5xx: bool = Field(False, description="as redmetrics' errors.http_5xx: an UNSET span "
                           "answered with an HTTP status >= 500 is an error")

    _slos: list[SLO] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _load(self) -> SLOPolicyCfg:
        slos = [s.to_slo() for s in self.slos]
        problems: list[str] = []
        for path in self.slo_files:
            try:
                slos.extend(load_slo_file(path))
            except SLODefinitionError as exc:
                problems.extend(exc.problems)
        if problems:
            raise ValueError("; ".join(problems))
        known = {s.name for s in slos}
        missing = [n for n in self.names if n not in known]
        if missing:
            raise ValueError(f"unknown SLO(s) {', '.join(missing)}"
                             + (f" (defined: {', '.join(sorted(known))})" if known else
                                " (define them under slos or slo_files)"))
        if self.names:
            slos = [s for s in slos if s.name in self.names]
        if not slos:
            raise ValueError("no SLOs: define some under slos or slo_files")
        self._slos = slos
        return self

    @property
    def definitions(self) -> list[SLO]:
        return list(self._slos)


def section_key(t: str) -> str:
    """The field of a policy type's section (`and` / `not` are Python keywords)."""
    return {"and": "and_", "not": "not_"}.get(t, t)


class _Leaf(ComponentConfig):
    """The keys every policy may carry (the Collector's sharedPolicyCfg)."""

    name: str = Field(min_length=1, description="names the policy in metrics and logs")
    latency: LatencyCfg | None = None
    numeric_attribute: NumericAttributeCfg | None = None
    probabilistic: ProbabilisticCfg | None = None
    status_code: StatusCodeCfg | None = None
    string_attribute: StringAttributeCfg | None = None
    rate_limiting: RateLimitingCfg | None = None
    bytes_limiting: BytesLimitingCfg | None = None
    span_count: SpanCountCfg | None = None
    trace_state: TraceStateCfg | None = None
    boolean_attribute: BooleanAttributeCfg | None = None
    slo: SLOPolicyCfg | None = None

    @model_validator(mode="after")
    def _section(self) -> _Leaf:
        t: str = getattr(self, "type")  # noqa: B009 - declared by each subclass
        sk = section_key(t)
        if t != "always_sample" and getattr(self, sk, None) is None:
            if t == "probabilistic":  # the Collector defaults every key of this one
                object.__setattr__(self, "probabilistic", ProbabilisticCfg())
            else:
                raise ValueError(f"policy {self.name!r} of type {t} needs a {t}: section")
        for key in type(self).model_fields:
            if key not in ("name", "type", sk) and getattr(self, key) is not None:
                raise ValueError(f"policy {self.name!r} is of type {t}: its {key}: section "
                                 "would be ignored")
        return self


class LeafPolicy(_Leaf):
    type: LeafType


class NotCfg(ComponentConfig):
    not_sub_policy: LeafPolicy


class AndSubPolicy(_Leaf):
    """A policy of and_sub_policy / drop_sub_policy: a simple type or a `not`."""

    type: Literal[LeafType, "not"]
    not_: NotCfg | None = Field(None, alias="not")

    model_config = {**_Leaf.model_config, "populate_by_name": True}


class AndCfg(ComponentConfig):
    and_sub_policy: list[AndSubPolicy] = Field(min_length=1)


class DropCfg(ComponentConfig):
    drop_sub_policy: list[AndSubPolicy] = Field(min_length=1)


class CompositeSubPolicy(_Leaf):
    type: CompositeSubType
    and_: AndCfg | None = Field(None, alias="and")

    model_config = {**_Leaf.model_config, "populate_by_name": True}


class RateAllocation(ComponentConfig):
    policy: str
    percent: int = Field(ge=0, le=100)


class CompositeCfg(ComponentConfig):
    max_total_spans_per_second: int = Field(gt=0)
    policy_order: list[str] = Field(default_factory=list, description="checked against the "
                                    "sub-policies (the Collector evaluates them in the order "
                                    "of composite_sub_policy)")
    composite_sub_policy: list[CompositeSubPolicy] = Field(min_length=1)
    rate_allocation: list[RateAllocation] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names(self) -> CompositeCfg:
        names = {p.name for p in self.composite_sub_policy}
        for n in self.policy_order:
            if n not in names:
                raise ValueError(f"policy_order names {n!r}, which is no composite_sub_policy")
        for r in self.rate_allocation:
            if r.policy not in names:
                raise ValueError(f"rate_allocation names {r.policy!r}, which is no "
                                 "composite_sub_policy")
        if sum(r.percent for r in self.rate_allocation) > 100:
            raise ValueError("rate_allocation percents add up to more than 100")
        return self


class Policy(_Leaf):
    type: PolicyType
    and_: AndCfg | None = Field(None, alias="and")
    drop: DropCfg | None = None
    not_: NotCfg | None = Field(None, alias="not")
    composite: CompositeCfg | None = None

    model_config = {**_Leaf.model_config, "populate_by_name": True}


class TailSamplingConfig(ComponentConfig):
    decision_wait: Duration = Field(30.0, gt=0, description="wait after a trace's first span "
                                    "before deciding")
    num_traces: int = Field(50_000, ge=1, description="traces held while waiting; past it "
                            "the oldest is dropped undecided (or ingest blocks, "
                            "block_on_overflow)")
    expected_new_traces_per_sec: int = Field(0, ge=0, description="accepted for "
                                             "compatibility (a sizing hint in the Collector)")
    block_on_overflow: bool = Field(False, description="at num_traces, hold new traces back "
                                    "(the sender waits) instead of dropping the oldest")
    sample_on_first_match: bool = Field(False, description="stop at the first policy that "
                                        "samples")
    decision_cache: DecisionCacheCfg = Field(default_factory=lambda: DecisionCacheCfg())
    maximum_trace_size_bytes: int = Field(0, ge=0, description="a trace whose spans pass "
                                          "this encoded size is dropped at once (counted); "
                                          "0: no limit")
    drop_pending_traces_on_shutdown: bool = Field(False, description="storage memory: at "
                                                  "shutdown drop the traces still waiting "
                                                  "instead of deciding them with the spans "
                                                  "that arrived")
    sampling_strategy: Literal["trace-complete"] = Field(
        "trace-complete", description="decide once decision_wait is over (the Collector's "
                                      "span-ingest strategy is not supported)")
    num_shards: int = Field(1, ge=1, le=256, description="accepted for compatibility: one "
                            "process decides on one event loop (scale with processes)")
    policies: list[Policy] = Field(min_length=1)
    storage: Literal["memory", "disk"] = Field("memory", description="disk: waiting traces "
                                               "live in a segment log (the disk queue's) until "
                                               "decided and delivered")
    directory: str | None = Field(None, description="storage disk: parent directory; one "
                                  "subdirectory per processor id and pipeline")
    fsync: bool = Field(True, description="storage disk: wait for the disk before "
                        "acknowledging (false: survives a killed process, not a power cut)")
    max_batch_spans: int = Field(8192, ge=1, description="sampled spans per emitted batch")

    @field_validator("policies")
    @classmethod
    def _unique(cls, v: list[Policy]) -> list[Policy]:
        seen: set[str] = set()
        for p in v:
            if p.name in seen:
                raise ValueError(f"two policies are named {p.name!r}")
            seen.add(p.name)
        return v

    @model_validator(mode="after")
    def _storage(self) -> TailSamplingConfig:
        if self.storage == "disk" and not self.directory:
            raise ValueError("directory is required when storage is disk")
        return self


class DecisionCacheCfg(ComponentConfig):
    sampled_cache_size: int = Field(0, ge=0, description="trace ids of sampled traces "
                                    "remembered (LRU) so late spans follow; 0: off")
    non_sampled_cache_size: int = Field(0, ge=0, description="trace ids of dropped traces "
                                        "remembered (LRU); 0: off")


TailSamplingConfig.model_rebuild()
