"""`kafka` receiver: reads OTLP requests from Kafka topics as a consumer group.

Topics are configured per signal, as the Collector does, and only the
signals of the pipelines the receiver is in are read:

    receivers:
      kafka:
        brokers: [localhost:9092]
        group_id: otelpipe                 # all gateways share the partitions
        initial_offset: earliest           # where a new group starts
        encoding: otlp_proto               # or otlp_json; per signal too
        traces:  {topics: [otlp_spans]}    # the defaults
        logs:    {topic_pattern: "otlp_logs.*"}
        dead_letter_topic: otlp_dead_letters

Delivery is at-least-once:
- every record becomes one batch, handed to the pipeline in offset order per
  partition; partitions are delivered concurrently;
- when the pipeline refuses (retryable), the partition is paused and the
  same record is retried with backoff: a record is never skipped;
- an offset is committed only once every record before it was accepted by
  the pipeline (every exporter of it); a crash re-delivers from the last
  commit (duplicates, never loss);
- on a rebalance the in-flight record of a revoked partition is given a
  bounded time to finish, what was delivered is committed, and the rest is
  abandoned to the next owner;
- a record that cannot be decoded (or that the pipeline rejects as
  permanently invalid) is counted, optionally copied to `dead_letter_topic`
  with headers telling where it came from and why, and skipped: it never
  stalls its partition.

Recovery: aiokafka reconnects by itself after a broker outage, but nothing bounds how
long its consumer may stay without a group coordinator (or without fetch responses)
once the brokers answer again. A stall watch (`kafkahelper.StallWatch`) asks a broker
whenever the consumer looks stuck, and the consumer is replaced once brokers have answered
for `stall_timeout` while it stayed stuck (delivered offsets are committed first; the new
consumer resumes from them: at-least-once, as after a crash). Commits are bounded
(`_COMMIT_TIMEOUT`): a coordinator that cannot be found never blocks the poll loop, a

Modules: `config` (the models), `receiver` (the component: consumer, rebalances,
commits, decoding, dead letters), `partition` (one partition's in-order delivery).
This module holds only the factory; the receiver's modules load when one is created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.component import Factory, Kind, ReceiverCreateSettings, Signal
from pipeline.receivers.kafka.config import KafkaReceiverConfig

if TYPE_CHECKING:
    from pipeline.receivers.kafka.receiver import KafkaReceiver


def _create(settings: ReceiverCreateSettings, config: KafkaReceiverConfig) -> KafkaReceiver:
    from pipeline.receivers.kafka.receiver import KafkaReceiver

    return KafkaReceiver(settings, config)


factory = Factory(type="kafka", kind=Kind.RECEIVER, config_model=KafkaReceiverConfig,
                  create=_create, signals=frozenset(Signal),
                  description="reads OTLP (protobuf or JSON) from Kafka topics as a consumer group")
