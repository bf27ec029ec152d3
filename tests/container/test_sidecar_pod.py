"""The chart's sidecar rendering (what deploy/kubernetes/sidecar.yaml holds) run as a pod
with `podman play kube`: a real instrumented app (tests/apps/go: net/http with otelhttp
and the OTLP/HTTP exporters, in an image on the same base) beside otelpipe in one pod,
sharing its network namespace as in Kubernetes. The app exports to 127.0.0.1:4318, the
sidecar forwards to a gateway (an `otelpipe run` on the host, reached through the podman
bridge) that exports to Jaeger (scripts/jaeger.sh); every request's server span is
counted in Jaeger exactly, each named with the pod by the downward API.

What podman 4.3's kube support does not cover, and what this test changes in the
rendering because of it (the rest runs as rendered):
- `fieldRef` supports metadata.name, metadata.uid, labels and annotations only:
  metadata.namespace and spec.nodeName fail the pod, so they become literal values here.
- a containerPort without hostPort is published on the host's 0.0.0.0 under the same
  number (13133 would clash with other tests): the test gives it a free hostPort on
  127.0.0.1.
- probes: the livenessProbe becomes a podman healthcheck that runs `curl` inside the
  container (the image has none) with a named port left unresolved (port 0); the
  readinessProbe is ignored. So the test probes what the kubelet would: the probes'
  paths on the pod IP.
- resources, the PodDisruptionBudget, HPA, Services and rollout semantics are not
  exercised (one pod, no scheduler, no kubelet)."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.container.conftest import container_script, http_status, podman
from tests.container.test_helm import CHART, helm
from tests.integration.conftest import Jaeger
from tests.support import OtelpipeProcess, eventually, free_port

REQUESTS = 40
APP_PORT = 8080
# podman 4.3 kube play: fieldRef paths it cannot resolve, and what stands in for them.
UNSUPPORTED_FIELDS = {"metadata.namespace": "default", "spec.nodeName": socket.gethostname()}


@pytest.fixture
def jaeger() -> Jaeger:
    j = Jaeger()
    j.start()
    return j


@pytest.fixture
def gateway(jaeger: Jaeger, tmp_path: Path) -> Iterator[int]:
    """An otelpipe gateway on the host: OTLP/gRPC on every interface (the pod reaches it
    through the podman bridge), traces to Jaeger, logs and metrics to files."""
    port = free_port()
    config = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"0.0.0.0:{port}"}}}},
        "exporters": {
            "otlp/jaeger": {"endpoint": f"127.0.0.1:{jaeger.grpc_port}", "tls": {"insecure": True}},
            "file/logs": {"path": str(tmp_path / "logs.jsonl")},
            "file/metrics": {"path": str(tmp_path / "metrics.jsonl")},
        },
        "service": {"pipelines": {
            "traces": {"receivers": ["otlp"], "exporters": ["otlp/jaeger"]},
            "logs": {"receivers": ["otlp"], "exporters": ["file/logs"]},
            "metrics": {"receivers": ["otlp"], "exporters": ["file/metrics"]},
        }},
    }
    with OtelpipeProcess(config, tmp_path, wait_ports=(port,)):
        yield port


def bridge_gateway_ip() -> str:
    out = podman("network", "inspect", "podman",
                 "--format", "{{range .Subnets}}{{.Gateway}}{{end}}").stdout.strip()
    assert out, "the podman network has no gateway address"
    return out


def for_podman(docs: list[dict[str, Any]], health_host_port: int) -> list[dict[str, Any]]:
    """The rendering, with the changes podman's kube support needs (module docstring)."""
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            for e in c.get("env", []):
                field = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                if field in UNSUPPORTED_FIELDS:
                    del e["valueFrom"]
                    e["value"] = UNSUPPORTED_FIELDS[field]
            for p in c.get("ports", []):
                p.update(hostPort=health_host_port, hostIP="127.0.0.1")
    return docs


def jaeger_spans(jaeger: Jaeger, service: str, since: dt.datetime) -> list[dict[str, Any]]:
    """Every span of `service` in Jaeger (v3 API, OTLP JSON), with its resource."""
    until = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    url = (f"{jaeger.query_url}/api/v3/traces?query.service_name={service}"
           f"&query.start_time_min={since.strftime('%Y-%m-%dT%H:%M:%SZ')}"
           f"&query.start_time_max={until.strftime('%Y-%m-%dT%H:%M:%SZ')}"
           "&query.num_traces=500")
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise
    spans = []
    for rs in body.get("result", {}).get("resourceSpans", []):
        resource = {a["key"]: a["value"].get("stringValue")
                    for a in rs.get("resource", {}).get("attributes", [])}
        for ss in rs.get("scopeSpans", []):
            for sp in ss.get("spans", []):
                spans.append({**sp, "resource": resource})
    return spans


