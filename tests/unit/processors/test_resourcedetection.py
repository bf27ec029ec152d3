from __future__ import annotations

import asyncio
import os
import platform
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.component import Signal
from pipeline.pdata.batch import Batch
from pipeline.processors.resourcedetection import (
    Attributes,
    ResourceDetectionConfig,
    ResourceDetectionProcessor,
    factory,
    parse_resource_attributes,
)
from tests.builders import kv, traces_request
from tests.support import Sink, processor_settings

K8S_ENV = {"K8S_POD_NAME": "app-7d9f-abcde", "K8S_POD_UID": "0b7c1c9e-1111-2222-3333-444455556666",
           "K8S_NAMESPACE_NAME": "shop", "K8S_NODE_NAME": "node-3",
           "K8S_CONTAINER_NAME": "app"}


class Host:
    def components(self) -> dict[Any, Any]:
        return {}


def make(config: dict[str, Any], environ: Mapping[str, str] | None = None,
         sink: Sink | None = None) -> ResourceDetectionProcessor:
    settings = processor_settings("resourcedetection", next_consumer=sink or Sink(),
                                  signal=Signal.TRACES)
    proc = ResourceDetectionProcessor(settings, ResourceDetectionConfig.model_validate(config),
                                      environ=environ if environ is not None else {})
    return proc


def values(kvs: Any) -> dict[str, Any]:
    return {item.key: getattr(item.value, item.value.WhichOneof("value")) for item in kvs}


async def test_env_detector() -> None:
    proc = make({"detectors": ["env"]}, {
        "OTEL_RESOURCE_ATTRIBUTES": " service.name=ignored , deployment.environment.name=prod,"
                                    "team=a%20b%2Cc,empty=",
        "OTEL_SERVICE_NAME": "checkout"})
    await proc.start(Host())  # type: ignore[arg-type]
    assert proc.detected == {"service.name": "checkout", "deployment.environment.name": "prod",
                             "team": "a b,c", "empty": ""}
    assert proc.errors == {}


@pytest.mark.parametrize("value", ["a=1,b", "=x", "a=%ff"])
async def test_malformed_resource_attributes_are_ignored_whole(value: str) -> None:
    proc = make({"detectors": ["env", "k8s"]},
                {"OTEL_RESOURCE_ATTRIBUTES": value, "OTEL_SERVICE_NAME": "s", **K8S_ENV})
    await proc.start(Host())  # type: ignore[arg-type]
    assert "OTEL_RESOURCE_ATTRIBUTES" in proc.errors["env"]
    # The env detector said nothing (not even OTEL_SERVICE_NAME); the others did.
    assert proc.detected == {"k8s.pod.name": "app-7d9f-abcde",
                             "k8s.pod.uid": "0b7c1c9e-1111-2222-3333-444455556666",
                             "k8s.namespace.name": "shop", "k8s.node.name": "node-3",
                             "k8s.container.name": "app"}


def test_parse_resource_attributes() -> None:
    assert parse_resource_attributes("") == {}
    assert parse_resource_attributes("a=1,,b=x=y") == {"a": "1", "b": "x=y"}


async def test_k8s_detector_skips_unset_and_takes_custom_names() -> None:
    proc = make({"detectors": ["k8s"], "k8s": {"env": {"k8s.pod.name": "MY_POD",
                                                       "k8s.node.name": "MY_NODE"}}},
                {"MY_POD": "p-1", "MY_NODE": "  ", "K8S_POD_NAME": "other"})
    await proc.start(Host())  # type: ignore[arg-type]
    assert proc.detected == {"k8s.pod.name": "p-1"}


def _machine_id() -> str | None:
    for p in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            text = Path(p).read_text().strip()
        except OSError:
            continue
        if text:
            return text
    return None


async def test_system_and_process_detectors() -> None:
    proc = make({"detectors": ["system", "process"], "system": {"hostname_sources": ["os"]}})
    await proc.start(Host())  # type: ignore[arg-type]
    expected: Attributes = {
        "os.type": "linux",
        "host.arch": {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()],
        "host.name": socket.gethostname(),
        "process.pid": os.getpid(),
        "process.executable.name": os.path.basename(sys.executable),
        "process.executable.path": sys.executable,
        "process.runtime.name": "cpython",
        "process.runtime.version": platform.python_version(),
        "process.runtime.description": sys.version.replace("\n", " "),
    }
    mid = _machine_id()
    if mid:
        expected["host.id"] = mid
    assert proc.detected == expected


