"""The component contract, checked for every registered component.

One parametrised test over `default_registry().factories()`: build the component from
its config model's defaults, or from its entry in `TEST_CONFIGS` (keyed by (kind,
type)) where defaults are not enough or would reach outside the test (fixed ports,
remote hosts); start it on a host with no components or pipelines; give it one small
batch per signal it takes (traces, logs, metrics as OTLP requests); then
`begin_shutdown()` and `shutdown()` as the service does, each step within `BOUND`
seconds. Per kind:

- processor: one instance per supported signal (the service builds one per
  pipeline), in front of a recording next consumer that must get every item;
- exporter: consumes each supported signal; exporters that talk to a backend point
  at real local servers (an in-process `otlp` receiver for `otlp`/`otlphttp`, a small
  aiohttp server answering like Loki, Elasticsearch, Alertmanager and Prometheus
  remote write) and, where it is checkable, the data must have arrived;
- receiver: recording consumers for its signals; its entry feeds it (a request to
  its free port, a local file or HTTP target to poll) and every signal must arrive;
- connector: recording consumers per output signal, fed each input signal of its
  `connector_pairs`;
- extension: start and shut down.

A component that cannot be built from defaults and has no entry fails here (add
one). Components that need a real service (Kafka, PostgreSQL) are listed in
`SERVICE_BACKED` and run the same contract in
tests/integration/test_contract_services.py; every factory is in exactly one list.

Also: every non-underscore module under the built-in kind packages defines its
factory (`pipeline.registry` raises `MissingFactoryError` otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import grpc
import pytest
import pytest_asyncio
from aiohttp import web
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from pydantic import ValidationError

from pipeline import registry
from pipeline.component import (
    Component,
    ComponentConfig,
    ComponentID,
    Consumer,
    CreateSettings,
    Factory,
    Host,
    Kind,
    PipelineInfo,
    Signal,
)
from pipeline.pdata.batch import Batch
from pipeline.registry import (
    BUILTIN_PACKAGES,
    MissingFactoryError,
    builtin_modules,
    builtin_types,
    default_registry,
    module_factories,
)
from tests.builders import logs_request, metrics_request, traces_request
from tests.support import (
    connector_settings,
    exporter_settings,
    extension_settings,
    free_port,
    processor_settings,
    receiver_settings,
)

T = TypeVar("T")
Key = tuple[Kind, str]

BOUND = 10.0  # seconds for each of start, consume, delivery and shutdown

# Components whose contract needs a real service we run in CI; they run in
# tests/integration/test_contract_services.py (which must cover exactly these).
SERVICE_BACKED: frozenset[Key] = frozenset({
    (Kind.RECEIVER, "kafka"),
    (Kind.RECEIVER, "replication_lag"),
    (Kind.EXPORTER, "kafka"),
})


def key_of(factory: Factory) -> Key:
    return (factory.kind, factory.type)


def case_id(factory: Factory) -> str:
    return f"{factory.kind.value}-{factory.type}"


FACTORIES = default_registry().factories()
UNIT_FACTORIES = [f for f in FACTORIES if key_of(f) not in SERVICE_BACKED]


# --- the contract ---------------------------------------------------------------------


class NopHost(Host):
    """A started service with no components and no pipelines."""

    def components(self) -> Mapping[tuple[Kind, ComponentID], Component]:
        return {}

    def pipelines(self) -> Mapping[str, PipelineInfo]:
        return {}

    def started(self) -> bool:
        return True


class Recorder(Consumer):
    """Keeps every batch it gets; `wait(n)` returns once it holds at least n items."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self._changed = asyncio.Event()

    async def consume(self, batch: Batch) -> None:
        self.batches.append(batch)
        self._changed.set()

    @property
    def items(self) -> int:
        return sum(b.items for b in self.batches)

    async def wait(self, items: int) -> None:
        while self.items < items:
            self._changed.clear()
            await self._changed.wait()


@dataclass
class Outcome:
    """What a contract run fed the component and what the component emitted."""

    fed: dict[Signal, int] = field(default_factory=dict)  # items consumed, per signal
    out: dict[Signal, Recorder] = field(default_factory=dict)  # per output signal


