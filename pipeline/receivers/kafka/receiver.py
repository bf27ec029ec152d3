"""The `kafka` receiver component: the consumer, rebalances, commits, decoding and the
dead-letter topic (see the package docstring for the delivery guarantees)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pipeline.component import (
    Component,
    ComponentHealth,
    Consumer,
    Host,
    ReceiverCreateSettings,
    Signal,
)
from pipeline.config.kafka import DEFAULT_TOPICS, Encoding
from pipeline.config.retry import RetrySettings
from pipeline.config.secrets import mask_text
from pipeline.errors import PermanentError, RetryableError
from pipeline.exporterhelper.retry import Backoff
from pipeline.kafkahelper import client_kwargs, connect_error, describe
from pipeline.pdata.batch import Batch
from pipeline.pdata.otlp import DecodeError, count_items, drop_invalid_id_items, invalid_id_items
from pipeline.pdata.otlpjson import OTLPJSONError, decode_request
from pipeline.receiverhelper.obs import ReceiverObs
from pipeline.receivers.kafka.config import KafkaReceiverConfig, SignalTopics
from pipeline.receivers.kafka.partition import _Abandon, _Partition, _until
from pipeline.telemetry.metrics import CounterSpec, GaugeSpec

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import ConsumerRecord, TopicPartition

CONSUMED_RECORDS = CounterSpec(
    "otelpipe_kafka_receiver_consumed_records",
    "Kafka records fetched by a receiver.", ("receiver", "topic"))

CONSUMED_BYTES = CounterSpec(
    "otelpipe_kafka_receiver_consumed_bytes",
    "Payload bytes of Kafka records fetched by a receiver.", ("receiver", "topic"))

CONSUMER_LAG = GaugeSpec(
    "otelpipe_kafka_receiver_consumer_lag",
    "Records on the partition not yet delivered (high watermark minus the next offset "
    "to commit).", ("receiver", "topic", "partition"))

UNDECODABLE_RECORDS = CounterSpec(
    "otelpipe_kafka_receiver_undecodable_records",
    "Records skipped because they cannot be decoded (or the pipeline rejected them "
    "permanently), by reason.", ("receiver", "topic", "reason"))

DEAD_LETTERED_RECORDS = CounterSpec(
    "otelpipe_kafka_receiver_dead_lettered_records",
    "Skipped records copied to the dead-letter topic.", ("receiver", "topic"))

COMMITTED_OFFSET = GaugeSpec(
    "otelpipe_kafka_receiver_committed_offset",
    "Last offset committed by a receiver (the next record to read).",
    ("receiver", "topic", "partition"))


class _Stalled(Exception):
    """The consumer stayed stuck although a broker answers: replace it."""


# A commit waits at most this long (for the coordinator, for its answer); what it did not
# commit is committed by the next one. Unbounded, aiokafka's commit waits as long as the
# coordinator cannot be found: the poll loop, a rebalance and shutdown would hang with it.
_COMMIT_TIMEOUT = 5.0


class _Route:
    """Which signal and encoding a topic's records are."""

    def __init__(self, config: KafkaReceiverConfig, signals: Iterable[Signal]):
        self.names: dict[str, tuple[Signal, Encoding]] = {}
        self.patterns: list[tuple[re.Pattern[str], Signal, Encoding]] = []
        for signal in signals:
            st: SignalTopics = getattr(config, signal.value)
            enc = st.encoding or config.encoding
            if st.topic_pattern is not None:
                self.patterns.append((re.compile(st.topic_pattern), signal, enc))
            else:
                for t in st.topics or [DEFAULT_TOPICS[signal]]:
                    self.names[t] = (signal, enc)
        self._cache: dict[str, tuple[Signal, Encoding] | None] = {}

    def subscription(self) -> dict[str, Any]:
        if not self.patterns:
            return {"topics": sorted(self.names)}
        alts = [f"(?:{p.pattern})" for p, _, _ in self.patterns]
        alts += [re.escape(n) for n in sorted(self.names)]
        return {"pattern": "^(?:" + "|".join(alts) + ")$"}

    def lookup(self, topic: str) -> tuple[Signal, Encoding] | None:
        try:
            return self._cache[topic]
        except KeyError:
            pass
        found = self.names.get(topic)
        if found is None:
            for pat, signal, enc in self.patterns:
                if pat.fullmatch(topic):
                    found = (signal, enc)
                    break
        self._cache[topic] = found
        return found


class _Listener:  # registered as an aiokafka ConsumerRebalanceListener when used
    def __init__(self, receiver: KafkaReceiver):
        self.r = receiver

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.r._revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.r._assigned(set(assigned))


