"""Sampling policies: what each decides about a trace, compiled from the config.

Evaluation runs on the summary of each trace kept up to date as its spans
arrive and the facts computed per span at ingest (`facts.py`): a decision
costs a few operations per policy, whatever the trace's size.

Decisions and how they combine are the Collector's (`tailsamplingprocessor`):
`Sampled`, `NotSampled`, the *inverted* ones that `invert_match` produces, and
`Dropped` (the `drop` policy). The final decision: any `Dropped` or
`InvertNotSampled` → not sampled; else any `Sampled` → sampled; else any
`InvertSampled` and no `NotSampled` → sampled; else not sampled.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

from pipeline.processors.tail_sampling.config import (
    STATUS_CODES,
    CompositeCfg,
    LeafPolicy,
    Policy,
    section_key,
)
from pipeline.processors.tail_sampling.facts import (
    Facts,
    TraceData,
    bool_test,
    numeric_test,
    string_test,
)
from pipeline.processors.tail_sampling.slo import SpanClassifier, span_slos

DEFAULT_HASH_SALT = "default-hash-seed"  # the Collector's, when hash_salt is empty
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = 0xFFFFFFFFFFFFFFFF


class Decision(enum.IntEnum):
    UNSPECIFIED = 0
    SAMPLED = 1
    NOT_SAMPLED = 2
    INVERT_SAMPLED = 3
    INVERT_NOT_SAMPLED = 4
    DROPPED = 5


SAMPLED_ONES = (Decision.SAMPLED, Decision.INVERT_SAMPLED)


# --- evaluators -------------------------------------------------------------------------


class Evaluator:
    name: str = ""

    def evaluate(self, t: TraceData, now: float) -> Decision:
        raise NotImplementedError

    def batch(self, traces: Sequence[TraceData], now: float) -> list[Decision]:
        """`evaluate` over traces in order (the stateless policies do it in one pass)."""
        ev = self.evaluate
        return [ev(t, now) for t in traces]


_S, _N = Decision.SAMPLED, Decision.NOT_SAMPLED


class AlwaysSample(Evaluator):
    def evaluate(self, t: TraceData, now: float) -> Decision:
        return Decision.SAMPLED


class Latency(Evaluator):
    def __init__(self, lo: int, hi: int):
        self.lo, self.hi = lo, hi

    def evaluate(self, t: TraceData, now: float) -> Decision:
        if not t.spans:
            return Decision.NOT_SAMPLED
        ms = (t.end - t.start) // 1_000_000 if t.end >= t.start else \
            -((t.start - t.end) // 1_000_000)  # Go's Duration.Milliseconds truncates
        ok = ms > self.lo if not self.hi else self.lo < ms <= self.hi
        return Decision.SAMPLED if ok else Decision.NOT_SAMPLED

    def batch(self, traces: Sequence[TraceData], now: float) -> list[Decision]:
        if self.hi:
            return super().batch(traces, now)
        # ms > lo, ms = the duration truncated to milliseconds: end - start >= (lo+1) ms
        # (a negative duration is never over a non-negative threshold).
        if self.lo < 0:
            return super().batch(traces, now)
        least = (self.lo + 1) * 1_000_000
        return [_S if t.end - t.start >= least and t.spans else _N for t in traces]


class StatusCode(Evaluator):
    def __init__(self, codes: Sequence[str]):
        self.mask = 0
        for c in codes:
            self.mask |= 1 << STATUS_CODES.index(c)

    def evaluate(self, t: TraceData, now: float) -> Decision:
        return Decision.SAMPLED if t.status & self.mask else Decision.NOT_SAMPLED

    def batch(self, traces: Sequence[TraceData], now: float) -> list[Decision]:
        mask = self.mask
        return [_S if t.status & mask else _N for t in traces]


class Fact(Evaluator):
    """A fact bit: sampled when set; with invert_match, the inverted decisions."""

    def __init__(self, bit: int, invert: bool = False):
        self.bit, self.invert = bit, invert

    def evaluate(self, t: TraceData, now: float) -> Decision:
        hit = t.facts & self.bit
        if self.invert:
            return Decision.INVERT_NOT_SAMPLED if hit else Decision.INVERT_SAMPLED
        return Decision.SAMPLED if hit else Decision.NOT_SAMPLED

    def batch(self, traces: Sequence[TraceData], now: float) -> list[Decision]:
        if self.invert:
            return super().batch(traces, now)
        bit = self.bit
        return [_S if t.facts & bit else _N for t in traces]


def fnv1a64(data: bytes, h: int = _FNV_OFFSET) -> int:
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & _MASK64
    return h


def probabilistic_threshold(percentage: float) -> int:
    """The Collector's calculateThreshold: MaxUint64 × ratio in a 64-bit big.Float
    (round to nearest even at 64 significant bits), then truncated to an integer."""
    ratio = Fraction(percentage / 100)
    if ratio >= 1:
        return _MASK64
    exact = _MASK64 * ratio
    if exact <= 0:
        return 0
    # Round to 64 significant bits: scale into [2^63, 2^64), round half to even.
    shift = 63 - (exact.numerator.bit_length() - exact.denominator.bit_length())
    scaled = exact * (Fraction(2) ** shift)
    while scaled >= 1 << 64:
        scaled /= 2
        shift -= 1
    while scaled < 1 << 63:
        scaled *= 2
        shift += 1
    rounded = Fraction(round(scaled)) / (Fraction(2) ** shift)
    return min(int(rounded), _MASK64)


class Probabilistic(Evaluator):
    """FNV-1a 64 of salt + trace id compared with a threshold: the Collector's hash, so
    every gateway (and a Collector with the same salt) decides the same trace alike."""

    def __init__(self, percentage: float, salt: str):
        self.threshold = probabilistic_threshold(percentage)
        self.seed = fnv1a64((salt or DEFAULT_HASH_SALT).encode())

    def sampled(self, trace_id: bytes) -> bool:
        return fnv1a64(trace_id, self.seed) <= self.threshold

    def evaluate(self, t: TraceData, now: float) -> Decision:
        return Decision.SAMPLED if self.sampled(t.trace_id) else Decision.NOT_SAMPLED

    def batch(self, traces: Sequence[TraceData], now: float) -> list[Decision]:
        seed, threshold, prime = self.seed, self.threshold, _FNV_PRIME
        out = []
        for t in traces:
            tid = t.trace_id
            if len(tid) > 32:
                h = fnv1a64(tid, seed)
            else:
                # FNV-1a with the 64-bit mask taken once at the end: the low 64 bits of
                # a product and of an xor with a byte depend only on the low 64 bits.
                h = seed
                for b in tid:
                    h = (h ^ b) * prime
                h &= _MASK64
            out.append(_S if h <= threshold else _N)
        return out


class RateLimiting(Evaluator):
    """The Collector's token bucket (Go's rate.Limiter): `rate` tokens a second, `burst`
    deep (default twice the rate), full at the start; a trace takes as many tokens as it
    has spans (`bytes`: as its spans' encoded size), or is not sampled."""

    def __init__(self, rate: int, burst: int = 0, *, bytes_: bool = False):
        self.rate = float(rate)
        self.burst = float(burst or 2 * rate)
        self.tokens = self.burst
        self.last: float | None = None
        self.bytes = bytes_

    def evaluate(self, t: TraceData, now: float) -> Decision:
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        n = t.nbytes if self.bytes else len(t.spans)
        if n <= self.tokens:
            self.tokens -= n
            return Decision.SAMPLED
        return Decision.NOT_SAMPLED


class SpanCount(Evaluator):
    def __init__(self, lo: int, hi: int):
        self.lo, self.hi = lo, hi

    def evaluate(self, t: TraceData, now: float) -> Decision:
        n = len(t.spans)
        ok = n >= self.lo and (not self.hi or n <= self.hi)
        return Decision.SAMPLED if ok else Decision.NOT_SAMPLED


class And(Evaluator):
    def __init__(self, subs: list[Evaluator]):
        self.subs = subs

    def evaluate(self, t: TraceData, now: float) -> Decision:
        for s in self.subs:
            d = s.evaluate(t, now)
            if d in (Decision.NOT_SAMPLED, Decision.INVERT_NOT_SAMPLED):
                return Decision.NOT_SAMPLED
        return Decision.SAMPLED


class Drop(And):
    """Dropped when every sub-policy samples; the drop wins over every other policy."""

    def evaluate(self, t: TraceData, now: float) -> Decision:
        d = super().evaluate(t, now)
        return Decision.DROPPED if d is Decision.SAMPLED else Decision.NOT_SAMPLED


class Not(Evaluator):
    def __init__(self, sub: Evaluator):
        self.sub = sub

    def evaluate(self, t: TraceData, now: float) -> Decision:
        d = self.sub.evaluate(t, now)
        if d is Decision.SAMPLED:
            return Decision.NOT_SAMPLED
        if d is Decision.NOT_SAMPLED:
            return Decision.SAMPLED
        return d


class Composite(Evaluator):
    """The Collector's composite: sub-policies in order; the first that samples does so
    if its share of max_total_spans_per_second, counted per wall-clock second, allows."""

    def __init__(self, max_total: int, subs: list[tuple[Evaluator, float]]):
        self.max_total = max_total
        self.subs = subs  # (evaluator, allocated spans per second)
        self.used = [0] * len(subs)
        self.second: int | None = None

    def evaluate(self, t: TraceData, now: float) -> Decision:
        sec = int(now)
        if sec != self.second:
            self.second = sec
            self.used = [0] * len(self.subs)
        n = len(t.spans)
        for i, (ev, allocated) in enumerate(self.subs):
            d = ev.evaluate(t, now)
            if d in SAMPLED_ONES:
                after = self.used[i] + n
                if after <= allocated and after <= self.max_total:
                    self.used[i] = after
                    return Decision.SAMPLED
                return Decision.NOT_SAMPLED  # over its share: later ones are not asked
        return Decision.NOT_SAMPLED


# --- compiling the config ---------------------------------------------------------------


def _allocations(cfg: CompositeCfg) -> dict[str, float]:
    """The Collector's getRateAllocationMap (a sub-policy without one gets 0)."""
    total = float(cfg.max_total_spans_per_second)
    default = total / len(cfg.composite_sub_policy)
    return {r.policy: (r.percent / 100 * total if r.percent > 0 else default)
            for r in cfg.rate_allocation}


def _composite(sec: CompositeCfg, facts: Facts) -> Evaluator:
    alloc = _allocations(sec)
    return Composite(sec.max_total_spans_per_second,
                     [(compile_policy(s, facts), alloc.get(s.name, 0.0))
                      for s in sec.composite_sub_policy])


def _bytes_limiting(sec: Any, facts: Facts) -> Evaluator:
    facts.sizes()
    return RateLimiting(sec.bytes_per_second, sec.burst_capacity, bytes_=True)


_BUILD: dict[str, Callable[[Any, Facts], Evaluator]] = {
    "always_sample": lambda sec, facts: AlwaysSample(),
    "latency": lambda sec, facts: Latency(sec.threshold_ms, sec.upper_threshold_ms),
    "status_code": lambda sec, facts: StatusCode(sec.status_codes),
    "string_attribute": lambda sec, facts: Fact(facts.attribute(sec.key, string_test(
        sec.values, sec.enabled_regex_matching, sec.cache_max_size),
        None if sec.enabled_regex_matching or "" in sec.values else sec.values),
        sec.invert_match),
    "numeric_attribute": lambda sec, facts: Fact(facts.attribute(
        sec.key, numeric_test(sec.min_value, sec.max_value)), sec.invert_match),
    "boolean_attribute": lambda sec, facts: Fact(facts.attribute(sec.key,
                                                                 bool_test(sec.value)),
                                                 sec.invert_match),
    "trace_state": lambda sec, facts: Fact(facts.tracestate(sec.key, sec.values)),
    "slo": lambda sec, facts: Fact(facts.slo_bad(SpanClassifier(
        span_slos(sec.definitions, bool(sec.names)), sec.http_5xx))),
    "probabilistic": lambda sec, facts: Probabilistic(sec.sampling_percentage, sec.hash_salt),
    "rate_limiting": lambda sec, facts: RateLimiting(sec.spans_per_second,
                                                     sec.burst_capacity),
    "bytes_limiting": lambda sec, facts: _bytes_limiting(sec, facts),
    "span_count": lambda sec, facts: SpanCount(sec.min_spans, sec.max_spans),
    "and": lambda sec, facts: And([compile_policy(s, facts) for s in sec.and_sub_policy]),
    "drop": lambda sec, facts: Drop([compile_policy(s, facts) for s in sec.drop_sub_policy]),
    "not": lambda sec, facts: Not(compile_policy(sec.not_sub_policy, facts)),
    "composite": _composite,
}


def compile_policy(p: Policy | LeafPolicy | Any, facts: Facts) -> Evaluator:
    """The evaluator of a policy config; facts it needs are registered in `facts`."""
    t = p.type
    ev = _BUILD[t](getattr(p, section_key(t), None), facts)
    ev.name = p.name
    return ev


def combine(decisions: Sequence[Decision]) -> bool:
    """The Collector's final decision over every policy's."""
    if Decision.SAMPLED in decisions:  # the common case first
        return Decision.DROPPED not in decisions and \
            Decision.INVERT_NOT_SAMPLED not in decisions
    seen = set(decisions)
    if Decision.DROPPED in seen or Decision.INVERT_NOT_SAMPLED in seen:
        return False
    if Decision.SAMPLED in seen:
        return True
    return Decision.INVERT_SAMPLED in seen and Decision.NOT_SAMPLED not in seen
