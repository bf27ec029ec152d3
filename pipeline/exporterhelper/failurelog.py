"""Telling the operator at once that an exporter cannot deliver, and when it can again.

`DeliveryLog.failed` logs the first failure of a streak at warn immediately
(before any retry), then at most once per `every` seconds per exporter with
the number of failures since the last line; `DeliveryLog.delivered` ends the
streak and, if its failures were logged, says so: "exporter X delivering again
after N failures over T s". Errors pass through `mask_text` (no passwords or
secret query values in the log).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pipeline.config.secrets import mask_text

__all__ = ["LOG_EVERY", "DeliveryLog"]

# A failing exporter logs at most one warning per this many seconds.
LOG_EVERY = 30.0


class DeliveryLog:
    """The failure streak of one exporter and its rate-limited log lines."""

    __slots__ = ("_announced", "_clock", "_every", "_last_warn", "_log", "_name",
                 "_since_warn", "_streak_failures", "_streak_start")

    def __init__(self, name: str, log: logging.Logger, every: float = LOG_EVERY,
                 clock: Callable[[], float] = time.monotonic):
        self._name = name
        self._log = log
        self._every = every
        self._clock = clock
        self._streak_start: float | None = None  # None: delivering
        self._streak_failures = 0
        self._since_warn = 0  # failures not logged yet
        self._last_warn: float | None = None
        self._announced = False  # a warning of this streak was logged

    @property
    def failing(self) -> bool:
        return self._streak_start is not None

    def failed(self, error: object, *, retrying: bool) -> None:
        """One delivery attempt failed (transient: timeout, connection, 5xx …)."""
        now = self._clock()
        if self._streak_start is None:
            self._streak_start = now
            self._streak_failures = 0
            self._announced = False
        self._streak_failures += 1
        self._since_warn += 1
        if self._last_warn is not None and now - self._last_warn < self._every:
            return
        extra = {"exporter": self._name, "error": mask_text(error), "retrying": retrying,
                 "failures": self._since_warn}
        if self._announced:
            failing_s = round(now - self._streak_start, 1)
            self._log.warning(
                f"exporter {self._name} still cannot deliver: {self._since_warn} failures "
                f"since the last report, failing for {failing_s:g} s",
                extra={**extra, "failing_s": failing_s})
        else:
            self._log.warning(f"exporter {self._name} cannot deliver", extra=extra)
        self._announced = True
        self._last_warn = now
        self._since_warn = 0

    def delivered(self) -> None:
        """A delivery succeeded: end the failure streak, if any."""
        if self._streak_start is None:
            return
        if self._announced:
            n = self._streak_failures
            seconds = round(self._clock() - self._streak_start, 1)
            self._log.info(
                f"exporter {self._name} delivering again after {n} failure"
                f"{'s' if n != 1 else ''} over {seconds:g} s",
                extra={"exporter": self._name, "failures": n, "failing_s": seconds})
            self._since_warn = 0
        self._streak_start = None
        self._streak_failures = 0
        self._announced = False
