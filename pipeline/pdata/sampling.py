"""Sampling arithmetic shared by the samplers and the exemplar selection.

Pure functions, bit-for-bit with the OpenTelemetry Collector (contrib v0.161.0):

- OpenTelemetry consistent probability sampling (`pkg/sampling`): 56-bit
  randomness (`rv`, or the low 56 bits of the trace id, W3C Trace Context
  level 2), thresholds (`th`: reject when randomness < threshold), their
  hex encodings with trailing zeros trimmed, `probability_to_threshold` with
  the Collector's precision rounding, and the W3C `tracestate` parser and
  serializer with the `ot=` section;
- the `probabilistic_sampler` processor's hash_seed mode: FNV-1a 32 over the
  little-endian seed then the bytes, 14 bits of it turned into a 56-bit
  randomness (`hash_seed_randomness`);
- the `tail_sampling` processor's `probabilistic` policy: FNV-1a 64 over the
  salt then the trace id, kept when the hash is at most
  `tail_probabilistic_threshold(percentage)` (`tail_probabilistic_keeps`).
  `redmetrics` uses it to pick exemplars only from traces that policy keeps.
"""

from __future__ import annotations

import math
import re
import struct
from fractions import Fraction

MAX_ADJUSTED_COUNT = 1 << 56
"""Thresholds and randomness are 56-bit: 2**56 is the never-sample threshold."""
NUM_HEX_DIGITS = 14
ALWAYS_SAMPLE = 0
NEVER_SAMPLE = MAX_ADJUSTED_COUNT
ALL_PROBABILITIES_RANDOMNESS = MAX_ADJUSTED_COUNT - 1
MIN_SAMPLING_PROBABILITY = 1.0 / MAX_ADJUSTED_COUNT
_MASK56 = MAX_ADJUSTED_COUNT - 1

_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193
_FNV64_OFFSET = 0xCBF29CE484222325
_FNV64_PRIME = 0x100000001B3
_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF

_HASH_BUCKETS_LG2 = 14
_HASH_BUCKETS = 1 << _HASH_BUCKETS_LG2
_HEX = re.compile(r"[0-9a-fA-F]+\Z")


class SamplingError(ValueError):
    """Sampling information that cannot be used (a malformed tracestate, a missing
    randomness, an inconsistent threshold)."""


# FNV ---------------------------------------------------------------------------------

def fnv1a32(data: bytes, h: int = _FNV32_OFFSET) -> int:
    for b in data:
        h = ((h ^ b) * _FNV32_PRIME) & _M32
    return h


def fnv1a64(data: bytes, h: int = _FNV64_OFFSET) -> int:
    for b in data:
        h = ((h ^ b) * _FNV64_PRIME) & _M64
    return h


def seed_state32(seed: int) -> int:
    """FNV-1a 32 state after the seed's 4 little-endian bytes (the sampler's prefix)."""
    return fnv1a32(seed.to_bytes(4, "little"))


def hash_seed_randomness(data: bytes, seed_state: int) -> int:
    """The 56-bit randomness the hash_seed mode derives from `data` (`seed_state`:
    `seed_state32(hash_seed)`): 14 hash bits, inverted, on top, so that the item is
    kept at p% exactly when its 14-bit bucket is below p * 16384 / 100."""
    h = fnv1a32(data, seed_state)
    hashed = h & (_HASH_BUCKETS - 1)
    rprime14 = _HASH_BUCKETS - 1 - hashed
    unused18 = h >> (32 - _HASH_BUCKETS_LG2)
    mixed28 = (unused18 ^ (unused18 << 10)) & ((1 << 28) - 1)
    return (rprime14 << 42) | (mixed28 << 14) | hashed


def trace_id_randomness(trace_id: bytes) -> int:
    """W3C Trace Context level 2: the low 56 bits of the trace id."""
    return int.from_bytes(trace_id[8:16], "big") & _MASK56


# Thresholds ----------------------------------------------------------------------------

def float32(x: float) -> float:
    """`x` rounded to the nearest float32 (the Collector keeps percentages as float32);
    infinite when out of the float32 range."""
    try:
        return float(struct.unpack("<f", struct.pack("<f", x))[0])
    except OverflowError:
        return math.copysign(math.inf, x)


def _round_half_away(x: float) -> int:
    fl = math.floor(x)
    return fl + 1 if x - fl >= 0.5 else fl


