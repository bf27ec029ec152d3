"""Throughput of each component: the pipeline's own counters, sampled periodically.

The counters are read from the telemetry registry by metric name, so the page
knows no component: receivers' `otelpipe_receiver_accepted_items`, the batch
processor's `otelpipe_processor_batch_send_size` sum, connectors'
`otelpipe_connector_emitted_points`, exporters' `otelpipe_exporter_sent_items`
(and `…_send_failed_items`, `…_enqueue_failed_items` as failures). A metric that
no component has created yet counts as zero.

A failing sample does not stop the sampling: the error is logged (at most once per
`log_interval`, with the number of failures since) and kept as `last_error`
(shown on `/health/detailed`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.telemetry.metrics import Telemetry

MAX_SAMPLES = 512
LOG_INTERVAL = 300.0

RECEIVER_ACCEPTED = "otelpipe_receiver_accepted_items"
BATCH_SEND_SIZE = "otelpipe_processor_batch_send_size"
CONNECTOR_EMITTED = "otelpipe_connector_emitted_points"
EXPORTER_SENT = "otelpipe_exporter_sent_items"
EXPORTER_FAILED = ("otelpipe_exporter_send_failed_items",
                   "otelpipe_exporter_enqueue_failed_items")
# The samples read: counters' `_total`, the histogram's `_sum`.
_SAMPLE_NAMES = (RECEIVER_ACCEPTED + "_total", BATCH_SEND_SIZE + "_sum",
                 CONNECTOR_EMITTED + "_total", EXPORTER_SENT + "_total",
                 *(name + "_total" for name in EXPORTER_FAILED))

# (kind, component id, pipeline or "" or "@<signal>") → a running total
Key = tuple[str, str, str]

log = logging.getLogger("otelpipe.extension.health")  # when no logger is given


def counter_totals(telemetry: Telemetry) -> tuple[dict[Key, float], dict[Key, float]]:
    """(items through each component, items each exporter failed) since the start."""
    through: dict[Key, float] = {}
    failed: dict[Key, float] = {}

    def add(d: dict[Key, float], key: Key, v: float) -> None:
        d[key] = d.get(key, 0.0) + v

    for family in telemetry.registry.restricted_registry(_SAMPLE_NAMES).collect():
        for s in family.samples:
            if s.name not in _SAMPLE_NAMES:
                continue
            labels, v = s.labels, s.value
            if family.name == RECEIVER_ACCEPTED:
                rid = labels.get("receiver", "")
                add(through, ("receiver", rid, ""), v)
                add(through, ("receiver", rid, "@" + labels.get("signal", "")), v)
            elif family.name == BATCH_SEND_SIZE:
                add(through, ("processor", labels.get("processor", ""),
                              labels.get("pipeline", "")), v)
            elif family.name == CONNECTOR_EMITTED:
                add(through, ("connector", labels.get("connector", ""), ""), v)
            elif family.name == EXPORTER_SENT:
                eid = labels.get("exporter", "")
                add(through, ("exporter", eid, ""), v)
                add(through, ("exporter", eid, "@" + labels.get("signal", "")), v)
            elif family.name in EXPORTER_FAILED:
                add(failed, ("exporter", labels.get("exporter", ""), ""), v)
    return through, failed


@dataclass
class _Sample:
    t: float
    through: dict[Key, float]
    failed: dict[Key, float]


@dataclass(frozen=True)
class SamplerError:
    """The last failure of the sampler: `<ExceptionType>: <message>` (scrubbed), when
    (epoch seconds), and how many samples failed since the start."""

    text: str
    at: float
    failures: int


class ThroughputSampler:
    """Samples the counters periodically; rates are items/s over the last `window`."""

    def __init__(self, telemetry: Telemetry, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, *,
                 scrub: Callable[[str], str] = str, wall_clock: Callable[[], float] = time.time,
                 logger: logging.Logger | None = None,
                 log_interval: float = LOG_INTERVAL):
        self.telemetry = telemetry
        self.window = window
        self.clock = clock
        self.samples: deque[_Sample] = deque(maxlen=MAX_SAMPLES)
        self.scrub = scrub
        self.wall_clock = wall_clock
        self.logger = logger or log
        self.log_interval = log_interval
        self.last_error: SamplerError | None = None
        self._failures = 0
        self._logged_at: float | None = None
        self._unlogged = 0

    def _take(self) -> _Sample:
        through, failed = counter_totals(self.telemetry)
        return _Sample(self.clock(), through, failed)

    def sample(self) -> None:
        s = self._take()
        self.samples.append(s)
        # Keep one sample older than the window, so a full window is covered.
        while len(self.samples) > 2 and self.samples[1].t <= s.t - self.window:
            self.samples.popleft()

    def rates(self) -> tuple[dict[Key, float], dict[Key, float]]:
        """(items/s, failed items/s) per component, from the oldest kept sample to now."""
        now = self._take()
        base = next((s for s in reversed(self.samples) if s.t <= now.t - self.window), None)
        if base is None:
            base = self.samples[0] if self.samples else None
        if base is None or now.t - base.t <= 0:
            return {}, {}
        dt = now.t - base.t

        def per_second(cur: dict[Key, float], old: dict[Key, float]) -> dict[Key, float]:
            return {k: max(0.0, v - old.get(k, 0.0)) / dt for k, v in cur.items()}

        return per_second(now.through, base.through), per_second(now.failed, base.failed)

    def sample_safely(self) -> None:
        """`sample()`; a failure is recorded and logged (rate-limited), not raised."""
        try:
            self.sample()
        except Exception as exc:  # a broken collector must not end sampling
            self.failed(exc)

    def failed(self, exc: Exception) -> None:
        self._failures += 1
        text = self.scrub(f"{type(exc).__name__}: {exc}")
        self.last_error = SamplerError(text, self.wall_clock(), self._failures)
        now = self.clock()
        if self._logged_at is not None and now - self._logged_at < self.log_interval:
            self._unlogged += 1
            return
        self.logger.error("status page throughput sampling failed",
                  extra={"error": text, "failures_not_logged": self._unlogged})
        self._logged_at = now
        self._unlogged = 0

    async def run(self, interval: float) -> None:
        while True:
            self.sample_safely()
            await asyncio.sleep(interval)
