"""Exemplars that resolve: pick them only from spans whose trace tail sampling keeps.

`redmetrics` runs before sampling (its metrics count 100% of spans), but an exemplar
pointing at a trace the sampler then drops leads nowhere. `KeptTraces` is the test a
span passes to become an exemplar: it mirrors the tail sampler's *sufficient*
policies, each decidable from one span, statelessly, the same in every gateway:

- `probabilistic`: the trace id's FNV-1a 64 hash with the policy's salt is at most
  the policy's cut (`pipeline.pdata.sampling.tail_probabilistic_keeps`, bit-for-bit
  the Collector's and `tail_sampling`'s);
- `status_code_error`: the span's status is ERROR (a `status_code` policy listing
  ERROR keeps every trace holding such a span);
- `latency_threshold_ms`: the span lasts more than the threshold in whole
  milliseconds (a trace lasts at least as long as any of its spans, so a `latency`
  policy with that `threshold_ms` and no upper bound keeps it).

Any one suffices. Only policies OR-ed at the top level of `tail_sampling` may be
mirrored: the config must say the same thing twice (documented in docs/sampling.md).
The test runs only while a bucket still lacks its exemplar, so its cost (≈ 2 µs
for the hash) is paid a few times per bucket and flush interval, not per span.
"""

from __future__ import annotations

from opentelemetry.proto.trace.v1.trace_pb2 import Status

from pipeline.pdata.sampling import fnv1a64, tail_probabilistic_keeps, tail_probabilistic_threshold

DEFAULT_HASH_SALT = "default-hash-seed"
STATUS_ERROR = 2


def status_code(status: bytes) -> int:
    """The code of a serialized `Status` (the common form `\\x18<code>` read directly)."""
    if not status:
        return 0
    if status[0] == 0x18 and len(status) == 2:
        return status[1]
    return int(Status.FromString(status).code)


class KeptTraces:
    """Whether tail sampling, configured with the mirrored policies, keeps a span's trace."""

    __slots__ = ("cut", "errors", "latency_ns", "salt_state")

    def __init__(self, *, sampling_percentage: float | None = None, hash_salt: str = "",
                 status_code_error: bool = False, latency_threshold_ms: int | None = None):
        self.salt_state: int | None = None
        self.cut = 0
        if sampling_percentage is not None and sampling_percentage > 0:
            self.salt_state = fnv1a64((hash_salt or DEFAULT_HASH_SALT).encode())
            self.cut = tail_probabilistic_threshold(sampling_percentage)
        self.errors = status_code_error
        # duration.Milliseconds() > threshold  <=>  duration_ns >= (threshold + 1) ms
        self.latency_ns = None if latency_threshold_ms is None \
            else (latency_threshold_ms + 1) * 1_000_000

    def keeps(self, trace_id: bytes, duration_ns: int, status: bytes) -> bool:
        if self.errors and status and status_code(status) == STATUS_ERROR:
            return True
        if self.latency_ns is not None and duration_ns >= self.latency_ns:
            return True
        state = self.salt_state
        return state is not None and tail_probabilistic_keeps(trace_id, state, self.cut)
