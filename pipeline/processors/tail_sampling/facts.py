"""What a waiting trace is to the policies: `TraceData`, a summary kept up to date as
its spans arrive (span count, earliest start and latest end, the status codes seen),
and `Facts`, the per-span tests the policies registered, one bit of
`TraceData.facts` each ("some span or its resource has `http.route` matching
`/api/.*`", "some span counts against an SLO", ...). Facts are computed once per
span at ingest (`Facts.span`); a decision then costs a few operations per policy,
whatever the trace's size.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from pipeline.pdata.wire import varint
from pipeline.processors.tail_sampling.slo import SpanClassifier

VALUE_CACHE = 4096  # serialized attribute values remembered per watched key


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


def string_test(values: Sequence[str], regex: bool, cache_size: int) -> AnyTest:
    if not regex:
        exact = frozenset(v for v in values if v)  # an empty value never matches
        return lambda v: v.string_value in exact
    patterns = [re.compile(p) for p in values]

    def match(s: str) -> bool:
        return any(p.search(s) for p in patterns)  # Go's MatchString: unanchored

    cached = functools.lru_cache(maxsize=cache_size or 128)(match)
    return lambda v: bool(s := v.string_value) and cached(s)


def numeric_test(lo: int | None, hi: int | None) -> AnyTest:
    lo_ = -(1 << 63) if lo is None else lo
    hi_ = (1 << 63) - 1 if hi is None else hi
    return lambda v: lo_ <= v.int_value <= hi_


def bool_test(value: bool) -> AnyTest:
    return lambda v: v.bool_value == value
