from __future__ import annotations

import asyncio
from typing import Any

import pytest
import yaml

from pipeline.component import (
    Component,
    ComponentConfig,
    ComponentID,
    Consumer,
    CreateSettings,
    Factory,
    Host,
    Kind,
    ProcessorCreateSettings,
    ReceiverCreateSettings,
    Signal,
)
from pipeline.config.model import validate_config
from pipeline.connectors.forward import factory as forward_factory
from pipeline.pdata.batch import Batch
from pipeline.processors.batch import factory as batch_factory
from pipeline.registry import Registry
from pipeline.service import Service
from pipeline.service.fanout import FanOut
from tests.builders import span_names, traces

EVENTS: list[str] = []


class Cfg(ComponentConfig):
    fail_start: bool = False
    rename: str = ""


class Recorded(Component):
    def __init__(self, settings: CreateSettings, config: Cfg):
        self.name = f"{settings.kind.value}:{settings.id}"
        if isinstance(settings, ProcessorCreateSettings):
            self.name += f"@{settings.pipeline_id}"
        self.config = config

    async def start(self, host: Host) -> None:
        if self.config.fail_start:
            EVENTS.append(f"fail {self.name}")
            raise RuntimeError(f"{self.name} cannot start")
        EVENTS.append(f"start {self.name}")

    async def shutdown(self) -> None:
        EVENTS.append(f"stop {self.name}")


class Receiver(Recorded):
    def __init__(self, settings: ReceiverCreateSettings, config: Cfg):
        super().__init__(settings, config)
        self.consumers = settings.consumers


class Processor(Recorded, Consumer):
    """Renames every span (if `rename` is set) and passes the batch on."""

    def __init__(self, settings: ProcessorCreateSettings, config: Cfg):
        super().__init__(settings, config)
        self.next = settings.next_consumer

    async def consume(self, batch: Batch) -> None:
        if self.config.rename:
            for rs in batch.mutable().resource_spans:
                for ss in rs.scope_spans:
                    for sp in ss.spans:
                        sp.name = self.config.rename
        await self.next.consume(batch)


class Exporter(Processor):
    def __init__(self, settings: CreateSettings, config: Cfg):
        Recorded.__init__(self, settings, config)
        self.batches: list[Batch] = []

    async def consume(self, batch: Batch) -> None:
        if self.config.rename:
            batch.mutable().resource_spans[0].scope_spans[0].spans[0].name = self.config.rename
        EVENTS.append(f"deliver {self.name} {batch.items}")
        self.batches.append(batch)


def _factory(type_: str, kind: Kind, cls: type[Recorded],
             signals: frozenset[Signal] = frozenset(Signal)) -> Factory:
    def create(settings: Any, config: Cfg) -> Component:
        return cls(settings, config)
    return Factory(type=type_, kind=kind, config_model=Cfg, create=create, signals=signals)


REGISTRY = Registry([
    _factory("rx", Kind.RECEIVER, Receiver),
    _factory("proc", Kind.PROCESSOR, Processor),
    _factory("tx", Kind.EXPORTER, Exporter),
    _factory("ext", Kind.EXTENSION, Recorded),
    forward_factory,
    batch_factory,
])


@pytest.fixture(autouse=True)
def _clear_events() -> None:
    EVENTS.clear()


def service(text: str) -> Service:
    return Service(validate_config(yaml.safe_load(text), REGISTRY))


def comp(svc: Service, kind: Kind, cid: str) -> Any:
    return svc.components()[(kind, ComponentID.parse(cid))]


def receiver_consumer(svc: Service, cid: str, signal: Signal = Signal.TRACES) -> Consumer:
    rx = comp(svc, Kind.RECEIVER, cid)
    assert isinstance(rx, Receiver)
    return rx.consumers[signal]


async def test_fan_out_gives_each_exporter_its_own_copy() -> None:
    svc = service("""
receivers: {rx: {}}
exporters: {tx/a: {rename: changed-by-a}, tx/b: {}}
service: {pipelines: {traces: {receivers: [rx], exporters: [tx/a, tx/b]}}}
""")
    await svc.start()
    consumer = receiver_consumer(svc, "rx")
    original = traces(2)
    await consumer.consume(original)
    a = comp(svc, Kind.EXPORTER, "tx/a").batches
    b = comp(svc, Kind.EXPORTER, "tx/b").batches
    assert span_names(a[0]) == ["changed-by-a", "span-1"]
    assert span_names(b[0]) == ["span-0", "span-1"]
    assert span_names(original) == ["span-0", "span-1"]
    assert a[0] is not b[0]
    await svc.shutdown()


