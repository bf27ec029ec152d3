"""`otelpipe run` with `resourcedetection` and `resource` on all three signals: what an
app sends over OTLP/HTTP comes out of the file exporter with the pod (downward-API
environment), the host, otelpipe's process and the static attributes on its
resource, the items untouched."""

from __future__ import annotations

import functools
import http.client
import platform
import socket
from pathlib import Path
from typing import Any

import orjson

from tests.builders import kv, logs_request, metrics_request, traces_request
from tests.support import OtelpipeProcess, eventually, free_port

K8S = {"K8S_POD_NAME": "shop-7d9f-abcde", "K8S_POD_UID": "0b7c1c9e-aaaa-bbbb-cccc-444455556666",
       "K8S_NAMESPACE_NAME": "shop", "K8S_NODE_NAME": "node-3", "K8S_CONTAINER_NAME": "app"}


def post(port: int, path: str, body: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/x-protobuf"})
        return conn.getresponse().status
    finally:
        conn.close()


def otlp_json_value(v: dict[str, Any]) -> Any:
    if "intValue" in v:
        return int(v["intValue"])
    return next(iter(v.values()))


def test_pod_host_process_and_static_attributes_on_every_signal(tmp_path: Path) -> None:
    port = free_port()
    pipelines = {sig: {"receivers": ["otlp"], "processors": ["resourcedetection", "resource"],
                       "exporters": [f"file/{sig}"]} for sig in ("traces", "metrics", "logs")}
    config: dict[str, Any] = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{port}"}}}},
        "processors": {
            "resourcedetection": {"detectors": ["env", "k8s", "system", "process"],
                                  "system": {"hostname_sources": ["os"]}},
            "resource": {"attributes": [
                {"key": "deployment.environment.name", "value": "prod", "action": "insert"},
                {"key": "team", "action": "delete"}]}},
        "exporters": {f"file/{sig}": {"path": str(tmp_path / f"{sig}.jsonl"), "format": "json"}
                      for sig in pipelines},
        "service": {"pipelines": pipelines},
    }
    env = {**K8S, "OTEL_SERVICE_NAME": "checkout-from-env",
           "OTEL_RESOURCE_ATTRIBUTES": "service.version=1.4.2,cloud.region=eu-west-1"}
    traces = traces_request(3)
    traces.resource_spans[0].resource.attributes.append(kv("team", "payments"))
    with OtelpipeProcess(config, tmp_path, env=env, wait_ports=(port,)) as proc:
        assert post(port, "/v1/traces", traces.SerializeToString()) == 200
        assert post(port, "/v1/metrics", metrics_request([2]).SerializeToString()) == 200
        assert post(port, "/v1/logs", logs_request(2).SerializeToString()) == 200
        pid = proc.pid

        def lines(sig: str) -> list[dict[str, Any]]:
            path = tmp_path / f"{sig}.jsonl"
            return ([orjson.loads(x) for x in path.read_bytes().splitlines()]
                    if path.exists() else [])

        got = {sig: eventually(functools.partial(lines, sig), what=f"{sig} in the file")
               for sig in pipelines}
    assert (len(got["traces"]), len(got["logs"])) == (3, 2)  # one line per span / record
    # Metrics are written as OTLP JSON requests: their resources, flattened here.
    [request] = got["metrics"]
    got["metrics"] = [{**{a["key"]: otlp_json_value(a["value"])
                          for a in rm["resource"]["attributes"]},
                       "points": sum(len(m["gauge"]["dataPoints"]) for sm in rm["scopeMetrics"]
                                     for m in sm["metrics"])}
                      for rm in request["resourceMetrics"]]
    assert [m["points"] for m in got["metrics"]] == [2]
    machine = {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()]
    expected = {
        "service.name": "checkout-from-env", "service.version": "1.4.2",
        "cloud.region": "eu-west-1", "deployment.environment.name": "prod",
        "k8s.pod.name": K8S["K8S_POD_NAME"], "k8s.pod.uid": K8S["K8S_POD_UID"],
        "k8s.namespace.name": "shop", "k8s.node.name": "node-3", "k8s.container.name": "app",
        "host.name": socket.gethostname(), "os.type": "linux", "host.arch": machine,
        "process.pid": pid, "process.runtime.name": "cpython",
    }
    for sig, records in got.items():
        for rec in records:
            for key, value in expected.items():
                assert rec.get(key) == value, (sig, key, rec)
            assert "team" not in rec, rec  # deleted by the resource processor
    assert sorted(r["name"] for r in got["traces"]) == ["span-0", "span-1", "span-2"]