def test_sidecar_pod_app_spans_reach_jaeger(image: str, jaeger: Jaeger, gateway: int,
                                            tmp_path: Path) -> None:
    app_image = container_script("app-image").strip()
    service = f"sidecar-app-{uuid.uuid4().hex[:8]}"
    release = f"side{uuid.uuid4().hex[:6]}"
    repository, tag = image.rsplit(":", 1)
    values = {
        "replicaCount": 1,
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "sidecar": {
            "gatewayEndpoint": f"{bridge_gateway_ip()}:{gateway}",
            "app": [{"name": "app", "image": app_image, "args": [str(APP_PORT)],
                     "env": [{"name": "OTEL_EXPORTER_OTLP_ENDPOINT",
                              "value": "http://127.0.0.1:4318"},
                             {"name": "OTEL_SERVICE_NAME", "value": service},
                             {"name": "OTEL_BSP_SCHEDULE_DELAY", "value": "100"}]}],
        },
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    rendered = helm("template", release, str(CHART), "--set", "mode=sidecar", "--skip-tests",
                    "-f", str(values_file)).stdout
    health_port = free_port()
    docs = for_podman([d for d in yaml.safe_load_all(rendered) if d], health_port)
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    podman("play", "kube", str(manifest), timeout=300)
    try:
        [deployment] = [d for d in docs if d["kind"] == "Deployment"]
        pod = f"{deployment['metadata']['name']}-pod-0"
        sidecar = f"{pod}-otelpipe"
        eventually(lambda: http_status(
            f"http://127.0.0.1:{health_port}/health/readiness") == 200,
            timeout=60, what=lambda: "sidecar readiness\n" + podman(
                "logs", sidecar, check=False).stderr[-3000:])
        # The probes as written, on the pod IP (what the kubelet calls).
        [otelpipe] = [c for c in deployment["spec"]["template"]["spec"]["containers"]
                      if c["name"] == "otelpipe"]
        ports = {p["name"]: p["containerPort"] for p in otelpipe["ports"]}
        infra = podman("pod", "inspect", pod, "--format", "{{.InfraContainerID}}").stdout.strip()
        pod_ip = podman("inspect", infra, "--format",
                        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}").stdout.strip()
        for probe in ("livenessProbe", "readinessProbe"):
            get = otelpipe[probe]["httpGet"]
            url = f"http://{pod_ip}:{ports[get['port']]}{get['path']}"
            assert http_status(url) == 200, url
        # Requests to the app, from inside the pod (it listens on the pod's loopback).
        load = ("import sys, time, urllib.request\n"
                "base = f'http://127.0.0.1:{sys.argv[1]}'\n"
                "for _ in range(100):\n"
                "    try:\n"
                "        urllib.request.urlopen(base + '/ok', timeout=2).read(); break\n"
                "    except OSError:\n"
                "        time.sleep(0.1)\n"
                "for i in range(int(sys.argv[2]) - 1):\n"
                "    urllib.request.urlopen(f'{base}/users/{i}', timeout=5).read()\n")
        podman("exec", sidecar, "python3", "-c", load, str(APP_PORT), str(REQUESTS))
        pod_uid = podman("pod", "inspect", pod, "--format", "{{.Id}}").stdout.strip()

        def arrived() -> list[dict[str, Any]] | None:
            spans = jaeger_spans(jaeger, service, since)
            return spans if len(spans) >= REQUESTS else None

        spans = eventually(arrived, timeout=90, what=lambda: (
            f"{REQUESTS} spans of {service} in Jaeger; got "
            f"{len(jaeger_spans(jaeger, service, since))}\n"
            + podman("logs", sidecar, check=False).stderr[-3000:]))
        time.sleep(2)  # nothing more arrives: exactly one span per request
        spans = jaeger_spans(jaeger, service, since)
        print(f"{len(spans)} spans of {service} in Jaeger for {REQUESTS} requests")
        assert len(spans) == REQUESTS
        assert len({s["spanId"] for s in spans}) == REQUESTS
        names = sorted(s["name"] for s in spans)
        assert names == ["GET /ok"] + ["GET /users/{id}"] * (REQUESTS - 1)
        for s in spans:
            assert s["resource"]["k8s.pod.name"] == pod
            assert s["resource"]["k8s.pod.uid"] == pod_uid
            assert s["resource"]["k8s.namespace.name"] == "default"
            assert s["resource"]["service.name"] == service
    finally:
        podman("play", "kube", "--down", str(manifest), check=False, timeout=120)


@pytest.mark.parametrize("mode", ["sidecar", "deployment", "statefulset"])
def test_the_charts_helm_test_pod_validates_the_rendered_config(image: str, mode: str,
                                                                tmp_path: Path) -> None:
    """`helm test`'s pod (templates/tests/validate.yaml) with the rendered ConfigMap, run
    with `podman play kube`: `otelpipe validate` in the image accepts each mode's config,
    and refuses one that the values schema cannot catch (a pipeline naming a receiver
    that is not defined)."""
    repository, tag = image.rsplit(":", 1)
    release = f"vt{uuid.uuid4().hex[:6]}"

    def run(*extra: str) -> tuple[str, str]:
        rendered = helm("template", release, str(CHART), "--set", f"mode={mode}",
                        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
                        "--set", "image.pullPolicy=Never",
                        "--show-only", "templates/configmap.yaml",
                        "--show-only", "templates/tests/validate.yaml", *extra).stdout
        manifest = tmp_path / f"validate-{uuid.uuid4().hex[:6]}.yaml"
        manifest.write_text(rendered)
        podman("play", "kube", str(manifest), timeout=300)
        try:
            [pod] = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Pod"]
            ctr = f"{pod['metadata']['name']}-validate"
            eventually(lambda: podman("inspect", ctr, "--format", "{{.State.Status}}")
                       .stdout.strip() == "exited", timeout=60, what=f"{ctr} to exit")
            code = podman("inspect", ctr, "--format", "{{.State.ExitCode}}").stdout.strip()
            logs = podman("logs", ctr)
            return code, logs.stdout + logs.stderr
        finally:
            podman("play", "kube", "--down", str(manifest), check=False, timeout=120)

    code, out = run()
    assert code == "0", out
    assert "configuration is valid" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"config": {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "0.0.0.0:4317"}}}},
        "exporters": {"debug": {}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp", "kafka"],
                                             "exporters": ["debug"]}}}}}))
    code, out = run("-f", str(bad))
    assert code == "2", out
    assert "kafka" in out
