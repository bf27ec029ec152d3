"""The Helm chart deploy/helm/otelpipe, with helm v4 built from Go modules
(scripts/helm.sh): `helm lint` and `helm template` of every mode, the rendered manifests
checked against what each mode promises, the pipeline config checked at render time
(values.schema.json from `otelpipe schema`), and deploy/kubernetes/sidecar.yaml kept
equal to the chart's sidecar rendering. (The sidecar rendering is run as a pod by
test_sidecar_pod.py.)"""

from __future__ import annotations

import subprocess
import sys
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
from tests.support import REPO

CHART = REPO / "deploy" / "helm" / "otelpipe"
HELM = REPO / "scripts" / "helm.sh"
SIDECAR_MANIFEST = REPO / "deploy" / "kubernetes" / "sidecar.yaml"
MODES = ("sidecar", "deployment", "statefulset")
KINDS = {
    "sidecar": ["ConfigMap", "Deployment"],
    "deployment": ["ConfigMap", "Deployment", "HorizontalPodAutoscaler",
                   "PodDisruptionBudget", "Service"],
    "statefulset": ["ConfigMap", "PodDisruptionBudget", "Service", "Service", "StatefulSet"],
}


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=1800,
                          check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n"
                    f"{proc.stderr}", pytrace=False)
    return proc


