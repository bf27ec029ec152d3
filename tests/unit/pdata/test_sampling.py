"""pipeline.pdata.sampling: the Collector's arithmetic, on vectors printed by Go."""

from __future__ import annotations

import pytest

from pipeline.pdata.sampling import (
    NEVER_SAMPLE,
    SamplingError,
    TraceState,
    float32,
    fnv1a64,
    probability_to_threshold,
    tail_probabilistic_keeps,
    tail_probabilistic_threshold,
    tvalue,
)

# calculateThreshold(p / 100) of contrib's tailsamplingprocessor v0.161.0, run with Go 1.25.
GO_TAIL_THRESHOLDS = {
    10: 1844674407370955263, 100: 18446744073709551615, 50: 9223372036854775807,
    33.333: 6148853202089604095, 0.01: 1844674407370955, 1: 184467440737095519,
    99.9: 18428297329635844095, 12.5: 2305843009213693951, 7: 1291272085159668735,
}


@pytest.mark.parametrize(("pct", "want"), GO_TAIL_THRESHOLDS.items())
def test_tail_threshold_matches_go(pct: float, want: int) -> None:
    assert tail_probabilistic_threshold(pct) == want


def test_tail_threshold_edges() -> None:
    assert tail_probabilistic_threshold(0) == 0
    assert tail_probabilistic_threshold(250) == (1 << 64) - 1
    assert tail_probabilistic_threshold(float("nan")) == 0


def test_fnv1a64_vectors_and_the_default_salt() -> None:
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a64(b"foobar") == 0x85944171F73967E8
    state = fnv1a64(b"default-hash-seed")
    # fnv over salt+id equals fnv of the concatenation
    tid = bytes(range(16))
    assert fnv1a64(tid, state) == fnv1a64(b"default-hash-seed" + tid)
    assert tail_probabilistic_keeps(tid, state, (1 << 64) - 1)
    assert not tail_probabilistic_keeps(tid, state, 0)


@pytest.mark.parametrize(("p", "precision", "tv"), [
    (0.5, 4, "8"), (0.25, 4, "c"), (0.01, 4, "fd70a"), (0.01, 3, "fd71"), (0.01, 14,
                                                                          "fd70a3d70a3d71"),
    (0.4, 3, "99a"), (1.0, 4, "0"), (2 ** -14, 4, "fffc"),
    (float32((1 - 8e-7) * 100) / 100, 10, "00000cccccccd")])  # the Go test's float32 percentage
def test_probability_to_threshold(p: float, precision: int, tv: str) -> None:
    assert tvalue(probability_to_threshold(p, precision)) == tv


def test_probability_out_of_range() -> None:
    for p in (0.0, -0.1, 1.5, 2 ** -57):
        with pytest.raises(SamplingError):
            probability_to_threshold(p)
    assert tvalue(NEVER_SAMPLE) == ""


def test_tracestate_round_trip_puts_ot_first() -> None:
    ts = TraceState.parse("congo=t61rcWkgMzE, ot=th:8;rv:c0000000000000;x:y ,rojo=00f0")
    assert (ts.th, ts.rv, ts.ot_extra) == ("8", "c0000000000000", [("x", "y")])
    assert ts.serialize() == "ot=rv:c0000000000000;th:8;x:y,congo=t61rcWkgMzE,rojo=00f0"
    assert ts.update_threshold(probability_to_threshold(0.25))
    assert ts.th == "c"
    assert not ts.update_threshold(probability_to_threshold(0.5)), "raising p is refused"
    assert TraceState.parse("").serialize() == ""


@pytest.mark.parametrize("bad", [
    "ot=th:", "ot=th:8;", "ot=rv:123", "ot=th:123456789012345", "ot=th:0x1", "ot=th:1_0",
    "Ot=th:8", "ot=TH:8", "ot", "a=b,=c", "ot=th:8 x", "x" * 1025,
    ",".join(f"k{i}=v" for i in range(32)), "a@" + "b" * 15 + "=1"])
def test_tracestate_errors(bad: str) -> None:
    with pytest.raises(SamplingError):
        TraceState.parse(bad)


def test_tracestate_limits_that_pass() -> None:
    assert len(TraceState.parse(",".join(f"k{i}=v" for i in range(31))).extra) == 31
    assert TraceState.parse("a=1,").extra == [("a", "1")]
    assert TraceState.parse("ot=th:8,ot=rv:c0000000000000").th == "", "the last ot wins"
