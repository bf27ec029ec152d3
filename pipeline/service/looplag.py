"""The event loop's lag: how late a timer fires, sampled every 100 ms.

Everything in otelpipe runs on one event loop, so a request, line or record that
holds it (a quadratic regex, a huge decode) delays every listener, health probe
and export. A monitor arms `call_later(INTERVAL)` and records how much later
than asked the callback ran: `otelpipe_event_loop_lag_seconds` on /metrics, and
the latest value (and the most over the last 10 s) in
`receiverhelper.pressure.LOOP_LAG` for `/health/detailed`. A stall is recorded
when it ends (the callback runs late by the length of the stall).
"""

from __future__ import annotations

import asyncio
from collections import deque

from pipeline.receiverhelper import pressure
from pipeline.telemetry.metrics import HistogramSpec, Telemetry

INTERVAL = 0.1
RECENT = 100  # samples kept for the recent maximum: 10 s

LOOP_LAG = HistogramSpec(
    "otelpipe_event_loop_lag_seconds",
    "How late a 100 ms timer fires on the event loop: time the loop was busy "
    "with something else.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))


class LoopLagMonitor:
    def __init__(self, telemetry: Telemetry, state: pressure.LoopLag = pressure.LOOP_LAG,
                 interval: float = INTERVAL):
        self._histogram = telemetry.histogram(LOOP_LAG)
        self._state = state
        self._interval = interval
        self._recent: deque[float] = deque(maxlen=RECENT)
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self.stop()
        self._loop = asyncio.get_running_loop()
        self._arm()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self) -> None:
        assert self._loop is not None
        self._due = self._loop.time() + self._interval
        self._handle = self._loop.call_at(self._due, self._fired)

    def _fired(self) -> None:
        assert self._loop is not None
        lag = max(0.0, self._loop.time() - self._due)
        self._histogram.observe(lag)
        self._recent.append(lag)
        self._state.current = lag
        self._state.recent_max = max(self._recent)
        self._arm()