async def test_dns_source_falls_back_to_os() -> None:
    proc = make({"detectors": ["system"], "system": {"hostname_sources": ["dns", "os"]}})
    await proc.start(Host())  # type: ignore[arg-type]
    fqdn = socket.getfqdn(socket.gethostname())
    want = fqdn if "." in fqdn and not fqdn.startswith("localhost") else socket.gethostname()
    assert proc.detected["host.name"] == want


async def test_override_and_first_detector_wins() -> None:
    env = {"OTEL_RESOURCE_ATTRIBUTES": "k8s.pod.name=from-env,team=x", **K8S_ENV}
    raw = traces_request(2).SerializeToString()
    for override, name in ((True, "from-env"), (False, "sent")):
        sink = Sink()
        proc = make({"detectors": ["env", "k8s"], "override": override}, env, sink)
        await proc.start(Host())  # type: ignore[arg-type]
        req = traces_request(2)
        req.resource_spans[0].resource.attributes.append(kv("k8s.pod.name", "sent"))
        await proc.consume(Batch(Signal.TRACES, raw=req.SerializeToString()))
        got = values(sink.batches[0].message.resource_spans[0].resource.attributes)
        assert got == {"service.name": "checkout", "k8s.pod.name": name, "team": "x",
                       "k8s.pod.uid": K8S_ENV["K8S_POD_UID"], "k8s.namespace.name": "shop",
                       "k8s.node.name": "node-3", "k8s.container.name": "app"}
    assert raw  # the builder is deterministic


async def test_nothing_detected_passes_batches_through() -> None:
    sink = Sink()
    proc = make({"detectors": ["k8s"]}, {}, sink)
    await proc.start(Host())  # type: ignore[arg-type]
    batch = Batch(Signal.TRACES, raw=traces_request(1).SerializeToString())
    await proc.consume(batch)
    assert sink.batches[0] is batch


class SlowProcessor(ResourceDetectionProcessor):
    def _run(self, name: str) -> Attributes:
        if name == "system":
            time.sleep(1.0)  # a DNS lookup that hangs
        return super()._run(name)


async def test_timeout_leaves_the_slow_detector_out_and_never_holds_the_loop() -> None:
    settings = processor_settings("resourcedetection", next_consumer=Sink(),
                                  signal=Signal.TRACES)
    proc = SlowProcessor(settings, ResourceDetectionConfig.model_validate(
        {"detectors": ["k8s", "system"], "timeout": "300ms"}), environ=K8S_ENV)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    t0 = time.monotonic()
    await proc.start(Host())  # type: ignore[arg-type]
    elapsed = time.monotonic() - t0
    ticker.cancel()
    assert 0.25 < elapsed < 0.9
    assert ticks >= 10  # the loop kept running while the detector blocked its thread
    assert proc.errors == {"system": "timed out (timeout 0.3s)"}
    assert set(proc.detected) == {"k8s.pod.name", "k8s.pod.uid", "k8s.namespace.name",
                                  "k8s.node.name", "k8s.container.name"}


@pytest.mark.parametrize(("config", "error"), [
    ({"detectors": []}, "at least 1"),
    ({"detectors": ["ec2"]}, "env', 'system', 'process' or 'k8s'"),
    ({"detectors": ["env", "env"]}, "detector listed twice: env"),
    ({"detectors": ["system"], "system": {"hostname_sources": ["cname"]}}, "'dns' or 'os'"),
    ({"detectors": ["env"], "timeout": "0s"}, "greater than 0"),
    ({"detectors": ["env"], "overide": False}, "overide"),
])
def test_config_errors(config: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        ResourceDetectionConfig.model_validate(config)


def test_factory() -> None:
    assert factory.type == "resourcedetection"
    assert set(factory.signals) == set(Signal)
