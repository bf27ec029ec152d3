"""The image the Dockerfile builds, run as people run it (`podman run`, rootful), with
its embedded default config: the `OTELPIPE_*_ENDPOINT` variables the image sets make it
listen on 0.0.0.0, so the ports published on the host's 127.0.0.1 reach it.

Checked: probes answer, OTLP over gRPC and HTTP from the host with the OpenTelemetry
Python SDK's exporters, non-root user, `podman healthcheck run`, a read-only root
filesystem with state on the declared volume (a host directory here), and `podman stop`:
SIGTERM through tini, otelpipe drains, exits 0 within the grace period, and every span
the SDK had acknowledged is in the volume, counted exactly."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline import __version__
from pipeline.component import Signal
from pipeline.pdata.otlpjson import decode_request
from tests.container.conftest import UID, Container, http_status, inspect, podman
from tests.support import free_port

# The image's size without the OCI layer compression a registry applies (podman's
# .Size): a bound that catches a compiler, a pip cache or the SDK slipping in.
MAX_IMAGE_MB = 150  # issue 18
STOP_GRACE = 30


def published(data_dir: Path) -> tuple[list[str], dict[str, int]]:
    ports = {"grpc": free_port(), "http": free_port(), "health": free_port()}
    args = ["--read-only",
            "-p", f"127.0.0.1:{ports['grpc']}:4317", "-p", f"127.0.0.1:{ports['http']}:4318",
            "-p", f"127.0.0.1:{ports['health']}:13133",
            "-v", f"{data_dir}:/var/lib/otelpipe"]
    return args, ports


@pytest.fixture
def running(image: str, data_dir: Path) -> Iterator[tuple[Container, dict[str, int]]]:
    args, ports = published(data_dir)
    c = Container(f"otelpipe-test-{ports['health']}", image, args)
    try:
        c.start(ports["health"])
        print(f"cold start to ready: {c.ready_after:.2f}s")
        yield c, ports
    finally:
        c.remove()


def test_image_labels_size_and_contents(image: str) -> None:
    labels: dict[str, str] = orjson.loads(
        inspect(image, "{{json .Config.Labels}}") or "{}")
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.title"] == "otelpipe"
    assert "org.opencontainers.image.source" in labels
    size_mb = int(inspect(image, "{{.Size}}")) / 1e6
    print(f"image size: {size_mb:.0f} MB")
    assert size_mb <= MAX_IMAGE_MB
    # Runtime dependencies only: no SDK, no pip, no compiler.
    probe = ("import importlib.util as u, shutil; "
             "print([m for m in ('opentelemetry.sdk', 'pip', 'setuptools') if u.find_spec(m)], "
             "[c for c in ('gcc', 'cc', 'pip', 'pip3') if shutil.which(c)])")
    out = podman("run", "--rm", "--entrypoint", "python3", image, "-c", probe).stdout.strip()
    assert out == "[] []"
    assert inspect(image, "{{.Config.User}}") == f"{UID}:{UID}"
    assert "/var/lib/otelpipe" in inspect(image, "{{json .Config.Volumes}}")
    assert inspect(image, "{{json .Config.Entrypoint}}").startswith('["/usr/bin/tini","--"')


def test_starts_on_the_embedded_default_and_answers_probes(
        running: tuple[Container, dict[str, int]]) -> None:
    c, ports = running
    assert c.config()["Config"]["Cmd"] in (None, [])  # no -c: the embedded default
    for path in ("/health/liveness", "/health/readiness", "/health"):
        assert http_status(f"http://127.0.0.1:{ports['health']}{path}") == 200, path
    assert c.ready_after < 30


def test_runs_as_non_root_on_a_read_only_root(running: tuple[Container, dict[str, int]]
                                              ) -> None:
    c, _ = running
    assert c.exec("id", "-u").stdout.strip() == str(UID)
    assert c.config()["HostConfig"]["ReadonlyRootfs"] is True
    denied = c.exec("touch", "/opt/otelpipe/x", check=False)
    assert denied.returncode != 0
    assert "Read-only file system" in denied.stderr
    # The state volume is writable, and is where the default config writes.
    c.exec("touch", "/var/lib/otelpipe/.probe")
    # otelpipe is PID 2 under tini, not root either.
    ps = c.exec("python3", "-c", "import os; print(open('/proc/1/cmdline').read().split('\\0')[0],"
                " [os.stat(f'/proc/{p}').st_uid for p in os.listdir('/proc') if p.isdigit()])")
    assert ps.stdout.startswith("/usr/bin/tini ")
    assert "0" not in ps.stdout.split(" ", 1)[1].strip("[]\n").split(", ")


def test_podman_healthcheck_run_is_healthy(running: tuple[Container, dict[str, int]]) -> None:
    c, _ = running
    proc = podman("healthcheck", "run", c.name, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert inspect(c.name, "{{.State.Health.Status}}") == "healthy"
    # and it can fail: otelpipe stopped (SIGSTOP) does not answer the HEALTHCHECK.
    signal = ("import os, signal, sys; [os.kill(int(p), getattr(signal, sys.argv[1])) "
              "for p in os.listdir('/proc') if p.isdigit() and "
              "b'/otelpipe\\0run' in open(f'/proc/{p}/cmdline', 'rb').read() and int(p) != 1]")
    c.exec("python3", "-c", signal, "SIGSTOP")
    try:
        assert podman("healthcheck", "run", c.name, check=False).returncode != 0
    finally:
        c.exec("python3", "-c", signal, "SIGCONT")
    assert podman("healthcheck", "run", c.name, check=False).returncode == 0


def sdk_spans(n: int, service: str) -> list[Any]:
    """n finished SDK spans (ReadableSpan), recorded in memory."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("container-test")
    for i in range(n):
        with tracer.start_as_current_span(f"op-{i % 7}", attributes={"i": i}):
            pass
    spans = list(memory.get_finished_spans())
    provider.shutdown()
    return spans