def render(mode: str, *args: str, release: str = "otelpipe") -> list[dict[str, Any]]:
    out = helm("template", release, str(CHART), "--set", f"mode={mode}", *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def workload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [w] = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    return dict(w)


def otelpipe_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [c] = [c for c in workload(docs)["spec"]["template"]["spec"]["containers"]
           if c["name"] == "otelpipe"]
    return dict(c)


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment: literal values, `<fieldPath>` for downward-API ones."""
    return {e["name"]: e["value"] if "value" in e
            else f"<{e['valueFrom']['fieldRef']['fieldPath']}>" for e in container["env"]}


def rendered_config(docs: list[dict[str, Any]], tmp_path: Path) -> Config:
    """The ConfigMap's config as `otelpipe run -c` reads it in the pod."""
    c = otelpipe_container(docs)
    [cm] = [d for d in docs if d["kind"] == "ConfigMap"]
    path = tmp_path / "otelpipe.yaml"
    path.write_text(cm["data"]["otelpipe.yaml"])
    assert c["args"] == ["-c", "/etc/otelpipe/otelpipe.yaml"]
    return validate_config(load_config([path], env=container_env(c)), default_registry())


@pytest.mark.parametrize("mode", MODES)
def test_helm_lint(mode: str) -> None:
    out = helm("lint", str(CHART), "--strict", "--set", f"mode={mode}").stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in out


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_renders_what_it_promises(mode: str, tmp_path: Path) -> None:
    docs = render(mode, "--skip-tests")
    assert sorted(d["kind"] for d in docs) == KINDS[mode]
    c = otelpipe_container(docs)
    assert c["image"] == f"otelpipe:{__version__}"
    pod = workload(docs)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["resources"]["limits"]["memory"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts == {"config": "/etc/otelpipe", "data": "/var/lib/otelpipe"}
    config = rendered_config(docs, tmp_path)
    assert config.warnings == []
    # Probes hit the health extension's real paths on its port, on the pod IP.
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    [health] = config.components[Kind.EXTENSION].values()
    host, port = str(health.endpoint).rsplit(":", 1)  # type: ignore[attr-defined]
    assert host == "0.0.0.0"
    assert ports["health"] == int(port)
    for probe, path in (("livenessProbe", "/health/liveness"),
                        ("readinessProbe", "/health/readiness")):
        assert c[probe]["httpGet"] == {"path": path, "port": "health"}
        assert path in PATHS
    # The pod is named on the resource (downward API).
    env = container_env(c)
    assert env["K8S_POD_NAME"] == "<metadata.name>"
    assert env["K8S_NAMESPACE_NAME"] == "<metadata.namespace>"
    [exporter] = config.components[Kind.EXPORTER].values()
    queue = exporter.sending_queue  # type: ignore[attr-defined]
    assert queue.enabled
    if mode == "sidecar":
        names = [x["name"] for x in pod["containers"]]
        assert names == ["app", "otelpipe"]
        assert exporter.endpoint == "otelpipe-gateway:4317"  # type: ignore[attr-defined]
        assert set(ports) == {"health"}  # data ports stay on the pod's loopback
    else:
        assert {"otlp-grpc", "otlp-http"} <= set(ports)
        [svc] = [d for d in docs if d["kind"] == "Service"
                 and d["spec"].get("clusterIP") != "None"]
        assert {p["name"] for p in svc["spec"]["ports"]} == {"otlp-grpc", "otlp-http", "health"}
        [pdb] = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
        assert pdb["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]
    if mode == "deployment":
        [hpa] = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
        assert hpa["spec"]["scaleTargetRef"]["name"] == workload(docs)["metadata"]["name"]
        assert "replicas" not in workload(docs)["spec"]  # the HPA owns it
        assert queue.storage == "memory"
    if mode == "statefulset":
        [claim] = workload(docs)["spec"]["volumeClaimTemplates"]
        assert claim["metadata"]["name"] == "data"
        assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
        assert queue.storage == "disk"
        assert Path(queue.directory).is_relative_to("/var/lib/otelpipe")
        assert not any(v["name"] == "data" for v in pod["volumes"])


def test_service_monitor_is_optional() -> None:
    assert "ServiceMonitor" not in {d["kind"] for d in render("deployment")}
    docs = render("deployment", "--set", "serviceMonitor.enabled=true")
    [sm] = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert sm["spec"]["endpoints"] == [{"port": "health", "path": "/metrics", "interval": "30s"}]


def test_the_chart_test_validates_the_config_in_the_image() -> None:
    [pod] = [d for d in render("statefulset") if d["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [c] = pod["spec"]["containers"]
    assert c["command"][-4:] == ["otelpipe", "validate", "-c", "/etc/otelpipe/otelpipe.yaml"]


def test_a_config_of_ones_own_is_rendered_and_a_bad_one_refused(tmp_path: Path) -> None:
    own = {"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "0.0.0.0:4317"}}}},
           "exporters": {"debug": {}},
           "extensions": {"health": {"endpoint": "0.0.0.0:13133"}},
           "service": {"extensions": ["health"],
                       "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}}}}
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"config": own}))
    docs = render("deployment", "-f", str(values))
    [cm] = [d for d in docs if d["kind"] == "ConfigMap"]
    assert yaml.safe_load(cm["data"]["otelpipe.yaml"]) == own
    # An unknown key and a wrong type in the pipeline config fail the rendering.
    for bad, needle in (({"receivers": {"otlp": {"protcols": {}}}}, "protcols"),
                        ({"processors": {"batch": {"send_batch_size": "many"}}},
                         "send_batch_size")):
        values.write_text(yaml.safe_dump({"config": bad}))
        proc = helm("template", "x", str(CHART), "-f", str(values), check=False)
        assert proc.returncode != 0
        assert "values don't meet the specifications of the schema" in proc.stderr
        assert needle in proc.stderr
    proc = helm("template", "x", str(CHART), "--set", "mode=daemonset", check=False)
    assert proc.returncode != 0
    assert "mode" in proc.stderr


def test_values_schema_is_generated_from_otelpipe_schema() -> None:
    committed = (CHART / "values.schema.json").read_text(encoding="utf-8")
    schema = subprocess.run([sys.executable, "-m", "pipeline", "schema"], capture_output=True,
                            check=True, cwd=REPO).stdout
    fresh = subprocess.run([sys.executable, str(REPO / "deploy" / "helm" / "values-schema.py")],
                           input=schema, capture_output=True, check=True).stdout.decode()
    assert committed == fresh, "run scripts/helm.sh schema"


def test_the_sidecar_manifest_is_the_charts_rendering() -> None:
    out = helm("template", "app", str(CHART), "--set", "mode=sidecar", "--skip-tests").stdout
    text = SIDECAR_MANIFEST.read_text(encoding="utf-8")
    assert text.endswith(out), "run scripts/helm.sh sidecar-manifest"
    header = text[:-len(out)]
    assert all(line.startswith("#") for line in header.splitlines())
