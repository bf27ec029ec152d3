"""Counting what a receiver accepted, refused and rejected, per signal.

And what a sender learns when the pipeline refuses: `sender_reason(exc)`
(generic for an exporter's error, see `pipeline.errors.sender_message`,
URLs masked), while `ReceiverObs.deliver` logs the exporter's full text,
masked, at most once per `LOG_EVERY` seconds per exporter.
"""

from __future__ import annotations

import time

from pipeline.component import Consumer, CreateSettings, Signal
from pipeline.config.secrets import mask_text
from pipeline.errors import PermanentError, PipelineError, RetryableError, sender_message
from pipeline.pdata.batch import Batch
from pipeline.receiverhelper.peers import note_failure
from pipeline.telemetry.metrics import CounterSpec

_LABELS = ("receiver", "transport", "signal")
ACCEPTED = CounterSpec(
    "otelpipe_receiver_accepted_items",
    "Items accepted by a receiver and acknowledged to the sender.", _LABELS)
REFUSED = CounterSpec(
    "otelpipe_receiver_refused_items",
    "Items a receiver refused with a retryable error (503/429/UNAVAILABLE).", _LABELS)
REJECTED = CounterSpec(
    "otelpipe_receiver_rejected_items",
    "Items rejected as malformed or invalid (400/INVALID_ARGUMENT, partial success).",
    _LABELS)
FAILED_REQUESTS = CounterSpec(
    "otelpipe_receiver_failed_requests",
    "Requests that failed before their items could be counted, by reason.",
    ("receiver", "transport", "reason"))


# A refusal by a failing exporter is logged at most this often per exporter (seconds).
LOG_EVERY = 10.0


def sender_reason(exc: PipelineError) -> str:
    """What a receiver answers a sender about `exc` (never a backend's URL or answer)."""
    return mask_text(sender_message(exc))


class ReceiverObs:
    """Counts what a receiver accepted, refused and rejected, per signal."""

    def __init__(self, settings: CreateSettings, transport: str):
        t = settings.telemetry
        rid = str(settings.id)
        accepted, refused = t.counter(ACCEPTED), t.counter(REFUSED)
        rejected = t.counter(REJECTED)
        self._accepted = {s: accepted.labels(rid, transport, s.value) for s in Signal}
        self._refused = {s: refused.labels(rid, transport, s.value) for s in Signal}
        self._rejected = {s: rejected.labels(rid, transport, s.value) for s in Signal}
        self._failed = t.counter(FAILED_REQUESTS)
        self._rid = rid
        self._transport = transport
        self.log = settings.logger
        self._logged: dict[str, tuple[float, int]] = {}  # origin -> (last log, suppressed)
        self.clock = time.monotonic

    def accepted(self, signal: Signal, n: int) -> None:
        self._accepted[signal].inc(n)

    def refused(self, signal: Signal, n: int) -> None:
        self._refused[signal].inc(n)

    def rejected(self, signal: Signal, n: int) -> None:
        self._rejected[signal].inc(n)

    def failed_request(self, reason: str) -> None:
        self._failed.labels(self._rid, self._transport, reason).inc()
        note_failure(reason)  # the sender's fault: charged to its peer_error_budget

    async def deliver(self, consumer: Consumer, batch: Batch) -> None:
        """Hand a batch to the pipeline and count the outcome; errors propagate."""
        n = batch.items
        try:
            await consumer.consume(batch)
        except RetryableError as exc:
            self.refused(batch.signal, n)
            self._log_downstream(exc)
            raise
        except PermanentError as exc:
            self.rejected(batch.signal, exc.rejected or n)
            self._log_downstream(exc)
            raise
        except Exception:
            # A bug downstream: refuse (retryable) rather than lose acknowledged data.
            self.refused(batch.signal, n)
            self.log.exception("pipeline failed while consuming a batch")
            raise
        self.accepted(batch.signal, n)

    def _log_downstream(self, exc: PipelineError) -> None:
        """Log an exporter's error the sender only hears about generically (rate-limited)."""
        origin = exc.origin
        if origin is None:
            return
        now = self.clock()
        last, suppressed = self._logged.get(origin, (-LOG_EVERY, 0))
        if now - last < LOG_EVERY:
            self._logged[origin] = (last, suppressed + 1)
            return
        self._logged[origin] = (now, 0)
        self.log.warning("refused a request: the pipeline failed downstream", extra={
            "origin": origin, "retryable": isinstance(exc, RetryableError),
            "error": mask_text(exc), "answered": sender_reason(exc),
            **({"suppressed": suppressed} if suppressed else {})})
