"""Sampling policies: what each decides about a trace, compiled from the config.

Evaluation runs on a summary of each trace kept up to date as its spans
arrive (`TraceData`): span count, earliest start and latest end, the status
codes seen, and one bit per *fact* a policy asks about ("some span or its
resource has `http.route` matching `/api/.*`", "some span counts against an
SLO", ...). Facts are computed once per span at ingest (`Facts.span`); a
decision then costs a few operations per policy, whatever the trace's size.

Decisions and how they combine are the Collector's (`tailsamplingprocessor`):
`Sampled`, `NotSampled`, the *inverted* ones that `invert_match` produces, and
`Dropped` (the `drop` policy). The final decision: any `Dropped` or
`InvertNotSampled` → not sampled; else any `Sampled` → sampled; else any
`InvertSampled` and no `NotSampled` → sampled; else not sampled.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from pipeline.pdata.wire import varint
from pipeline.processors.tail_sampling.config import (
    STATUS_CODES,
    CompositeCfg,
    LeafPolicy,
    Policy,
    section_key,
)
from pipeline.processors.tail_sampling.slo import SpanClassifier, span_slos

VALUE_CACHE = 4096  # serialized attribute values remembered per watched key
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


class TraceData:
    """A trace waiting for its decision: its spans and the summary policies read."""

    __slots__ = ("end", "env", "envs", "facts", "first_seen", "nbytes", "records", "spans",
                 "start", "status", "trace_id")

    def __init__(self, trace_id: bytes, first_seen: float):
        self.trace_id = trace_id
        self.first_seen = first_seen
        self.spans: list[bytes] = []  # encoded spans
        self.env: Any = None  # the envelope (resource and scope) of its first span ...
        self.envs: list[Any] | None = None  # ... or of each span, once they differ
        self.start = 1 << 64
        self.end = 0
        self.status = 0  # bit 1 << code: UNSET 1, OK 2, ERROR 4
        self.facts = 0
        self.nbytes = 0  # encoded size of its spans, kept when a bytes_limiting policy asks
        self.records: list[int] | None = None  # storage disk: keys of the records holding it

    @property
    def span_count(self) -> int:
        return len(self.spans)

    def add(self, env: Any, span: bytes) -> None:
        """A span and its envelope (the ingest loops inline this)."""
        e = self.env
        if e is not env:
            if e is None:
                self.env = env
            elif self.envs is None:
                self.envs = [e] * len(self.spans)
        if self.envs is not None:
            self.envs.append(env)
        self.spans.append(span)

    def groups(self) -> list[tuple[Any, list[bytes]]]:
        """Its spans as (envelope, spans) groups, in order."""
        if self.envs is None:
            return [(self.env, self.spans)] if self.spans else []
        return [(e, [sb]) for e, sb in zip(self.envs, self.spans, strict=True)]


# --- facts: what is computed per span at ingest -----------------------------------------

AnyTest = Callable[[Any], bool]


class Facts:
    """Per-span tests the policies registered, each setting one bit of `TraceData.facts`."""

    def __init__(self) -> None:
        self.attrs: dict[str, list[tuple[AnyTest, int]]] = {}  # span and resource attributes
        self.trace_state: list[tuple[str, frozenset[str], int]] = []
        self.slo: list[tuple[SpanClassifier, int]] = []
        self.bits = 0
        self.need_bytes = False
        self._key_bytes: dict[str, bytes] = {}
        self._needles: dict[int, list[bytes]] = {}
        # Serialized AnyValue -> the bits its key's tests set (the projection path reads
        # attributes as bytes); bounded per key.
        self._by_bytes: dict[str, dict[bytes, int]] = {}
        self._filters: dict[tuple[bytes, ...], Callable[[bytes], Any]] = {}

    def sizes(self) -> None:
        """A policy reads the traces' encoded size: keep it per span at ingest."""
        self.need_bytes = True

    def _bit(self) -> int:
        bit = 1 << self.bits
        self.bits += 1
        return bit

    def attribute(self, key: str, test: AnyTest, needles: Sequence[str] | None = None) -> int:
        """A test of `key`'s value; `needles`: strings one of which the value must contain
        (as UTF-8 bytes) to match, for skipping requests that hold none."""
        bit = self._bit()
        self.attrs.setdefault(key, []).append((test, bit))
        k = key.encode()
        self._key_bytes[key] = b"\x0a" + varint(len(k)) + k  # KeyValue.key on the wire
        if needles is not None:
            self._needles[bit] = [n.encode() for n in needles]
        return bit

    def tracestate(self, key: str, values: Sequence[str]) -> int:
        bit = self._bit()
        self.trace_state.append((key, frozenset(values), bit))
        return bit

    def slo_bad(self, classifier: SpanClassifier) -> int:
        bit = self._bit()
        self.slo.append((classifier, bit))
        return bit

    def active(self, raw: bytes | None) -> dict[str, list[tuple[AnyTest, int]]]:
        """The attribute tests that can hold in a request (its bytes, when known): a key
        (or, for exact string values, every value) absent from the bytes cannot match,
        so whole requests skip the per-attribute walk."""
        if raw is None or not self.attrs:
            return self.attrs
        out: dict[str, list[tuple[AnyTest, int]]] = {}
        for key, tests in self.attrs.items():
            if self._key_bytes[key] not in raw:
                continue
            kept = [(test, bit) for test, bit in tests
                    if (needles := self._needles.get(bit)) is None
                    or any(n in raw for n in needles)]
            if kept:
                out[key] = kept
        return out

    def resource(self, attributes: Any, watch: dict[str, list[tuple[AnyTest, int]]]) -> int:
        """Bits set by a resource's attributes."""
        bits = 0
        for kv in attributes:
            tests = watch.get(kv.key)
            if tests is not None:
                v = kv.value
                for test, bit in tests:
                    if test(v):
                        bits |= bit
        return bits

    def value_bits(self, key: str, value: bytes) -> int:
        """Bits set by `value` (a serialized AnyValue) of attribute `key`: every test of
        the key (a test that `active` left out cannot hold in this request anyway)."""
        cache = self._by_bytes.get(key)
        if cache is None:
            cache = self._by_bytes[key] = {}
        bits = cache.get(value)
        if bits is None:
            bits = 0
            try:
                v = AnyValue.FromString(value)
            except DecodeError:  # not a value (e.g. a string not UTF-8): matches nothing
                v = None
            if v is not None:
                for test, bit in self.attrs[key]:
                    if test(v):
                        bits |= bit
            if len(cache) < VALUE_CACHE:
                cache[value] = bits
        return bits

    def span_filter(self, watch: dict[str, list[tuple[AnyTest, int]]],
                    ) -> Callable[[bytes], Any] | None:
        """A search over a span's bytes that finds something when a test of `watch` may
        hold in the span: one of the exact string values looked for (a span without any
        of them cannot match). None when a test has no such values (regex, numeric,
        boolean): every span is looked into."""
        out: list[bytes] = []
        for tests in watch.values():
            for _, bit in tests:
                needles = self._needles.get(bit)
                if needles is None:
                    return None
                out.extend(needles)
        k = tuple(sorted(set(out)))
        search = self._filters.get(k)
        if search is None:
            search = re.compile(b"|".join(re.escape(n) for n in k)).search
            if len(self._filters) < 64:
                self._filters[k] = search
        return search

    def map_bits(self, attributes: Any, watch: dict[str, list[tuple[AnyTest, int]]]) -> int:
        """Bits set by a projection's attribute map (`map<string, bytes>`)."""
        bits = 0
        get = attributes.get
        for key in watch:
            v = get(key)
            if v is not None:
                bits |= self.value_bits(key, v)
        return bits

    def state_bits(self, ts: bytes) -> int:
        """Bits set by a span's W3C trace state (as bytes)."""
        bits = 0
        if ts:
            entries = _parse_tracestate(ts.decode("utf-8", "replace"))
            for key, values, bit in self.trace_state:
                if entries.get(key) in values:
                    bits |= bit
        return bits

    def resource_texts(self, attributes: Any) -> dict[str, str]:
        """Resource attribute values the SLO classifiers read (as label text)."""
        if not self.slo:
            return {}
        from pipeline.pdata.anyvalue import any_value_to_python, label_text

        keys: set[str] = set()
        for c, _ in self.slo:
            keys |= c.resource_keys()
        return {kv.key: label_text(any_value_to_python(kv.value))
                for kv in attributes if kv.key in keys}

    def span(self, span: Any, resource_texts: dict[str, str],
             watch: dict[str, list[tuple[AnyTest, int]]]) -> int:
        """Bits set by one span (its attributes, trace state, SLO classification)."""
        bits = 0
        if watch:
            left = len(watch)
            for kv in span.attributes:
                tests = watch.get(kv.key)
                if tests is not None:
                    v = kv.value
                    for test, bit in tests:
                        if test(v):
                            bits |= bit
                    left -= 1
                    if not left:
                        break
        if self.trace_state:
            ts = span.trace_state
            if ts:
                entries = _parse_tracestate(ts)
                for key, values, bit in self.trace_state:
                    if entries.get(key) in values:
                        bits |= bit
        for classifier, bit in self.slo:
            if classifier.bad(span, resource_texts) is not None:
                bits |= bit
        return bits


