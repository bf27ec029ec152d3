"""Validate a raw config mapping into typed component configs and pipelines.

Every problem is collected with its key path, so `otelpipe validate` can
print all of them at once.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from pipeline.component import ComponentConfig, ComponentID, Factory, Kind, Signal
from pipeline.config.types import Duration
from pipeline.errors import ConfigError
from pipeline.registry import Registry

MAX_WORKERS = 256
SECTIONS = {k.section: k for k in (Kind.RECEIVER, Kind.PROCESSOR, Kind.EXPORTER,
                                   Kind.CONNECTOR, Kind.EXTENSION)}


class PipelineModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    receivers: list[str] = Field(min_length=1)
    processors: list[str] = []
    exporters: list[str] = Field(min_length=1)


class TelemetryLogsModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    level: Literal["debug", "info", "warning", "error"] = "info"


class TelemetryModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    logs: TelemetryLogsModel = TelemetryLogsModel()


def check_workers(value: Any) -> int | str:
    """One precise error for a bad `service.workers` (not one per member of the union)."""
    if value == "auto":
        return "auto"
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)  # from ${env:…}
    if isinstance(value, bool) or not isinstance(value, int) \
            or not 1 <= value <= MAX_WORKERS:
        raise ValueError(f"expected a number of processes from 1 to {MAX_WORKERS} or "
                         f"`auto` (one per CPU), got {value!r}")
    return value


class ServiceModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    extensions: list[str] = []
    pipelines: dict[str, PipelineModel] = Field(min_length=1)
    telemetry: TelemetryModel = TelemetryModel()
    shutdown_timeout: Duration = Field(
        30.0, description="How long SIGTERM/SIGINT may take to drain in-flight data.")
    workers: Annotated[int | Literal["auto"], BeforeValidator(check_workers)] = Field(
        1,
        description="Processes that run the pipelines: 1 (one process), a number, or "
                    "`auto` (one per CPU this process may run on, at most its cgroup's CPU "
                    "quota rounded up). With more than one, "
                    "`otelpipe run` supervises the others and shares the OTLP and "
                    "jsonlogs ports with them (SO_REUSEPORT); `--workers` overrides it.")

    def worker_count(self) -> int:
        """`workers` as a number (`auto`: the CPUs this process may run on)."""
        return resolve_workers(self.workers)


def resolve_workers(value: int | str, *, cgroup_root: str = "/sys/fs/cgroup",
                    proc_cgroup: str = "/proc/self/cgroup") -> int:
    """`auto`: the CPUs this process may run on (affinity), at most its cgroup's CPU
    quota rounded up (a container limited to 1.5 CPUs on a 16-core host gets 2)."""
    if value == "auto":
        cpus = len(os.sched_getaffinity(0))
        quota = cgroup_cpu_limit(cgroup_root, proc_cgroup)
        if quota is not None:
            cpus = min(cpus, quota)
        return max(1, min(MAX_WORKERS, cpus))
    return int(value)


def cgroup_cpu_limit(root: str = "/sys/fs/cgroup",
                     proc_cgroup: str = "/proc/self/cgroup") -> int | None:
    """ceil(quota / period) of the strictest CPU quota over this process's cgroup and
    its ancestors: cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`;
    None when there is none (or it cannot be read)."""
    try:
        with open(proc_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    limits: list[int] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # v2: 0::/path
            for d in _ancestors(root, path):
                limits += _quota(_read(os.path.join(d, "cpu.max")).split()[:2])
        elif "cpu" in controllers.split(","):  # v1: N:cpu,cpuacct:/path
            base = os.path.join(root, controllers)
            if not os.path.isdir(base):
                base = os.path.join(root, "cpu")
            for d in _ancestors(base, path):
                limits += _quota([_read(os.path.join(d, "cpu.cfs_quota_us")),
                                  _read(os.path.join(d, "cpu.cfs_period_us"))])
    if not lines:  # no /proc/self/cgroup: the root's own files
        limits += _quota(_read(os.path.join(root, "cpu.max")).split()[:2])
    return min(limits) if limits else None


def _ancestors(base: str, path: str) -> list[str]:
    """`base`/`path` and each of its parents up to `base` (a container often sees its
    own cgroup at the root of the mount, its path naming the host's hierarchy)."""
    parts = [p for p in path.split("/") if p and p != ".."]
    return [os.path.join(base, *parts[:i]) for i in range(len(parts), -1, -1)]


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _quota(fields: list[str]) -> list[int]:
    """[ceil(quota / period)] of a quota and its period, or [] if unlimited or unreadable."""
    if len(fields) != 2 or fields[0] in ("max", "-1", ""):
        return []
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return []
    if quota <= 0 or period <= 0:
        return []
    return [max(1, -(-quota // period))]


@dataclass(frozen=True)
class PipelineConfig:
    id: str
    signal: Signal
    receivers: tuple[ComponentID, ...]
    processors: tuple[ComponentID, ...]
    exporters: tuple[ComponentID, ...]


@dataclass
class Config:
    components: dict[Kind, dict[ComponentID, ComponentConfig]]
    factories: dict[tuple[Kind, ComponentID], Factory]
    pipelines: dict[str, PipelineConfig]
    extensions: tuple[ComponentID, ...]
    service: ServiceModel
    warnings: list[str] = field(default_factory=list)


def did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def pydantic_problems(prefix: str, exc: ValidationError, model: type[BaseModel]) -> list[str]:
    """One line per error, `prefix.key.path: message`; input values (maybe secrets) omitted."""
    out = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        path = f"{prefix}.{loc}" if loc else prefix
        if err["type"] == "missing":
            msg = "field required"
        elif err["type"] == "extra_forbidden":
            key = str(err["loc"][-1])
            fields = _fields_at(model, err["loc"][:-1])
            msg = "unknown key" + did_you_mean(key, fields)
        elif err["type"] == "value_error" and "error" in err.get("ctx", {}):
            msg = str(err["ctx"]["error"])  # our validators' own words, without "Value error, "
        else:
            msg = err["msg"]
            msg = msg[0].lower() + msg[1:]
        out.append(f"{path}: {msg}")
    return out


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the nested model at `loc`, for did-you-mean hints."""
    current: Any = model
    skip = False  # the next part is a dict key or list index, not a field
    for part in loc:
        if skip:
            skip = False
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        info = current.model_fields.get(str(part))
        if info is None:
            return []
        current = info.annotation
        # Unwrap Optional[X] / X | None, and dict[str, X] / list[X] (whose key is in loc).
        origin = getattr(current, "__origin__", None)
        skip = origin in (dict, list)
        args = getattr(current, "__args__", None)
        if args:
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            current = models[0] if models else current
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def validate_config(raw: dict[str, Any], registry: Registry) -> Config:
    problems: list[str] = []
    warnings: list[str] = []
    for key in raw:
        if key not in SECTIONS and key != "service":
            problems.append(f"{key}: unknown top-level key"
                            + did_you_mean(str(key), [*SECTIONS, "service"]))
    components, factories = _check_components(raw, registry, problems)
    service = _check_service(raw.get("service"), problems)
    pipelines: dict[str, PipelineConfig] = {}
    extensions: list[ComponentID] = []
    if service is not None:
        defined_sections = {k: {str(c) for c in raw.get(s) or {}} if isinstance(
            raw.get(s), dict) else set() for s, k in SECTIONS.items()}
        pipelines = _check_pipelines(service, factories, defined_sections, problems)
        extensions = _check_extensions(service, factories, defined_sections[Kind.EXTENSION],
                                       problems)
        connectors = {cid for (kind, cid) in factories if kind is Kind.CONNECTOR}
        _check_connectors(pipelines, connectors, factories, problems)
        _check_cycles(pipelines, connectors, problems)
        warnings.extend(_unused(pipelines, factories, extensions))

    if problems:
        raise ConfigError(problems)
    assert service is not None
    return Config(components, factories, pipelines, tuple(extensions), service, warnings)


def _check_components(
    raw: dict[str, Any], registry: Registry, problems: list[str],
) -> tuple[dict[Kind, dict[ComponentID, ComponentConfig]],
           dict[tuple[Kind, ComponentID], Factory]]:
    components: dict[Kind, dict[ComponentID, ComponentConfig]] = {k: {} for k in SECTIONS.values()}
    factories: dict[tuple[Kind, ComponentID], Factory] = {}
    for section, kind in SECTIONS.items():
        entries = raw.get(section) or {}
        if not isinstance(entries, dict):
            problems.append(f"{section}: expected a mapping of component ids to settings")
            continue
        for key, settings in entries.items():
            path = f"{section}.{key}"
            try:
                cid = ComponentID.parse(str(key))
            except ValueError as exc:
                problems.append(f"{path}: {exc}")
                continue
            factory = registry.get(kind, cid.type)
            if factory is None:
                problems.append(f'{path}: unknown {kind.value} type "{cid.type}"'
                                + did_you_mean(cid.type, registry.types(kind)))
                continue
            # Known even when its settings are invalid, so that the pipeline checks
            # (signals, connectors, cycles) still report their problems too.
            factories[(kind, cid)] = factory
            if settings is None:
                settings = {}
            if not isinstance(settings, dict):
                problems.append(f"{path}: expected a mapping of settings, "
                                f"got {type(settings).__name__}")
                continue
            try:
                components[kind][cid] = factory.config_model.model_validate(settings)
            except ValidationError as exc:
                problems.extend(pydantic_problems(path, exc, factory.config_model))
    return components, factories


def _check_service(service_raw: Any, problems: list[str]) -> ServiceModel | None:
    if service_raw is None:
        problems.append("service: field required (it lists the pipelines to run)")
    elif not isinstance(service_raw, dict):
        problems.append("service: expected a mapping")
    else:
        try:
            return ServiceModel.model_validate(service_raw)
        except ValidationError as exc:
            problems.extend(pydantic_problems("service", exc, ServiceModel))
            return _valid_part_of_service(service_raw, exc)
    return None


def _valid_part_of_service(service_raw: dict[str, Any],
                           exc: ValidationError) -> ServiceModel | None:
    """The service without the keys `exc` found invalid, so that the pipeline checks
    still run and `otelpipe validate` reports their problems in the same run (an
    invalid `shutdown_timeout` must not hide an undefined exporter). An invalid
    pipeline keeps those of its lists that are lists of names."""
    raw = dict(service_raw)
    for err in exc.errors(include_input=False, include_url=False):
        loc = err["loc"]
        if loc and loc[0] != "pipelines":
            raw.pop(str(loc[0]), None)
    pipelines_raw = raw.pop("pipelines", None)
    if not isinstance(pipelines_raw, dict):
        return None
    try:
        service = ServiceModel.model_validate({**raw, "pipelines": _PLACEHOLDER})
    except ValidationError:
        return None
    pipelines: dict[str, PipelineModel] = {}
    for pid, p in pipelines_raw.items():
        if not isinstance(p, dict):
            continue
        try:
            pipelines[str(pid)] = PipelineModel.model_validate(p)
        except ValidationError:
            lists = [[str(x) for x in p[role]] if isinstance(p.get(role), list) else []
                     for role in ("receivers", "processors", "exporters")]
            pipelines[str(pid)] = PipelineModel.model_construct(
                receivers=lists[0], processors=lists[1], exporters=lists[2])
    service.pipelines = pipelines
    return service


_PLACEHOLDER = {"traces": {"receivers": ["-"], "exporters": ["-"]}}


def _check_extensions(service: ServiceModel,
                      factories: dict[tuple[Kind, ComponentID], Factory],
                      defined: set[str], problems: list[str]) -> list[ComponentID]:
    extensions: list[ComponentID] = []
    for i, ext in enumerate(service.extensions):
        path = f"service.extensions[{i}]"
        try:
            eid = ComponentID.parse(ext)
        except ValueError as exc:
            problems.append(f"{path}: {exc}")
            continue
        if (Kind.EXTENSION, eid) not in factories:
            if ext not in defined:
                problems.append(f'{path}: extension "{ext}" is not defined under extensions'
                                + did_you_mean(ext, sorted(defined)))
            continue
        extensions.append(eid)
    return extensions


def _unused(pipelines: dict[str, PipelineConfig],
            factories: dict[tuple[Kind, ComponentID], Factory],
            extensions: list[ComponentID]) -> list[str]:
    used = {c for p in pipelines.values() for c in (*p.receivers, *p.processors, *p.exporters)}
    warnings = [f"{kind.section}.{cid}: defined but not used by any pipeline"
                for kind, cid in factories if kind is not Kind.EXTENSION and cid not in used]
    warnings += [f"extensions.{cid}: defined but not listed in service.extensions"
                 for kind, cid in factories if kind is Kind.EXTENSION and cid not in extensions]
    return warnings


def _check_pipelines(service: ServiceModel,
                     factories: dict[tuple[Kind, ComponentID], Factory],
                     defined: dict[Kind, set[str]],
                     problems: list[str]) -> dict[str, PipelineConfig]:
    pipelines: dict[str, PipelineConfig] = {}
    signals = [s.value for s in Signal]
    for pid, pmodel in service.pipelines.items():
        base = f"service.pipelines.{pid}"
        signal_name, _, _ = pid.partition("/")
        signal: Signal | None = None
        if signal_name not in signals or pid.endswith("/"):
            problems.append(f"{base}: a pipeline id is traces, logs or metrics, optionally "
                            f'followed by /name{did_you_mean(signal_name, signals)}')
        else:
            signal = Signal(signal_name)
        lists: dict[str, list[ComponentID]] = {}
        for role, allowed in (("receivers", (Kind.RECEIVER, Kind.CONNECTOR)),
                              ("processors", (Kind.PROCESSOR,)),
                              ("exporters", (Kind.EXPORTER, Kind.CONNECTOR))):
            ids: list[ComponentID] = []
            for i, text in enumerate(getattr(pmodel, role)):
                path = f"{base}.{role}[{i}]"
                try:
                    cid = ComponentID.parse(text)
                except ValueError as exc:
                    problems.append(f"{path}: {exc}")
                    continue
                if cid in ids:
                    problems.append(f'{path}: "{cid}" is listed twice')
                    continue
                kind = next((k for k in allowed if (k, cid) in factories), None)
                if kind is None:
                    if not any(text in defined[k] for k in allowed):
                        names = sorted(set().union(*(defined[k] for k in allowed)))
                        what = " or ".join(k.section for k in allowed)
                        problems.append(f'{path}: "{cid}" is not defined under {what}'
                                        + did_you_mean(text, names))
                    continue
                factory = factories[(kind, cid)]
                if kind is not Kind.CONNECTOR and signal is not None \
                        and not factory.supports(signal):
                    supported = ", ".join(sorted(s.value for s in factory.signals)) or "none"
                    problems.append(f'{path}: {kind.value} "{cid}" does not support {signal} '
                                    f"(it supports {supported})")
                    continue
                ids.append(cid)
            lists[role] = ids
        if signal is None:
            continue  # its components were checked; its signal is unknown
        pipelines[pid] = PipelineConfig(pid, signal, tuple(lists["receivers"]),
                                        tuple(lists["processors"]), tuple(lists["exporters"]))
    return pipelines


def _check_connectors(pipelines: dict[str, PipelineConfig], connectors: set[ComponentID],
                      factories: dict[tuple[Kind, ComponentID], Factory],
                      problems: list[str]) -> None:
    for cid in sorted(connectors):
        as_exporter = [p for p in pipelines.values() if cid in p.exporters]
        as_receiver = [p for p in pipelines.values() if cid in p.receivers]
        if not as_exporter and not as_receiver:
            continue  # unused: a warning
        path = f"connectors.{cid}"
        if not as_exporter or not as_receiver:
            missing = "an exporter" if not as_exporter else "a receiver"
            problems.append(f"{path}: a connector must be used as {missing} of some pipeline too")
            continue
        pairs = factories[(Kind.CONNECTOR, cid)].connector_pairs
        for p in as_exporter:
            if not any((p.signal, q.signal) in pairs for q in as_receiver):
                problems.append(f'service.pipelines.{p.id}.exporters: connector "{cid}" cannot '
                                f"take {p.signal} into any pipeline it feeds "
                                f"(supported: {_pairs_text(pairs)})")
        for q in as_receiver:
            if not any((p.signal, q.signal) in pairs for p in as_exporter):
                problems.append(f'service.pipelines.{q.id}.receivers: connector "{cid}" cannot '
                                f"emit {q.signal} from the pipelines that feed it "
                                f"(supported: {_pairs_text(pairs)})")


def _pairs_text(pairs: frozenset[tuple[Signal, Signal]]) -> str:
    return ", ".join(f"{a}->{b}" for a, b in sorted(pairs)) or "none"


def _check_cycles(pipelines: dict[str, PipelineConfig], connectors: set[ComponentID],
                  problems: list[str]) -> None:
    edges: dict[str, list[tuple[ComponentID, str]]] = {pid: [] for pid in pipelines}
    for p in pipelines.values():
        for cid in p.exporters:
            if cid in connectors:
                edges[p.id].extend((cid, q.id) for q in pipelines.values() if cid in q.receivers)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(pid: str) -> bool:
        state[pid] = 1
        stack.append(pid)
        for cid, nxt in edges[pid]:
            stack.append(f"[{cid}]")
            if state.get(nxt) == 1:
                start = stack.index(nxt)
                problems.append("service.pipelines: cycle through connectors: "
                                + " -> ".join([*stack[start:], nxt]))
                return True
            if state.get(nxt) is None and visit(nxt):
                return True
            stack.pop()
        stack.pop()
        state[pid] = 2
        return False

    for pid in pipelines:
        if state.get(pid) is None and visit(pid):
            return


def build_json_schema(registry: Registry) -> dict[str, Any]:
    """JSON Schema of the whole config, for editors (`otelpipe schema`)."""
    from pydantic.json_schema import models_json_schema

    factories = registry.factories()
    models: list[tuple[type[BaseModel], Literal["validation"]]] = [
        (f.config_model, "validation") for f in factories]
    models.append((ServiceModel, "validation"))
    refs, defs = models_json_schema(models, ref_template="#/$defs/{model}")
    sections: dict[str, Any] = {}
    for section, kind in SECTIONS.items():
        props = {}
        for f in factories:
            if f.kind is kind:
                for name in (f.type, *f.aliases):
                    props[f"^{name}(/.+)?$"] = {
                        "anyOf": [refs[(f.config_model, "validation")], {"type": "null"}],
                        "description": f.description}
        sections[section] = {"type": "object", "patternProperties": props,
                             "additionalProperties": False}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "otelpipe configuration",
        "type": "object",
        "additionalProperties": False,
        "properties": {**sections, "service": refs[(ServiceModel, "validation")]},
        "required": ["service"],
        "$defs": {name: _allow_env_refs(d) for name, d in defs.get("$defs", {}).items()},
    }


# A whole value may be an `${env:VAR}` reference, substituted before validation.
_ENV_REF_SCHEMA = {"type": "string", "pattern": r"^\$\{env:[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$"}


def _allow_env_refs(schema: Any) -> Any:
    """Let every typed (non-string) leaf of a model's schema also be an env reference, so
    editors do not flag `endpoint: ${env:PORT}` or `limit_mib: ${env:LIMIT}`."""
    if isinstance(schema, list):
        return [_allow_env_refs(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _allow_env_refs(v) if k in ("properties", "items", "anyOf", "oneOf",
                                            "additionalProperties", "prefixItems") else v
           for k, v in schema.items()}
    if "properties" in schema:
        out["properties"] = {k: _allow_env_refs(v) for k, v in schema["properties"].items()}
        return out
    leaf_type = schema.get("type")
    if leaf_type in ("integer", "number", "boolean") or "enum" in schema or "const" in schema \
            or (leaf_type == "string" and "pattern" in schema):
        return {"anyOf": [out, _ENV_REF_SCHEMA]}
    return out
