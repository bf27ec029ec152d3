"""Split one config into what the primary process runs and what each worker runs.

With `service.workers: N` (N > 1) `otelpipe run` is the *primary* (the supervisor,
and worker 0) and starts N-1 *workers*. `plan` rewrites the user's config into two
raw configs, both ordinary configs that `validate_config` accepts and `Service` runs:

**The primary runs the whole config as written**, plus internal plumbing:

- every receiver, processor, exporter, connector and extension of the user's config.
  Its shardable listeners bind with SO_REUSEPORT, so the kernel spreads connections
  over the primary and the workers (it serves its share like any worker);
- what must exist once runs here only: the components whose factory says
  `runs_once(config)` (receivers that poll a source -- filelog, httpcheck,
  replication_lag, prometheus: every process would read or scrape it again;
  tail_sampling, which must see every span of a trace; logstruct with template
  mining, whose template ids are state; exporters that own a file, a port or an
  alert state -- file, prometheus, alertmanager -- and every exporter whose sending
  queue is on disk, whose directory has one owner; the slo and logpatterns
  connectors, which must see every data point or record), and every extension (the
  health endpoint is one port, and reports for all processes);
- one *link receiver* (`otlp/_link_<where>_workers`, gRPC on a unix socket in
  `link_dir`) per place where the workers' data must enter its graph:
  * a pipeline whose processors include a runs-once processor is cut before the
    first one: its processors before the cut run in every process, the rest in the
    primary behind the link. When the cut is not at the first processor, the
    primary runs the pipeline as two: `<signal>/_head_<P>_workers` (the user's
    receivers and the processors before the cut, into `forward/_head_<P>_workers`)
    and the user's pipeline id with the forward connector and the link as
    receivers, the processors from the cut on and the user's exporters (so a
    runs-once processor keeps its pipeline id);
  * a pipeline that exports to runs-once exporters or connectors (and is not cut):
    the workers send a copy to the primary's `<signal>/_exit_<P>_workers`, which
    exports to those only (the others run in every process; a copy to them from the
    primary would count twice);
- the merges of the aggregating connectors (`merges_per_worker`: redmetrics,
  logmetrics). Each process aggregates what it receives, with delta temporality
  (each delta counted once wherever it was aggregated); for each user pipeline Q
  they feed, the primary runs `metrics/_merge_<Q>_workers` (receivers: its own
  connectors and the link; processor `deltatocumulative`; exporter
  `forward/_merge_<Q>_workers`) and Q receives
  that forward connector instead of the connectors. A scrape then shows one series
  per key, whose value is the sum over the processes: the value one process would
  have shown. The processor runs with `out_of_order: accumulate` (the processes'
  deltas of one stream interleave in time; the Collector's `drop` would lose some),
  `max_stale` = the connectors' largest `series_expiry` (ten years when one of them
  is 0, never: a stream the connector keeps must not start over in the merge) and
  `max_streams` = N x the sum over the connectors of (cardinality limit + 1, the
  overflow series) x their metrics (each process may fill its limit with other
  series), or the processor's default if larger. (Connectors whose user
  temporality is delta go through `metrics/_merge_<Q>_delta_workers`, whose
  processor runs with `emit: delta`: each process's delta leaves as it came, re-timed
  as the next window of its stream (start = the end of the previous window), so that
  each stream has one writer, as the data model asks, and a delta sent again (a
  refused or timed-out link call) is dropped as a duplicate. Chosen over a
  per-process attribute (`otelpipe.worker`) on the delta path: no extra attribute
  and N times fewer series for the user's backend, the same series as one process,
  and the workers share one config, so no process index to write into it.) What
  differs from one process: the cardinality limit holds per process (up to N times
  the series before overflow), a gauge
  derived by logmetrics is the last value any process flushed, and a killed worker
  loses what it aggregated since its last flush (as one process does when killed).

**Limits that hold per process are divided by N**, in the primary and the workers,
so that all processes together keep to what the user set (a process's share of the
load is about 1/N, the kernel spreading connections): memory_limiter's `limit_mib`
and `spike_limit_mib` (the percentage forms are turned into MiB first, then
divided: an int percentage divided would round away up to 1% of memory per
process), and the `max_in_flight_bytes` budget of each listener that runs in every
process (a memory limit that leaves a process under 100 MiB below its spike limit is
reported in `WorkerPlan.notes`). The primary also carries what the workers send over
the links, so its memory_limiter may refuse before a worker's does; a refusal reaches
the client, which retries (possibly on another process). The link receivers' message cap is
gRPC's largest (2047 MiB): the link is trusted and carries what a worker accepted
already, possibly joined by its batch processor beyond any receiver's limit, which
a smaller cap would refuse on every retry.

**A worker runs the part of the graph that can be sharded**: the shardable
receivers, the pipelines they feed up to a cut, shardable exporters, and the
shardable and aggregating connectors those pipelines feed, and at each cut, exit
and merge an *internal link exporter* (`otlp/_link_<where>_workers`: OTLP/gRPC on
the link's unix socket, no sending queue and no retry, so a worker's receiver
acknowledges only after the primary delivered the data, and a refusal reaches the
client, which retries: at least once). Runs-once receivers, processors after a cut,
runs-once exporters, the merge pipelines and extensions are absent. A config with
nothing shardable gives workers an idle config (a loopback listener on port 0 into
`nop`), and says so in `WorkerPlan.notes`.

Internal ids end with `_workers` and start with `_` (`otlp/_link_traces_workers`,
`metrics/_merge_metrics.red_workers`; a `/` of a pipeline id becomes `.`); a user id
that clashes with one is refused. So is a config that cannot be planned, with the
reason (a shardable listener without an `so_reuseport` setting or on a unix socket,
a link socket path too long for a unix socket, a merging connector without
temporality).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from pipeline.component import ComponentConfig, ComponentID, Factory, Kind
from pipeline.config.model import SECTIONS, Config, PipelineConfig
from pipeline.errors import ConfigError
from pipeline.registry import Registry, default_registry

SUFFIX = "_workers"
D2C_TYPE = "deltatocumulative"
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes, the last a NUL
LINK_RECV_MSG_MIB = 2047  # gRPC's largest (int32 bytes): the link is trusted, see link()
MIN_PROCESS_MIB = 100  # about a process's idle footprint (~70 MiB VmRSS) plus headroom
NEVER_STALE = 10 * 365 * 86400.0  # max_stale when a merged connector never expires series
LINK_TIMEOUT = "30s"
NO_LIMITS = {"max_attributes_per_item": 0, "max_attribute_value_length": 0,
             "max_events_per_span": 0, "max_links_per_span": 0,
             "max_attribute_array_length": 0}
"""The link receiver's attribute limits: none. The worker's own receiver applied the
user's limits already; applying the defaults again would cut what the user allowed."""


