"""`resourcedetection` processor: names where telemetry comes from -- the host, the
process, the Kubernetes pod -- on every resource, like the Collector's
resourcedetection processor (traces, metrics, logs).

```yaml
processors:
  resourcedetection:
    detectors: [env, k8s, system, process]   # in order: the first to set a key wins
    override: true        # detected values replace the resource's (the Collector's default)
    timeout: 5s           # for the whole detection, at start
    system:
      hostname_sources: [dns, os]            # first that answers
```

Detectors:

- `env`: `OTEL_RESOURCE_ATTRIBUTES` (`key1=value1,key2=value2`, values
  percent-decoded; a malformed value is ignored whole, with a warning, as the
  OpenTelemetry spec asks) and `OTEL_SERVICE_NAME` (`service.name`, which wins
  over a `service.name` in `OTEL_RESOURCE_ATTRIBUTES`). The Collector's env
  detector reads only the former.
- `system`: `host.name` from `hostname_sources` (`dns`: the fully qualified name
  of the host (`socket.getfqdn`, a DNS lookup, run in a thread); `os`: the kernel's
  host name), `os.type` (`linux`, `darwin`, `windows`, ...), `host.arch` (`amd64`,
  `arm64`, ... as the semantic conventions spell them) and `host.id` (the machine
  id of `/etc/machine-id` or `/var/lib/dbus/machine-id`, when readable).
- `process`: the otelpipe process -- `process.pid`, `process.executable.name`,
  `process.executable.path`, `process.runtime.name` (`cpython`),
  `process.runtime.version`, `process.runtime.description`.
- `k8s`: the pod from the downward-API environment a manifest sets --
  `K8S_POD_NAME` -> `k8s.pod.name`, `K8S_POD_UID` -> `k8s.pod.uid`,
  `K8S_NAMESPACE_NAME` -> `k8s.namespace.name`, `K8S_NODE_NAME` ->
  `k8s.node.name`, `K8S_CONTAINER_NAME` -> `k8s.container.name` (unset or empty
  variables add nothing; the variable names are the ones
  `deploy/kubernetes/sidecar.yaml` sets, configurable under `k8s.env`).

Detection runs once, at start, off the event loop (a DNS lookup may block) and
bounded by `timeout`: a detector that fails or is still running then is logged
and left out; the pipeline starts anyway with what was found. Each batch then only
merges the detected attributes into its resources -- `override: true` replaces
values already there, `false` only adds missing keys -- through
`pipeline.pdata.resources` (the items are not decoded; one parse per distinct
resource, cached).
"""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import Field, field_validator

from pipeline.component import (
    Component,
    ComponentConfig,
    Consumer,
    Factory,
    Host,
    Kind,
    ProcessorCreateSettings,
    Signal,
)
from pipeline.config.types import Duration
from pipeline.errors import PermanentError
from pipeline.pdata.attractions import find, set_value
from pipeline.pdata.batch import Batch
from pipeline.pdata.resources import ResourceEditor, WireError
from pipeline.telemetry.metrics import GaugeSpec

Detector = Literal["env", "system", "process", "k8s"]
HostnameSource = Literal["dns", "os"]
Attributes = dict[str, str | int]
DEFAULT_HOSTNAME_SOURCES: tuple[HostnameSource, ...] = ("dns", "os")

DETECTED = GaugeSpec("otelpipe_processor_resourcedetection_attributes",
                     "Resource attributes detected at start", ("processor",))

K8S_ENV_DEFAULT: dict[str, str] = {
    "k8s.pod.name": "K8S_POD_NAME",
    "k8s.pod.uid": "K8S_POD_UID",
    "k8s.namespace.name": "K8S_NAMESPACE_NAME",
    "k8s.node.name": "K8S_NODE_NAME",
    "k8s.container.name": "K8S_CONTAINER_NAME",
}
MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "i386": "x86", "i686": "x86", "x86": "x86", "armv7l": "arm32", "armv6l": "arm32",
         "ppc64le": "ppc64", "ppc64": "ppc64", "s390x": "s390x", "ia64": "ia64"}