class KafkaReceiver(Component):
    def __init__(self, settings: ReceiverCreateSettings, config: KafkaReceiverConfig):
        self.settings = settings
        self.config = config
        self.id = str(settings.id)
        self.log = settings.logger
        self.obs = ReceiverObs(settings, "kafka")
        self.consumers: dict[Signal, Consumer] = dict(settings.consumers)
        self.route = _Route(config, self.consumers)
        t = settings.telemetry
        self._t = t
        self._consumer: AIOKafkaConsumer | None = None
        self._dlq: AIOKafkaProducer | None = None
        self._parts: dict[TopicPartition, _Partition] = {}
        self._assignment: set[TopicPartition] = set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_commit = 0.0
        self._last_error: str | None = None
        self._connected = False
        self._topic_metrics: dict[str, tuple[Any, Any]] = {}
        self._retry = RetrySettings(initial_interval=config.backoff.initial_interval,
                                    max_interval=config.backoff.max_interval,
                                    max_elapsed_time=0, multiplier=2.0,
                                    randomization_factor=0.2)

    # Lifecycle ----------------------------------------------------------------------
    async def start(self, host: Host) -> None:
        if not self.consumers:
            return
        self._task = asyncio.create_task(self._run(), name=f"{self.id}-poll")

    async def shutdown(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def health(self) -> ComponentHealth:
        return ComponentHealth(healthy=self._connected, last_error=self._last_error)

    def _consumer_kwargs(self) -> dict[str, Any]:
        c = self.config
        kw = client_kwargs(c)
        kw.update(
            group_id=c.group_id,
            enable_auto_commit=False,
            auto_offset_reset=c.initial_offset,
            max_partition_fetch_bytes=c.max_partition_fetch_bytes,
            session_timeout_ms=int(c.session_timeout * 1000),
            heartbeat_interval_ms=int(c.heartbeat_interval * 1000),
            max_poll_interval_ms=int(c.max_poll_interval * 1000),
            request_timeout_ms=max(int(c.session_timeout * 1000) + 5000, 15000),
        )
        return kw

    async def _run(self) -> None:
        from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

        ConsumerRebalanceListener.register(_Listener)
        backoff = Backoff(self._retry)
        while not self._stopping:
            consumer = AIOKafkaConsumer(**self._consumer_kwargs())
            try:
                await consumer.start()
                consumer.subscribe(**self.route.subscription(), listener=_Listener(self))
                self._consumer = consumer
                self._connected = True
                self.log.info("consuming", extra={"group_id": self.config.group_id,
                                                   **self.route.subscription()})
                backoff = Backoff(self._retry)
                await self._poll(consumer)
            except asyncio.CancelledError:
                await self._stop_consumer(consumer)
                raise
            except _Stalled as exc:
                self._connected = False
                self._last_error = f"consumer stalled: {exc}"
                self.log.warning("kafka consumer stalled; replacing it",
                                 extra={"error": str(exc)})
                await self._stop_consumer(consumer)
            except Exception as exc:  # reconnect on anything
                self._connected = False
                self._last_error = await connect_error(self.config, exc)
                self.log.warning("kafka consumer failed; reconnecting",
                                 extra={"error": self._last_error})
                await self._stop_consumer(consumer)
                await asyncio.sleep(backoff.next_delay(None) or 1.0)

    async def _stop_consumer(self, consumer: AIOKafkaConsumer) -> None:
        """Finish in-flight records, commit what was delivered, leave the group."""
        if self._consumer is consumer:
            await self._finish(set(self._parts), commit=True)
            self._consumer = None
        self._connected = False
        try:
            await asyncio.wait_for(consumer.stop(), 10)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # we are being cancelled (shutdown)
            # Not ours: aiokafka's stop() lets the CancelledError of a fetch request it
            # cancelled (one sleeping in its retry backoff, as during an outage) escape,
            # before closing its client. Uncaught, it ended this task as "cancelled":
            # the receiver stopped consuming for good, without a word. Close the rest.
            client = getattr(consumer, "_client", None)
            with contextlib.suppress(Exception, asyncio.CancelledError):
                if client is not None:
                    await asyncio.wait_for(client.close(), 10)
        except Exception:  # a broken consumer must not fail its replacement
            pass
        if self._dlq is not None:
            dlq, self._dlq = self._dlq, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(dlq.stop(), 10)

    async def _poll(self, consumer: AIOKafkaConsumer) -> None:
        """Fetch and commit until stopping; meanwhile, once a second, ask the stall watch
        (in this task, so a fetch loop stuck in aiokafka cannot hold it up)."""
        # Deferred import: this module's import lines are left as they are.
        from pipeline.kafkahelper import StallWatch

        watch = StallWatch(consumer, lambda: self._assignment, self.config,
                           self.config.group_id, self.config.stall_timeout, self.id)
        fetching = asyncio.create_task(self._fetch_loop(consumer), name=f"{self.id}-fetch")
        try:
            while not fetching.done():
                await asyncio.wait({fetching}, timeout=watch.CHECK_INTERVAL)
                stalled = None if fetching.done() else await watch.check(time.monotonic())
                if stalled is not None:
                    raise _Stalled(stalled)
            fetching.result()
        finally:
            watch.close()
            if not fetching.done():
                fetching.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await fetching

    async def _fetch_loop(self, consumer: AIOKafkaConsumer) -> None:
        c = self.config
        while not self._stopping:
            data = await consumer.getmany(timeout_ms=200, max_records=c.max_poll_records)
            for tp, records in data.items():
                if not records or tp not in self._assignment:
                    continue
                part = self._parts.get(tp)
                if part is None:
                    part = self._parts[tp] = _Partition(self, tp)
                recs, nbytes = self._topic(tp.topic)
                recs.inc(len(records))
                nbytes.inc(sum(len(x.value or b"") for x in records))
                part.add(records)
                if not part.paused and len(part.queue) >= c.max_buffered_records:
                    consumer.pause(tp)
                    part.paused = True
            now = time.monotonic()
            if now - self._last_commit >= c.commit_interval:
                self._last_commit = now
                await self._commit(consumer, list(self._parts.values()))
                await self._update_lag(consumer)

    def _resume(self, part: _Partition) -> None:
        part.paused = False
        consumer = self._consumer
        if consumer is not None and part.tp in self._assignment:
            consumer.resume(part.tp)

    # Offsets ----------------------------------------------------------------------------
    async def _commit(self, consumer: AIOKafkaConsumer, parts: Iterable[_Partition]) -> None:
        from aiokafka import errors as kerrors

        offsets = {p.tp: p.delivered for p in parts
                   if p.delivered is not None and p.delivered != p.committed}
        if not offsets:
            return
        try:
            await asyncio.wait_for(consumer.commit(offsets), _COMMIT_TIMEOUT)
        except (kerrors.KafkaError, AssertionError, TimeoutError) as exc:
            # A rebalance is under way or the coordinator moved: the records
            # come again to whoever owns the partition (duplicates, no loss).
            self.log.info("offset commit failed; will retry",
                          extra={"error": describe(exc)})
            return
        for p in parts:
            if p.tp in offsets:
                p.committed = offsets[p.tp]
                self._t.gauge(COMMITTED_OFFSET).labels(
                    self.id, p.tp.topic, str(p.tp.partition)).set(offsets[p.tp])

    async def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        from aiokafka import errors as kerrors

        for tp in list(self._assignment):
            try:
                high = consumer.highwater(tp)
            except (AssertionError, kerrors.KafkaError):
                continue
            if high is None:
                continue
            part = self._parts.get(tp)
            nxt = None
            if part is not None:
                nxt = part.queue[0].offset if part.queue else part.delivered
            if nxt is None:
                # Nothing buffered: the fetch position (known, so no request is made).
                try:
                    nxt = await asyncio.wait_for(consumer.position(tp), 0.5)
                except (TimeoutError, AssertionError, kerrors.KafkaError):
                    continue
            self._t.gauge(CONSUMER_LAG).labels(self.id, tp.topic, str(tp.partition)).set(
                max(0, high - nxt))

    # Rebalance --------------------------------------------------------------------------
    def _assigned(self, assigned: set[TopicPartition]) -> None:
        self._assignment = set(assigned)
        self.log.info("partitions assigned",
                      extra={"partitions": sorted(f"{tp.topic}/{tp.partition}"
                                                  for tp in assigned)})

    async def _revoked(self, revoked: set[TopicPartition]) -> None:
        self._assignment -= revoked
        await self._finish(revoked, commit=True)
        for tp in revoked:
            with contextlib.suppress(KeyError):
                self._t.gauge(CONSUMER_LAG).remove(self.id, tp.topic, str(tp.partition))

    async def _finish(self, tps: set[TopicPartition], *, commit: bool) -> None:
        parts = [self._parts.pop(tp) for tp in list(tps) if tp in self._parts]
        if not parts:
            return
        await asyncio.gather(*(p.stop(self.config.drain_timeout) for p in parts))
        if commit and self._consumer is not None:
            await self._commit(self._consumer, parts)

    # Records ----------------------------------------------------------------------------
    def _topic(self, topic: str) -> tuple[Any, Any]:
        m = self._topic_metrics.get(topic)
        if m is None:
            m = self._topic_metrics[topic] = (
                self._t.counter(CONSUMED_RECORDS).labels(self.id, topic),
                self._t.counter(CONSUMED_BYTES).labels(self.id, topic))
        return m

    def decode(self, rec: ConsumerRecord[bytes, bytes]) -> tuple[Batch | None, str]:
        """The record as a batch, or (None, reason) when it cannot be one."""
        route = self.route.lookup(rec.topic)
        if route is None:
            return None, "unknown_topic"
        signal, encoding = route
        value = rec.value
        if not value:
            return None, "empty"
        metadata = _metadata(rec.headers)
        if encoding == "otlp_proto":
            try:
                if signal is Signal.METRICS:
                    total, bad = count_items(signal, value), 0
                else:
                    total, bad = invalid_id_items(signal, value)
            except DecodeError:
                return None, "decode_error"
            batch = Batch(signal, raw=value, items=total, metadata=metadata)
        else:
            try:
                msg = decode_request(signal, value)
            except OTLPJSONError:
                return None, "decode_error"
            batch = Batch(signal, message=msg, metadata=metadata)
            if signal is Signal.METRICS:
                total, bad = batch.items, 0
            else:
                total, bad = invalid_id_items(signal, batch.to_bytes())
        if total == 0:
            return None, "no_items"
        if bad == total:
            return None, "invalid_ids"
        if bad:
            drop_invalid_id_items(signal, batch.mutable())
            self.obs.rejected(signal, bad)
        return batch, ""

    async def _process(self, part: _Partition, rec: ConsumerRecord[bytes, bytes]) -> None:
        batch, reason = self.decode(rec)
        if batch is None:
            await self._skip(rec, reason)
            return
        consumer = self.consumers[batch.signal]
        backoff: Backoff | None = None
        while True:
            try:
                await self.obs.deliver(consumer, batch)
                return
            except PermanentError as exc:
                await self._skip(rec, "rejected", mask_text(exc))
                return
            except RetryableError as exc:
                retry_after = exc.retry_after
            except Exception:  # counted and logged by deliver; never skip
                retry_after = None
            if part.stopping:
                raise _Abandon
            backoff = backoff or Backoff(self._retry)
            delay = backoff.next_delay(retry_after) or 0.1
            # Wake early when the partition is revoked or the receiver stops.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_until(part), delay)
            if part.stopping:
                raise _Abandon

    async def _skip(self, rec: ConsumerRecord[bytes, bytes], reason: str,
                    detail: str = "") -> None:
        self._t.counter(UNDECODABLE_RECORDS).labels(self.id, rec.topic, reason).inc()
        self.log.warning("skipped a kafka record", extra={
            "topic": rec.topic, "partition": rec.partition, "offset": rec.offset,
            "reason": reason, **({"detail": detail} if detail else {})})
        topic = self.config.dead_letter_topic
        if not topic:
            return
        headers = [*(rec.headers or ()),
                   ("otelpipe.dlq.reason", reason.encode()),
                   ("otelpipe.dlq.topic", rec.topic.encode()),
                   ("otelpipe.dlq.partition", str(rec.partition).encode()),
                   ("otelpipe.dlq.offset", str(rec.offset).encode())]
        try:
            producer = await self._dead_letter_producer()
            await asyncio.wait_for(
                producer.send_and_wait(topic, rec.value, key=rec.key, headers=headers),
                self.config.drain_timeout)
        except Exception as exc:  # a lost copy must not stall the partition
            self.log.error("cannot copy a record to the dead-letter topic",
                           extra={"topic": topic, "error": describe(exc)})
            return
        self._t.counter(DEAD_LETTERED_RECORDS).labels(self.id, rec.topic).inc()

    async def _dead_letter_producer(self) -> AIOKafkaProducer:
        from aiokafka import AIOKafkaProducer

        if self._dlq is None:
            producer = AIOKafkaProducer(**client_kwargs(self.config), acks="all",
                                        request_timeout_ms=int(self.config.drain_timeout * 1000))
            try:
                await producer.start()
            except Exception:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._dlq = producer
        return self._dlq


def _metadata(headers: Any) -> dict[str, str]:
    if not headers:
        return {}
    out = {}
    for k, v in headers:
        if v is None or k.startswith("otelpipe.dlq."):
            continue
        try:
            out[k] = v.decode()
        except UnicodeDecodeError:
            continue
    return out

