"""Secrets stay put, against a real `otelpipe run` (issue 11, item 4).

A backend that echoes the URL, the Authorization header and an api_key in its
400 answer; exporters configured with credentials in the URL; httpcheck
targets with credentials and `api_key=`: the secret never reaches a sender's
answer, the process log, /metrics, the health endpoints or emitted data, and
the backend still gets the credentials (as basic auth)."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from pipeline.pdata.otlpjson import encode_request
from tests.builders import traces_request
from tests.secretsdata import (
    API_KEY,
    PASSWORD,
    LeakyBackend,
    assert_no_secret,
    basic,
    leaky_backend_thread,
)
from tests.support import OtelpipeProcess, eventually, free_port, http_get


def post(port: int, body: bytes, content_type: str = "application/x-protobuf"
         ) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/traces", data=body,
                                 headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def otlphttp_config(backend: LeakyBackend, port: int, health: int, queue: bool) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{port}"}}}},
        "exporters": {"otlphttp/backend": {
            "endpoint": backend.with_credentials() + "/otlp",
            "traces_endpoint": backend.with_credentials(f"/v1/traces?api_key={API_KEY}"),
            "encoding": "json", "retry_on_failure": {"enabled": False},
            "sending_queue": {"enabled": queue}}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"extensions": ["health"], "pipelines": {"traces": {
            "receivers": ["otlp"], "exporters": ["otlphttp/backend"]}}},
    }


def scraped(port: int, needle: bytes) -> bytes | None:
    """The /metrics body on `port` once it contains `needle`."""
    body = http_get(f"http://127.0.0.1:{port}/metrics")[1]
    return body if needle in body else None


def health_texts(health: int) -> list[bytes]:
    return [http_get(f"http://127.0.0.1:{health}{path}")[1]
            for path in ("/health/detailed", "/health/readiness", "/metrics", "/status.json")]


@pytest.mark.parametrize("status", [400, 503])
def test_otlphttp_backend_error_never_reaches_the_sender_or_the_log(
        tmp_path: Path, status: int) -> None:
    port, health = free_port(), free_port()
    with leaky_backend_thread(status) as backend, OtelpipeProcess(
            otlphttp_config(backend, port, health, queue=False), tmp_path,
            wait_ports=(port, health)) as proc:
        code, body = post(port, traces_request(2).SerializeToString())
        code_json, body_json = post(port, encode_request(traces_request(1)),
                                    "application/json")
        eventually(lambda: "refused a request" in proc.logs(), what="the refusal logged")
        texts = health_texts(health)
        logs = proc.logs()
    assert backend.authorizations == [basic(), basic()]
    assert backend.paths[0] == f"/v1/traces?api_key={API_KEY}"
    if status == 400:
        assert (code, code_json) == (400, 400)
        reason = "exporter otlphttp/backend rejected the data: do not retry"
    else:
        assert (code, code_json) == (503, 503)
        reason = "exporter otlphttp/backend unavailable: retry later"
    assert orjson.loads(body_json)["message"] == reason
    assert reason.encode() in body
    assert f"http://127.0.0.1:{backend.port}/v1/traces?api_key=***: HTTP {status}" in logs
    assert_no_secret(body, body_json, logs, *texts)


def test_otlphttp_backend_error_through_the_queue_is_logged_masked(tmp_path: Path) -> None:
    port, health = free_port(), free_port()
    with leaky_backend_thread(400) as backend, OtelpipeProcess(
            otlphttp_config(backend, port, health, queue=True), tmp_path,
            wait_ports=(port, health)) as proc:
        code, body = post(port, traces_request(2).SerializeToString())
        eventually(lambda: "dropped data the backend rejected" in proc.logs(),
                   what="the drop logged")
        texts = health_texts(health)
        logs = proc.logs()
    assert code == 200  # acknowledged once queued, as documented
    assert backend.authorizations == [basic()]
    assert "http://alice:***@127.0.0.1" in logs  # the backend's echo, masked
    assert_no_secret(body, logs, *texts)


def test_userinfo_and_auth_basic_is_a_validation_error(tmp_path: Path) -> None:
    cfg = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:4318"}}}},
        "exporters": {"otlphttp": {"endpoint": f"http://alice:{PASSWORD}@127.0.0.1:1",
                                   "auth": {"basic": {"username": "bob", "password": "x"}}}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"],
                                             "exporters": ["otlphttp"]}}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    for command in ("validate", "run"):
        proc = subprocess.run([sys.executable, "-m", "pipeline", command, "-c", str(path)],
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 2, proc.stderr
        assert ("exporters.otlphttp.endpoint: credentials in the URL and auth.basic both "
                "set; use one") in proc.stderr
        assert_no_secret(proc.stdout, proc.stderr)


def test_httpcheck_urls_are_masked_in_logs_labels_and_attributes(tmp_path: Path) -> None:
    prom, health = free_port(), free_port()
    out = tmp_path / "metrics.jsonl"
    with leaky_backend_thread(200) as backend:
        refused = f"http://alice:{PASSWORD}@127.0.0.1:{free_port()}/down?api_key={API_KEY}"
        cfg = {
            "receivers": {"httpcheck": {"collection_interval": "200ms", "targets": [
                {"endpoint": backend.with_credentials(f"/health?api_key={API_KEY}&env=prod")},
                {"endpoint": refused}]}},
            "exporters": {"prometheus": {"endpoint": f"127.0.0.1:{prom}"},
                          "file": {"path": str(out)}},
            "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
            "service": {"extensions": ["health"], "pipelines": {"metrics": {
                "receivers": ["httpcheck"], "exporters": ["prometheus", "file"]}}},
        }
        with OtelpipeProcess(cfg, tmp_path, wait_ports=(prom, health)) as proc:
            scrape = eventually(lambda: scraped(prom, b"httpcheck_success"), what="a scrape")
            assert scrape is not None
            eventually(lambda: out.exists() and out.stat().st_size > 0, what="the file")
            eventually(lambda: "check failed" in proc.logs(), what="the failed check logged")
            texts = health_texts(health)
            logs = proc.logs()
    masked = f'http_url="http://alice:***@127.0.0.1:{backend.port}/health?api_key=***&env=prod"'
    assert masked.encode() in scrape
    assert basic() in backend.authorizations  # the credentials are still used
    assert_no_secret(scrape, out.read_bytes(), logs, *texts)
