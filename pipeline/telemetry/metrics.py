"""The pipeline's own metrics, served on the health extension's /metrics.

Names follow the Collector's (`otelcol_receiver_accepted_spans` …) with one
`signal` label instead of one metric per signal.
"""

from __future__ import annotations

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


class Telemetry:
    """One registry per service, so tests can run several services in one process."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(namespace="otelpipe", registry=r)
        PlatformCollector(registry=r)
        Info("otelpipe_build", "otelpipe build information", registry=r).info(
            {"version": __version__}
        )
        recv = ["receiver", "transport", "signal"]
        self.receiver_accepted = Counter(
            "otelpipe_receiver_accepted_items",
            "Items accepted by a receiver and acknowledged to the sender.",
            recv, registry=r)
        self.receiver_refused = Counter(
            "otelpipe_receiver_refused_items",
            "Items a receiver refused with a retryable error (503/429/UNAVAILABLE).",
            recv, registry=r)
        self.receiver_rejected = Counter(
            "otelpipe_receiver_rejected_items",
            "Items rejected as malformed or invalid (400/INVALID_ARGUMENT, partial success).",
            recv, registry=r)
        self.receiver_failed_requests = Counter(
            "otelpipe_receiver_failed_requests",
            "Requests that failed before their items could be counted, by reason.",
            ["receiver", "transport", "reason"], registry=r)
        proc = ["processor", "pipeline", "signal"]
        self.processor_refused = Counter(
            "otelpipe_processor_refused_items",
            "Items a processor refused with a retryable error.", proc, registry=r)
        self.processor_dropped = Counter(
            "otelpipe_processor_dropped_items",
            "Items a processor dropped on purpose (filter).", proc, registry=r)
        self.batch_send_size = Histogram(
            "otelpipe_processor_batch_send_size",
            "Items per batch sent by the batch processor.",
            ["processor", "pipeline"], buckets=BATCH_SIZE_BUCKETS, registry=r)
        self.batch_trigger = Counter(
            "otelpipe_processor_batch_sends",
            "Batches sent by the batch processor, by what triggered the send.",
            ["processor", "pipeline", "trigger"], registry=r)
        exp = ["exporter", "signal"]
        self.exporter_sent = Counter(
            "otelpipe_exporter_sent_items", "Items delivered by an exporter.", exp, registry=r)
        self.exporter_send_failed = Counter(
            "otelpipe_exporter_send_failed_items",
            "Items an exporter failed to deliver (permanent error or retries exhausted).",
            exp, registry=r)
        self.exporter_enqueue_failed = Counter(
            "otelpipe_exporter_enqueue_failed_items",
            "Items refused because the exporter's queue was full.", exp, registry=r)
        self.exporter_queue_size = Gauge(
            "otelpipe_exporter_queue_size", "Current size of the exporter's sending queue.",
            ["exporter"], registry=r)
        self.exporter_queue_capacity = Gauge(
            "otelpipe_exporter_queue_capacity", "Capacity of the exporter's sending queue.",
            ["exporter"], registry=r)
        self.exporter_queue_recovered = Counter(
            "otelpipe_exporter_queue_recovered_items",
            "Items found in an exporter's disk queue at start (not acknowledged before the "
            "last stop or crash; sent again).", ["exporter"], registry=r)
        self.exporter_queue_corrupt = Counter(
            "otelpipe_exporter_queue_corrupt_records",
            "Torn or corrupt records skipped while opening an exporter's disk queue.",
            ["exporter"], registry=r)
        self.memory_limiter_refusing = Gauge(
            "otelpipe_memory_limiter_refusing",
            "1 while the memory limiter refuses data, else 0.", ["processor"], registry=r)
        # Kafka exporter and receiver.
        self.kafka_produced_records = Counter(
            "otelpipe_kafka_exporter_produced_records",
            "Kafka records the broker acknowledged, per topic.", ["exporter", "topic"], registry=r)
        self.kafka_produced_bytes = Counter(
            "otelpipe_kafka_exporter_produced_bytes",
            "Payload bytes of Kafka records the broker acknowledged.", ["exporter", "topic"],
            registry=r)
        self.kafka_produce_latency = Histogram(
            "otelpipe_kafka_exporter_produce_latency_seconds",
            "Time from handing a request's records to the producer until the broker "
            "acknowledged all of them.", ["exporter"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r)
        self.kafka_consumed_records = Counter(
            "otelpipe_kafka_receiver_consumed_records",
            "Kafka records fetched by a receiver.", ["receiver", "topic"], registry=r)
        self.kafka_consumed_bytes = Counter(
            "otelpipe_kafka_receiver_consumed_bytes",
            "Payload bytes of Kafka records fetched by a receiver.", ["receiver", "topic"],
            registry=r)
        self.kafka_consumer_lag = Gauge(
            "otelpipe_kafka_receiver_consumer_lag",
            "Records on the partition not yet delivered (high watermark minus the next offset "
            "to commit).", ["receiver", "topic", "partition"], registry=r)
        self.kafka_undecodable_records = Counter(
            "otelpipe_kafka_receiver_undecodable_records",
            "Records skipped because they cannot be decoded (or the pipeline rejected them "
            "permanently), by reason.", ["receiver", "topic", "reason"], registry=r)
        self.kafka_dead_lettered_records = Counter(
            "otelpipe_kafka_receiver_dead_lettered_records",
            "Skipped records copied to the dead-letter topic.", ["receiver", "topic"],
            registry=r)
        self.kafka_committed_offset = Gauge(
            "otelpipe_kafka_receiver_committed_offset",
            "Last offset committed by a receiver (the next record to read).",
            ["receiver", "topic", "partition"], registry=r)

        # filelog receiver.
        self.filelog_files_watched = Gauge(
            "otelpipe_filelog_files_watched", "Files a filelog receiver has open.",
            ["receiver"], registry=r)
        self.filelog_bytes_read = Counter(
            "otelpipe_filelog_bytes_read", "Bytes a filelog receiver read from files.",
            ["receiver"], registry=r)
        self.filelog_rotations = Counter(
            "otelpipe_filelog_rotations",
            "Files rotated away (rename), deleted, or truncated (copytruncate), by kind.",
            ["receiver", "kind"], registry=r)
        self.filelog_flagged_records = Counter(
            "otelpipe_filelog_flagged_records",
            "Records flagged log.split (line over max_log_size) or log.invalid_encoding.",
            ["receiver", "flag"], registry=r)

        # logstruct processor.
        self.logstruct_parsed = Counter(
            "otelpipe_processor_logstruct_parsed_records",
            "Log records the logstruct processor parsed, by detected or configured format.",
            ["processor", "pipeline", "format"], registry=r)
        self.logstruct_parse_errors = Counter(
            "otelpipe_processor_logstruct_parse_errors",
            "Log records no logstruct parser understood (no_match) or whose parser raised "
            "(exception); they pass through unchanged with log.parse_error.",
            ["processor", "pipeline", "reason"], registry=r)

        # prometheus and prometheusremotewrite exporters.
        self.prometheus_exporter_series = Gauge(
            "otelpipe_prometheus_exporter_series",
            "Series a prometheus exporter currently serves.", ["exporter"], registry=r)
        self.prometheus_exporter_expired_series = Counter(
            "otelpipe_prometheus_exporter_expired_series",
            "Series dropped because they were not updated for metric_expiration.",
            ["exporter"], registry=r)
        self.prometheus_exporter_dropped_points = Counter(
            "otelpipe_prometheus_exporter_dropped_points",
            "Data points ignored: older than the point held for their series, or of another "
            "type than the metric family's first series.", ["exporter"], registry=r)
        self.prometheusremotewrite_requests = Counter(
            "otelpipe_prometheusremotewrite_requests",
            "Remote-write requests sent, by HTTP status code (`error` when no response).",
            ["exporter", "status_code"], registry=r)
        self.prometheusremotewrite_samples = Counter(
            "otelpipe_prometheusremotewrite_samples",
            "Samples in remote-write requests the endpoint accepted (2xx).",
            ["exporter"], registry=r)
        self.prometheusremotewrite_rejected_samples = Counter(
            "otelpipe_prometheusremotewrite_rejected_samples",
            "Samples in remote-write requests the endpoint rejected permanently (4xx but 429); "
            "they are dropped, not retried.", ["exporter"], registry=r)

        # Metric-deriving connectors (redmetrics, logmetrics).
        self.connector_series = Gauge(
            "otelpipe_connector_series",
            "Series a connector holds per derived metric (the overflow series included).",
            ["connector", "metric"], registry=r)
        self.connector_expired_series = Counter(
            "otelpipe_connector_expired_series",
            "Series dropped because nothing updated them for series_expiry.",
            ["connector"], registry=r)
        self.connector_flushes = Counter(
            "otelpipe_connector_flushes",
            "Metric flushes by outcome: ok, retry (refused downstream; state kept), dropped "
            "(rejected permanently), failed (unexpected error; state kept).",
            ["connector", "outcome"], registry=r)
        self.connector_emitted_points = Counter(
            "otelpipe_connector_emitted_points",
            "Data points a connector handed to its metrics pipelines.", ["connector"],
            registry=r)
        self.connector_skipped_records = Counter(
            "otelpipe_connector_skipped_records",
            "Records that matched a logmetrics metric but could not be used (value missing or "
            "not a number).", ["connector", "metric", "reason"], registry=r)

        # loki and elasticsearch exporters.
        self.loki_label_overflow = Counter(
            "otelpipe_loki_exporter_label_overflow_records",
            "Records whose label value was kept as structured metadata instead of a stream "
            "label because the label reached max_label_values distinct values.",
            ["exporter", "label"], registry=r)
        self.elasticsearch_bulk_items = Counter(
            "otelpipe_elasticsearch_exporter_bulk_items",
            "Per-document results of bulk requests: ok (indexed or already there), retry "
            "(429/5xx, sent again alone), rejected (other 4xx such as mapping errors; dropped).",
            ["exporter", "outcome"], registry=r)
        self.elasticsearch_rejected_documents = Counter(
            "otelpipe_elasticsearch_exporter_rejected_documents",
            "Documents the backend rejected permanently, by error type "
            "(mapper_parsing_exception …).", ["exporter", "reason"], registry=r)

        # replication_lag and httpcheck receivers.
        self.replication_lag_probe_errors = Counter(
            "otelpipe_replication_lag_probe_errors",
            "Failed connections and queries of the replication_lag receiver, per database "
            "(primary or replica name) and reason (connection, timeout, auth, query).",
            ["receiver", "target", "reason"], registry=r)
        self.httpcheck_failed_checks = Counter(
            "otelpipe_httpcheck_failed_checks",
            "httpcheck probes that did not get the expected status, by error.type.",
            ["receiver", "reason"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    content_type = CONTENT_TYPE_LATEST