Hook = Callable[[Outcome], Awaitable[None]]


@dataclass
class Spec:
    """A component's test config, and how to feed it and check what it did.

    `during` runs once the component has started and consumed its batches (a
    receiver's entry sends its data here); `after` runs after `shutdown()`.
    """

    config: dict[str, Any]
    during: Hook | None = None
    after: Hook | None = None
    deliver_within: float = BOUND  # receivers: time for every signal to arrive


# One small OTLP request per signal: 2 spans, 2 log records, 3 points (gauge, sum,
# histogram).
OTLP_REQUESTS: dict[Signal, Callable[[], Any]] = {
    Signal.TRACES: lambda: traces_request(2),
    Signal.LOGS: lambda: logs_request(2),
    Signal.METRICS: lambda: metrics_request([1, 1, 1]),
}


def request_bytes(signal: Signal) -> bytes:
    data: bytes = OTLP_REQUESTS[signal]().SerializeToString()
    return data


def make_batch(signal: Signal) -> Batch:
    return Batch(signal, raw=request_bytes(signal))


async def bounded(step: Awaitable[T], what: str, seconds: float = BOUND) -> T:
    try:
        async with asyncio.timeout(seconds):
            return await step
    except TimeoutError:
        pytest.fail(f"{what} did not complete within {seconds:g} s", pytrace=False)


def build_config(factory: Factory, spec: Spec | None) -> ComponentConfig:
    model: type[ComponentConfig] = factory.config_model
    if spec is not None:
        return model.model_validate(spec.config)
    try:
        return model.model_validate({})
    except ValidationError as exc:
        pytest.fail(f"{factory.kind.value} {factory.type!r} cannot be built from its config "
                    f"defaults and TEST_CONFIGS has no entry for it: add one.\n{exc}",
                    pytrace=False)


def settings_for(factory: Factory, consumers: Mapping[Signal, Consumer]) -> CreateSettings:
    """The settings of the factory's kind, as the service builds them (not processors)."""
    cid = f"{factory.type}/contract"
    match factory.kind:
        case Kind.RECEIVER:
            return receiver_settings(cid, consumers=consumers)
        case Kind.CONNECTOR:
            return connector_settings(cid, consumers=consumers)
        case Kind.EXPORTER:
            return exporter_settings(cid)
        case Kind.EXTENSION:
            return extension_settings(cid)
    raise AssertionError(f"no settings for a {factory.kind.value} here")


def input_signals(factory: Factory) -> list[Signal]:
    if factory.kind is Kind.CONNECTOR:
        return sorted({i for i, _ in factory.connector_pairs})
    if factory.kind in (Kind.EXPORTER, Kind.PROCESSOR):
        return sorted(factory.signals)
    return []


def output_signals(factory: Factory) -> list[Signal]:
    if factory.kind is Kind.CONNECTOR:
        return sorted({o for _, o in factory.connector_pairs})
    if factory.kind is Kind.RECEIVER:
        return sorted(factory.signals)
    return []


async def stop(component: Component, name: str) -> None:
    """What the service does: `begin_shutdown()` on everything, then `shutdown()`."""
    component.begin_shutdown()
    await bounded(component.shutdown(), f"{name}: shutdown()")


async def run_contract(factory: Factory, spec: Spec | None) -> None:
    """Build, start, feed, shut down; see the module docstring."""
    config = build_config(factory, spec)
    if factory.kind is Kind.PROCESSOR:
        for signal in input_signals(factory):
            await _run_processor(factory, config, signal)
        return
    name = f"{factory.kind.value} {factory.type}"
    outcome = Outcome(out={s: Recorder() for s in output_signals(factory)})
    consumers: dict[Signal, Consumer] = dict(outcome.out)
    component = factory.create(settings_for(factory, consumers=consumers), config)
    await bounded(component.start(NopHost()), f"{name}: start()")
    try:
        await _exercise(factory, component, spec, outcome)
    except BaseException:
        with contextlib.suppress(Exception, pytest.fail.Exception):  # keep the first error
            await stop(component, name)
        raise
    await stop(component, name)
    if spec is not None and spec.after is not None:
        await spec.after(outcome)


