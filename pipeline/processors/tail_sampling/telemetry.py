"""The processor's own metrics (on /metrics) and the counts the status page shows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.telemetry.metrics import CounterSpec, GaugeSpec, HistogramSpec, Telemetry

_L = ("processor", "pipeline")
POLICY_DECISIONS = CounterSpec(
    "otelpipe_processor_tail_sampling_policy_decisions",
    "Decisions of each policy on each trace (sampled: the policy voted to sample; the "
    "trace's final decision is in ..._traces).", (*_L, "policy", "sampled"))
TRACES = CounterSpec(
    "otelpipe_processor_tail_sampling_traces",
    "Traces decided (the final decision).", (*_L, "sampled"))
SPANS_SAMPLED = CounterSpec(
    "otelpipe_processor_tail_sampling_sampled_spans",
    "Spans of sampled traces emitted at the decision (late spans not included).", _L)
NEW_TRACES = CounterSpec(
    "otelpipe_processor_tail_sampling_new_traces",
    "Traces seen for the first time (a wait begins).", _L)
IN_MEMORY = GaugeSpec(
    "otelpipe_processor_tail_sampling_traces_in_memory",
    "Traces waiting for their decision.", _L)
LATE_SPANS = CounterSpec(
    "otelpipe_processor_tail_sampling_late_spans",
    "Spans that arrived after their trace's decision and followed it.", (*_L, "sampled"))
EVICTED = CounterSpec(
    "otelpipe_processor_tail_sampling_evicted_traces",
    "Traces dropped before their decision because num_traces was reached.", _L)
OVERSIZED = CounterSpec(
    "otelpipe_processor_tail_sampling_oversized_traces",
    "Traces dropped before their decision because their spans passed "
    "maximum_trace_size_bytes.", _L)
BLOCKED = CounterSpec(
    "otelpipe_processor_tail_sampling_blocked_requests",
    "Times a request waited for room (block_on_overflow at num_traces).", _L)
RECOVERED = CounterSpec(
    "otelpipe_processor_tail_sampling_recovered_traces",
    "Traces read back from disk after a restart (storage disk), decided late.", _L)
EMIT_FAILURES = CounterSpec(
    "otelpipe_processor_tail_sampling_emit_failures",
    "Batches of sampled traces the next consumer refused (retried at the next tick "
    "when retryable).", _L)
DECISION_LATENCY = HistogramSpec(
    "otelpipe_processor_tail_sampling_decision_latency_seconds",
    "Time to decide one chunk of traces and hand its sampled spans on.", _L,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0))


class _Count:
    """A Prometheus child and a plain total for the status page."""

    __slots__ = ("child", "value")

    def __init__(self, child: Any):
        self.child = child
        self.value = 0

    def inc(self, n: int = 1) -> None:
        if n:
            self.child.inc(n)
            self.value += n


class Instruments:
    def __init__(self, telemetry: Telemetry, processor: str, pipeline: str,
                 policies: Sequence[str]):
        lab = (processor, pipeline)
        decisions = telemetry.counter(POLICY_DECISIONS)
        self.policies: dict[str, tuple[_Count, _Count]] = {
            p: (_Count(decisions.labels(*lab, p, "true")),
                _Count(decisions.labels(*lab, p, "false"))) for p in policies}
        traces = telemetry.counter(TRACES)
        self.traces_sampled = _Count(traces.labels(*lab, "true"))
        self.traces_dropped = _Count(traces.labels(*lab, "false"))
        self.spans_sampled = _Count(telemetry.counter(SPANS_SAMPLED).labels(*lab))
        self.new_traces = _Count(telemetry.counter(NEW_TRACES).labels(*lab))
        self.in_memory = telemetry.gauge(IN_MEMORY).labels(*lab)
        late = telemetry.counter(LATE_SPANS)
        self.late_sampled = _Count(late.labels(*lab, "true"))
        self.late_dropped = _Count(late.labels(*lab, "false"))
        self.evicted = _Count(telemetry.counter(EVICTED).labels(*lab))
        self.blocked = _Count(telemetry.counter(BLOCKED).labels(*lab))
        self.oversized = _Count(telemetry.counter(OVERSIZED).labels(*lab))
        self.recovered = _Count(telemetry.counter(RECOVERED).labels(*lab))
        self.emit_failures = _Count(telemetry.counter(EMIT_FAILURES).labels(*lab))
        self.latency = telemetry.histogram(DECISION_LATENCY).labels(*lab)

    def policy_counts(self) -> dict[str, list[int]]:
        """Plain per-policy [sampled, not sampled] tallies for one chunk of decisions;
        `add_policy_counts` publishes them (one metric update per policy per chunk)."""
        return {p: [0, 0] for p in self.policies}

    def add_policy_counts(self, counts: dict[str, list[int]]) -> None:
        for p, (yes, no) in counts.items():
            y, n = self.policies[p]
            y.inc(yes)
            n.inc(no)

    def snapshot(self) -> dict[str, Any]:
        return {
            "policies": [{"name": p, "sampled": yes.value, "not_sampled": no.value}
                         for p, (yes, no) in self.policies.items()],
            "traces_sampled": self.traces_sampled.value,
            "traces_not_sampled": self.traces_dropped.value,
            "spans_sampled": self.spans_sampled.value,
            "new_traces": self.new_traces.value,
            "late_spans_sampled": self.late_sampled.value,
            "late_spans_dropped": self.late_dropped.value,
            "evicted_traces": self.evicted.value,
            "blocked_requests": self.blocked.value,
            "oversized_traces": self.oversized.value,
            "recovered_traces": self.recovered.value,
            "emit_failures": self.emit_failures.value}
