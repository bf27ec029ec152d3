"""The config rewrite for `service.workers` > 1: every shipped config plans into a primary
and a worker config that validate; runs-once components only in the primary; cuts,
exits and merges wired through unix-socket links (one carries data for real)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import orjson
import pytest
from pydantic import Field

from pipeline.component import (
    ComponentConfig,
    ComponentID,
    Factory,
    Kind,
    ReceiverCreateSettings,
    Signal,
    never,
)
from pipeline.config.loader import load_config
from pipeline.config.model import Config, validate_config
from pipeline.errors import ConfigError
from pipeline.receivers.otlp.receiver import OTLPReceiver
from pipeline.registry import Registry, _all_factories, default_registry
from pipeline.service.service import Service
from pipeline.service.workers.plan import SUFFIX, WorkerPlan, plan
from tests.builders import traces_request
from tests.support import REPO, aeventually

REGISTRY = default_registry()
CONFIGS = sorted(p for p in (REPO / "configs").glob("*.yaml")
                 if "openslo/" not in p.read_text())

RUNS_ONCE = {(Kind.RECEIVER, "filelog"), (Kind.RECEIVER, "httpcheck"),
             (Kind.RECEIVER, "replication_lag"), (Kind.RECEIVER, "prometheus"),
             (Kind.PROCESSOR, "tail_sampling"), (Kind.EXPORTER, "prometheus"),
             (Kind.EXPORTER, "file"), (Kind.EXPORTER, "alertmanager"),
             (Kind.CONNECTOR, "slo"), (Kind.CONNECTOR, "logpatterns")}


def planned(raw: dict[str, Any], tmp_path: Path, *, workers: int = 2,
            registry: Registry = REGISTRY) -> tuple[WorkerPlan, Config, Config]:
    """The plan and both sides validated."""
    config = validate_config(raw, registry)
    p = plan(raw, config, workers=workers, link_dir=str(tmp_path / "links"),
             registry=registry)
    return p, validate_config(p.primary, registry), validate_config(p.worker, registry)


def ids(config: Config) -> set[tuple[Kind, str]]:
    return {(kind, str(cid)) for kind, cid in config.factories}


def pipe(config: Config, pid: str) -> tuple[list[str], list[str], list[str]]:
    p = config.pipelines[pid]
    return ([str(c) for c in p.receivers], [str(c) for c in p.processors],
            [str(c) for c in p.exporters])


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_plans_for_two_workers(path: Path, tmp_path: Path) -> None:
    raw = load_config([path], env={})
    user = validate_config(raw, REGISTRY)
    p, primary, worker = planned(raw, tmp_path)
    # both sides are configs that validate without a warning the user's has not
    assert primary.warnings == user.warnings
    assert worker.warnings == []
    # the primary runs everything the user wrote, as written
    assert ids(user) <= ids(primary)
    # the workers run nothing that runs once, and no extension
    for (kind, cid), factory in worker.factories.items():
        assert kind is not Kind.EXTENSION
        assert not factory.runs_once(worker.components[kind][cid]), (kind, cid)
        if (kind, cid.type) in RUNS_ONCE:
            raise AssertionError(f"{kind.value} {cid} runs in the workers")
    assert worker.extensions == ()
    # each link: one receiver in the primary, one exporter in the workers, same socket
    listened = {c.protocols.grpc.endpoint for k, cid, c in _each(primary, Kind.RECEIVER)
                if cid.name.startswith("_link_")}
    sent = {c.endpoint for k, cid, c in _each(worker, Kind.EXPORTER)
            if cid.name.startswith("_link_")}
    assert listened == sent == {f"unix:{s}" for s in p.links}
    assert len(set(p.links)) == len(p.links)
    for s in p.links:
        assert s.startswith(str(tmp_path / "links") + "/")


def _each(config: Config, kind: Kind) -> list[tuple[Kind, ComponentID, Any]]:
    return [(kind, cid, c) for cid, c in config.components[kind].items()]


def test_the_listed_components_run_once() -> None:
    for kind, type_ in RUNS_ONCE:
        factory = REGISTRY.get(kind, type_)
        assert factory is not None, (kind, type_)
        assert factory.runs_once is not never, (kind, type_)
    logstruct = REGISTRY.get(Kind.PROCESSOR, "logstruct")
    assert logstruct is not None
    assert logstruct.runs_once(logstruct.config_model.model_validate(
        {"templates": {"enabled": True}}))
    assert not logstruct.runs_once(logstruct.config_model.model_validate({"auto": True}))
    for type_ in ("redmetrics", "logmetrics"):
        connector = REGISTRY.get(Kind.CONNECTOR, type_)
        assert connector is not None
        assert connector.merges_per_worker
    for kind, type_ in ((Kind.RECEIVER, "otlp"), (Kind.RECEIVER, "jsonlogs"),
                        (Kind.RECEIVER, "kafka"), (Kind.PROCESSOR, "batch"),
                        (Kind.EXPORTER, "otlp"), (Kind.EXPORTER, "kafka"),
                        (Kind.CONNECTOR, "forward")):
        factory = REGISTRY.get(kind, type_)
        assert factory is not None, (kind, type_)
        assert factory.runs_once is never, (kind, type_)


def test_red_metrics_merge_in_the_primary(tmp_path: Path) -> None:
    raw = load_config([REPO / "configs/red-metrics.yaml"], env={})
    p, primary, worker = planned(raw, tmp_path)
    merge = f"metrics/_merge_metrics{SUFFIX}"
    forward = f"forward/_merge_metrics{SUFFIX}"
    link = f"otlp/_link_merge_metrics{SUFFIX}"
    assert pipe(primary, "metrics") == ([forward, "replication_lag"], [], ["prometheus"])
    assert pipe(primary, merge) == (["redmetrics", "logmetrics", link],
                                    [f"deltatocumulative/_merge_metrics{SUFFIX}"], [forward])
    # the workers aggregate their share and send it to the primary's merge
    assert set(worker.pipelines) == {"traces", "logs", merge}
    assert pipe(worker, merge) == (["redmetrics", "logmetrics"], [], [link])
    assert pipe(worker, "traces") == (["otlp"], ["memory_limiter", "semconv"], ["redmetrics"])
    for side in (primary, worker):
        for name in ("redmetrics", "logmetrics"):
            c: Any = side.components[Kind.CONNECTOR][ComponentID(name)]
            assert str(c.aggregation_temporality) == "delta"
    assert (Kind.RECEIVER, "replication_lag") not in ids(worker)
    assert (Kind.EXPORTER, "prometheus") not in ids(worker)
    assert len(p.links) == 1


def test_a_delta_connector_merges_without_conversion(tmp_path: Path) -> None:
    raw = {"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:4317"}}}},
           "connectors": {"redmetrics": {"aggregation_temporality": "delta"},
                          "spanmetrics/b": {}},
           "exporters": {"prometheus": {}},
           "service": {"pipelines": {
               "traces": {"receivers": ["otlp"], "exporters": ["redmetrics", "spanmetrics/b"]},
               "metrics": {"receivers": ["redmetrics", "spanmetrics/b"],
                           "exporters": ["prometheus"]}}}}
    _, primary, worker = planned(raw, tmp_path)
    delta, cumulative = f"_merge_metrics_delta{SUFFIX}", f"_merge_metrics{SUFFIX}"
    assert pipe(primary, f"metrics/{delta}") == (
        ["redmetrics", f"otlp/_link{delta}"], [f"deltatocumulative/{delta}"],
        [f"forward/{delta}"])
    d2c: Any = primary.components[Kind.PROCESSOR][ComponentID("deltatocumulative", delta)]
    assert (d2c.emit, d2c.out_of_order) == ("delta", "accumulate")
    assert pipe(primary, f"metrics/{cumulative}")[1] == [f"deltatocumulative/{cumulative}"]
    assert pipe(primary, "metrics")[0] == [f"forward/{delta}", f"forward/{cumulative}"]
    assert set(worker.pipelines) == {"traces", f"metrics/{delta}", f"metrics/{cumulative}"}


def test_a_runs_once_processor_cuts_its_pipeline(tmp_path: Path) -> None:
    raw = load_config([REPO / "configs/tail-sampling-slo.yaml"], env={})
    _, primary, worker = planned(raw, tmp_path)
    link = f"otlp/_link_traces.sampled{SUFFIX}"
    # first processor: the workers relay what reaches it; the primary samples all
    assert pipe(worker, "traces/sampled") == (["forward/sample"], [], [link])
    assert pipe(primary, "traces/sampled") == (["forward/sample", link], ["tail_sampling"],
                                               ["otlp/jaeger"])
    assert (Kind.PROCESSOR, "tail_sampling") not in ids(worker)


def test_processors_before_the_cut_run_in_the_workers(tmp_path: Path) -> None:
    raw = load_config([REPO / "configs/logstruct.yaml"], env={})
    _, primary, worker = planned(raw, tmp_path)
    head, link = f"_head_logs{SUFFIX}", f"otlp/_link_logs{SUFFIX}"
    assert pipe(worker, "logs") == (["jsonlogs", "otlp"], ["memory_limiter"], [link])
    assert pipe(primary, f"logs/{head}") == (["jsonlogs", "otlp"], ["memory_limiter"],
                                             [f"forward/{head}"])
    # the user's pipeline id keeps the runs-once processor and what follows it
    assert pipe(primary, "logs") == ([f"forward/{head}", link], ["logstruct", "batch"],
                                     ["file/logs"])


def test_runs_once_exporters_get_the_workers_copy(tmp_path: Path) -> None:
    raw = {"receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:4318"}}}},
           "exporters": {"file": {"path": str(tmp_path / "out.jsonl")},
                         "otlphttp/disk": {"endpoint": "http://127.0.0.1:9",
                                           "sending_queue": {"storage": "disk",
                                                             "directory": str(tmp_path)}},
                         "otlphttp/mem": {"endpoint": "http://127.0.0.1:9"}},
           "connectors": {"logpatterns": {}},
           "service": {"pipelines": {
               "logs": {"receivers": ["otlp"],
                        "exporters": ["file", "otlphttp/disk", "otlphttp/mem", "logpatterns"]},
               "metrics": {"receivers": ["logpatterns"], "exporters": ["otlphttp/mem"]}}}}
    _, primary, worker = planned(raw, tmp_path)
    link = f"otlp/_link_exit_logs{SUFFIX}"
    assert pipe(worker, "logs") == (["otlp"], [], ["otlphttp/mem", link])
    assert pipe(primary, f"logs/_exit_logs{SUFFIX}") == (
        [link], [], ["file", "otlphttp/disk", "logpatterns"])
    assert pipe(primary, "logs") == pipe(validate_config(raw, REGISTRY), "logs")
    assert set(worker.pipelines) == {"logs"}  # logpatterns's output: the primary's only
    # the listener is shared
    otlp: Any = worker.components[Kind.RECEIVER][ComponentID("otlp")]
    assert otlp.protocols.http.so_reuseport


def test_nothing_shardable_leaves_the_workers_idle(tmp_path: Path) -> None:
    raw = load_config([REPO / "configs/filelog.yaml"], env={})
    p, primary, worker = planned(raw, tmp_path)
    assert p.idle
    assert p.links == ()
    assert "filelog" in p.notes[0]
    assert "service.workers: 1" in p.notes[0]
    assert ids(worker) == {(Kind.RECEIVER, f"otlp/_idle{SUFFIX}"),
                           (Kind.EXPORTER, f"nop/_idle{SUFFIX}")}
    endpoint: Any = worker.components[Kind.RECEIVER][ComponentID("otlp", f"_idle{SUFFIX}")]
    assert endpoint.protocols.grpc.endpoint == "127.0.0.1:0"  # loopback, any free port
    assert set(primary.pipelines) == {"logs"}


def _simple(exporter: str = "debug") -> dict[str, Any]:
    return {"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:4317"}}}},
            "exporters": {exporter: {}},
            "service": {"pipelines": {"traces": {"receivers": ["otlp"],
                                                 "exporters": [exporter]}}}}


def test_an_id_reserved_for_the_workers_is_refused(tmp_path: Path) -> None:
    raw = _simple("file")
    raw["exporters"]["file"] = {"path": str(tmp_path / "x.jsonl")}
    raw["receivers"][f"otlp/_link_exit_traces{SUFFIX}"] = {"protocols": {"grpc": {}}}
    raw["service"]["pipelines"]["traces"]["receivers"].append(f"otlp/_link_exit_traces{SUFFIX}")
    with pytest.raises(ConfigError) as err:
        planned(raw, tmp_path)
    assert err.value.problems == [
        f"receivers.otlp/_link_exit_traces{SUFFIX}: this id is reserved for the workers' "
        f"internal components (ids starting with _ and ending with {SUFFIX}); rename it"]


def test_a_link_directory_too_long_for_a_socket_is_refused(tmp_path: Path) -> None:
    raw = _simple("file")
    raw["exporters"]["file"] = {"path": str(tmp_path / "x.jsonl")}
    with pytest.raises(ConfigError) as err:
        planned(raw, tmp_path / ("d" * 120))
    assert len(err.value.problems) == 1
    assert "longer than 107 bytes" in err.value.problems[0]


def test_pipeline_ids_that_would_share_a_link_are_refused(tmp_path: Path) -> None:
    raw = _simple("file")
    raw["exporters"]["file"] = {"path": str(tmp_path / "x.jsonl")}
    pipelines = raw["service"]["pipelines"]
    pipelines["traces/a.b"] = pipelines["traces/a/b"] = pipelines.pop("traces")
    with pytest.raises(ConfigError) as err:
        planned(raw, tmp_path)
    assert err.value.problems == [
        "service.pipelines: traces/a.b and traces/a/b would share the workers' internal ids "
        "(a / of a pipeline id becomes . in them); rename one"]


class _ListenerConfig(ComponentConfig):
    endpoint: str = Field("127.0.0.1:9999")


def test_a_listener_that_cannot_share_its_port_is_refused(tmp_path: Path) -> None:
    listener = Factory(type="listener", kind=Kind.RECEIVER, config_model=_ListenerConfig,
                       create=_no_create, signals=frozenset({Signal.TRACES}))
    registry = Registry([*_all_factories(), listener])
    raw = _simple()
    raw["receivers"]["listener"] = {}
    raw["service"]["pipelines"]["traces"]["receivers"].append("listener")
    with pytest.raises(ConfigError) as err:
        planned(raw, tmp_path, registry=registry)
    assert err.value.problems == [
        "receivers.listener: listens on 127.0.0.1:9999 but cannot share the port with the "
        "other workers (no so_reuseport setting): run it with service.workers: 1"]


def test_a_listener_on_a_unix_socket_is_refused(tmp_path: Path) -> None:
    raw = _simple()
    raw["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] = f"unix:{tmp_path}/s"
    with pytest.raises(ConfigError) as err:
        planned(raw, tmp_path)
    assert err.value.problems == [
        f"receivers.otlp.protocols.grpc: listens on unix:{tmp_path}/s, a unix socket, which "
        "the worker processes cannot share: listen on host:port, or run it with "
        "service.workers: 1"]


def _no_create(settings: ReceiverCreateSettings, config: _ListenerConfig) -> Any:
    raise AssertionError("not created")


def test_one_process_is_not_a_plan(tmp_path: Path) -> None:
    raw = _simple()
    with pytest.raises(ValueError, match="at least 2"):
        plan(raw, validate_config(raw, REGISTRY), workers=1, link_dir=str(tmp_path))


def test_the_input_is_left_as_it_was(tmp_path: Path) -> None:
    raw = load_config([REPO / "configs/red-metrics.yaml"], env={})
    before = copy.deepcopy(raw)
    planned(raw, tmp_path)
    assert raw == before


@pytest.mark.parametrize("endpoint", ["unix:", "unix:///", "host", "host:port"])
def test_unix_endpoints_are_checked(endpoint: str) -> None:
    raw = _simple()
    raw["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] = endpoint
    with pytest.raises(ConfigError, match=r"receivers\.otlp\.protocols\.grpc\.endpoint"):
        validate_config(raw, REGISTRY)
    if endpoint == "host:port":
        return  # the exporter's check is the looser `:` in the target
    raw = _simple("otlp")
    raw["exporters"]["otlp"] = {"endpoint": endpoint}
    with pytest.raises(ConfigError, match=r"exporters\.otlp"):
        validate_config(raw, REGISTRY)


async def test_a_link_carries_the_workers_data_to_the_primary(tmp_path: Path) -> None:
    """A worker's spans reach the primary's file exporter (which the worker does not
    run) over the unix-socket link."""
    out = tmp_path / "spans.jsonl"
    raw = {"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
           "processors": {"batch": {"timeout": "10ms"}},
           "exporters": {"file": {"path": str(out)}},
           "service": {"pipelines": {"traces": {"receivers": ["otlp"],
                                                "processors": ["batch"],
                                                "exporters": ["file"]}}}}
    p, primary_config, worker_config = planned(raw, tmp_path)
    (tmp_path / "links").mkdir(mode=0o700)
    primary, worker = Service(primary_config), Service(worker_config)
    await primary.start()
    await worker.start()
    try:
        assert (Kind.EXPORTER, ComponentID("file")) not in worker.components()
        receiver = worker.components()[(Kind.RECEIVER, ComponentID("otlp"))]
        assert isinstance(receiver, OTLPReceiver)
        port = receiver.grpc_port
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            export = channel.unary_unary(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export")
            await export(traces_request(7).SerializeToString(), timeout=10)
        def written() -> list[str]:
            return out.read_text().splitlines() if out.exists() else []
        lines = await aeventually(written, what="the spans in the primary's file")
        spans = sum(len(ss["spans"]) for line in lines
                    for rs in orjson.loads(line)["resourceSpans"] for ss in rs["scopeSpans"])
        assert spans == 7
    finally:
        await worker.shutdown()
        await primary.shutdown()
    assert len(p.links) == 1


def _limits_config(limiter: dict[str, Any]) -> dict[str, Any]:
    return {"receivers": {"otlp": {"protocols": {
                "grpc": {"endpoint": "127.0.0.1:4317", "max_in_flight_bytes": 40_000_000,
                         "max_recv_msg_size_mib": 8},
                "http": {"endpoint": "127.0.0.1:4318"}}},
            "jsonlogs": {"endpoint": "127.0.0.1:8080", "max_in_flight_bytes": 9_000_000}},
            "processors": {"memory_limiter": limiter},
            "connectors": {"redmetrics": {"aggregation_cardinality_limit": 700,
                                          "series_expiry": 0},
                           "logmetrics": {"metrics": [{"name": "a"}, {"name": "b"}],
                                          "aggregation_cardinality_limit": 50}},
            "exporters": {"prometheus": {"endpoint": "127.0.0.1:0"}, "debug": {}},
            "service": {"pipelines": {
                "traces": {"receivers": ["otlp"], "processors": ["memory_limiter"],
                           "exporters": ["redmetrics"]},
                "logs": {"receivers": ["jsonlogs"], "exporters": ["logmetrics", "debug"]},
                "metrics": {"receivers": ["redmetrics", "logmetrics"],
                            "exporters": ["prometheus"]}}}}


@pytest.mark.parametrize("workers", [2, 3])
def test_per_process_limits_are_divided_by_the_processes(tmp_path: Path, workers: int) -> None:
    """memory_limiter and the listeners' in-flight budgets hold per process: each gets
    1/N, so that all processes together keep to what the user set."""
    raw = _limits_config({"limit_mib": 1000, "spike_limit_mib": 300})
    _, primary, worker = planned(raw, tmp_path, workers=workers)
    for side in (primary, worker):
        ml: Any = side.components[Kind.PROCESSOR][ComponentID("memory_limiter")]
        soft, hard = ml.limits_bytes()
        assert hard == 1000 // workers * 2**20
        assert hard - soft == 300 // workers * 2**20
        otlp: Any = side.components[Kind.RECEIVER][ComponentID("otlp")]
        assert otlp.protocols.grpc.max_in_flight_bytes == 40_000_000 // workers
        assert otlp.protocols.http.max_in_flight_bytes == 64 * 2**20 // workers
        jl: Any = side.components[Kind.RECEIVER][ComponentID("jsonlogs")]
        assert jl.max_in_flight_bytes == 9_000_000 // workers


def test_a_memory_limit_too_small_per_process_is_noted(tmp_path: Path) -> None:
    p, _, _ = planned(_limits_config({"limit_mib": 512, "spike_limit_mib": 128}), tmp_path,
                      workers=2)
    assert not [n for n in p.notes if "memory_limiter" in n]
    p, _, _ = planned(_limits_config({"limit_mib": 512, "spike_limit_mib": 128}), tmp_path,
                      workers=8)
    assert [n for n in p.notes if n.startswith("processors.memory_limiter:")]


def test_memory_limits_in_percent_are_divided_in_mib(tmp_path: Path) -> None:
    raw = _limits_config({"limit_percentage": 50, "spike_limit_percentage": 10})
    config = validate_config(copy.deepcopy(raw), REGISTRY)
    ml: Any = config.components[Kind.PROCESSOR][ComponentID("memory_limiter")]
    soft, hard = ml.limits_bytes()
    _, primary, worker = planned(raw, tmp_path, workers=3)
    for side in (primary, worker):
        got: Any = side.components[Kind.PROCESSOR][ComponentID("memory_limiter")]
        assert got.limit_percentage is None
        assert got.limit_mib == hard // 3 // 2**20
        assert got.spike_limit_mib == (hard - soft) // 3 // 2**20


def test_the_merge_never_forgets_what_a_connector_keeps_and_has_room(tmp_path: Path) -> None:
    """series_expiry 0 (never) on a merged connector: the merge keeps streams (almost)
    forever; max_streams holds every process's series up to the cardinality limits."""
    _, primary, _ = planned(_limits_config({"limit_mib": 1000}), tmp_path, workers=3)
    d2c: Any = primary.components[Kind.PROCESSOR][
        ComponentID("deltatocumulative", f"_merge_metrics{SUFFIX}")]
    assert d2c.max_stale >= 365 * 86400
    assert d2c.max_streams >= 3 * ((700 + 1) * 2 + (50 + 1) * 2)
    raw = _limits_config({"limit_mib": 1000})
    raw["connectors"]["redmetrics"].update(series_expiry="10m",
                                           aggregation_cardinality_limit=60_000)
    _, primary, _ = planned(raw, tmp_path, workers=2)
    d2c = primary.components[Kind.PROCESSOR][
        ComponentID("deltatocumulative", f"_merge_metrics{SUFFIX}")]
    assert d2c.max_stale == 600
    assert d2c.max_streams == 2 * ((60_000 + 1) * 2 + (50 + 1) * 2)


def test_the_link_takes_any_message_a_worker_accepted(tmp_path: Path) -> None:
    _, primary, _ = planned(_limits_config({"limit_mib": 1000}), tmp_path)
    link: Any = primary.components[Kind.RECEIVER][
        ComponentID("otlp", f"_link_merge_metrics{SUFFIX}")]
    assert link.protocols.grpc.max_recv_msg_size_mib * 2**20 < 2**31
    assert link.protocols.grpc.max_recv_msg_size_mib >= 2047