async def _exercise(factory: Factory, component: Component, spec: Spec | None,
                    outcome: Outcome) -> None:
    name = f"{factory.kind.value} {factory.type}"
    inputs = input_signals(factory)
    if inputs:
        assert isinstance(component, Consumer), f"{name} takes data but is no Consumer"
        for signal in inputs:
            batch = make_batch(signal)
            await bounded(component.consume(batch), f"{name}: consume({signal.value})")
            outcome.fed[signal] = batch.items
    if spec is not None and spec.during is not None:
        await spec.during(outcome)
    if factory.kind is Kind.RECEIVER:
        seconds = spec.deliver_within if spec is not None else BOUND
        for signal, recorder in outcome.out.items():
            await bounded(recorder.wait(1), f"{name}: delivering {signal.value} (does its "
                          "TEST_CONFIGS entry feed it?)", seconds)


async def _run_processor(factory: Factory, config: ComponentConfig, signal: Signal) -> None:
    name = f"processor {factory.type} ({signal.value})"
    nxt = Recorder()
    processor = factory.create(processor_settings(f"{factory.type}/contract", next_consumer=nxt,
                                                  signal=signal), config)
    assert isinstance(processor, Consumer), f"{name} is no Consumer"
    await bounded(processor.start(NopHost()), f"{name}: start()")
    batch = make_batch(signal)
    fed = batch.items
    try:
        await bounded(processor.consume(batch), f"{name}: consume()")
    except BaseException:
        with contextlib.suppress(Exception, pytest.fail.Exception):  # keep the first error
            await stop(processor, name)
        raise
    await stop(processor, name)
    assert nxt.items == fed, f"{name}: the next consumer got {nxt.items} of {fed} items"


# --- local servers the test configs point at -------------------------------------------


class OTLPTarget:
    """An in-process otelpipe `otlp` receiver (gRPC and HTTP on free ports)."""

    def __init__(self) -> None:
        self.grpc = f"127.0.0.1:{free_port()}"
        self.http = f"127.0.0.1:{free_port()}"
        self.out = {s: Recorder() for s in Signal}
        factory = default_registry().get(Kind.RECEIVER, "otlp")
        assert factory is not None
        config = factory.config_model.model_validate(
            {"protocols": {"grpc": {"endpoint": self.grpc}, "http": {"endpoint": self.http}}})
        consumers: dict[Signal, Consumer] = dict(self.out)
        self.receiver = factory.create(settings_for(factory, consumers=consumers), config)

    async def received(self, fed: Mapping[Signal, int]) -> None:
        """Every item fed to the exporter arrived, per signal."""
        for signal, items in fed.items():
            await bounded(self.out[signal].wait(items), f"otlp target: {signal.value} items")
            assert self.out[signal].items == items, signal


class Backend:
    """A small aiohttp server answering like the backends' APIs; keeps every request."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[tuple[str, str, bytes]] = []  # method, path, body
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def close(self) -> None:
        await self._runner.cleanup()

    def bodies(self, path: str) -> list[bytes]:
        return [body for method, p, body in self.requests if method == "POST" and p == path]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append((request.method, request.path, body))
        if request.path.endswith("/_bulk"):  # one result per document (action + source lines)
            docs = len([line for line in body.splitlines() if line.strip()]) // 2
            return web.json_response({"took": 1, "errors": False,
                                      "items": [{"index": {"status": 201}}] * docs})
        if request.path in ("/loki/api/v1/push", "/api/v1/write"):
            return web.Response(status=204)
        if request.path == "/metrics":  # a prometheus receiver's scrape target
            return web.Response(text="# TYPE contract_up gauge\ncontract_up 1\n",
                                content_type="text/plain")
        return web.Response(text="ok")  # alertmanager /api/v2/alerts, httpcheck targets


class Env:
    """Local servers for one test, started on first use and stopped at the end."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self._target: OTLPTarget | None = None
        self._backend: Backend | None = None

    async def otlp_target(self) -> OTLPTarget:
        if self._target is None:
            target = OTLPTarget()
            await bounded(target.receiver.start(NopHost()), "otlp target: start()")
            self._target = target
        return self._target

    async def backend(self) -> Backend:
        if self._backend is None:
            backend = Backend()
            await backend.start()
            self._backend = backend
        return self._backend

    async def aclose(self) -> None:
        if self._target is not None:
            await stop(self._target.receiver, "otlp target")
        if self._backend is not None:
            await self._backend.close()


