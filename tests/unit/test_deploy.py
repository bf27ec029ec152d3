"""deploy/kubernetes/sidecar.yaml, checked without a cluster: its pipeline config is
valid with the environment its container gets, it forwards to a gateway through a
sending queue with the pod named on every resource, its image is the one the
Dockerfile's documented build produces, and its probes hit real health paths."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline import __version__
from pipeline.component import Kind
from pipeline.config.loader import load_config
from pipeline.config.model import Config, validate_config
from pipeline.extensions.health import PATHS
from pipeline.registry import default_registry

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "kubernetes" / "sidecar.yaml"
BUILD = re.compile(r"docker build -t (?P<tag>\S+) \.")
DOWNWARD = {"K8S_POD_NAME": "metadata.name", "K8S_POD_UID": "metadata.uid",
            "K8S_NAMESPACE_NAME": "metadata.namespace", "K8S_NODE_NAME": "spec.nodeName"}
RESOURCE_KEYS = {"k8s.pod.name": "K8S_POD_NAME", "k8s.pod.uid": "K8S_POD_UID",
                 "k8s.namespace.name": "K8S_NAMESPACE_NAME",
                 "k8s.node.name": "K8S_NODE_NAME"}


def documents() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if d]
    return {d["kind"]: d for d in docs}


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = documents()["Deployment"]["spec"]["template"]["spec"]
    return spec


def sidecar() -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod_spec()["containers"]
    [container] = [c for c in containers if c["name"] == "otelpipe"]
    return container


def container_env() -> dict[str, str]:
    """What the container's environment holds: literal values, and a stand-in for
    each downward-API value (`<fieldPath>`)."""
    env: dict[str, str] = {}
    for e in sidecar().get("env", []):
        env[e["name"]] = e["value"] if "value" in e else \
            f"<{e['valueFrom']['fieldRef']['fieldPath']}>"
    return env


def sidecar_config(tmp_path: Path) -> Config:
    """The ConfigMap's pipeline config as `otelpipe run -c` reads it in the pod (every
    `${env:…}` it names must come from the container's env: nothing else is set)."""
    cm = documents()["ConfigMap"]
    [volume] = [v for v in pod_spec()["volumes"] if v.get("configMap")]
    assert volume["configMap"]["name"] == cm["metadata"]["name"]
    [mount] = [m for m in sidecar()["volumeMounts"] if m["name"] == volume["name"]]
    args = sidecar()["args"]
    config_path = Path(args[args.index("-c") + 1])
    assert config_path.parent == Path(mount["mountPath"])
    path = tmp_path / config_path.name
    path.write_text(cm["data"][config_path.name])
    return validate_config(load_config([path], env=container_env()), default_registry())


def test_the_config_is_valid_and_forwards_to_a_gateway(tmp_path: Path) -> None:
    config = sidecar_config(tmp_path)
    exporters = config.components[Kind.EXPORTER]
    assert [str(cid) for cid in exporters] == ["otlp/gateway"]
    [gateway] = exporters.values()
    assert gateway.endpoint == "otelpipe-gateway:4317"  # type: ignore[attr-defined]
    assert gateway.sending_queue.enabled  # type: ignore[attr-defined]
    assert sorted(config.pipelines) == ["logs", "metrics", "traces"]
    for p in config.pipelines.values():
        assert [str(e) for e in p.exporters] == ["otlp/gateway"]
    assert config.warnings == []


def test_the_pod_is_named_on_every_resource(tmp_path: Path) -> None:
    env = {e["name"]: e for e in sidecar()["env"]}
    for name, field in DOWNWARD.items():
        assert env[name]["valueFrom"]["fieldRef"]["fieldPath"] == field
    config = sidecar_config(tmp_path)
    [(cid, processor)] = [(c, p) for c, p in config.components[Kind.PROCESSOR].items()
                          if c.type == "resourcedetection"]
    assert processor.detectors == ["k8s"]  # type: ignore[attr-defined]
    assert processor.override  # type: ignore[attr-defined]
    for key, variable in RESOURCE_KEYS.items():
        assert processor.k8s.env[key] == variable  # type: ignore[attr-defined]
        assert variable in DOWNWARD
    for p in config.pipelines.values():
        assert cid in p.processors


def test_the_image_is_what_the_documented_build_tags() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tags = {BUILD.search(text)["tag"]  # type: ignore[index]
            for text in (dockerfile, readme, MANIFEST.read_text(encoding="utf-8"))}
    assert tags == {f"otelpipe:{__version__}"}
    assert sidecar()["image"] == f"otelpipe:{__version__}"


@pytest.mark.parametrize(("probe", "path"), [("livenessProbe", "/health/liveness"),
                                             ("readinessProbe", "/health/readiness")])
def test_probes_hit_the_health_extension(probe: str, path: str, tmp_path: Path) -> None:
    get = sidecar()[probe]["httpGet"]
    assert get["path"] == path
    assert get["path"] in PATHS
    ports = {p["name"]: p["containerPort"] for p in sidecar()["ports"]}
    health = sidecar_config(tmp_path).components[Kind.EXTENSION]
    [endpoint] = [str(cfg.endpoint) for cfg in health.values()]  # type: ignore[attr-defined]
    host, port = endpoint.rsplit(":", 1)
    assert ports[get["port"]] == int(port)
    assert host == "0.0.0.0"  # the kubelet probes the pod IP
