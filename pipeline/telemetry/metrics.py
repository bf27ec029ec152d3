"""The pipeline's own metrics, served on the health extension's /metrics.

Names follow the Collector's (`otelcol_receiver_accepted_spans` …) with one
`signal` label instead of one metric per signal.

Each component declares the metrics it writes at the top of its own module, as
specs (`FILES_WATCHED = GaugeSpec(...)`), and gets the instrument from the
service's `Telemetry` when it is created (`telemetry.gauge(FILES_WATCHED)`):
get-or-create, so two components of one type share one metric family, and this
module knows no component.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from pipeline import __version__

BATCH_SIZE_BUCKETS = (10, 25, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 20000, 50000)


@dataclass(frozen=True)
class MetricSpec:
    """What a metric is: its name (without `_total`), help text and label names."""

    name: str
    documentation: str
    labels: Sequence[str] = ()


@dataclass(frozen=True)
class CounterSpec(MetricSpec):
    pass


@dataclass(frozen=True)
class GaugeSpec(MetricSpec):
    pass


@dataclass(frozen=True)
class HistogramSpec(MetricSpec):
    buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS


_M = TypeVar("_M", Counter, Gauge, Histogram)


class Telemetry:
    """One registry per service, so tests can run several services in one process."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self._instruments: dict[str, tuple[MetricSpec, Counter | Gauge | Histogram]] = {}
        ProcessCollector(namespace="otelpipe", registry=r)
        PlatformCollector(registry=r)
        Info("otelpipe_build", "otelpipe build information", registry=r).info(
            {"version": __version__}
        )
        recv = ("receiver", "transport", "signal")
        self.receiver_accepted = self.counter(CounterSpec(
            "otelpipe_receiver_accepted_items",
            "Items accepted by a receiver and acknowledged to the sender.",
            recv))
        self.receiver_refused = self.counter(CounterSpec(
            "otelpipe_receiver_refused_items",
            "Items a receiver refused with a retryable error (503/429/UNAVAILABLE).",
            recv))
        self.receiver_rejected = self.counter(CounterSpec(
            "otelpipe_receiver_rejected_items",
            "Items rejected as malformed or invalid (400/INVALID_ARGUMENT, partial success).",
            recv))
        self.receiver_failed_requests = self.counter(CounterSpec(
            "otelpipe_receiver_failed_requests",
            "Requests that failed before their items could be counted, by reason.",
            ["receiver", "transport", "reason"]))
        proc = ("processor", "pipeline", "signal")
        self.processor_refused = self.counter(CounterSpec(
            "otelpipe_processor_refused_items",
            "Items a processor refused with a retryable error.", proc))
        self.processor_dropped = self.counter(CounterSpec(
            "otelpipe_processor_dropped_items",
            "Items a processor dropped on purpose (filter).", proc))
        self.batch_send_size = self.histogram(HistogramSpec(
            "otelpipe_processor_batch_send_size",
            "Items per batch sent by the batch processor.",
            ["processor", "pipeline"], BATCH_SIZE_BUCKETS))
        self.batch_trigger = self.counter(CounterSpec(
            "otelpipe_processor_batch_sends",
            "Batches sent by the batch processor, by what triggered the send.",
            ["processor", "pipeline", "trigger"]))
        exp = ("exporter", "signal")
        self.exporter_sent = self.counter(CounterSpec(
            "otelpipe_exporter_sent_items", "Items delivered by an exporter.", exp))
        self.exporter_send_failed = self.counter(CounterSpec(
            "otelpipe_exporter_send_failed_items",
            "Items an exporter failed to deliver (permanent error or retries exhausted).",
            exp))
        self.exporter_enqueue_failed = self.counter(CounterSpec(
            "otelpipe_exporter_enqueue_failed_items",
            "Items refused because the exporter's queue was full.", exp))
        self.exporter_queue_size = self.gauge(GaugeSpec(
            "otelpipe_exporter_queue_size", "Current size of the exporter's sending queue.",
            ["exporter"]))
        self.exporter_queue_capacity = self.gauge(GaugeSpec(
            "otelpipe_exporter_queue_capacity", "Capacity of the exporter's sending queue.",
            ["exporter"]))
        self.exporter_queue_recovered = self.counter(CounterSpec(
            "otelpipe_exporter_queue_recovered_items",
            "Items found in an exporter's disk queue at start (not acknowledged before the "
            "last stop or crash; sent again).", ["exporter"]))
        self.exporter_queue_corrupt = self.counter(CounterSpec(
            "otelpipe_exporter_queue_corrupt_records",
            "Torn or corrupt records skipped while opening an exporter's disk queue.",
            ["exporter"]))
        self.memory_limiter_refusing = self.gauge(GaugeSpec(
            "otelpipe_memory_limiter_refusing",
            "1 while the memory limiter refuses data, else 0.", ["processor"]))
        # Kafka exporter and receiver.
        self.kafka_produced_records = self.counter(CounterSpec(
            "otelpipe_kafka_exporter_produced_records",
            "Kafka records the broker acknowledged, per topic.", ["exporter", "topic"]))
        self.kafka_produced_bytes = self.counter(CounterSpec(
            "otelpipe_kafka_exporter_produced_bytes",
            "Payload bytes of Kafka records the broker acknowledged.", ["exporter", "topic"]))
        self.kafka_produce_latency = self.histogram(HistogramSpec(
            "otelpipe_kafka_exporter_produce_latency_seconds",
            "Time from handing a request's records to the producer until the broker "
            "acknowledged all of them.", ["exporter"],
            (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)))
        self.kafka_consumed_records = self.counter(CounterSpec(
            "otelpipe_kafka_receiver_consumed_records",
            "Kafka records fetched by a receiver.", ["receiver", "topic"]))
        self.kafka_consumed_bytes = self.counter(CounterSpec(
            "otelpipe_kafka_receiver_consumed_bytes",
            "Payload bytes of Kafka records fetched by a receiver.", ["receiver", "topic"]))
        self.kafka_consumer_lag = self.gauge(GaugeSpec(
            "otelpipe_kafka_receiver_consumer_lag",
            "Records on the partition not yet delivered (high watermark minus the next offset "
            "to commit).", ["receiver", "topic", "partition"]))
        self.kafka_undecodable_records = self.counter(CounterSpec(
            "otelpipe_kafka_receiver_undecodable_records",
            "Records skipped because they cannot be decoded (or the pipeline rejected them "
            "permanently), by reason.", ["receiver", "topic", "reason"]))
        self.kafka_dead_lettered_records = self.counter(CounterSpec(
            "otelpipe_kafka_receiver_dead_lettered_records",
            "Skipped records copied to the dead-letter topic.", ["receiver", "topic"]))
        self.kafka_committed_offset = self.gauge(GaugeSpec(
            "otelpipe_kafka_receiver_committed_offset",
            "Last offset committed by a receiver (the next record to read).",
            ["receiver", "topic", "partition"]))

        # filelog receiver.
        self.filelog_files_watched = self.gauge(GaugeSpec(
            "otelpipe_filelog_files_watched", "Files a filelog receiver has open.",
            ["receiver"]))
        self.filelog_bytes_read = self.counter(CounterSpec(
            "otelpipe_filelog_bytes_read", "Bytes a filelog receiver read from files.",
            ["receiver"]))
        self.filelog_rotations = self.counter(CounterSpec(
            "otelpipe_filelog_rotations",
            "Files rotated away (rename), deleted, or truncated (copytruncate), by kind.",
            ["receiver", "kind"]))
        self.filelog_flagged_records = self.counter(CounterSpec(
            "otelpipe_filelog_flagged_records",
            "Records flagged log.split (line over max_log_size) or log.invalid_encoding.",
            ["receiver", "flag"]))

        # logstruct processor.
        self.logstruct_parsed = self.counter(CounterSpec(
            "otelpipe_processor_logstruct_parsed_records",
            "Log records the logstruct processor parsed, by detected or configured format.",
            ["processor", "pipeline", "format"]))
        self.logstruct_parse_errors = self.counter(CounterSpec(
            "otelpipe_processor_logstruct_parse_errors",
            "Log records no logstruct parser understood (no_match) or whose parser raised "
            "(exception); they pass through unchanged with log.parse_error.",
            ["processor", "pipeline", "reason"]))

        # prometheus and prometheusremotewrite exporters.
        self.prometheus_exporter_series = self.gauge(GaugeSpec(
            "otelpipe_prometheus_exporter_series",
            "Series a prometheus exporter currently serves.", ["exporter"]))
        self.prometheus_exporter_expired_series = self.counter(CounterSpec(
            "otelpipe_prometheus_exporter_expired_series",
            "Series dropped because they were not updated for metric_expiration.",
            ["exporter"]))
        self.prometheus_exporter_dropped_points = self.counter(CounterSpec(
            "otelpipe_prometheus_exporter_dropped_points",
            "Data points ignored: older than the point held for their series, or of another "
            "type than the metric family's first series.", ["exporter"]))
        self.prometheusremotewrite_requests = self.counter(CounterSpec(
            "otelpipe_prometheusremotewrite_requests",
            "Remote-write requests sent, by HTTP status code (`error` when no response).",
            ["exporter", "status_code"]))
        self.prometheusremotewrite_samples = self.counter(CounterSpec(
            "otelpipe_prometheusremotewrite_samples",
            "Samples in remote-write requests the endpoint accepted (2xx).",
            ["exporter"]))
        self.prometheusremotewrite_rejected_samples = self.counter(CounterSpec(
            "otelpipe_prometheusremotewrite_rejected_samples",
            "Samples in remote-write requests the endpoint rejected permanently (4xx but 429); "
            "they are dropped, not retried.", ["exporter"]))

        # Metric-deriving connectors (redmetrics, logmetrics).
        self.connector_series = self.gauge(GaugeSpec(
            "otelpipe_connector_series",
            "Series a connector holds per derived metric (the overflow series included).",
            ["connector", "metric"]))
        self.connector_expired_series = self.counter(CounterSpec(
            "otelpipe_connector_expired_series",
            "Series dropped because nothing updated them for series_expiry.",
            ["connector"]))
        self.connector_flushes = self.counter(CounterSpec(
            "otelpipe_connector_flushes",
            "Metric flushes by outcome: ok, retry (refused downstream; state kept), dropped "
            "(rejected permanently), failed (unexpected error; state kept).",
            ["connector", "outcome"]))
        self.connector_emitted_points = self.counter(CounterSpec(
            "otelpipe_connector_emitted_points",
            "Data points a connector handed to its metrics pipelines.", ["connector"]))
        self.connector_skipped_records = self.counter(CounterSpec(
            "otelpipe_connector_skipped_records",
            "Records that matched a logmetrics metric but could not be used (value missing or "
            "not a number).", ["connector", "metric", "reason"]))

        # loki and elasticsearch exporters.
        self.loki_label_overflow = self.counter(CounterSpec(
            "otelpipe_loki_exporter_label_overflow_records",
            "Records whose label value was kept as structured metadata instead of a stream "
            "label because the label reached max_label_values distinct values.",
            ["exporter", "label"]))
        self.elasticsearch_bulk_items = self.counter(CounterSpec(
            "otelpipe_elasticsearch_exporter_bulk_items",
            "Per-document results of bulk requests: ok (indexed or already there), retry "
            "(429/5xx, sent again alone), rejected (other 4xx such as mapping errors; dropped).",
            ["exporter", "outcome"]))
        self.elasticsearch_rejected_documents = self.counter(CounterSpec(
            "otelpipe_elasticsearch_exporter_rejected_documents",
            "Documents the backend rejected permanently, by error type "
            "(mapper_parsing_exception …).", ["exporter", "reason"]))

        # replication_lag and httpcheck receivers.
        self.replication_lag_probe_errors = self.counter(CounterSpec(
            "otelpipe_replication_lag_probe_errors",
            "Failed connections and queries of the replication_lag receiver, per database "
            "(primary or replica name) and reason (connection, timeout, auth, query).",
            ["receiver", "target", "reason"]))
        self.httpcheck_failed_checks = self.counter(CounterSpec(
            "otelpipe_httpcheck_failed_checks",
            "httpcheck probes that did not get the expected status, by error.type.",
            ["receiver", "reason"]))


    def counter(self, spec: CounterSpec) -> Counter:
        return self._get_or_create(spec, Counter, lambda: Counter(
            spec.name, spec.documentation, list(spec.labels), registry=self.registry))

    def gauge(self, spec: GaugeSpec) -> Gauge:
        return self._get_or_create(spec, Gauge, lambda: Gauge(
            spec.name, spec.documentation, list(spec.labels), registry=self.registry))

    def histogram(self, spec: HistogramSpec) -> Histogram:
        return self._get_or_create(spec, Histogram, lambda: Histogram(
            spec.name, spec.documentation, list(spec.labels), buckets=spec.buckets,
            registry=self.registry))

    def _get_or_create(self, spec: MetricSpec, kind: type[_M], make: Callable[[], _M]) -> _M:
        found = self._instruments.get(spec.name)
        if found is None:
            instrument = make()
            self._instruments[spec.name] = (spec, instrument)
            return instrument
        known, existing = found
        if not isinstance(existing, kind) or _shape(known) != _shape(spec):
            raise ValueError(f"metric {spec.name} declared twice with different shapes: "
                             f"{known} and {spec}")
        return existing

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _shape(spec: MetricSpec) -> tuple[object, ...]:
    buckets = tuple(spec.buckets) if isinstance(spec, HistogramSpec) else ()
    return type(spec), tuple(spec.labels), buckets