@pytest_asyncio.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    e = Env(tmp_path)
    try:
        yield e
    finally:
        await e.aclose()


# --- test configs: (kind, type) -> Spec -------------------------------------------------

SpecBuilder = Callable[[Env], Coroutine[Any, Any, Spec]]


def static(config: dict[str, Any]) -> SpecBuilder:
    async def build(env: Env) -> Spec:
        return Spec(config)
    return build


def http_endpoint(config: Mapping[str, Any]) -> str:
    return f"http://{config['endpoint']}"


async def get_ok(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        text = await resp.text()
        assert resp.status == 200, (url, resp.status, text)
        return text


async def post(url: str, body: bytes, content_type: str) -> None:
    async with aiohttp.ClientSession() as session, \
            session.post(url, data=body, headers={"Content-Type": content_type}) as resp:
        assert resp.status in (200, 202, 204), (url, resp.status, await resp.text())


OTLP_STUBS: dict[Signal, Any] = {
    Signal.TRACES: trace_service_pb2_grpc.TraceServiceStub,
    Signal.LOGS: logs_service_pb2_grpc.LogsServiceStub,
    Signal.METRICS: metrics_service_pb2_grpc.MetricsServiceStub,
}


async def _otlp_receiver(env: Env) -> Spec:
    grpc_endpoint, http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"

    async def during(o: Outcome) -> None:  # each signal once over gRPC, once over HTTP
        async with grpc.aio.insecure_channel(grpc_endpoint) as channel:
            for signal, stub in OTLP_STUBS.items():
                await stub(channel).Export(OTLP_REQUESTS[signal](), timeout=BOUND)
        for signal in Signal:
            await post(f"http://{http}/v1/{signal.value}", request_bytes(signal),
                       "application/x-protobuf")

    async def after(o: Outcome) -> None:
        for signal in Signal:
            assert o.out[signal].items == 2 * make_batch(signal).items, signal

    return Spec({"protocols": {"grpc": {"endpoint": grpc_endpoint},
                               "http": {"endpoint": http}}}, during=during, after=after)


async def _jsonlogs_receiver(env: Env) -> Spec:
    config = {"endpoint": f"127.0.0.1:{free_port()}"}

    async def during(o: Outcome) -> None:
        lines = b'{"level":"info","message":"one"}\n{"level":"warn","msg":"two"}\n'
        await post(http_endpoint(config) + "/logs", lines, "application/x-ndjson")

    async def after(o: Outcome) -> None:
        assert o.out[Signal.LOGS].items == 2

    return Spec(config, during=during, after=after)


async def _filelog_receiver(env: Env) -> Spec:
    (env.tmp / "app.log").write_text("first line\nsecond line\n")
    return Spec({"include": [str(env.tmp / "*.log")], "start_at": "beginning",
                 "poll_interval": "20ms", "storage_dir": str(env.tmp)})


async def _httpcheck_receiver(env: Env) -> Spec:
    backend = await env.backend()
    return Spec({"targets": [{"endpoint": f"{backend.url}/health"}],
                 "collection_interval": "1s"})


async def _prometheus_receiver(env: Env) -> Spec:
    backend = await env.backend()  # serves a small exposition at /metrics
    return Spec({"config": {"scrape_configs": [{
        "job_name": "contract", "scrape_interval": "1s", "scrape_timeout": "1s",
        "static_configs": [{"targets": [backend.url.removeprefix("http://")]}]}]}})


async def _otlp_exporter(env: Env) -> Spec:
    target = await env.otlp_target()

    async def after(o: Outcome) -> None:
        await target.received(o.fed)

    return Spec({"endpoint": target.grpc, "tls": {"insecure": True}}, after=after)


async def _otlphttp_exporter(env: Env) -> Spec:
    target = await env.otlp_target()

    async def after(o: Outcome) -> None:
        await target.received(o.fed)

    return Spec({"endpoint": f"http://{target.http}"}, after=after)


async def _loki_exporter(env: Env) -> Spec:
    backend = await env.backend()

    async def after(o: Outcome) -> None:
        assert backend.bodies("/loki/api/v1/push"), backend.requests

    return Spec({"endpoint": backend.url}, after=after)


async def _elasticsearch_exporter(env: Env) -> Spec:
    backend = await env.backend()

    async def after(o: Outcome) -> None:
        docs = sum(len([x for x in body.splitlines() if x.strip()]) // 2
                   for body in backend.bodies("/_bulk"))
        assert docs == o.fed[Signal.LOGS], backend.requests

    return Spec({"endpoint": backend.url}, after=after)


async def _alertmanager_exporter(env: Env) -> Spec:
    # The contract's log records are not alert events, which the exporter ignores:
    # nothing to check at the server (tests/unit/exporters/test_alertmanager.py does).
    return Spec({"endpoint": (await env.backend()).url})


async def _prometheusremotewrite_exporter(env: Env) -> Spec:
    backend = await env.backend()

    async def after(o: Outcome) -> None:
        assert backend.bodies("/api/v1/write"), backend.requests

    return Spec({"endpoint": f"{backend.url}/api/v1/write"}, after=after)


async def _prometheus_exporter(env: Env) -> Spec:
    config = {"endpoint": f"127.0.0.1:{free_port()}"}

    async def during(o: Outcome) -> None:
        assert "metric_0" in await get_ok(http_endpoint(config) + "/metrics")

    return Spec(config, during=during)


async def _file_exporter(env: Env) -> Spec:
    path = env.tmp / "out" / "data.jsonl"

    async def after(o: Outcome) -> None:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        assert len(lines) == len(o.fed), lines

    return Spec({"path": str(path)}, after=after)


async def _health_extension(env: Env) -> Spec:
    config = {"endpoint": f"127.0.0.1:{free_port()}"}

    async def during(o: Outcome) -> None:
        await get_ok(http_endpoint(config) + "/health")

    return Spec(config, during=during)


async def _forward_connector(env: Env) -> Spec:
    async def after(o: Outcome) -> None:
        for signal, items in o.fed.items():
            assert o.out[signal].items == items, signal

    return Spec({}, after=after)


TEST_CONFIGS: dict[Key, SpecBuilder] = {
    (Kind.RECEIVER, "otlp"): _otlp_receiver,
    (Kind.RECEIVER, "jsonlogs"): _jsonlogs_receiver,
    (Kind.RECEIVER, "filelog"): _filelog_receiver,
    (Kind.RECEIVER, "httpcheck"): _httpcheck_receiver,
    (Kind.RECEIVER, "prometheus"): _prometheus_receiver,
    (Kind.PROCESSOR, "attributes"): static(
        {"actions": [{"key": "contract", "value": "yes", "action": "upsert"}]}),
    (Kind.PROCESSOR, "logstruct"): static({"auto": True}),
    (Kind.PROCESSOR, "resource"): static(
        {"attributes": [{"key": "contract", "value": "yes", "action": "upsert"}]}),
    (Kind.PROCESSOR, "resourcedetection"): static(
        {"detectors": ["env", "process"], "timeout": "2s"}),
    (Kind.PROCESSOR, "memory_limiter"): static({"limit_mib": 65536, "check_interval": "100ms"}),
    # sampling_percentage is required: 100 keeps every item; fail_closed off keeps the
    # test's log records, which have no trace id (no randomness)
    (Kind.PROCESSOR, "probabilistic_sampler"): static(
        {"sampling_percentage": 100, "fail_closed": False}),
    # shutdown() decides what waits (storage memory): every span reaches the next consumer
    (Kind.PROCESSOR, "tail_sampling"): static(
        {"decision_wait": "1h", "policies": [{"name": "all", "type": "always_sample"}]}),
    (Kind.EXPORTER, "otlp"): _otlp_exporter,
    (Kind.EXPORTER, "otlphttp"): _otlphttp_exporter,
    (Kind.EXPORTER, "loki"): _loki_exporter,
    (Kind.EXPORTER, "elasticsearch"): _elasticsearch_exporter,
    (Kind.EXPORTER, "alertmanager"): _alertmanager_exporter,
    (Kind.EXPORTER, "prometheusremotewrite"): _prometheusremotewrite_exporter,
    (Kind.EXPORTER, "prometheus"): _prometheus_exporter,
    (Kind.EXPORTER, "file"): _file_exporter,
    (Kind.EXTENSION, "health"): _health_extension,
    (Kind.CONNECTOR, "forward"): _forward_connector,
    (Kind.CONNECTOR, "logmetrics"): static(
        {"metrics": [{"name": "contract.records", "type": "counter"}]}),
    (Kind.CONNECTOR, "slo"): static({"slos": [
        {"name": "api-availability", "service": "api", "objective": 99.9, "window": "30d",
         "sli": {"type": "availability", "match": {"service.name": "api"}}}]}),
}


# --- tests --------------------------------------------------------------------------


@pytest.mark.parametrize("factory", UNIT_FACTORIES, ids=case_id)
async def test_component_contract(factory: Factory, env: Env) -> None:
    builder = TEST_CONFIGS.get(key_of(factory))
    spec = await builder(env) if builder is not None else None
    await run_contract(factory, spec)


def test_every_factory_is_covered_exactly_once() -> None:
    from tests.integration.test_contract_services import SERVICE_CONFIGS

    registered = [key_of(f) for f in FACTORIES]
    unit = {key_of(f) for f in UNIT_FACTORIES}
    service = set(SERVICE_CONFIGS)
    assert service == SERVICE_BACKED
    assert [k for k in registered if (k in unit) == (k in service)] == []
    assert set(registered) == unit | service
    assert set(TEST_CONFIGS) - unit == set(), "test configs of components not run here"


@pytest.mark.parametrize("module", builtin_modules())
def test_builtin_module_defines_its_factory(module: str) -> None:
    package, _, type_ = module.rpartition(".")
    kind = next(k for k, p in BUILTIN_PACKAGES.items() if p == package)
    factories = module_factories(module)
    assert [f for f in factories if f.kind is not kind] == []
    assert type_ in {f.type for f in factories}  # the registry finds a type by module name


GOOD_MODULE = """
from pipeline.component import ComponentConfig, Factory, Kind, Signal

factory = Factory("good", Kind.RECEIVER, ComponentConfig, lambda settings, config: None,
                  signals=frozenset({Signal.LOGS}))
"""
MISSPELT_MODULE = GOOD_MODULE.replace('"good"', '"misspelt"').replace("factory =", "factroy =")


def test_module_without_factory_is_an_error(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    package = f"contract_components_{uuid.uuid4().hex[:8]}"
    root = tmp_path / package
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "good.py").write_text(GOOD_MODULE)
    (root / "misspelt.py").write_text(MISSPELT_MODULE)
    (root / "_shared.py").write_text("HELPER = 1\n")  # underscore: not a component
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    monkeypatch.setattr(registry, "BUILTIN_PACKAGES", {Kind.RECEIVER: package})
    default_registry.cache_clear()
    try:
        assert builtin_types() == {(Kind.RECEIVER, "good"): f"{package}.good",
                                   (Kind.RECEIVER, "misspelt"): f"{package}.misspelt"}
        reg = default_registry()
        good = reg.get(Kind.RECEIVER, "good")
        assert good is not None
        assert good.type == "good"
        assert f"{package}.misspelt" not in sys.modules  # loaded only when asked for
        expected = rf"{package}\.misspelt defines no `factory`"
        with pytest.raises(MissingFactoryError, match=expected):
            reg.get(Kind.RECEIVER, "misspelt")
        with pytest.raises(MissingFactoryError, match=expected):
            reg.factories()
        with pytest.raises(MissingFactoryError, match=expected):
            module_factories(f"{package}.misspelt")
    finally:
        default_registry.cache_clear()
        for name in [m for m in sys.modules if m.split(".")[0] == package]:
            del sys.modules[name]