def _parse_tracestate(ts: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for member in ts.split(",")[:32]:
        k, sep, v = member.strip().partition("=")
        if sep and k not in out:
            out[k] = v
    return out


# Values read as Go's pdata reads them: a value of another type is "" / 0 / false (as
# upb's string_value / int_value / bool_value of another oneof member).


def _string_test(values: Sequence[str], regex: bool, cache_size: int) -> AnyTest:
    if not regex:
        exact = frozenset(v for v in values if v)  # an empty value never matches
        return lambda v: v.string_value in exact
    patterns = [re.compile(p) for p in values]

    def match(s: str) -> bool:
        return any(p.search(s) for p in patterns)  # Go's MatchString: unanchored

    cached = functools.lru_cache(maxsize=cache_size or 128)(match)
    return lambda v: bool(s := v.string_value) and cached(s)


def _numeric_test(lo: int | None, hi: int | None) -> AnyTest:
    lo_ = -(1 << 63) if lo is None else lo
    hi_ = (1 << 63) - 1 if hi is None else hi
    return lambda v: lo_ <= v.int_value <= hi_


def _bool_test(value: bool) -> AnyTest:
    return lambda v: v.bool_value == value


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
    "string_attribute": lambda sec, facts: Fact(facts.attribute(sec.key, _string_test(
        sec.values, sec.enabled_regex_matching, sec.cache_max_size),
        None if sec.enabled_regex_matching or "" in sec.values else sec.values),
        sec.invert_match),
    "numeric_attribute": lambda sec, facts: Fact(facts.attribute(
        sec.key, _numeric_test(sec.min_value, sec.max_value)), sec.invert_match),
    "boolean_attribute": lambda sec, facts: Fact(facts.attribute(sec.key,
                                                                 _bool_test(sec.value)),
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