async def test_receiver_shared_by_two_pipelines() -> None:
    svc = service("""
receivers: {rx: {}}
processors: {proc: {rename: renamed}}
exporters: {tx/a: {}, tx/b: {}, tx/l: {}}
service:
  pipelines:
    traces/a: {receivers: [rx], processors: [proc], exporters: [tx/a]}
    traces/b: {receivers: [rx], exporters: [tx/b]}
    logs: {receivers: [rx], exporters: [tx/l]}
""")
    await svc.start()
    await receiver_consumer(svc, "rx").consume(traces(3))
    assert [span_names(x) for x in comp(svc, Kind.EXPORTER, "tx/a").batches] == [
        ["renamed"] * 3]
    assert [span_names(x) for x in comp(svc, Kind.EXPORTER, "tx/b").batches] == [
        ["span-0", "span-1", "span-2"]]
    assert comp(svc, Kind.EXPORTER, "tx/l").batches == []
    assert set(comp(svc, Kind.RECEIVER, "rx").consumers) == {Signal.TRACES, Signal.LOGS}
    await svc.shutdown()


async def test_connector_feeds_another_pipeline() -> None:
    svc = service("""
receivers: {rx: {}}
processors: {proc/in: {rename: seen-by-in}, proc/out: {}}
exporters: {tx/in: {}, tx/out: {}}
connectors: {forward: {}}
service:
  pipelines:
    traces/out: {receivers: [forward], processors: [proc/out], exporters: [tx/out]}
    traces/in: {receivers: [rx], processors: [proc/in], exporters: [tx/in, forward]}
""")
    await svc.start()
    await receiver_consumer(svc, "rx").consume(traces(2))
    assert [span_names(x) for x in comp(svc, Kind.EXPORTER, "tx/out").batches] == [
        ["seen-by-in", "seen-by-in"]]
    assert [span_names(x) for x in comp(svc, Kind.EXPORTER, "tx/in").batches] == [
        ["seen-by-in", "seen-by-in"]]
    await svc.shutdown()
    # the connector starts after the pipeline it feeds and before the one feeding it
    starts = [e for e in EVENTS if e.startswith("start")]
    assert starts.index("start processor:proc/out@traces/out") < starts.index(
        "start processor:proc/in@traces/in")


async def test_start_order_and_reverse_shutdown_order() -> None:
    svc = service("""
receivers: {rx/1: {}, rx/2: {}}
processors: {proc/first: {}, proc/second: {}}
exporters: {tx/a: {}, tx/b: {}}
extensions: {ext: {}}
service:
  extensions: [ext]
  pipelines:
    traces: {receivers: [rx/1, rx/2], processors: [proc/first, proc/second],
             exporters: [tx/a, tx/b]}
""")
    await svc.start()
    assert svc.started()
    started = list(EVENTS)
    assert started == [
        "start extension:ext",
        "start exporter:tx/a",
        "start exporter:tx/b",
        "start processor:proc/second@traces",
        "start processor:proc/first@traces",
        "start receiver:rx/1",
        "start receiver:rx/2",
    ]
    EVENTS.clear()
    assert await svc.shutdown() is True
    assert not svc.started()
    assert ["stop" + e[len("start"):] for e in reversed(started)] == EVENTS


async def test_shutdown_drains_the_batch_processor_before_exporters_stop() -> None:
    svc = service("""
receivers: {rx: {}}
processors: {batch: {send_batch_size: 1000, timeout: 1h, flush_when_idle: false}}
exporters: {tx: {}}
service: {pipelines: {traces: {receivers: [rx], processors: [batch], exporters: [tx]}}}
""")
    await svc.start()
    consumer = receiver_consumer(svc, "rx")
    pending = [asyncio.create_task(consumer.consume(traces(n))) for n in (2, 3)]
    await asyncio.sleep(0)
    assert comp(svc, Kind.EXPORTER, "tx").batches == []
    assert not any(t.done() for t in pending)
    EVENTS.clear()
    assert await svc.shutdown(drain_seconds=5) is True
    assert EVENTS == ["stop receiver:rx", "deliver exporter:tx 5", "stop exporter:tx"]
    await asyncio.wait_for(asyncio.gather(*pending), 1)