@dataclass(frozen=True)
class WorkerPlan:
    primary: dict[str, Any]   # raw config mapping for worker 0 (the supervisor process)
    worker: dict[str, Any]    # raw config mapping for workers 1..N-1
    links: tuple[str, ...]    # unix socket paths the primary listens on (for readiness)
    notes: tuple[str, ...] = ()  # what the supervisor should log (e.g. idle workers)
    idle: bool = False        # nothing in the config can run in a worker


def plan(raw: Mapping[str, Any], config: Config, *, workers: int, link_dir: str,
         registry: Registry | None = None) -> WorkerPlan:
    """The primary's and the workers' configs for `workers` processes (see the module).

    `raw` is the loaded config (env substituted), `config` its validation. Raises
    `ConfigError` (every problem, each with its key path) if it cannot be planned.
    """
    if workers < 2:
        raise ValueError(f"a worker plan needs at least 2 processes, got {workers}")
    return _Planner(raw, config, link_dir, registry or default_registry(), workers).run()


def _name(pid: str) -> str:
    return pid.replace("/", ".")


class _Planner:
    def __init__(self, raw: Mapping[str, Any], config: Config, link_dir: str,
                 registry: Registry, workers: int = 2):
        self.raw = raw
        self.n = workers
        self.cfg = config
        self.link_dir = os.path.abspath(link_dir)
        self.registry = registry
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.links: list[str] = []
        # raw keys as written, by (kind, id)
        self.keys: dict[tuple[Kind, ComponentID], str] = {}
        for section, kind in SECTIONS.items():
            for key in raw.get(section) or {}:
                try:
                    self.keys[(kind, ComponentID.parse(str(key)))] = str(key)
                except ValueError:
                    continue
        # the outputs: sections and pipelines
        self.primary: dict[str, dict[str, Any]] = {
            s: copy.deepcopy(dict(raw.get(s) or {})) for s in SECTIONS}
        self.primary_pipelines: dict[str, dict[str, list[str]]] = {
            pid: _pipeline(p.receivers, p.processors, p.exporters)
            for pid, p in config.pipelines.items()}
        self.worker: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
        self.worker_pipelines: dict[str, dict[str, list[str]]] = {}
        self.internal: set[tuple[str, str]] = set()  # (section or "pipelines", id)
        # found while placing the pipelines
        self.in_worker: set[ComponentID] = set()  # connectors that run in the workers
        self.merged_into: dict[tuple[str, bool], list[ComponentID]] = {}  # (Q, cumulative)
        self.cuts: dict[str, int] = {}  # pipeline -> index of its first runs-once processor
        self.exits: dict[str, list[ComponentID]] = {}  # pipeline -> its runs-once exporters

    # placement ----------------------------------------------------------------
    def factory(self, kind: Kind, cid: ComponentID) -> Factory:
        return self.cfg.factories[(kind, cid)]

    def settings(self, kind: Kind, cid: ComponentID) -> ComponentConfig:
        return self.cfg.components[kind][cid]

    def kind_of(self, cid: ComponentID, *kinds: Kind) -> Kind:
        return next(k for k in kinds if (k, cid) in self.cfg.factories)

    def once(self, kind: Kind, cid: ComponentID) -> bool:
        if kind is Kind.EXTENSION:
            return True
        settings = self.settings(kind, cid)
        if self.factory(kind, cid).runs_once(settings):
            return True
        queue = getattr(settings, "sending_queue", None)
        return bool(kind is Kind.EXPORTER and queue is not None
                    and getattr(queue, "enabled", False)
                    and getattr(queue, "storage", "memory") == "disk")

    def merges(self, cid: ComponentID) -> bool:
        return self.factory(Kind.CONNECTOR, cid).merges_per_worker \
            and not self.once(Kind.CONNECTOR, cid)

    # the plan -----------------------------------------------------------------
    def run(self) -> WorkerPlan:
        self.check_names()
        for p in self.ordered_pipelines():
            self.place(p)
        self.merge()
        for pid, cut in self.cuts.items():
            self.cut(self.cfg.pipelines[pid], cut)
        for pid, once in self.exits.items():
            self.exit(self.cfg.pipelines[pid], once)
        self.reuse_ports()
        self.per_process_limits()
        self.check_clashes()
        if self.problems:
            raise ConfigError(list(dict.fromkeys(self.problems)))
        idle = not self.worker_pipelines
        if idle:
            self.idle_worker()
        return WorkerPlan(self.output(self.primary, self.primary_pipelines, primary=True),
                          self.output(self.worker, self.worker_pipelines, primary=False),
                          tuple(self.links), tuple(self.notes), idle)

    def check_names(self) -> None:
        named: dict[str, str] = {}
        for pid in self.cfg.pipelines:
            if (other := named.setdefault(_name(pid), pid)) != pid:
                raise ConfigError([
                    f"service.pipelines: {other} and {pid} would share the workers' internal "
                    f"ids (a / of a pipeline id becomes . in them); rename one"])

    def place(self, p: PipelineConfig) -> None:
        """What of pipeline `p` runs in the workers (the pipelines that feed its
        connectors placed already)."""
        receivers: list[ComponentID] = []
        for r in p.receivers:
            kind = self.kind_of(r, Kind.RECEIVER, Kind.CONNECTOR)
            if kind is Kind.RECEIVER and not self.once(kind, r):
                receivers.append(r)
            elif kind is Kind.CONNECTOR and r in self.in_worker:
                if self.merges(r):
                    self.merged_into.setdefault((p.id, self.wants_cumulative(r)), []).append(r)
                else:
                    receivers.append(r)
        if not receivers:
            return
        cut = next((i for i, proc in enumerate(p.processors)
                    if self.once(Kind.PROCESSOR, proc)), None)
        if cut is not None:
            self.cuts[p.id] = cut
            link = self.link(f"_link_{_name(p.id)}{SUFFIX}")
            self.worker_pipeline(p.id, receivers, p.processors[:cut], [link])
            return
        kept: list[ComponentID] = []
        once: list[ComponentID] = []
        for e in p.exporters:
            kind = self.kind_of(e, Kind.EXPORTER, Kind.CONNECTOR)
            (once if self.once(kind, e) else kept).append(e)
            if kind is Kind.CONNECTOR and not self.once(kind, e):
                self.in_worker.add(e)
        if once:
            self.exits[p.id] = once
            kept.append(self.link(f"_link_exit_{_name(p.id)}{SUFFIX}"))
        self.worker_pipeline(p.id, receivers, p.processors, kept)

    def ordered_pipelines(self) -> list[PipelineConfig]:
        """Pipelines in data-flow order: one that feeds a connector comes before the
        pipelines that connector feeds (validation refused cycles)."""
        pipelines = self.cfg.pipelines
        connectors = self.cfg.components[Kind.CONNECTOR]
        before = {pid: {q.id for q in pipelines.values() for c in p.receivers
                        if c in connectors and c in q.exporters} for pid, p in pipelines.items()}
        out: list[PipelineConfig] = []
        done: set[str] = set()
        while len(done) < len(pipelines):
            ready = [pid for pid in pipelines if pid not in done and before[pid] <= done]
            if not ready:  # pragma: no cover - validate_config refuses cycles
                raise ConfigError(["service.pipelines: cycle through connectors"])
            for pid in ready:
                done.add(pid)
                out.append(pipelines[pid])
        return out

    def wants_cumulative(self, cid: ComponentID) -> bool:
        value = getattr(self.settings(Kind.CONNECTOR, cid), "aggregation_temporality", None)
        if value is None:
            self.problems.append(
                f"connectors.{cid}: merges per worker but has no aggregation_temporality; "
                "it cannot be merged across workers (run it with service.workers: 1)")
            return False
        return str(value) == "cumulative"

    # the pieces ---------------------------------------------------------------
    def worker_pipeline(self, pid: str, receivers: list[ComponentID],
                        processors: tuple[ComponentID, ...] | list[ComponentID],
                        exporters: list[ComponentID]) -> None:
        self.worker_pipelines[pid] = _pipeline(receivers, processors, exporters)
        for kinds, ids in (((Kind.RECEIVER, Kind.CONNECTOR), receivers),
                           ((Kind.PROCESSOR,), processors),
                           ((Kind.EXPORTER, Kind.CONNECTOR), exporters)):
            for cid in ids:
                if any(section == SECTIONS_OF[k] and name == str(cid)
                       for k in kinds for section, name in self.internal):
                    continue  # a link exporter, defined already
                kind = self.kind_of(cid, *kinds)
                key = self.keys[(kind, cid)]
                self.worker[kind.section][key] = copy.deepcopy(self.primary[kind.section][key])

    def link(self, name: str) -> ComponentID:
        """A link: its receiver in the primary, its exporter in the workers.

        The link is trusted (our processes, a 0700 directory) and carries what a worker
        accepted already, after its processors (a batch processor may join requests into
        a message larger than any receiver's limit): its message cap is gRPC's largest,
        so it never refuses for size what a worker took (a refusal would come back to
        the client on every retry). Its in-flight byte budget still admits one message
        at a time when it is larger, and memory_limiter guards the primary."""
        path = os.path.join(self.link_dir, f"link-{len(self.links)}.sock")
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            self.problems.append(
                f"service.workers: the link socket path {path!r} is longer than "
                f"{MAX_SOCKET_PATH} bytes, the limit of a unix socket path; use a shorter "
                "link directory")
        self.links.append(path)
        cid = ComponentID("otlp", name)
        self.define(Kind.RECEIVER, cid, {
            "protocols": {"grpc": {"endpoint": f"unix:{path}",
                                   "max_recv_msg_size_mib": LINK_RECV_MSG_MIB,
                                   "max_concurrent_streams": 1000}},
            **NO_LIMITS}, primary=True)
        self.define(Kind.EXPORTER, cid, {
            "endpoint": f"unix:{path}", "tls": {"insecure": True}, "compression": "none",
            "timeout": LINK_TIMEOUT, "retry_on_failure": {"enabled": False},
            "sending_queue": {"enabled": False}}, primary=False)
        return cid

    def define(self, kind: Kind, cid: ComponentID, settings: dict[str, Any], *,
               primary: bool) -> None:
        (self.primary if primary else self.worker)[kind.section][str(cid)] = settings
        self.internal.add((kind.section, str(cid)))

    def merge(self) -> None:
        """Each process's aggregating connectors meet in `metrics/_merge_<Q>_workers`."""
        for (qid, cumulative), connectors in self.merged_into.items():
            for cid in connectors:
                self.delta(cid)
            name = f"_merge_{_name(qid)}{'' if cumulative else '_delta'}{SUFFIX}"
            link = self.link(name.replace("_merge_", "_link_merge_", 1))
            forward = ComponentID("forward", name)
            self.define(Kind.CONNECTOR, forward, {}, primary=True)
            processors = [self.d2c(name, connectors, cumulative=cumulative)]
            mid = f"metrics/{name}"
            self.primary_pipelines[mid] = _pipeline([*connectors, link], processors, [forward])
            self.worker_pipeline(mid, connectors, [], [link])
            self.internal.add(("pipelines", mid))
            # Q receives the merge where it received the first of the connectors
            q = self.primary_pipelines[qid]
            merged = {str(c) for c in connectors}
            at = min(q["receivers"].index(c) for c in merged)
            q["receivers"] = [r for r in q["receivers"] if r not in merged]
            q["receivers"].insert(at, str(forward))

    def delta(self, cid: ComponentID) -> None:
        """The connector aggregates with delta temporality, in every process."""
        section, key = Kind.CONNECTOR.section, self.keys[(Kind.CONNECTOR, cid)]
        settings = {**(self.primary[section][key] or {}), "aggregation_temporality": "delta"}
        self.primary[section][key] = settings
        self.worker[section][key] = copy.deepcopy(settings)

    def d2c(self, name: str, connectors: list[ComponentID], *,
            cumulative: bool = True) -> ComponentID:
        cid = ComponentID(D2C_TYPE, name)
        factory = self.registry.get(Kind.PROCESSOR, D2C_TYPE)
        if factory is None:
            self.problems.append(
                f"service.workers: merging connectors {', '.join(map(str, connectors))} "
                f"across workers needs the {D2C_TYPE} processor, which is not installed")
            return cid
        fields = factory.config_model.model_fields
        if "out_of_order" not in fields:
            self.problems.append(
                f"service.workers: the installed {D2C_TYPE} processor cannot add up the "
                "interleaved deltas of several processes (no out_of_order: accumulate)")
            return cid
        # The processes' deltas of one stream interleave in time: add them all up.
        settings: dict[str, Any] = {"out_of_order": "accumulate"}
        if not cumulative:
            if "emit" not in fields:
                self.problems.append(
                    f"service.workers: the installed {D2C_TYPE} processor cannot re-emit "
                    "the processes' deltas as one writer's (no emit: delta)")
                return cid
            settings["emit"] = "delta"
        models = [self.settings(Kind.CONNECTOR, c) for c in connectors]
        expiries = [float(getattr(m, "series_expiry", 0) or 0) for m in models]
        if "max_stale" in fields:
            # forget a stream when its series expire; never when a connector keeps them
            settings["max_stale"] = max(expiries) if all(expiries) else NEVER_STALE
        if "max_streams" in fields:
            # every process may fill its cardinality limits with other series
            streams = self.n * sum(
                (int(getattr(m, "aggregation_cardinality_limit", 0) or 0) + 1)
                * _metrics_of(m) for m in models)
            default = fields["max_streams"].default
            settings["max_streams"] = max(streams, default if isinstance(default, int) else 0)
        self.define(Kind.PROCESSOR, cid, settings, primary=True)
        return cid

    def per_process_limits(self) -> None:
        """Limits that hold per process are divided by the number of processes, so that
        all of them together keep to what the user set: memory_limiter's limits (in MiB
        from the percentages too: an int percentage divided would round) in the primary
        and the workers, and the in-flight byte budgets of the listeners that run in
        every process."""
        for (kind, cid), key in self.keys.items():
            model = self.settings(kind, cid) if (kind, cid) in self.cfg.factories else None
            if kind is Kind.PROCESSOR and cid.type == "memory_limiter" and model is not None:
                limits = getattr(model, "limits_bytes", None)
                if limits is None:
                    continue
                soft, hard = limits()
                mib = 1024 * 1024
                hard_mib = max(1, hard // self.n // mib)
                spike_mib = min((hard - soft) // self.n // mib, hard_mib - 1)
                if hard_mib - spike_mib < MIN_PROCESS_MIB:
                    self.notes.append(
                        f"processors.{key}: its limit divided over {self.n} processes leaves "
                        f"{hard_mib - spike_mib} MiB below the spike limit in each, less than "
                        f"one otelpipe process needs ({MIN_PROCESS_MIB} MiB): it may refuse "
                        "all data; raise limit_mib or use fewer workers")
                for out in (self.primary, self.worker):
                    raw = out[kind.section].get(key)
                    if key not in out[kind.section]:
                        continue
                    raw = {k: v for k, v in dict(raw or {}).items()
                           if k not in ("limit_percentage", "spike_limit_percentage")}
                    raw.update(limit_mib=hard_mib, spike_limit_mib=spike_mib)
                    out[kind.section][key] = raw
            elif kind is Kind.RECEIVER and model is not None \
                    and key in self.worker[kind.section] and not self.once(kind, cid):
                for out in (self.primary, self.worker):
                    out[kind.section][key] = _divide(copy.deepcopy(out[kind.section][key]),
                                                     model, "max_in_flight_bytes", self.n)

    def cut(self, p: PipelineConfig, cut: int) -> None:
        """The primary's part of a pipeline cut before its processor `cut`."""
        link = f"otlp/_link_{_name(p.id)}{SUFFIX}"
        own = self.primary_pipelines[p.id]
        if cut == 0:
            own["receivers"].append(link)
            return
        name = f"_head_{_name(p.id)}{SUFFIX}"
        forward = ComponentID("forward", name)
        self.define(Kind.CONNECTOR, forward, {}, primary=True)
        head = f"{p.signal.value}/{name}"
        self.primary_pipelines[head] = {"receivers": own["receivers"],
                                        "processors": own["processors"][:cut],
                                        "exporters": [str(forward)]}
        self.internal.add(("pipelines", head))
        own["receivers"] = [str(forward), link]
        own["processors"] = own["processors"][cut:]

    def exit(self, p: PipelineConfig, once: list[ComponentID]) -> None:
        """The primary's pipeline for the workers' data bound to runs-once exporters."""
        pid = f"{p.signal.value}/_exit_{_name(p.id)}{SUFFIX}"
        self.primary_pipelines[pid] = _pipeline(
            [ComponentID("otlp", f"_link_exit_{_name(p.id)}{SUFFIX}")], [], once)
        self.internal.add(("pipelines", pid))

    def reuse_ports(self) -> None:
        """Shardable listeners bind with SO_REUSEPORT in every process."""
        section = Kind.RECEIVER.section
        for (kind, cid), key in self.keys.items():
            if kind is not Kind.RECEIVER or self.once(kind, cid) \
                    or key not in self.worker[section]:
                continue
            model = self.settings(kind, cid)
            for out, problems in ((self.primary, self.problems), (self.worker, [])):
                out[section][key] = _set_reuse_port(
                    copy.deepcopy(out[section][key]), model, f"receivers.{key}", problems)

    def check_clashes(self) -> None:
        user = {(kind.section, str(cid)) for kind, cid in self.keys}
        user |= {("pipelines", pid) for pid in self.cfg.pipelines}
        for section, name in sorted(self.internal & user):
            where = f"service.pipelines.{name}" if section == "pipelines" else \
                f"{section}.{name}"
            self.problems.append(f"{where}: this id is reserved for the workers' internal "
                                 f"components (ids starting with _ and ending with {SUFFIX}); "
                                 "rename it")

    def idle_worker(self) -> None:
        once = sorted({str(r) for p in self.cfg.pipelines.values() for r in p.receivers
                       if (Kind.RECEIVER, r) in self.cfg.factories})
        self.notes.append(
            "service.workers: nothing in this config can run in a worker process (its "
            f"receivers {', '.join(once)} run once, in the primary): the other workers "
            "stay idle; set service.workers: 1")
        rid, eid = ComponentID("otlp", f"_idle{SUFFIX}"), ComponentID("nop", f"_idle{SUFFIX}")
        self.worker[Kind.RECEIVER.section][str(rid)] = {
            "protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}
        self.worker[Kind.EXPORTER.section][str(eid)] = {}
        self.worker_pipelines[f"traces/_idle{SUFFIX}"] = _pipeline([rid], [], [eid])

    def output(self, sections: dict[str, dict[str, Any]],
               pipelines: dict[str, dict[str, list[str]]], *, primary: bool) -> dict[str, Any]:
        out: dict[str, Any] = {s: v for s, v in sections.items()
                               if v and (primary or s != Kind.EXTENSION.section)}
        service = {k: copy.deepcopy(v) for k, v in (self.raw.get("service") or {}).items()
                   if k not in ("pipelines", "workers") and (primary or k != "extensions")}
        service["pipelines"] = copy.deepcopy(pipelines)
        out["service"] = service
        return out


SECTIONS_OF = {kind: section for section, kind in SECTIONS.items()}


def _pipeline(receivers: Any, processors: Any, exporters: Any) -> dict[str, list[str]]:
    return {"receivers": [str(c) for c in receivers],
            "processors": [str(c) for c in processors],
            "exporters": [str(c) for c in exporters]}


def _set_reuse_port(raw: Any, model: BaseModel, path: str, problems: list[str]) -> Any:
    """`raw` with `so_reuseport: true` wherever `model` (its validation) has the key;
    a listener (an `endpoint`) without the key is a problem: it cannot share its port."""
    fields = type(model).model_fields
    if not isinstance(raw, dict):
        raw = {}
    endpoint = getattr(model, "endpoint", None)
    if isinstance(endpoint, str) and endpoint.startswith("unix:"):
        problems.append(f"{path}: listens on {endpoint}, a unix socket, which the worker "
                        "processes cannot share: listen on host:port, or run it with "
                        "service.workers: 1")
    elif "so_reuseport" in fields:
        raw["so_reuseport"] = True
    elif "endpoint" in fields:
        problems.append(f"{path}: listens on {getattr(model, 'endpoint', '?')} but cannot "
                        "share the port with the other workers (no so_reuseport setting): "
                        "run it with service.workers: 1")
    for name in fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            key = next((k for k in (name, fields[name].alias) if k and k in raw), name)
            if key in raw or _listens(value):
                raw[key] = _set_reuse_port(raw.get(key), value, f"{path}.{key}", problems)
    return raw


def _metrics_of(model: BaseModel) -> int:
    """Metrics an aggregating connector emits from each series set: its `metrics` list
    (logmetrics: one set each), else 2 (redmetrics: calls and duration share one set)."""
    metrics = getattr(model, "metrics", None)
    return len(metrics) if isinstance(metrics, list | tuple) and metrics else 2


def _divide(raw: Any, model: BaseModel, name: str, n: int) -> Any:
    """`raw` with key `name` set to its value in `model` divided by `n` wherever `model`
    (or a model in it, e.g. a protocol) has the key."""
    fields = type(model).model_fields
    if not isinstance(raw, dict):
        raw = {}
    if name in fields and isinstance(getattr(model, name), int):
        raw[name] = max(1, getattr(model, name) // n)
    for field in fields:
        value = getattr(model, field)
        if isinstance(value, BaseModel) and _has(value, name):
            key = next((k for k in (field, fields[field].alias) if k and k in raw), field)
            raw[key] = _divide(raw.get(key), value, name, n)
    return raw


def _has(model: BaseModel, name: str) -> bool:
    fields = type(model).model_fields
    return name in fields or any(
        isinstance(getattr(model, f), BaseModel) and _has(getattr(model, f), name)
        for f in fields)


def _listens(model: BaseModel) -> bool:
    """Whether `model` or a model inside it has a listener's keys."""
    fields = type(model).model_fields
    if "so_reuseport" in fields or "endpoint" in fields:
        return True
    return any(isinstance(getattr(model, n), BaseModel) and _listens(getattr(model, n))
               for n in fields)
