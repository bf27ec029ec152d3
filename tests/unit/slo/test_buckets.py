"""Time buckets: the resolution serving a window, window names, running sums."""

from __future__ import annotations

import random

from pipeline.slo.buckets import Tier, resolution_for, window_name
from tests.unit.slo.sim import DAY


def test_resolution_and_window_names() -> None:
    assert resolution_for(90 * DAY) == 10800
    assert [window_name(s) for s in (300, 5400, 86400, 90)] == ["5m", "90m", "1d", "90s"]


def test_tier_running_sums_equal_brute_force() -> None:
    rng = random.Random(7)
    tier = Tier(60, 50)
    for k in (1, 5, 17, 50):
        tier.add_window(k)
    events: list[tuple[int, float, float]] = []
    idx = 1000
    for _ in range(3000):
        idx += rng.choice((0, 0, 1, 1, 2, 7, 60))
        late = idx - rng.choice((0, 0, 0, 3, 49, 80))
        bad, total = rng.randint(0, 5), rng.randint(5, 20)
        tier.advance(idx)  # the clock moves on
        tier.add(late, bad, total)  # an event now, or a late one
        if late > idx - 50:
            events.append((late, bad, total))
        # The clock never goes back: an event older than the widest window (50) is in no
        # window any more; dropping it keeps the brute force linear.
        events = [e for e in events if e[0] > idx - 50]
        for k in (1, 5, 17, 50):
            want_bad = sum(b for i, b, _ in events if idx - k < i <= idx)
            want_total = sum(t for i, _, t in events if idx - k < i <= idx)
            assert tier.window(k) == (want_bad, want_total)
