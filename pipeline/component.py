"""The component contract: signals, ids, factories, consumers, the host."""

from __future__ import annotations

import abc
import builtins
import enum
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from pipeline.pdata.batch import Batch
    from pipeline.telemetry.metrics import Telemetry


class Signal(enum.StrEnum):
    TRACES = "traces"
    LOGS = "logs"
    METRICS = "metrics"


class Kind(enum.StrEnum):
    RECEIVER = "receiver"
    PROCESSOR = "processor"
    EXPORTER = "exporter"
    CONNECTOR = "connector"
    EXTENSION = "extension"

    @property
    def section(self) -> str:
        return self.value + "s"


@dataclass(frozen=True, order=True)
class ComponentID:
    """`type[/name]`, as written in the config."""

    type: str
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> ComponentID:
        type_, _, name = str(text).partition("/")
        if not type_ or (("/" in text) and not name):
            raise ValueError(f"invalid component id {text!r}: expected type[/name]")
        return cls(type_, name)

    def __str__(self) -> str:
        return f"{self.type}/{self.name}" if self.name else self.type


class ComponentConfig(BaseModel):
    """Base of every component's config model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Consumer(abc.ABC):
    """Takes a batch. Returning means the batch is safe (queued durably or delivered).

    Raises `RetryableError` to push back, `PermanentError` for bad data.
    """

    @abc.abstractmethod
    async def consume(self, batch: Batch) -> None: ...


class Component(abc.ABC):  # noqa: B024 - lifecycle hooks are optional
    """Lifecycle of every component. `shutdown` drains what is in flight."""

    async def start(self, host: Host) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    def begin_shutdown(self) -> None:
        """Called on every component as shutdown starts, before any `shutdown()`.

        A component that holds callers back (the batch processor) lets them go
        now, so that the receivers, stopped first, can finish their requests.
        """
        return None

    def health(self) -> ComponentHealth:
        """Current health; exporters report whether they can deliver."""
        return ComponentHealth()


@dataclass
class ComponentHealth:
    healthy: bool = True
    last_error: str | None = None
    queue_size: int | None = None
    queue_capacity: int | None = None


@dataclass
class ComponentEntry:
    """One component of a running service; processors exist once per pipeline."""

    kind: Kind
    id: ComponentID
    component: Component
    pipeline: str | None = None  # set for processors only

    @property
    def name(self) -> str:  # "processor batch in traces"
        suffix = f" in {self.pipeline}" if self.pipeline else ""
        return f"{self.kind.value} {self.id}{suffix}"


class Host(abc.ABC):
    """What a running component may ask of the service."""

    @abc.abstractmethod
    def components(self) -> Mapping[tuple[Kind, ComponentID], Component]:
        """Receivers, connectors, exporters and extensions by (kind, id)."""

    def component_entries(self) -> Sequence[ComponentEntry]:
        """Every component, processors included (one entry per pipeline they are in),
        in start order. By default the entries of `components()`."""
        return [ComponentEntry(kind, cid, component)
                for (kind, cid), component in self.components().items()]

    @abc.abstractmethod
    def pipelines(self) -> Mapping[str, PipelineInfo]: ...

    @abc.abstractmethod
    def started(self) -> bool: ...


@dataclass(frozen=True)
class PipelineInfo:
    id: str
    signal: Signal
    receivers: tuple[ComponentID, ...]
    processors: tuple[ComponentID, ...]
    exporters: tuple[ComponentID, ...]


@dataclass
class CreateSettings:
    """Everything a factory gets besides its config."""

    id: ComponentID
    kind: Kind
    logger: logging.Logger
    telemetry: Telemetry
    # Receivers and connectors: where each output signal goes.
    consumers: Mapping[Signal, Consumer] = field(default_factory=dict)
    # Processors: the signal of the pipeline they are in and the next consumer.
    signal: Signal | None = None
    pipeline_id: str | None = None
    next_consumer: Consumer | None = None


CreateFunc = Callable[[CreateSettings, Any], Component]


@dataclass(frozen=True)
class Factory:
    """Registers a component type. Connectors list (input, output) signal pairs."""

    type: str
    kind: Kind
    config_model: builtins.type[ComponentConfig]
    create: CreateFunc
    signals: frozenset[Signal] = frozenset()
    connector_pairs: frozenset[tuple[Signal, Signal]] = frozenset()
    description: str = ""
    aliases: tuple[str, ...] = ()

    def supports(self, signal: Signal) -> bool:
        return signal in self.signals