def probability_to_threshold(fraction: float, precision: int = NUM_HEX_DIGITS) -> int:
    """The threshold of a sampling probability, rounded to `precision` hex digits
    (more where the probability is very close to 0 or 1); `SamplingError` outside
    [2**-56, 1]."""
    if precision == 0:
        precision = NUM_HEX_DIGITS
    if not (MIN_SAMPLING_PROBABILITY <= fraction <= 1):
        raise SamplingError("sampling probability out of the range [1/MaxAdjustedCount, 1]")
    if fraction == 1:
        return ALWAYS_SAMPLE
    _, exp_f = math.frexp(fraction)
    _, exp_r = math.frexp(1 - fraction)
    # Go's integer division truncates toward zero.
    precision = min(NUM_HEX_DIGITS, max(precision + int(exp_f / -4), precision + int(exp_r / -4)))
    scaled = _round_half_away(fraction * float(MAX_ADJUSTED_COUNT))
    threshold = MAX_ADJUSTED_COUNT - scaled
    shift = 4 * (NUM_HEX_DIGITS - precision)
    if shift > 0:
        threshold += 1 << (shift - 1)
        threshold >>= shift
        threshold <<= shift
    return threshold


def threshold_probability(threshold: int) -> float:
    return (MAX_ADJUSTED_COUNT - threshold) / MAX_ADJUSTED_COUNT


def adjusted_count(threshold: int) -> float:
    if threshold >= NEVER_SAMPLE:
        return 0.0
    return 1.0 / threshold_probability(threshold)


def tvalue(threshold: int) -> str:
    """The `th` encoding: 14 hex digits, trailing zeros trimmed ("0": always; "": never)."""
    if threshold == ALWAYS_SAMPLE:
        return "0"
    if threshold >= NEVER_SAMPLE:
        return ""
    return f"{threshold:014x}".rstrip("0")


def rvalue(randomness: int) -> str:
    return f"{randomness:014x}" if 0 <= randomness < MAX_ADJUSTED_COUNT else ""


def parse_tvalue(s: str) -> int:
    if len(s) > NUM_HEX_DIGITS:
        raise SamplingError("t-value exceeds 14 hex digits")
    if not s:
        raise SamplingError("t-value is empty")
    if not _HEX.match(s):
        raise SamplingError(f"t-value {s!r}: invalid syntax")
    return int(s, 16) << (4 * (NUM_HEX_DIGITS - len(s)))


def parse_rvalue(s: str) -> int:
    if len(s) != NUM_HEX_DIGITS:
        raise SamplingError("r-value must have 14 hex digits")
    if not _HEX.match(s):
        raise SamplingError(f"r-value {s!r}: invalid syntax")
    return int(s, 16)


def tail_probabilistic_threshold(percentage: float) -> int:
    """The tail sampler's probabilistic cut: floor((2**64-1) × ratio), the product first
    rounded to 64 significant bits, half to even (Go's big.Float), as the Collector."""
    ratio = percentage / 100
    if not ratio > 0:
        return 0
    if math.isinf(ratio):
        return _M64
    exact = Fraction(_M64) * Fraction(ratio)
    k = exact.numerator.bit_length() - exact.denominator.bit_length()
    if Fraction(2) ** k > exact:
        k -= 1  # now 2**k <= exact < 2**(k+1)
    unit = Fraction(2) ** (k - 63)
    rounded = round(exact / unit) * unit  # 64 significant bits; round() is half-even
    return min(math.floor(rounded), _M64)


def tail_probabilistic_keeps(trace_id: bytes, salt_state: int, threshold: int) -> bool:
    """The tail sampler's probabilistic decision (`salt_state`: `fnv1a64(salt)`, the salt
    defaulting to "default-hash-seed")."""
    return fnv1a64(trace_id, salt_state) <= threshold


# W3C tracestate with the OpenTelemetry section ---------------------------------------

def _lc_alpha(c: str) -> bool:
    return "a" <= c <= "z"


def _lc_alnum(c: str) -> bool:
    return "a" <= c <= "z" or "0" <= c <= "9"


_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-*/")
_OT_VALUE_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _w3c_key_ok(key: str) -> bool:
    if not key:
        return False
    tenant, at, system = key.partition("@")
    if at:
        if not tenant or not system or not _lc_alnum(tenant[0]) or not _lc_alpha(system[0]):
            return False
        return all(c in _KEY_CHARS for c in tenant[1:]) and all(
            c in _KEY_CHARS for c in system[1:])
    return _lc_alpha(key[0]) and all(c in _KEY_CHARS for c in key[1:])


