"""`probabilistic_sampler` processor: head sampling of spans and log records, with the
Collector's keys and decisions (contrib `probabilisticsamplerprocessor`, v0.161.0).

```yaml
processors:
  probabilistic_sampler:
    sampling_percentage: 10      # required; >= 100 keeps everything, 0 drops everything
    mode: proportional           # hash_seed (default) | proportional | equalizing
    hash_seed: 0                 # hash_seed mode: every collector of a tier the same
    fail_closed: true            # drop items whose sampling information is unusable
    sampling_precision: 4        # hex digits of the written threshold (1..14)
  probabilistic_sampler/logs:
    sampling_percentage: 15
    attribute_source: record     # traceID (default) | record
    from_attribute: logID        # hashed when there is no trace id (or source: record)
    sampling_priority: priority  # record attribute: a percentage overriding the rate
```

Each item is decided alone (no state), consistently: the same trace id gets the
same decision from every collector with the same settings, and a lower percentage
keeps a subset of what a higher one keeps.

- `hash_seed`: FNV-1a 32 of the seed and the trace id (or the `from_attribute`
  value); 14 bits of it, so percentages are multiples of 1/163.84. Kept items get
  `ot=rv:<the derived randomness>;th:<threshold>` in their tracestate (log
  records: `sampling.randomness` and `sampling.threshold` attributes). An item
  that already carries `rv` or `th` is an error in this mode.
- `proportional`: the OpenTelemetry consistent-probability scheme: randomness is
  `rv` from the tracestate, else the trace id's low 56 bits; the threshold is the
  arriving probability (`th`) times the configured one, written back as `ot=th:`.
- `equalizing`: as proportional, but items already sampled at or below the
  configured probability pass unchanged (their `th` is kept).

`sampling.priority` on a span (0: drop, > 0: keep) overrides the decision; for logs
the attribute named by `sampling_priority` is a percentage. Items without
randomness (zero trace id, no attribute), with a malformed tracestate, or whose
arriving `th` is inconsistent with their randomness are errors: dropped when
`fail_closed` (the default), else kept. Decisions are counted in
`otelpipe_processor_probabilistic_sampler_count_{traces,logs}_sampled` by `policy`
(trace_id_hash, trace_id_w3c, sampling_randomness, sampling_priority,
missing_randomness, or the attribute name) and `sampled`, as the Collector's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Literal

from google.protobuf.message import DecodeError
from pydantic import Field, field_validator, model_validator

from pipeline.component import (
    Component,
    ComponentConfig,
    Consumer,
    Factory,
    Kind,
    ProcessorCreateSettings,
    Signal,
)
from pipeline.errors import PermanentError
from pipeline.pdata.anyvalue import any_value
from pipeline.pdata.batch import Batch
from pipeline.pdata.sampling import (
    ALL_PROBABILITIES_RANDOMNESS,
    ALWAYS_SAMPLE,
    MIN_SAMPLING_PROBABILITY,
    NEVER_SAMPLE,
    NUM_HEX_DIGITS,
    SamplingError,
    TraceState,
    float32,
    hash_seed_randomness,
    parse_rvalue,
    parse_tvalue,
    probability_to_threshold,
    seed_state32,
    threshold_probability,
    trace_id_randomness,
    tvalue,
)
from pipeline.telemetry.metrics import CounterSpec

TRACES_SAMPLED = CounterSpec(
    "otelpipe_processor_probabilistic_sampler_count_traces_sampled",
    "Spans the probabilistic sampler decided, by policy (where the randomness came from) "
    "and sampled (true/false).", ("processor", "policy", "sampled"))
LOGS_SAMPLED = CounterSpec(
    "otelpipe_processor_probabilistic_sampler_count_logs_sampled",
    "Log records the probabilistic sampler decided, by policy and sampled (true/false).",
    ("processor", "policy", "sampled"))

_HASH_BUCKETS = 0x4000
_SCALE = float32(_HASH_BUCKETS / 100.0)  # Go: the constant 163.84 as a float32
_ZERO_ID = bytes(16)
_PRIORITY_KEY = "sampling.priority"
_PRIORITY_BYTES = _PRIORITY_KEY.encode()
_TH_ATTR = "sampling.threshold"
_RV_ATTR = "sampling.randomness"

Mode = Literal["", "hash_seed", "proportional", "equalizing"]


class ProbabilisticSamplerConfig(ComponentConfig):
    sampling_percentage: float = Field(
        description="percentage of items kept (a float32 as in the Collector); >= 100 "
                    "keeps all, 0 drops all")
    hash_seed: int = Field(0, ge=0, le=0xFFFFFFFF,
                           description="hash_seed mode: the FNV seed; every collector of a "
                                       "tier must use the same")
    mode: Mode = Field("", description="hash_seed (the default when unset), proportional "
                                       "or equalizing")
    fail_closed: bool = Field(True, description="drop items whose sampling information is "
                                                "missing or malformed (false: keep them)")
    sampling_precision: int = Field(4, ge=1, le=NUM_HEX_DIGITS,
                                    description="hex digits of the written threshold")
    attribute_source: Literal["traceID", "record"] = Field(
        "traceID", description="logs: randomness from the trace id, or from the record "
                               "attribute from_attribute")
    from_attribute: str = Field("", description="logs: attribute hashed when the trace id "
                                                "is absent or attribute_source is record")
    sampling_priority: str = Field("", description="logs: attribute holding a percentage "
                                                   "that overrides sampling_percentage")

    @field_validator("sampling_percentage")
    @classmethod
    def _percentage(cls, v: float) -> float:
        pct = float32(v)
        if math.isinf(pct) or math.isnan(pct):
            raise ValueError(f"sampling rate is invalid: {v}%")
        ratio = pct / 100.0
        if ratio < 0:
            raise ValueError(f"sampling rate is negative: {v}%")
        if 0 < ratio < MIN_SAMPLING_PROBABILITY:
            raise ValueError(f"sampling rate is too small: {v}%")
        return v

    @model_validator(mode="after")
    def _record_source(self) -> ProbabilisticSamplerConfig:
        if self.attribute_source == "record" and not self.from_attribute:
            raise ValueError("attribute_source: record needs from_attribute (the record "
                             "attribute to hash)")
        return self


class Sampler:
    """The decision rule of one configuration (the Collector's `makeSampler`)."""

    def __init__(self, cfg: ProbabilisticSamplerConfig, logs: bool):
        pct = min(float32(cfg.sampling_percentage), 100.0)
        self.mode: str = cfg.mode or "hash_seed"
        self.seed_state = seed_state32(cfg.hash_seed)
        self.precision = cfg.sampling_precision
        self.logs_trace_id = cfg.attribute_source == "traceID"
        self.from_attribute = cfg.from_attribute
        self.never = pct == 0
        self.threshold = NEVER_SAMPLE
        self.ratio = max(pct / 100, MIN_SAMPLING_PROBABILITY) if pct else 0.0
        if self.never:
            self.mode = "never"
        elif self.mode == "equalizing":
            self.threshold = probability_to_threshold(self.ratio, self.precision)
        elif self.mode == "hash_seed":
            scaled = int(float32(pct * _SCALE))
            if scaled == 0:
                self.mode = "never"
            else:
                self.threshold = (_HASH_BUCKETS - scaled) << 42

    def decide(self, carrier: TraceState | None) -> int:
        mode = self.mode
        if mode == "hash_seed":
            return self.threshold
        if mode == "never":
            return NEVER_SAMPLE
        if mode == "equalizing":
            if carrier is not None and carrier.th and self.threshold < carrier.threshold:
                return carrier.threshold
            return self.threshold
        incoming = 1.0
        if carrier is not None and carrier.th:
            incoming = threshold_probability(carrier.threshold)
        try:
            return probability_to_threshold(incoming * self.ratio, self.precision)
        except SamplingError:
            return NEVER_SAMPLE


class _Item:
    """What one span or record yields: randomness, its policy name, the carrier of its
    sampling information (None when unusable) and an error."""

    __slots__ = ("carrier", "error", "policy", "rnd")

    def __init__(self) -> None:
        self.rnd = ALL_PROBABILITIES_RANDOMNESS
        self.policy = "missing_randomness"
        self.carrier: Any = None
        self.error: str | None = None


class ProbabilisticSamplerProcessor(Component, Consumer):
    def __init__(self, settings: ProcessorCreateSettings, config: ProbabilisticSamplerConfig):
        self.next = settings.next_consumer
        self.signal = settings.signal
        self.logger = settings.logger
        self.id = str(settings.id)
        self.fail_closed = config.fail_closed
        self.priority_attr = config.sampling_priority
        self.precision = config.sampling_precision
        self.sampler = Sampler(config, logs=self.signal is Signal.LOGS)
        spec = TRACES_SAMPLED if self.signal is Signal.TRACES else LOGS_SAMPLED
        self._counter = settings.telemetry.counter(spec)
        self._counts: dict[tuple[str, bool], Any] = {}
        self._priority_in_batch = True
        self._hashes: dict[bytes, int] = {}  # trace id -> hash_seed randomness, per batch

    async def consume(self, batch: Batch) -> None:
        if self.apply(batch):
            await self.next.consume(batch)

    def _count(self, policy: str, sampled: bool) -> None:
        c = self._counts.get((policy, sampled))
        if c is None:
            c = self._counts[policy, sampled] = self._counter.labels(
                self.id, policy, "true" if sampled else "false")
        c.inc()

    def apply(self, batch: Batch) -> bool:
        """Sample the batch in place; False when nothing is left (not forwarded)."""
        try:
            # Only a batch naming sampling.priority somewhere needs its spans' attributes
            # read (a scan of the bytes in C; a false hit only costs the Python scan).
            self._priority_in_batch = _PRIORITY_BYTES in batch.to_bytes()
            msg = batch.mutable()
        except DecodeError as exc:
            raise PermanentError(f"undecodable {self.signal} request: {exc}") from exc
        self._hashes.clear()
        keep: Callable[[Any], bool]
        if self.signal is Signal.TRACES:
            resources, scopes_of, items_of, keep = (
                msg.resource_spans, "scope_spans", "spans", self._keep_span)
        else:
            resources, scopes_of, items_of, keep = (
                msg.resource_logs, "scope_logs", "log_records", self._keep_record)
        for ri in range(len(resources) - 1, -1, -1):
            scopes = getattr(resources[ri], scopes_of)
            for si in range(len(scopes) - 1, -1, -1):
                items = getattr(scopes[si], items_of)
                for i in range(len(items) - 1, -1, -1):
                    if not keep(items[i]):
                        del items[i]
                if not items:
                    del scopes[si]
            if not scopes:
                del resources[ri]
        return len(resources) > 0

    def _final(self, item: _Item) -> int:
        """The threshold before priority: the configured rule, or the fail_closed one."""
        carrier = item.carrier
        if item.error is None:
            if item.policy == "missing_randomness":
                item.error = "missing randomness"
            elif carrier is not None and carrier.th and not carrier.threshold <= item.rnd:
                carrier.clear_threshold()
                item.error = "inconsistent arriving threshold: item should not have been " \
                             "sampled"
        if item.error is not None:
            self.logger.debug("sampler: %s", item.error)
            return NEVER_SAMPLE if self.fail_closed else ALWAYS_SAMPLE
        return self.sampler.decide(carrier)

    # Spans ---------------------------------------------------------------------------

    def _span_item(self, sp: Any) -> _Item:
        item = _Item()
        tid: bytes = sp.trace_id
        has_id = len(tid) == 16 and tid != _ZERO_ID
        mode = self.sampler.mode
        try:
            ts = TraceState.parse(sp.trace_state)
        except SamplingError as exc:
            ts, item.error = None, str(exc)
        if mode == "hash_seed":
            if has_id:
                rnd = self._hashes.get(tid)
                if rnd is None:
                    rnd = self._hashes[tid] = hash_seed_randomness(tid, self.sampler.seed_state)
                item.rnd = rnd
                item.policy = "trace_id_hash"
            if ts is not None:
                if ts.rv:
                    item.error = "item has sampling randomness, equalizing or proportional " \
                                 "mode recommended"
                elif ts.th:
                    item.error = "item has sampling threshold, equalizing or proportional " \
                                 "mode recommended"
                else:
                    ts.set_randomness(item.rnd)
                    item.carrier = ts
            return item
        item.carrier = ts
        if mode == "never":
            item.policy = "sampling_priority"
        elif ts is None:
            pass  # unusable tracestate: no randomness either (the error decides)
        elif ts.rv:
            item.rnd, item.policy = ts.rnd, "sampling_randomness"
        elif has_id:
            item.rnd, item.policy = trace_id_randomness(tid), "trace_id_w3c"
        return item

    def _keep_span(self, sp: Any) -> bool:
        item = self._span_item(sp)
        threshold = self._final(item)
        priority = _span_priority(sp) if self._priority_in_batch else None
        if priority is not None:
            threshold = ALWAYS_SAMPLE if priority else NEVER_SAMPLE
            item.policy = "sampling_priority"
        sampled = threshold <= item.rnd
        carrier = item.carrier
        if sampled and carrier is not None:
            carrier.update_threshold(threshold)
            sp.trace_state = carrier.serialize()
        self._count(item.policy, sampled)
        return sampled

    # Log records -----------------------------------------------------------------------

    def _record_item(self, rec: Any) -> _Item:
        item = _Item()
        sampler = self.sampler
        mode = sampler.mode
        carrier: _RecordCarrier | None = _RecordCarrier(rec)
        try:
            carrier.load()  # type: ignore[union-attr]
        except SamplingError as exc:
            carrier, item.error = None, str(exc)
        tid: bytes = rec.trace_id
        has_id = len(tid) == 16 and tid != _ZERO_ID
        if mode == "hash_seed":
            self._record_hash(rec, item, has_id)
            if carrier is not None:
                if carrier.rv:
                    carrier, item.error = None, "item has sampling randomness, equalizing " \
                                                "or proportional mode recommended"
                elif carrier.th:
                    carrier, item.error = None, "item has sampling threshold, equalizing " \
                                                "or proportional mode recommended"
                elif item.policy != "missing_randomness":
                    carrier.set_randomness(item.rnd)
            item.carrier = carrier
            return item
        item.carrier = carrier
        if mode == "never":
            item.policy = "sampling_priority"
        elif carrier is None:
            pass  # unusable sampling attributes: no randomness either (the error decides)
        elif carrier.rv:
            item.rnd, item.policy = carrier.rnd, "sampling_randomness"
        elif has_id:
            item.rnd, item.policy = trace_id_randomness(tid), "trace_id_w3c"
        return item

    def _record_hash(self, rec: Any, item: _Item, has_id: bool) -> None:
        """hash_seed randomness of a record: its trace id, else its from_attribute."""
        sampler = self.sampler
        if sampler.logs_trace_id and has_id:
            item.rnd = hash_seed_randomness(rec.trace_id, sampler.seed_state)
            item.policy = "trace_id_hash"
        if item.policy == "missing_randomness" and sampler.from_attribute:
            for kv in rec.attributes:
                if kv.key == sampler.from_attribute:
                    data = _value_bytes(kv.value)
                    if data:
                        item.rnd = hash_seed_randomness(data, sampler.seed_state)
                        item.policy = sampler.from_attribute
                    break

    def _keep_record(self, rec: Any) -> bool:
        item = self._record_item(rec)
        threshold = self._final(item)
        if self.priority_attr:
            override = self._record_priority(rec)
            if override is not None:
                threshold = override
                item.policy = "sampling_priority"
        sampled = threshold <= item.rnd
        carrier = item.carrier
        if sampled and carrier is not None:
            carrier.update_threshold(threshold)
        self._count(item.policy, sampled)
        return sampled

    def _record_priority(self, rec: Any) -> int | None:
        for kv in rec.attributes:
            if kv.key == self.priority_attr:
                kind = kv.value.WhichOneof("value")
                if kind == "double_value":
                    p = kv.value.double_value / 100.0
                elif kind == "int_value":
                    p = kv.value.int_value / 100.0
                else:
                    return None
                if p == 0:
                    return None
                try:
                    return probability_to_threshold(p, self.precision)
                except SamplingError:
                    return None
        return None


class _RecordCarrier(TraceState):
    """The sampling information of a log record: its `sampling.threshold` and
    `sampling.randomness` string attributes (written back as attributes)."""

    __slots__ = ("record",)

    def __init__(self, record: Any):
        super().__init__()
        self.record = record

    def load(self) -> None:
        th = rv = ""
        for kv in self.record.attributes:
            if kv.value.WhichOneof("value") != "string_value":
                continue
            if kv.key == _TH_ATTR:
                th = kv.value.string_value
            elif kv.key == _RV_ATTR:
                rv = kv.value.string_value
        errors = []
        if th:
            try:
                self.threshold, self.th = parse_tvalue(th), th
            except SamplingError as exc:
                errors.append(str(exc))
        if rv:
            try:
                self.rnd, self.rv = parse_rvalue(rv), rv
            except SamplingError as exc:
                errors.append(str(exc))
        if errors:
            raise SamplingError("; ".join(errors))

    def set_randomness(self, rnd: int) -> None:
        super().set_randomness(rnd)
        _put_str(self.record.attributes, _RV_ATTR, self.rv)

    def clear_threshold(self) -> None:
        super().clear_threshold()
        attrs = self.record.attributes
        for i in range(len(attrs) - 1, -1, -1):
            if attrs[i].key == _TH_ATTR:
                del attrs[i]

    def update_threshold(self, threshold: int) -> bool:
        if self.th and threshold < self.threshold:
            return False
        self.threshold = threshold
        self.th = tvalue(threshold)
        _put_str(self.record.attributes, _TH_ATTR, self.th)
        return True


def _put_str(attributes: Any, key: str, value: str) -> None:
    for kv in attributes:
        if kv.key == key:
            kv.value.string_value = value
            return
    kv = attributes.add()
    kv.key = key
    kv.value.string_value = value


def _span_priority(sp: Any) -> bool | None:
    """`sampling.priority` of a span: True (keep), False (drop) or None (no say)."""
    if not sp.attributes:
        return None
    for kv in sp.attributes:
        if kv.key == _PRIORITY_KEY:
            v = kv.value
            kind = v.WhichOneof("value")
            if kind == "int_value":
                n: float = v.int_value
            elif kind == "double_value":
                n = v.double_value
            elif kind == "string_value":
                text = v.string_value
                if not text or "_" in text or text != text.strip():
                    return None  # Go's ParseFloat refuses what Python's float() forgives
                try:
                    n = float(text)
                except ValueError:
                    return None
            else:
                return None
            if n == 0:
                return False
            return True if n > 0 else None
    return None


def _value_bytes(v: Any) -> bytes:
    """The bytes the Collector hashes for an attribute value (`getBytesFromValue`): raw
    bytes, else the value's `AsString` text."""
    kind = v.WhichOneof("value")
    if kind is None:
        return b""
    if kind == "bytes_value":
        raw: bytes = v.bytes_value
        return raw
    if kind == "string_value":
        return str(v.string_value).encode()
    if kind == "bool_value":
        return b"true" if v.bool_value else b"false"
    if kind == "int_value":
        return str(v.int_value).encode()
    if kind == "double_value":
        return _es6_float(v.double_value).encode()
    return json.dumps(any_value(v), separators=(",", ":"), ensure_ascii=False,
                      sort_keys=True).encode()


def _es6_float(f: float) -> str:
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "Infinity" if f > 0 else "-Infinity"
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        text = repr(f)
        mant, _, exp = text.partition("e")
        sign, digits = exp[0], exp[1:].lstrip("0") or "0"
        return f"{mant.removesuffix('.0')}e{sign}{digits}"
    return format(Decimal(repr(f)).normalize(), "f")


def _create(settings: ProcessorCreateSettings,
            config: ProbabilisticSamplerConfig) -> ProbabilisticSamplerProcessor:
    return ProbabilisticSamplerProcessor(settings, config)


factory = Factory(type="probabilistic_sampler", kind=Kind.PROCESSOR,
                  config_model=ProbabilisticSamplerConfig, create=_create,
                  signals=frozenset({Signal.TRACES, Signal.LOGS}),
                  description="head sampling of spans and log records by trace id hash "
                              "(hash_seed, proportional or equalizing, as the Collector)")