_OS = {"linux": "linux", "darwin": "darwin", "windows": "windows", "freebsd": "freebsd",
       "netbsd": "netbsd", "openbsd": "openbsd", "dragonfly": "dragonflybsd",
       "sunos": "solaris", "aix": "aix"}


class SystemConfig(ComponentConfig):
    hostname_sources: list[HostnameSource] = Field(
        default_factory=lambda: list(DEFAULT_HOSTNAME_SOURCES), min_length=1,
        description="where host.name comes from, in order: dns (fully qualified name) or os")


class K8sConfig(ComponentConfig):
    env: dict[str, str] = Field(
        default_factory=lambda: dict(K8S_ENV_DEFAULT),
        description="resource attribute -> environment variable (downward API)")


class ResourceDetectionConfig(ComponentConfig):
    detectors: list[Detector] = Field(min_length=1, description="env, system, process, k8s; "
                                      "the first detector to set a key wins")
    override: bool = Field(True, description="replace attribute values already on the "
                                             "resource (false: only add missing ones)")
    timeout: Duration = Field(5.0, gt=0, description="bound on detection at start")
    system: SystemConfig = Field(default_factory=SystemConfig)
    k8s: K8sConfig = Field(default_factory=K8sConfig)

    @field_validator("detectors")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dup = sorted({d for d in v if v.count(d) > 1})
        if dup:
            raise ValueError(f"detector listed twice: {', '.join(dup)}")
        return v


# --- detectors ------------------------------------------------------------------------


class DetectionError(Exception):
    """A detector could not say anything (the message says why)."""


def parse_resource_attributes(text: str) -> Attributes:
    """`OTEL_RESOURCE_ATTRIBUTES`: `k=v,k2=v2`, keys and values trimmed, values
    percent-decoded. Raises DetectionError on a malformed pair."""
    out: Attributes = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise DetectionError(f"OTEL_RESOURCE_ATTRIBUTES: {part.strip()!r} is not key=value")
        try:
            out[key] = urllib.parse.unquote(value.strip(), errors="strict")
        except UnicodeDecodeError as exc:
            raise DetectionError(f"OTEL_RESOURCE_ATTRIBUTES: {key}: value is not valid "
                                 "percent-encoded UTF-8") from exc
    return out


def detect_env(environ: Mapping[str, str]) -> Attributes:
    out = parse_resource_attributes(environ.get("OTEL_RESOURCE_ATTRIBUTES", ""))
    service = environ.get("OTEL_SERVICE_NAME", "").strip()
    if service:
        out["service.name"] = service
    return out


def detect_k8s(environ: Mapping[str, str], names: Mapping[str, str]) -> Attributes:
    return {attr: environ[var].strip() for attr, var in names.items()
            if environ.get(var, "").strip()}


def detect_process() -> Attributes:
    impl = sys.implementation
    exe = sys.executable or ""
    out: Attributes = {
        "process.pid": os.getpid(),
        "process.runtime.name": impl.name,
        "process.runtime.version": platform.python_version(),
        "process.runtime.description": sys.version.replace("\n", " "),
    }
    if exe:
        out["process.executable.name"] = os.path.basename(exe)
        out["process.executable.path"] = exe
    return out


def machine_id(files: tuple[str, ...] = MACHINE_ID_FILES) -> str | None:
    for path in files:
        try:
            with open(path, encoding="ascii") as f:
                text = f.read(256).strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text:
            return text
    return None


def host_name(sources: list[str]) -> str:
    """The first source that answers: `dns` (the FQDN: needs a resolvable name with a
    dot) or `os`."""
    problems = []
    for src in sources:
        if src == "os":
            name = socket.gethostname()
            if name:
                return name
            problems.append("os: empty host name")
        else:
            short = socket.gethostname()
            fqdn = socket.getfqdn(short)
            if fqdn and "." in fqdn and fqdn not in ("localhost", "localhost.localdomain"):
                return fqdn
            problems.append(f"dns: no fully qualified name for {short!r}")
    raise DetectionError("host.name: " + "; ".join(problems))


