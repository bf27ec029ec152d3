"""`kafka` exporter: writes OTLP requests to Kafka topics (the lean producer of
`kafkahelper.produce`; aiokafka's producer with compression, idempotence or SASL).

- `encoding: otlp_proto` (default) writes the request bytes the batch arrived
  as: a pass-through route (OTLP in, Kafka out) neither decodes nor
  re-encodes. `otlp_json` writes OTLP JSON (hex ids, integer enums). `json`
  writes one flat JSON object per log record or span, one Kafka record each
  (the `format: json` of the file exporter: structured logs for log stores
  and stream processors); metrics, which have no flat form, go as OTLP JSON.
  With `partition_traces_by_id` a span's record is keyed by its trace id, and
  `topic_from_attribute` reads the attribute from the flat record.
- `topic` defaults by signal (`otlp_spans`, `otlp_logs`, `otlp_metrics`);
  `topic_from_attribute` names a resource attribute whose value picks the
  topic per resource (resources without it use `topic`).
- `partition_traces_by_id`: one record per trace id, keyed by the trace id
  (hex), so every span of a trace lands on one partition.
  `partition_logs_by_resource_attributes` / `..._metrics_...`: one record per
  resource, keyed by a hash of the resource attributes.
- A request larger than `producer.max_message_bytes` is split by resource,
  then by item; only a single item larger than the limit is rejected.
- Client metadata (`batch.metadata`) travels as record headers.
- A batch over 256 KiB of protobuf that needs more than forwarding (JSON encodings,
  splitting, partitioning) is encoded in a worker process (`pdata/offload.py`), off
  the event loop; that time counts against `timeout`, as marshalling does in the
  Collector (≈ 1 s per 67k spans of OTLP JSON on an idle core).

Delivery: `send` returns only after the broker acknowledged every record of
the request (per `producer.required_acks`). A broker that cannot be reached
raises `RetryableError` within `timeout`, so receivers answer 503 /
UNAVAILABLE and nothing acknowledged is lost. The sending queue is off by
default: Kafka is the buffer, and a memory queue in front of it would
acknowledge data a crash loses. Enable `sending_queue` (and
`retry_on_failure`) to hold data in memory through short broker outages.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import Field, field_validator

from pipeline.component import ComponentConfig, ExporterCreateSettings, Factory, Host, Kind, Signal
from pipeline.config.kafka import DEFAULT_TOPICS, ClientSettings, Encoding
from pipeline.config.retry import ExporterSettings, QueueSettings, RetrySettings
from pipeline.errors import PermanentError, RetryableError
from pipeline.exporterhelper import Exporter
from pipeline.kafkahelper import client_kwargs, connect_error, describe, is_permanent
from pipeline.kafkahelper.produce import LeanProducer
from pipeline.pdata.batch import Batch, split_request
from pipeline.pdata.flatlogs import flat_group_records
from pipeline.pdata.offload import OFF_LOOP_BYTES, Offload, OffloadError
from pipeline.pdata.otlp import REQUEST_TYPES
from pipeline.pdata.otlpjson import encode_request, flat_records
from pipeline.telemetry.metrics import CounterSpec, HistogramSpec

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

PRODUCED_RECORDS = CounterSpec(
    "otelpipe_kafka_exporter_produced_records",
    "Kafka records the broker acknowledged, per topic.", ("exporter", "topic"))

PRODUCED_BYTES = CounterSpec(
    "otelpipe_kafka_exporter_produced_bytes",
    "Payload bytes of Kafka records the broker acknowledged.", ("exporter", "topic"))

PRODUCE_LATENCY = HistogramSpec(
    "otelpipe_kafka_exporter_produce_latency_seconds",
    "Time from handing a request's records to the producer until the broker "
    "acknowledged all of them.", ("exporter",),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]


class ProducerSettings(ComponentConfig):
    required_acks: Literal[0, 1, -1, "all"] = Field(
        -1, description="0: no wait; 1: leader; -1/all: all in-sync replicas")
    compression: Compression = "none"
    linger_ms: int = Field(5, ge=0, description="how long the producer waits to fill batches")
    max_message_bytes: int = Field(
        1_000_000, gt=0, description="largest record payload; bigger requests are split")
    max_batch_bytes: int = Field(
        1_048_576, gt=0, description="producer batch size per partition (aiokafka max_batch_size)")

    @field_validator("compression")
    @classmethod
    def _codec_available(cls, v: str) -> str:
        from aiokafka import codec

        have = {"none": True, "gzip": codec.has_gzip(), "snappy": codec.has_snappy(),
                "lz4": codec.has_lz4(), "zstd": codec.has_zstd()}
        if not have[v]:
            raise ValueError(f"compression {v} needs the cramjam package (pip install cramjam)")
        return v


class KafkaExporterConfig(ClientSettings, ExporterSettings):
    topic: str | None = Field(
        None, description="default: otlp_spans, otlp_logs or otlp_metrics by signal")
    topic_from_attribute: str | None = Field(
        None, description="resource attribute whose value is the topic of that resource's data")
    encoding: Encoding | Literal["json"] = Field(
        "otlp_proto", description="otlp_proto (forwarded as received), otlp_json, or json: "
                                  "one flat JSON object per log record or span")
    partition_traces_by_id: bool = False
    partition_logs_by_resource_attributes: bool = False
    partition_metrics_by_resource_attributes: bool = False
    producer: ProducerSettings = ProducerSettings()
    enable_idempotence: bool = False
    # Kafka is the buffer: acknowledge only what the broker acknowledged.
    sending_queue: QueueSettings = QueueSettings(enabled=False)
    # The producer retries inside one attempt; the sender (OTLP client, kafka
    # receiver) retries after a refusal.
    retry_on_failure: RetrySettings = RetrySettings(enabled=False)


_Message = tuple[str, bytes | None, bytes]  # topic, key, payload


def _containers(signal: Signal, request: Any) -> tuple[Any, str, str]:
    if signal is Signal.TRACES:
        return request.resource_spans, "scope_spans", "spans"
    if signal is Signal.LOGS:
        return request.resource_logs, "scope_logs", "log_records"
    return request.resource_metrics, "scope_metrics", "metrics"


def _attr_string(kvs: Any, key: str) -> str | None:
    for kv in kvs:
        if kv.key == key:
            v = kv.value
            kind = v.WhichOneof("value")
            if kind is None:
                return None
            if kind in ("array_value", "kvlist_value", "bytes_value"):
                return None
            return str(getattr(v, kind))
    return None


def resource_hash(resource: Any) -> bytes:
    """Stable key of a resource: hash over its attributes sorted by key."""
    h = hashlib.blake2b(digest_size=16)
    for kv in sorted(resource.attributes, key=lambda kv: kv.key):
        h.update(kv.key.encode())
        h.update(b"\x00")
        h.update(kv.value.SerializeToString(deterministic=True))
        h.update(b"\x01")
    return h.hexdigest().encode()


def _one_resource_request(signal: Signal, res: Any) -> Any:
    req = REQUEST_TYPES[signal]()
    _containers(signal, req)[0].add().CopyFrom(res)
    return req


def split_by_trace(request: Any) -> dict[bytes, Any]:
    """One request per trace id, keeping resource and scope of every span."""
    out: dict[bytes, Any] = {}
    # (trace id, resource index, scope index) -> scope container in that trace's request
    scopes: dict[tuple[bytes, int, int], Any] = {}
    resources: dict[tuple[bytes, int], Any] = {}
    req_type = REQUEST_TYPES[Signal.TRACES]
    for ri, rs in enumerate(request.resource_spans):
        for si, ss in enumerate(rs.scope_spans):
            for span in ss.spans:
                tid = span.trace_id
                scope = scopes.get((tid, ri, si))
                if scope is None:
                    res = resources.get((tid, ri))
                    if res is None:
                        req = out.get(tid)
                        if req is None:
                            req = out[tid] = req_type()
                        res = req.resource_spans.add()
                        res.resource.CopyFrom(rs.resource)
                        res.schema_url = rs.schema_url
                        resources[(tid, ri)] = res
                    scope = res.scope_spans.add()
                    scope.scope.CopyFrom(ss.scope)
                    scope.schema_url = ss.schema_url
                    scopes[(tid, ri, si)] = scope
                scope.spans.add().CopyFrom(span)
    return out


class KafkaEncoder:
    """Kafka records of a batch: pure (config in, records out), so that big batches are
    encoded in a worker process (`pdata.offload`), off the event loop."""

    def __init__(self, config: KafkaExporterConfig):
        self.config = config
        self._encode_json = config.encoding in ("otlp_json", "json")
        self.flat = config.encoding == "json"

    def encode(self, batch: Batch) -> tuple[list[_Message], int]:
        """(records, records too big to send) of a batch."""
        if self.flat and batch.signal is not Signal.METRICS:
            return self._flat_messages(batch)
        return self.messages(batch), 0

    def _topic(self, signal: Signal) -> str:
        return self.config.topic or DEFAULT_TOPICS[signal]

    def _encode(self, message: Any) -> bytes:
        return encode_request(message) if self._encode_json else message.SerializeToString()

    def _flat_messages(self, batch: Batch) -> tuple[list[_Message], int]:
        """`encoding: json`: one record per log record or span, and how many records
        were left out for exceeding max_message_bytes (reported as rejected)."""
        c = self.config
        default_topic = self._topic(batch.signal)
        logs = batch.logs
        records = (flat_group_records(logs) if logs is not None
                   else flat_records(batch.signal, batch.message))
        by_trace = batch.signal is Signal.TRACES and c.partition_traces_by_id
        attr = c.topic_from_attribute
        out: list[_Message] = []
        too_big = 0
        for rec in records:
            payload = orjson.dumps(rec)
            if len(payload) > c.producer.max_message_bytes:
                too_big += 1
                continue
            topic = str(rec.get(attr, default_topic)) if attr else default_topic
            key = rec["trace_id"].encode() if by_trace else None
            out.append((topic, key, payload))
        return out, too_big

    def messages(self, batch: Batch) -> list[_Message]:
        """(topic, key, payload) records for a batch, each within max_message_bytes."""
        c = self.config
        signal = batch.signal
        if self.flat and signal is not Signal.METRICS:
            return self._flat_messages(batch)[0]
        default_topic = self._topic(signal)
        by_resource = (
            (signal is Signal.LOGS and c.partition_logs_by_resource_attributes)
            or (signal is Signal.METRICS and c.partition_metrics_by_resource_attributes))
        by_trace = signal is Signal.TRACES and c.partition_traces_by_id
        limit = c.producer.max_message_bytes

        if not (by_resource or by_trace or c.topic_from_attribute):
            # The hot path: forward the bytes as they are.
            if not self._encode_json:
                raw = batch.to_bytes()
                if len(raw) <= limit:
                    return [(default_topic, None, raw)]
                return [(default_topic, None, p) for p in self._fit(signal, batch.message)]
            payload = encode_request(batch.message)
            if len(payload) <= limit:
                return [(default_topic, None, payload)]
            return [(default_topic, None, p) for p in self._fit(signal, batch.message)]

        request = batch.message
        out: list[_Message] = []
        for topic, req in self._by_topic(signal, request, default_topic):
            if by_trace:
                for tid, treq in split_by_trace(req).items():
                    key = tid.hex().encode()
                    out.extend((topic, key, p) for p in self._fit(signal, treq))
            elif by_resource:
                for res in _containers(signal, req)[0]:
                    key = resource_hash(res.resource)
                    rreq = _one_resource_request(signal, res)
                    out.extend((topic, key, p) for p in self._fit(signal, rreq))
            else:
                out.extend((topic, None, p) for p in self._fit(signal, req))
        return out

    def _by_topic(self, signal: Signal, request: Any, default: str) -> list[tuple[str, Any]]:
        attr = self.config.topic_from_attribute
        if not attr:
            return [(default, request)]
        resources = _containers(signal, request)[0]
        topics = [(_attr_string(r.resource.attributes, attr) or default) for r in resources]
        if len(set(topics)) <= 1:
            return [(topics[0] if topics else default, request)]
        grouped: dict[str, Any] = {}
        for topic, res in zip(topics, resources, strict=True):
            req = grouped.get(topic)
            if req is None:
                req = grouped[topic] = REQUEST_TYPES[signal]()
            _containers(signal, req)[0].add().CopyFrom(res)
        return list(grouped.items())

    def _fit(self, signal: Signal, request: Any) -> list[bytes]:
        """Encoded payloads of `request`, split by resource, then by item, to fit the limit."""
        limit = self.config.producer.max_message_bytes
        payload = self._encode(request)
        if len(payload) <= limit:
            return [payload]
        resources = _containers(signal, request)[0]
        if len(resources) > 1:
            out: list[bytes] = []
            pending = REQUEST_TYPES[signal]()
            pending_size = 0
            for res in resources:
                one = _one_resource_request(signal, res)
                size = len(self._encode(one))
                if pending_size and pending_size + size > limit:
                    out.extend(self._fit(signal, pending))
                    pending = REQUEST_TYPES[signal]()
                    pending_size = 0
                _containers(signal, pending)[0].add().CopyFrom(res)
                pending_size += size
            if pending_size:
                out.extend(self._fit(signal, pending))
            return out
        from pipeline.pdata.otlp import count_items

        items = count_items(signal, request.SerializeToString())
        if items <= 1:
            raise PermanentError(
                f"one {signal.value} item of {len(payload)} bytes exceeds "
                f"producer.max_message_bytes ({limit})", rejected=max(items, 1))
        parts = max(2, -(-len(payload) // limit))
        max_items = max(1, -(-items // parts))
        out = []
        for part in split_request(signal, request, max_items):
            out.extend(self._fit(signal, part))
        return out



def _encode_off_loop(config: KafkaExporterConfig, signal: Signal,
                     raw: bytes) -> tuple[list[_Message], int]:
    """`KafkaEncoder.encode`, run in the offload worker."""
    return KafkaEncoder(config).encode(Batch(signal, raw=raw))


class KafkaExporter(Exporter):
    def __init__(self, settings: ExporterCreateSettings, config: KafkaExporterConfig):
        super().__init__(settings, config)
        self.config = config
        self._producer: AIOKafkaProducer | LeanProducer | None = None
        self._producer_lock = asyncio.Lock()
        t = settings.telemetry
        self._t = t
        self._latency = t.histogram(PRODUCE_LATENCY).labels(self.id)
        self._per_topic: dict[str, tuple[Any, Any]] = {}
        self._encoder = KafkaEncoder(config)
        self._offload = Offload()

    # Producer lifecycle ------------------------------------------------------------
    def _producer_kwargs(self) -> dict[str, Any]:
        c = self.config
        p = c.producer
        acks: Any = "all" if p.required_acks in (-1, "all") else p.required_acks
        timeout_ms = int(max(1.0, c.timeout or 30.0) * 1000)
        kw = client_kwargs(c)
        kw.update(
            acks=acks,
            compression_type=None if p.compression == "none" else p.compression,
            linger_ms=p.linger_ms,
            max_batch_size=max(p.max_batch_bytes, p.max_message_bytes + 1024),
            # Record overhead (headers, key, batch framing) on top of the payload limit.
            max_request_size=p.max_message_bytes + 64 * 1024,
            enable_idempotence=c.enable_idempotence,
            request_timeout_ms=timeout_ms,
            retry_backoff_ms=100,
        )
        return kw

    def _new_producer(self) -> AIOKafkaProducer | LeanProducer:
        """The lean produce path (`kafkahelper.produce`), or aiokafka's producer when
        compression, idempotence or SASL asks for it."""
        from aiokafka import AIOKafkaProducer

        kw = self._producer_kwargs()
        if (kw["compression_type"] is None and not kw["enable_idempotence"]
                and self.config.sasl is None):
            for aiokafka_only in ("compression_type", "enable_idempotence"):
                del kw[aiokafka_only]
            return LeanProducer(**kw)
        return AIOKafkaProducer(**kw)

    async def _get_producer(self) -> AIOKafkaProducer | LeanProducer:
        if self._producer is not None:
            return self._producer
        async with self._producer_lock:
            if self._producer is None:
                producer = self._new_producer()
                try:
                    await producer.start()
                except Exception as exc:
                    await _close_quietly(producer)
                    raise RetryableError(
                        f"cannot connect to kafka {','.join(self.config.brokers)}: "
                        f"{await connect_error(self.config, exc)}", retry_after=1.0) from None
                self._producer = producer
                self.log.info("connected to kafka", extra={"brokers": self.config.brokers})
        assert self._producer is not None
        return self._producer

    async def start_exporter(self, host: Host) -> None:
        # A broker that is down at start is not fatal: batches are refused
        # (retryable) until it is reachable.
        try:
            await self._get_producer()
        except RetryableError as exc:
            self.log.warning("kafka not reachable yet; will retry on the first batch",
                             extra={"error": str(exc)})

    async def shutdown_exporter(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await _close_quietly(producer)
        await self._offload.close()

    # Encoding ------------------------------------------------------------------------
    def messages(self, batch: Batch) -> list[_Message]:
        """(topic, key, payload) records for a batch, each within max_message_bytes."""
        return self._encoder.encode(batch)[0]

    def _off_loop(self, batch: Batch) -> bool:
        """Whether encoding this batch is worth a worker: it is big, and more than
        forwarding its protobuf as it is."""
        if batch.logs is not None and self._encoder.flat:
            return False  # Python log records to flat JSON: cheap, no OTLP in between
        raw_size = len(batch.to_bytes())
        if raw_size <= OFF_LOOP_BYTES:
            return False
        c = self.config
        passthrough = (c.encoding == "otlp_proto" and raw_size <= c.producer.max_message_bytes
                       and not (c.partition_traces_by_id or c.topic_from_attribute
                                or c.partition_logs_by_resource_attributes
                                or c.partition_metrics_by_resource_attributes))
        return not passthrough

    async def _encode(self, batch: Batch) -> tuple[list[_Message], int]:
        """Records of a batch; a big one is encoded in the offload worker (OTLP JSON of
        67k spans holds a core ≈ 1 s), or here if the worker fails."""
        if self._off_loop(batch):
            try:
                return await self._offload.call(_encode_off_loop, self.config, batch.signal,
                                                batch.to_bytes())
            except OffloadError as exc:
                self.log.warning("encoding on the event loop: the offload worker failed",
                                 extra={"error": str(exc)})
        return self._encoder.encode(batch)

    # Sending --------------------------------------------------------------------------
    def _topic_metrics(self, topic: str) -> tuple[Any, Any]:
        m = self._per_topic.get(topic)
        if m is None:
            m = self._per_topic[topic] = (
                self._t.counter(PRODUCED_RECORDS).labels(self.id, topic),
                self._t.counter(PRODUCED_BYTES).labels(self.id, topic))
        return m

    async def send(self, batch: Batch) -> int | None:
        from aiokafka import errors as kerrors

        messages, rejected = await self._encode(batch)
        if rejected:
            self.log.warning("flat records larger than max_message_bytes were not sent",
                             extra={"records": rejected,
                                    "max_message_bytes": self.config.producer.max_message_bytes})
        if not messages:
            return rejected or None
        headers = [(k, str(v).encode()) for k, v in batch.metadata.items()] or None
        producer = await self._get_producer()
        started = time.perf_counter()
        futures: list[asyncio.Future[Any]] = []
        try:
            for topic, key, payload in messages:
                futures.append(await producer.send(topic, payload, key=key, headers=headers))
            if futures:
                # asyncio.wait, unlike gather, never cancels the delivery futures
                # when this send is cancelled (timeout): the producer owns them.
                await asyncio.wait(futures)
            for f in futures:
                f.result()
        except RetryableError:
            raise
        except kerrors.KafkaError as exc:
            await self._on_error(exc)
            if is_permanent(exc):
                raise PermanentError(f"kafka refused the record: {describe(exc)}") from None
            raise RetryableError(f"kafka: {describe(exc)}", retry_after=1.0) from None
        finally:
            # Consume exceptions of futures we will not look at (cancelled send).
            for f in futures:
                if f.done() and not f.cancelled():
                    f.exception()
        self._latency.observe(time.perf_counter() - started)
        for topic, _key, payload in messages:
            records, nbytes = self._topic_metrics(topic)
            records.inc()
            nbytes.inc(len(payload))
        return rejected or None

    async def _on_error(self, exc: BaseException) -> None:
        """Replace a producer that can no longer send (closed, fenced, broken sequence)."""
        from aiokafka import errors as kerrors

        if isinstance(exc, kerrors.ProducerClosed | kerrors.IllegalStateError
                      | kerrors.OutOfOrderSequenceNumber | kerrors.ProducerFenced):
            producer, self._producer = self._producer, None
            if producer is not None:
                await _close_quietly(producer)


async def _close_quietly(producer: AIOKafkaProducer | LeanProducer) -> None:
    # Closing a broken producer must not fail shutdown.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.stop(), 10)


def _create(settings: ExporterCreateSettings, config: KafkaExporterConfig) -> KafkaExporter:
    return KafkaExporter(settings, config)


factory = Factory(type="kafka", kind=Kind.EXPORTER, config_model=KafkaExporterConfig,
                  create=_create, signals=frozenset(Signal),
                  description="writes OTLP (protobuf or JSON) or flat JSON records to Kafka "
                              "topics")