def spans_in(data_dir: Path) -> list[Any]:
    path = data_dir / "traces.jsonl"
    if not path.exists():
        return []
    return [sp for line in path.read_bytes().splitlines() if line
            for rs in decode_request(Signal.TRACES, line).resource_spans
            for ss in rs.scope_spans for sp in ss.spans]


def services_in(data_dir: Path) -> set[str]:
    return {a.value.string_value
            for line in (data_dir / "traces.jsonl").read_bytes().splitlines() if line
            for rs in decode_request(Signal.TRACES, line).resource_spans
            for a in rs.resource.attributes if a.key == "service.name"}


def test_otlp_from_the_host_and_podman_stop_drains(image: str, data_dir: Path) -> None:
    """Spans over the published gRPC and HTTP ports, each export acknowledged; then
    `podman stop` right away: exit 0 within the grace period, and every acknowledged span
    is in traces.jsonl on the volume exactly once."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcExporter,
    )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )
    from opentelemetry.sdk.trace.export import SpanExportResult

    args, ports = published(data_dir)
    c = Container(f"otelpipe-drain-{ports['health']}", image, args)
    try:
        c.start(ports["health"])
        exporters = {
            "grpc": GrpcExporter(endpoint=f"127.0.0.1:{ports['grpc']}", insecure=True, timeout=10),
            "http": HttpExporter(endpoint=f"http://127.0.0.1:{ports['http']}/v1/traces",
                                 timeout=10),
        }
        acknowledged: set[bytes] = set()
        for transport, exporter in exporters.items():
            spans = sdk_spans(1500, f"from-host-{transport}")
            for i in range(0, len(spans), 100):
                batch = spans[i:i + 100]
                assert exporter.export(batch) is SpanExportResult.SUCCESS, transport
                acknowledged.update(s.context.span_id.to_bytes(8, "big") for s in batch)
            exporter.shutdown()
        t0 = time.monotonic()
        stop = podman("stop", "-t", str(STOP_GRACE), c.name, timeout=STOP_GRACE + 30)
        took = time.monotonic() - t0
        print(f"podman stop took {took:.2f}s")
        assert stop.returncode == 0
        assert inspect(c.name, "{{.State.ExitCode}}") == "0", c.logs()
        assert took < STOP_GRACE  # exited on SIGTERM, not killed at the end of the grace
        written = spans_in(data_dir)
        ids = [sp.span_id for sp in written]
        print(f"acknowledged {len(acknowledged)} spans, {len(ids)} written")
        assert len(ids) == len(set(ids)) == len(acknowledged) == 3000
        assert set(ids) == acknowledged
        assert services_in(data_dir) == {"from-host-grpc", "from-host-http"}
    finally:
        c.remove()


def test_the_readme_runs_the_image_as_these_tests_do(tmp_path: Path) -> None:
    """README "Run it in a container": its `docker run` has the flags these tests pass
    to `podman run` (host ports aside), and its scripts/container.sh commands exist."""
    import re
    import shlex

    from tests.support import REPO

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Run it in a container\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```sh\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    text = "\n".join(blocks).replace("\\\n", " ")
    [run] = [line for line in text.splitlines() if line.startswith("docker run ")]

    def shape(args: list[str]) -> list[str]:
        out = []
        for a in args:
            a = re.sub(r"^127\.0\.0\.1:\d+:", "127.0.0.1:PORT:", a)
            out.append(re.sub(r"^.*:/var/lib/otelpipe$", "DIR:/var/lib/otelpipe", a))
        return out

    words = shlex.split(run)[2:]
    args = [w for w in words if w not in ("-d", "--name", "otelpipe", "otelpipe:0.1.0")]
    assert shape(args) == shape(published(tmp_path)[0])
    assert words[-1] == f"otelpipe:{__version__}"
    script = (REPO / "scripts" / "container.sh").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.startswith("scripts/container.sh "):
            assert f"\n    {line.split()[1]})" in script, line


def test_the_pruned_image_loads_every_component_and_validates_every_example(image: str) -> None:
    """The last stage keeps only what otelpipe loads (Dockerfile): every component type
    the host's otelpipe lists is listed inside the image, and every file in configs/
    (mounted read-only, relative paths as in the repository) validates there, on a
    read-only root. What was removed is gone (no apt, dpkg-purged perl, iconv modules)."""
    import subprocess
    import sys

    from tests.support import REPO

    host = subprocess.run([sys.executable, "-m", "pipeline", "components"], capture_output=True,
                          text=True, check=True, cwd=REPO).stdout
    inside = podman("run", "--rm", "--read-only", "--entrypoint", "otelpipe", image,
                    "components").stdout
    assert inside == host
    configs = sorted(p.name for p in (REPO / "configs").glob("*.yaml"))
    assert len(configs) >= 10
    script = ('for f in "$@"; do otelpipe validate -c "configs/$f" >/dev/null '
              '|| { echo "FAILED $f"; exit 1; }; echo "ok $f"; done')
    out = podman("run", "--rm", "--read-only", "-v", f"{REPO}:/src:ro", "-w", "/src",
                 "--entrypoint", "sh", image, "-c", script, "sh", *configs, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    validated = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("ok ")]
    assert validated == configs
    gone = podman("run", "--rm", "--entrypoint", "sh", image, "-c",
                  "for p in /usr/bin/apt /usr/bin/perl /usr/lib/x86_64-linux-gnu/gconv "
                  "/usr/lib/python3.11/pydoc_data; do [ -e $p ] && echo $p; done; true").stdout
    assert gone.strip() == ""
