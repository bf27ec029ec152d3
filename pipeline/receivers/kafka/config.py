"""Configuration models of the `kafka` receiver."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from pipeline.component import ComponentConfig, Signal
from pipeline.config.kafka import DEFAULT_TOPICS, ClientSettings, Encoding
from pipeline.config.types import Duration


class SignalTopics(ComponentConfig):
    topics: list[str] | None = Field(
        None, description="topic names (default: otlp_spans, otlp_logs or otlp_metrics)")
    topic_pattern: str | None = Field(
        None, description="regular expression matched against whole topic names")
    encoding: Encoding | None = Field(None, description="default: the receiver's encoding")

    @model_validator(mode="after")
    def _check(self) -> SignalTopics:
        if self.topics is not None and self.topic_pattern is not None:
            raise ValueError("set topics or topic_pattern, not both")
        if self.topics is not None and not self.topics:
            raise ValueError("topics must not be empty")
        if self.topic_pattern is not None:
            try:
                re.compile(self.topic_pattern)
            except re.error as exc:
                raise ValueError(f"invalid topic_pattern: {exc}") from None
        return self


class ConsumerBackoff(ComponentConfig):
    """Backoff while the pipeline refuses a record (retried until accepted)."""

    initial_interval: Duration = 0.1
    max_interval: Duration = 5.0


class KafkaReceiverConfig(ClientSettings):
    group_id: str = "otelpipe"
    initial_offset: Literal["earliest", "latest"] = Field(
        "earliest", description="where a group without committed offsets starts")
    encoding: Encoding = "otlp_proto"
    traces: SignalTopics = SignalTopics()
    logs: SignalTopics = SignalTopics()
    metrics: SignalTopics = SignalTopics()
    dead_letter_topic: str | None = Field(
        None, description="copy records that cannot be decoded here (skipped either way)")
    commit_interval: Duration = Field(1.0, description="how often delivered offsets commit")
    max_poll_records: int = Field(500, gt=0, description="records per fetch, all partitions")
    max_buffered_records: int = Field(
        1000, gt=0, description="records buffered per partition before fetching pauses")
    max_partition_fetch_bytes: int = Field(1_048_576, gt=0)
    session_timeout: Duration = 10.0
    heartbeat_interval: Duration = 3.0
    max_poll_interval: Duration = 300.0
    drain_timeout: Duration = Field(
        10.0, description="how long a revoked or stopping partition may finish its record")
    stall_timeout: Duration = Field(
        5.0, gt=0, description="replace the consumer when it has stayed without a group "
        "coordinator, or without fetch responses for a partition it reads, this long while "
        "a broker answers")
    backoff: ConsumerBackoff = ConsumerBackoff()

    @model_validator(mode="after")
    def _check_overlap(self) -> KafkaReceiverConfig:
        seen: dict[str, str] = {}
        for signal in Signal:
            st: SignalTopics = getattr(self, signal.value)
            if st.topic_pattern is None:
                for t in st.topics or [DEFAULT_TOPICS[signal]]:
                    if t in seen and seen[t] != signal.value:
                        raise ValueError(f"topic {t!r} is configured for both {seen[t]} and "
                                         f"{signal.value}")
                    seen[t] = signal.value
        return self
