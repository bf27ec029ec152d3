"""The component contract: signals, ids, factories, consumers, the host."""

from __future__ import annotations

import abc
import builtins
import enum
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic

from pydantic import BaseModel, ConfigDict
from typing_extensions import TypeVar

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


@dataclass(frozen=True, kw_only=True)
class CreateSettings:
    """What every factory gets besides its config; each kind has its own subclass.

    Helpers that need only the id, logger and telemetry (receiver counters, the
    authenticator, the exporter base) take this base type.
    """

    kind: ClassVar[Kind]
    id: ComponentID
    logger: logging.Logger
    telemetry: Telemetry


@dataclass(frozen=True, kw_only=True)
class ReceiverCreateSettings(CreateSettings):
    """A receiver's settings: where each signal it produces goes."""

    kind: ClassVar[Kind] = Kind.RECEIVER
    consumers: Mapping[Signal, Consumer]


@dataclass(frozen=True, kw_only=True)
class ProcessorCreateSettings(CreateSettings):
    """A processor exists once per pipeline: its signal, that pipeline and what follows."""

    kind: ClassVar[Kind] = Kind.PROCESSOR
    signal: Signal
    pipeline_id: str
    next_consumer: Consumer


@dataclass(frozen=True, kw_only=True)
class ExporterCreateSettings(CreateSettings):
    """An exporter's settings (its queue and retry config are in its config model)."""

    kind: ClassVar[Kind] = Kind.EXPORTER


@dataclass(frozen=True, kw_only=True)
class ConnectorCreateSettings(CreateSettings):
    """A connector's settings: where each signal it produces goes (the pipelines it feeds)."""

    kind: ClassVar[Kind] = Kind.CONNECTOR
    consumers: Mapping[Signal, Consumer]


@dataclass(frozen=True, kw_only=True)
class ExtensionCreateSettings(CreateSettings):
    kind: ClassVar[Kind] = Kind.EXTENSION


def never(config: Any) -> bool:
    """The default `Factory.runs_once`: the component may run in every worker process."""
    return False


# A bare `Factory` (a registry holds every kind) is `Factory[Any, Any]`.
SettingsT = TypeVar("SettingsT", bound=CreateSettings, default=Any)
ConfigT = TypeVar("ConfigT", bound=ComponentConfig, default=Any)


@dataclass(frozen=True)
class Factory(Generic[SettingsT, ConfigT]):
    """Registers a component type. Connectors list (input, output) signal pairs.

    `create` gets the settings of the factory's kind (`ReceiverCreateSettings` for a
    receiver, ...) and an instance of `config_model`.

    With `service.workers` > 1 (`pipeline.service.workers.plan`): `runs_once(config)`
    is true for a component that must exist in one process only (it owns a file, a
    port nobody may share, state that must see every item, or it polls a source
    that every process would poll again); it then runs in the primary process, and
    the data that must reach it crosses a link from the workers. `merges_per_worker`
    marks an aggregating connector that runs in every process with delta
    temporality, its outputs merged in the primary.
    """

    type: str
    kind: Kind
    config_model: builtins.type[ConfigT]
    create: Callable[[SettingsT, ConfigT], Component]
    signals: frozenset[Signal] = frozenset()
    connector_pairs: frozenset[tuple[Signal, Signal]] = frozenset()
    description: str = ""
    aliases: tuple[str, ...] = ()
    runs_once: Callable[[ConfigT], bool] = never
    merges_per_worker: bool = False

    def supports(self, signal: Signal) -> bool:
        return signal in self.signals
