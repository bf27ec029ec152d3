"""Time buckets of SLO event counts, with running sums per window.

Each window is served by the finest of the resolutions 1m, 5m, 10m, 30m, 1h,
3h, 6h, 1d that needs at most 1000 buckets for it: 5m … 6h at 1 minute, 1d and
3d at 5 minutes, 30d at 1 hour (720 buckets). Windows of one resolution share a
ring of buckets, so an SLO with the standard windows and a 30d period holds
360 + 864 + 720 buckets of two floats, whatever the traffic.

A window of W over buckets of R is the last ceil(W/R) buckets, the current
(partial) one included: it covers between W - R and W of time. Events are
attributed to the time they reach the engine (the injected clock), not to data
point timestamps: a skewed source clock cannot move events between windows.
"""

from __future__ import annotations

from typing import Any

RESOLUTIONS: tuple[int, ...] = (60, 300, 600, 1800, 3600, 10800, 21600, 86400)
MAX_BUCKETS = 1000


def window_name(seconds: float) -> str:
    """`5m`, `1h`, `30d`: the largest unit that divides the window exactly."""
    s = round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


def resolution_for(window: float) -> int:
    for res in RESOLUTIONS:
        if window / res <= MAX_BUCKETS:
            return res
    return RESOLUTIONS[-1]


class Tier:
    """A ring of `size` buckets of `res` seconds, with running sums for windows of
    k buckets (k <= size)."""

    __slots__ = ("bad", "head", "res", "size", "sums", "total")

    def __init__(self, res: int, size: int):
        self.res = res
        self.size = size
        self.head: int | None = None  # absolute index of the current bucket
        self.bad = [0.0] * size
        self.total = [0.0] * size
        self.sums: dict[int, list[float]] = {}

    def add_window(self, k: int) -> None:
        assert k <= self.size
        self.sums.setdefault(k, [0.0, 0.0])

    def advance(self, idx: int) -> None:
        head = self.head
        if head is None:
            self.head = idx
            return
        if idx <= head:
            return
        bad, total, size = self.bad, self.total, self.size
        for k, s in self.sums.items():
            if idx - k >= head:  # the whole window leaves
                s[0] = s[1] = 0.0
                continue
            for i in range(head - k + 1, idx - k + 1):
                j = i % size
                s[0] -= bad[j]
                s[1] -= total[j]
        if idx - head >= size:
            self.bad = [0.0] * size
            self.total = [0.0] * size
        else:
            for i in range(head + 1, idx + 1):
                j = i % size
                bad[j] = 0.0
                total[j] = 0.0
        self.head = idx

    def add(self, idx: int, bad: float, total: float) -> None:
        if self.head is None or idx > self.head:
            self.advance(idx)
        head = self.head
        assert head is not None
        if idx <= head - self.size:
            return  # older than this tier keeps
        j = idx % self.size
        self.bad[j] += bad
        self.total[j] += total
        for k, s in self.sums.items():
            if idx > head - k:
                s[0] += bad
                s[1] += total

    def window(self, k: int) -> tuple[float, float]:
        s = self.sums[k]
        return max(s[0], 0.0), max(s[1], 0.0)

    def dump(self) -> dict[str, Any]:
        buckets = []
        if self.head is not None:
            for idx in range(self.head - self.size + 1, self.head + 1):
                j = idx % self.size
                if self.bad[j] or self.total[j]:
                    buckets.append([idx, self.bad[j], self.total[j]])
        return {"res": self.res, "head": self.head, "buckets": buckets}
