"""Accumulator: the series cap and the overflow series per family."""

from __future__ import annotations

from pipeline.pdata.prometheus.accumulator import OVERFLOW_LABELS, Accumulator
from pipeline.pdata.prometheus.names import COUNTER, GAUGE, HISTOGRAM, SUMMARY
from pipeline.pdata.prometheus.series import Series, flat_samples


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def counter(family: str, i: int, value: float = 1.0, ts: int = 10, delta: bool = False,
            stale: bool = False) -> Series:
    return Series(family, COUNTER, "", "", (("i", str(i)),), ts, 1, delta=delta, stale=stale,
                  value=value)


def test_no_limit_by_default() -> None:
    acc = Accumulator(0)
    for i in range(1000):
        acc.add(counter("c", i))
    assert len(acc) == 1000
    assert acc.overflow_points == 0


def test_points_beyond_the_limit_go_to_one_overflow_series_per_family() -> None:
    acc = Accumulator(0, max_series=3)
    for i in range(3):
        assert acc.add(counter("a", i)) is not None
    assert acc.add(counter("a", 0, value=5.0, ts=11)) is not None  # a held series: updated
    for i in range(3, 10):
        o = acc.add(counter("a", i, ts=20 + i))
        assert o is not None
        assert o.labels == OVERFLOW_LABELS
    assert len(acc.series) == 3
    assert len(acc) == 4
    [overflow] = acc.overflow.values()
    assert (overflow[0].value, overflow[0].timestamp_ns) == (7.0, 29)
    assert acc.overflow_points == 7
    assert acc.overflow_dropped == 0
    # A family that holds nothing when the limit is reached is dropped, not overflowed.
    assert acc.add(counter("b", 0)) is None
    assert (acc.overflow_points, acc.overflow_dropped) == (8, 1)
    assert "b" not in acc.types


def test_overflow_series_of_every_kind_render() -> None:
    acc = Accumulator(0, max_series=4)
    acc.add(counter("c", 0))
    acc.add(Series("g", GAUGE, "", "", (("i", "0"),), 1, value=3.0))
    acc.add(Series("h", HISTOGRAM, "", "", (("i", "0"),), 1, bounds=(1.0,), counts=[1, 0],
                   sum=0.5, count=1))
    acc.add(Series("s", SUMMARY, "", "", (("i", "0"),), 1, quantiles=((0.5, 1.0),), sum=1,
                   count=1))
    acc.add(counter("c", 1))
    acc.add(Series("g", GAUGE, "", "", (("i", "1"),), 1, value=3.0))
    for _ in range(2):
        acc.add(Series("h", HISTOGRAM, "", "", (("i", "1"),), 1, bounds=(1.0,), counts=[1, 0],
                       sum=0.5, count=1))
    acc.add(Series("s", SUMMARY, "", "", (("i", "1"),), 1, quantiles=((0.5, 1.0),), sum=1,
                   count=1))
    samples = {(name, labels): v for o, _ in acc.overflow.values()
               for name, labels, v, _ in flat_samples(o)}
    ov = (("otel_metric_overflow", "true"),)
    assert samples == {
        ("c_total", ov): 1.0, ("g", ov): 1.0,
        ("h_bucket", (("le", "+Inf"), ("otel_metric_overflow", "true"))): 2.0,
        ("h_sum", ov): 0.0, ("h_count", ov): 2.0, ("s_sum", ov): 0.0, ("s_count", ov): 1.0}


def test_expiry_and_staleness_make_room() -> None:
    clock = Clock()
    acc = Accumulator(10, clock, max_series=2)
    acc.add(counter("a", 0))
    acc.add(counter("a", 1))
    acc.add(counter("a", 2))  # overflow
    acc.add(counter("a", 1, stale=True))
    assert acc.add(counter("a", 3)) is not None
    assert ("a", (("i", "3"),)) in acc.series
    clock.now += 11
    assert acc.expire() == 3  # two series and the overflow series
    assert len(acc) == 0
    assert acc.types == {}
    assert acc.per_family == {}
    acc.add(counter("b", 0))
    acc.add(counter("b", 1))
    assert len(acc.series) == 2


def test_delta_points_of_held_series_still_merge_at_the_limit() -> None:
    acc = Accumulator(0, max_series=1)
    acc.add(counter("a", 0, value=2.0, delta=True))
    merged = acc.add(counter("a", 0, value=3.0, ts=11, delta=True))
    assert merged is not None
    assert merged.value == 5.0