def detect_system(sources: list[str]) -> Attributes:
    out: Attributes = {}
    system = platform.system().lower()
    out["os.type"] = _OS.get(system, system)
    machine = platform.machine().lower()
    if machine:
        out["host.arch"] = _ARCH.get(machine, machine)
    mid = machine_id()
    if mid:
        out["host.id"] = mid
    out["host.name"] = host_name(sources)
    return out


# --- the processor ----------------------------------------------------------------------


def _same(v: Any, value: str | int) -> bool:
    kind = v.WhichOneof("value")
    want = "int_value" if isinstance(value, int) else "string_value"
    return kind == want and bool(getattr(v, kind) == value)


def merge_edit(detected: Mapping[str, str | int], override: bool) -> Callable[[Any], bool]:
    """An edit that puts `detected` on a resource (replacing values when `override`)."""
    items = list(detected.items())

    def edit(attrs: Any) -> bool:
        changed = False
        for key, value in items:
            kv = find(attrs, key)
            if kv is None:
                kv = attrs.add()
                kv.key = key
            elif not override or _same(kv.value, value):
                continue
            set_value(kv.value, value)
            changed = True
        return changed
    return edit


class ResourceDetectionProcessor(Component, Consumer):
    def __init__(self, settings: ProcessorCreateSettings, config: ResourceDetectionConfig,
                 environ: Mapping[str, str] | None = None):
        self.id = str(settings.id)
        self.next = settings.next_consumer
        self.config = config
        self.logger = settings.logger
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.detected: Attributes = {}
        self.errors: dict[str, str] = {}
        self.editor: ResourceEditor | None = None
        self._gauge = settings.telemetry.gauge(DETECTED)

    def _run(self, name: str) -> Attributes:
        cfg = self.config
        if name == "env":
            return detect_env(self.environ)
        if name == "k8s":
            return detect_k8s(self.environ, cfg.k8s.env)
        if name == "process":
            return detect_process()
        return detect_system(list(cfg.system.hostname_sources))

    async def detect(self) -> Attributes:
        """Run the detectors (in threads), within `timeout` in all."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeout
        merged: Attributes = {}
        for name in self.config.detectors:
            started = time.monotonic()
            try:
                found = await asyncio.wait_for(asyncio.to_thread(self._run, name),
                                               max(0.0, deadline - loop.time()))
            except TimeoutError:
                self.errors[name] = f"timed out (timeout {self.config.timeout:g}s)"
            except (DetectionError, OSError) as exc:
                self.errors[name] = str(exc)
            else:
                for k, v in found.items():
                    merged.setdefault(k, v)
                continue
            self.logger.warning("resource detector failed; its attributes are left out",
                                extra={"detector": name, "error": self.errors[name],
                                       "seconds": round(time.monotonic() - started, 3)})
        return merged

    async def start(self, host: Host) -> None:
        self.detected = await self.detect()
        self.editor = ResourceEditor(merge_edit(self.detected, self.config.override))
        self._gauge.labels(processor=self.id).set(len(self.detected))
        self.logger.info("resource detected", extra={"attributes": dict(self.detected)})

    async def consume(self, batch: Batch) -> None:
        editor = self.editor
        if editor is not None and self.detected:
            try:
                batch = await editor.apply_async(batch)
            except WireError as exc:
                raise PermanentError(f"undecodable {batch.signal} request: {exc}") from exc
        await self.next.consume(batch)


def _create(settings: ProcessorCreateSettings,
            config: ResourceDetectionConfig) -> ResourceDetectionProcessor:
    return ResourceDetectionProcessor(settings, config)


factory = Factory(type="resourcedetection", kind=Kind.PROCESSOR,
                  config_model=ResourceDetectionConfig, create=_create,
                  signals=frozenset(Signal),
                  description="host, process, Kubernetes pod and environment attributes on "
                              "every resource")