async def test_failing_start_stops_what_was_started() -> None:
    svc = service("""
receivers: {rx: {}}
processors: {proc: {fail_start: true}}
exporters: {tx: {}}
extensions: {ext: {}}
service:
  extensions: [ext]
  pipelines: {traces: {receivers: [rx], processors: [proc], exporters: [tx]}}
""")
    with pytest.raises(RuntimeError, match="processor:proc@traces cannot start"):
        await svc.start()
    assert not svc.started()
    assert EVENTS == [
        "start extension:ext",
        "start exporter:tx",
        "fail processor:proc@traces",
        "stop exporter:tx",
        "stop extension:ext",
    ]


async def test_shutdown_times_out_and_goes_on() -> None:
    class Stuck(Recorded, Consumer):
        async def consume(self, batch: Batch) -> None:
            return None

        async def shutdown(self) -> None:
            await asyncio.sleep(60)

    reg = Registry([_factory("rx", Kind.RECEIVER, Receiver),
                    _factory("stuck", Kind.EXPORTER, Stuck),
                    _factory("tx", Kind.EXPORTER, Exporter)])
    svc = Service(validate_config(yaml.safe_load("""
receivers: {rx: {}}
exporters: {stuck: {}, tx: {}}
service: {pipelines: {traces: {receivers: [rx], exporters: [stuck, tx]}}}
"""), reg))
    await svc.start()
    EVENTS.clear()
    assert await svc.shutdown(drain_seconds=0.2) is False
    assert EVENTS == ["stop receiver:rx", "stop exporter:tx"]


async def test_host_views() -> None:
    svc = service("""
receivers: {rx: {}}
processors: {proc: {}}
exporters: {tx: {}}
service: {pipelines: {traces: {receivers: [rx], processors: [proc], exporters: [tx]},
                      logs: {receivers: [rx], processors: [proc], exporters: [tx]}}}
""")
    assert sorted(str(cid) for _, cid in svc.components()) == ["rx", "tx"]
    assert sorted(e.name for e in svc.component_entries()) == [
        "exporter tx", "processor proc in logs", "processor proc in traces", "receiver rx"]
    info = svc.pipelines()["logs"]
    assert (info.signal, info.receivers, info.processors, info.exporters) == (
        Signal.LOGS, (ComponentID("rx"),), (ComponentID("proc"),), (ComponentID("tx"),))


async def test_fanout_prefers_retryable_errors() -> None:
    from pipeline.errors import PermanentError, RetryableError
    from tests.support import Sink

    a, b, c = Sink(), Sink(), Sink()
    a.refuse = PermanentError("bad")
    b.refuse = RetryableError("busy")
    with pytest.raises(RetryableError, match="busy"):
        await FanOut([a, b, c]).consume(traces(1))
    assert c.items == 1
    b.refuse = None
    with pytest.raises(PermanentError, match="bad"):
        await FanOut([a, b]).consume(traces(1))
    with pytest.raises(ValueError, match="at least two"):
        FanOut([a])


async def test_undrained_names_requests_and_items_in_flight() -> None:
    """What a second signal reports: per receiver the requests (and items) in its
    pipelines, per exporter its queue and the items inside `consume`."""
    svc = service("""
receivers: {rx: {}}
exporters: {tx: {}}
service: {pipelines: {traces: {receivers: [rx], exporters: [tx]}}}
""")
    await svc.start()
    gate = asyncio.Event()
    tx = comp(svc, Kind.EXPORTER, "tx")

    async def stuck(batch: Batch) -> None:
        await gate.wait()

    tx.consume = stuck
    sending = asyncio.create_task(receiver_consumer(svc, "rx").consume(traces(3)))
    await asyncio.sleep(0)
    assert svc.undrained() == [
        {"component": "exporter tx", "queue_size": 0, "items_in_flight": 3},
        {"component": "receiver rx", "requests_in_flight": 1, "items_in_flight": 3}]
    gate.set()
    await sending
    assert [c["items_in_flight"] for c in svc.undrained()] == [0, 0]
    await svc.shutdown()
