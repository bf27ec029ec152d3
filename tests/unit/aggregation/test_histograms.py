from __future__ import annotations

import pytest

from pipeline.aggregation.histograms import EXP_MAX_SCALE, ExpHistogramSeries, HistogramSeries


def test_explicit_buckets_close_on_their_bound_and_keep_the_first_exemplar() -> None:
    h = HistogramSeries(3)
    bounds = (1.0, 2.0)
    for v, ex in ((1.0, (b"t", b"s", 1.0, 1)), (1.0, (b"u", b"v", 1.0, 2)), (2.5, None)):
        h.observe(v, bounds, ex)
    count, total, buckets, exemplars = h.freeze()
    assert (count, total, buckets) == (3, 4.5, (2, 0, 1))
    assert exemplars == ((b"t", b"s", 1.0, 1),)
    frozen = h.freeze()
    h.subtract(frozen)
    h.clear_exemplars(frozen)
    assert (h.count(), h.exemplars) == (0, [None, None, None])


def test_clearing_exemplars_keeps_those_that_came_after_the_snapshot() -> None:
    """A flush runs in slices: an exemplar recorded between its snapshot and its commit
    goes with the next flush."""
    h = HistogramSeries(3)
    bounds = (1.0, 2.0)
    h.observe(0.5, bounds, (b"t", b"s", 0.5, 1))
    frozen = h.freeze()
    h.observe(1.5, bounds, (b"u", b"v", 1.5, 2))
    h.clear_exemplars(frozen)
    assert h.exemplars == [None, (b"u", b"v", 1.5, 2), None]
    e = ExpHistogramSeries(max_size=8)
    e.observe(1.0, (b"t", b"s", 1.0, 1))
    exp_frozen = e.freeze()
    e.observe(3.0, (b"u", b"v", 3.0, 2))
    e.clear_exemplars(exp_frozen)
    assert e.exemplars == [(b"u", b"v", 3.0, 2)]
    e.clear_exemplars(e.freeze())
    assert e.exemplars == []


def test_exponential_indices_and_downscale_to_max_size() -> None:
    assert ExpHistogramSeries.index(1.0, 0) == -1  # (0.5, 1]
    assert ExpHistogramSeries.index(2.0, 0) == 0
    assert ExpHistogramSeries.index(4.0, 1) == 3
    h = ExpHistogramSeries(max_size=4)
    for v in (0.0, 1.0, 2.0, 1000.0):
        h.observe(v)
    frozen = h.freeze()
    assert (frozen.count, frozen.zero_count, frozen.sum) == (4, 1, 1003.0)
    assert frozen.scale < EXP_MAX_SCALE
    assert len(frozen.counts) <= 4
    assert sum(frozen.counts.values()) == 3
    h.subtract(frozen)
    assert (h.count(), h.scale, h.counts) == (0, EXP_MAX_SCALE, {})


@pytest.mark.parametrize("divisor", [1.0, 1e9])
def test_exponential_indexes_in_the_emitted_unit(divisor: float) -> None:
    h = ExpHistogramSeries(max_size=160, divisor=divisor)
    h.observe(2.0 * divisor)
    assert list(h.counts) == [ExpHistogramSeries.index(2.0, EXP_MAX_SCALE)]