def _nonblank(c: str) -> bool:
    o = ord(c)
    return 0x21 <= o <= 0x2B or 0x2D <= o <= 0x3C or 0x3E <= o <= 0x7E


def _w3c_value_ok(value: str) -> bool:
    if not value or len(value) > 256 or not _nonblank(value[-1]):
        return False
    return all(c == " " or _nonblank(c) for c in value[:-1])


def _w3c_valid(s: str) -> bool:
    for member in s.split(","):
        member = member.strip(" \t")
        if not member:
            continue
        eq = member.find("=")
        if eq < 1 or not _w3c_key_ok(member[:eq]) or not _w3c_value_ok(member[eq + 1:]):
            return False
    return True


def _ot_valid(s: str) -> bool:
    if not s or s[-1] == ";":
        return False
    for member in s.split(";"):
        colon = member.find(":")
        if colon < 1:
            return False
        key, value = member[:colon], member[colon + 1:]
        if not (_lc_alpha(key[0]) and all(_lc_alnum(c) for c in key[1:])):
            return False
        if any(c not in _OT_VALUE_CHARS for c in value):
            return False
    return True


class TraceState:
    """A parsed W3C tracestate: the `ot` section's `rv` and `th`, its other keys, and the
    other vendors' entries (order kept). `serialize()` puts `ot=` first, as the Collector."""

    __slots__ = ("extra", "ot_extra", "rnd", "rv", "th", "threshold")

    def __init__(self) -> None:
        self.rv = ""
        self.rnd = 0
        self.th = ""
        self.threshold = ALWAYS_SAMPLE
        self.ot_extra: list[tuple[str, str]] = []
        self.extra: list[tuple[str, str]] = []

    @classmethod
    def parse(cls, s: str) -> TraceState:
        """`SamplingError` for a tracestate the Collector refuses (its checks and limits:
        1024 bytes, fewer than 32 members, key sizes, `ot` syntax, rv/th encodings)."""
        ts = cls()
        if not s:
            return ts
        if len(s) > 1024:
            raise SamplingError("invalid tracestate size")
        if not _w3c_valid(s):
            raise SamplingError("tracestate: invalid syntax")
        members = s.split(",")
        if s.endswith(","):
            members.pop()  # Go's scanner stops at the end: no empty last member
        for items, member in enumerate(members, start=1):
            if items >= 32:
                raise SamplingError("invalid tracestate size")
            member = member.strip(" \t")
            key, eq, value = member.partition("=")
            if not member or not eq:
                continue
            if len(key) > 256:
                raise SamplingError("invalid tracestate size")
            tenant, at, system = key.partition("@")
            if at and (len(tenant) > 241 or len(system) > 14):
                raise SamplingError("invalid tracestate size")
            if key == "ot":
                ts._parse_ot(value)
            else:
                ts.extra.append((key, value))
        return ts

    def _parse_ot(self, s: str) -> None:
        self.rv, self.rnd, self.th, self.threshold, self.ot_extra = "", 0, "", 0, []
        if len(s) > 256:
            raise SamplingError("invalid tracestate size")
        if not _ot_valid(s):
            raise SamplingError("ot tracestate: invalid syntax")
        for member in s.split(";"):
            key, _, value = member.partition(":")
            if key == "rv":
                self.rnd = parse_rvalue(value)
                self.rv = value
            elif key == "th":
                self.threshold = parse_tvalue(value)
                self.th = value
            else:
                self.ot_extra.append((key, value))

    def has_randomness(self) -> bool:
        return self.rv != ""

    def has_threshold(self) -> bool:
        return self.th != ""

    def set_randomness(self, rnd: int) -> None:
        self.rnd = rnd
        self.rv = rvalue(rnd)

    def clear_threshold(self) -> None:
        self.th = ""
        self.threshold = ALWAYS_SAMPLE

    def update_threshold(self, threshold: int) -> bool:
        """Record the threshold an item was sampled at; False (unchanged) when that would
        raise the probability it already carries."""
        if self.th and self.threshold > threshold:
            return False
        self.threshold = threshold
        self.th = tvalue(threshold)
        return True

    def serialize(self) -> str:
        ot = []
        if self.rv:
            ot.append("rv:" + self.rv)
        if self.th:
            ot.append("th:" + self.th)
        ot.extend(f"{k}:{v}" for k, v in self.ot_extra)
        out = ["ot=" + ";".join(ot)] if ot else []
        out.extend(f"{k}={v}" for k, v in self.extra)
        return ",".join(out)
