"""The prometheus receiver scraping real processes over real connections: the
Prometheus and Alertmanager that scripts/ run, an app instrumented with
prometheus_client (tests/apps/promapp.py), and aiohttp targets that go away and
come back, answer slowly, or send too much."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from pipeline.component import Signal
from pipeline.receivers.prometheus import factory
from pipeline.receivers.prometheus.config import PrometheusReceiverConfig
from pipeline.receivers.prometheus.receiver import PrometheusReceiver
from pipeline.telemetry.metrics import Telemetry
from tests.promscrape import Point, batch_points
from tests.support import (
    REPO,
    Sink,
    aeventually,
    free_port,
    port_open,
    receiver_settings,
    wait_port,
)

PROMETHEUS = "127.0.0.1:9091"
ALERTMANAGER = "127.0.0.1:19093"


def receiver(jobs: list[dict[str, Any]], sink: Sink,
             telemetry: Telemetry | None = None) -> PrometheusReceiver:
    cfg = PrometheusReceiverConfig.model_validate({"config": {"scrape_configs": jobs}})
    rcv = factory.create(receiver_settings("prometheus", telemetry,
                                           consumers={Signal.METRICS: sink}), cfg)
    assert isinstance(rcv, PrometheusReceiver)
    return rcv


def pts(sink: Sink, job: str | None = None) -> list[Point]:
    return [p for p in batch_points(sink.batches)
            if job is None or p.resource.get("service.name") == job]


def ups(sink: Sink, job: str) -> list[float | None]:
    return [p.value for p in pts(sink, job) if p.name == "up"]


def latest(sink: Sink, job: str, name: str, **attrs: str) -> Point | None:
    found = [p for p in pts(sink, job) if p.name == name and not p.stale
             and all(p.attrs.get(k) == v for k, v in attrs.items())]
    return found[-1] if found else None


async def running(rcv: PrometheusReceiver, cond: Callable[[], Any], what: str,
                  deadline: float = 60) -> Any:
    return await aeventually(cond, timeout=deadline, what=what)


def scrapes(telemetry: Telemetry, job: str, result: str) -> float:
    """otelpipe_prometheus_scrapes_total{job, result} from the receiver's own metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    for fam in text_string_to_metric_families(telemetry.render().decode()):
        for s in fam.samples:
            if s.name == "otelpipe_prometheus_scrapes_total" and \
                    s.labels.get("job") == job and s.labels.get("result") == result:
                return float(s.value)
    return 0.0


def require(address: str, script: str) -> None:
    port = address.split(":")[1]
    if not port_open(int(port)):
        pytest.fail(f"{address} is not listening: start it with scripts/{script} start")


# --- Prometheus and Alertmanager's own /metrics ----------------------------------


async def test_scrapes_prometheus_and_alertmanager() -> None:
    require(PROMETHEUS, "prometheus.sh")
    require(ALERTMANAGER, "alertmanager.sh")
    sink = Sink()
    rcv = receiver([
        {"job_name": "prometheus", "scrape_interval": "1s",
         "static_configs": [{"targets": [PROMETHEUS], "labels": {"team": "obs"}}]},
        {"job_name": "alertmanager", "scrape_interval": "1s",
         "static_configs": [{"targets": [ALERTMANAGER]}]},
    ], sink)
    await rcv.start(None)  # type: ignore[arg-type]
    try:
        await running(rcv, lambda: ups(sink, "prometheus")[-2:] == [1.0, 1.0]
                      and ups(sink, "alertmanager")[-2:] == [1.0, 1.0], "two good scrapes each")
    finally:
        await rcv.shutdown()
    prom = pts(sink, "prometheus")
    assert prom[0].resource == {"service.name": "prometheus",
                                "service.instance.id": PROMETHEUS,
                                "server.address": "127.0.0.1", "server.port": "9091",
                                "url.scheme": "http"}
    build = next(p for p in prom if p.name == "prometheus_build_info")
    assert build.kind == "gauge"
    assert build.value == 1.0
    assert build.attrs["team"] == "obs"
    assert "version" in build.attrs
    assert "job" not in build.attrs
    reqs = [p for p in prom if p.name == "prometheus_http_requests_total"]
    assert reqs
    assert all(p.kind == "sum" and p.monotonic for p in reqs)
    assert all(p.start <= p.time for p in reqs)
    hist = [p for p in prom if p.name == "prometheus_http_request_duration_seconds"]
    assert hist
    assert all(p.kind == "histogram" for p in hist)
    assert all(len(p.buckets) == len(p.bounds) + 1 for p in hist)
    assert all(sum(p.buckets) == p.count for p in hist)
    gc = [p for p in prom if p.name == "go_gc_duration_seconds"]
    assert gc
    assert gc[0].kind == "summary"
    assert [q for q, _ in gc[0].quantiles][:1] == [0.0]
    # scrape_samples_scraped is the sample count of that very scrape
    scraped = [p.value for p in prom if p.name == "scrape_samples_scraped"]
    assert scraped[0]
    assert scraped[0] > 100
    am = pts(sink, "alertmanager")
    assert any(p.name == "alertmanager_build_info" for p in am)
    assert any(p.name == "alertmanager_alerts_received_total" and p.kind == "sum" for p in am)


# --- an app instrumented with prometheus_client --------------------------------------


@pytest.fixture
def promapp() -> Iterator[Callable[[dict[str, Any]], None]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(REPO / "tests/apps/promapp.py"),
                             "--port", str(port)])
    try:
        wait_port(port)

        def control(body: dict[str, Any]) -> None:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/control",
                                         data=json.dumps(body).encode(), method="POST")
            urllib.request.urlopen(req, timeout=5).close()

        control.port = port  # type: ignore[attr-defined]
        yield control
    finally:
        proc.terminate()
        proc.wait(10)


async def test_app_known_values(promapp: Any) -> None:
    promapp({"pool_size": 10, "pool_checked_out": 9, "pool_overflow": 1, "cache_hits": 90,
             "cache_misses": 10, "requests": 100, "rate_limited": 2,
             "observe": [0.05, 0.3, 0.3, 2.0]})
    target = f"127.0.0.1:{promapp.port}"
    sink = Sink()
    rcv = receiver([{"job_name": "app", "scrape_interval": "1s",
                     "static_configs": [{"targets": [target], "labels": {"env": "test"}}]}],
                   sink)
    await rcv.start(None)  # type: ignore[arg-type]
    try:
        await running(rcv, lambda: latest(sink, "app", "cache_hits_total"), "a scrape")
        promapp({"cache_hits": 5})
        await running(rcv, lambda: (p := latest(sink, "app", "cache_hits_total"))
                      and p.value == 95.0, "the next value")
    finally:
        await rcv.shutdown()
    gauge = latest(sink, "app", "db_pool_checked_out", pool="main")
    assert gauge is not None
    assert gauge.kind == "gauge"
    assert gauge.value == 9.0
    assert gauge.attrs == {"pool": "main", "env": "test"}
    assert latest(sink, "app", "db_pool_size").value == 10.0  # type: ignore[union-attr]
    assert latest(sink, "app", "db_pool_overflow").value == 1.0  # type: ignore[union-attr]
    hits = [p for p in pts(sink, "app") if p.name == "cache_hits_total"]
    assert [p.value for p in hits][-1] == 95.0
    assert 90.0 in [p.value for p in hits]
    # OpenMetrics was negotiated: start time is the app's own _created, the same each scrape
    assert len({p.start for p in hits}) == 1
    assert hits[0].start < hits[0].time
    assert all(p.kind == "sum" and p.monotonic for p in hits)
    assert latest(sink, "app", "cache_misses_total").value == 10.0  # type: ignore[union-attr]
    assert latest(sink, "app", "http_requests_total").value == 100.0  # type: ignore[union-attr]
    assert latest(sink, "app", "rate_limit_rejections_total").value == 2.0  # type: ignore[union-attr]
    h = latest(sink, "app", "request_duration_seconds", route="/api")
    assert h is not None
    assert h.kind == "histogram"
    assert (h.count, h.bounds, h.buckets) == (4, [0.1, 0.25, 0.5, 1.0], [1, 0, 2, 0, 1])
    assert h.sum == pytest.approx(2.65)
    assert not [p for p in pts(sink, "app") if p.name.endswith("_created")]


# --- aiohttp targets: going away, slow, huge -----------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Target:
    """A scrape target whose body (and presence) the test controls."""

    def __init__(self) -> None:
        self.port = free_port()
        self.body = ""
        self.delay = 0.0
        self.runner: web.AppRunner | None = None

    async def up(self) -> None:
        async def metrics(request: web.Request) -> web.Response:
            if self.delay:
                await asyncio.sleep(self.delay)
            return web.Response(text=self.body, content_type="text/plain")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def down(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    t = Target()
    await t.up()
    yield t
    await t.down()


COUNTER = "# TYPE jobs_total counter\njobs_total{{queue=\"q\"}} {}\n# TYPE temp gauge\ntemp 21.5\n"


async def test_target_goes_away_then_comes_back_with_a_reset(target: Target) -> None:
    target.body = COUNTER.format(1000)
    sink = Sink()
    rcv = receiver([{"job_name": "flaky", "scrape_interval": "1s",
                     "static_configs": [{"targets": [target.address]}]}], sink)
    await rcv.start(None)  # type: ignore[arg-type]
    try:
        await running(rcv, lambda: ups(sink, "flaky")[-2:] == [1.0, 1.0], "two good scrapes")
        first = latest(sink, "flaky", "jobs_total")
        assert first is not None
        assert first.value == 1000.0
        await target.down()
        await running(rcv, lambda: ups(sink, "flaky")[-1:] == [0.0], "up = 0")
        stale = [p for p in pts(sink, "flaky") if p.stale]
        assert sorted(p.name for p in stale) == ["jobs_total", "temp"]  # once each
        assert next(p for p in stale if p.name == "jobs_total").start == first.start
        await running(rcv, lambda: ups(sink, "flaky")[-2:] == [0.0, 0.0], "down for a while")
        assert len([p for p in pts(sink, "flaky") if p.stale]) == 2  # not repeated
        target.body = COUNTER.format(7)  # the process restarted: the counter reset
        await target.up()
        await running(rcv, lambda: ups(sink, "flaky")[-1:] == [1.0], "up again")
        again = latest(sink, "flaky", "jobs_total")
        assert again is not None
        assert again.value == 7.0
        assert again.start == again.time > first.start  # reset detected: new start time
        assert latest(sink, "flaky", "temp").value == 21.5  # type: ignore[union-attr]
    finally:
        await rcv.shutdown()


async def test_series_that_disappears_is_marked_stale(target: Target) -> None:
    target.body = "a 1\nb 2\n"
    sink = Sink()
    rcv = receiver([{"job_name": "j", "scrape_interval": "1s",
                     "static_configs": [{"targets": [target.address]}]}], sink)
    await rcv.start(None)  # type: ignore[arg-type]
    try:
        await running(rcv, lambda: latest(sink, "j", "b"), "b scraped")
        target.body = "a 1\n"
        await running(rcv, lambda: [p for p in pts(sink, "j") if p.stale], "a stale marker")
        (stale,) = [p for p in pts(sink, "j") if p.stale]
        assert stale.name == "b"
        assert stale.kind == "gauge"
        assert ups(sink, "j")[-1] == 1.0
    finally:
        await rcv.shutdown()


async def test_slow_target_times_out(target: Target) -> None:
    target.body = "a 1\n"
    target.delay = 5.0
    sink = Sink()
    telemetry = Telemetry()
    rcv = receiver([{"job_name": "slow", "scrape_interval": "2s", "scrape_timeout": "300ms",
                     "static_configs": [{"targets": [target.address]}]}], sink, telemetry)
    await rcv.start(None)  # type: ignore[arg-type]
    try:
        await running(rcv, lambda: ups(sink, "slow"), "a scrape")
        (loop,) = rcv.targets()
        assert "within 0.3s" in loop.last_error
    finally:
        await rcv.shutdown()
    assert ups(sink, "slow")[0] == 0.0
    dur = next(p.value for p in pts(sink, "slow") if p.name == "scrape_duration_seconds")
    assert dur is not None
    assert 0.25 < dur < 2.0
    assert scrapes(telemetry, "slow", "timeout") >= 1


def huge(n: int) -> str:
    return "# TYPE big gauge\n" + "".join(f'big{{i="{i}",pad="{"x" * 20}"}} {i}\n'
                                           for i in range(n))


async def test_huge_target_limits(target: Target) -> None:
    target.body = huge(100_000)
    sink = Sink()
    telemetry = Telemetry()
    jobs: list[dict[str, Any]] = [
        {"job_name": "limited", "scrape_interval": "10s", "sample_limit": 50_000,
         "static_configs": [{"targets": [target.address]}]},
        {"job_name": "toobig", "scrape_interval": "10s", "body_size_limit": "1MB",
         "static_configs": [{"targets": [target.address]}]},
        {"job_name": "all", "scrape_interval": "10s",
         "static_configs": [{"targets": [target.address]}]},
    ]
    rcv = receiver(jobs, sink, telemetry)
    await rcv.start(None)  # type: ignore[arg-type]
    try:
        await running(rcv, lambda: ups(sink, "limited") and ups(sink, "toobig")
                      and ups(sink, "all"), "one scrape of each job", deadline=240)
    finally:
        await rcv.shutdown()
    assert ups(sink, "limited")[0] == 0.0
    assert ups(sink, "toobig")[0] == 0.0
    assert ups(sink, "all")[0] == 1.0
    # each scrape of "all" delivers the 100,000 series (a loaded machine may fit several
    # scrapes in before the other jobs have had one)
    big = [p for p in pts(sink, "all") if p.name == "big"]
    assert {p.attrs["i"] for p in big} == {str(i) for i in range(100_000)}
    assert len(big) == 100_000 * len(ups(sink, "all"))
    assert scrapes(telemetry, "limited", "sample_limit") >= 1
    assert scrapes(telemetry, "toobig", "body_size_limit") >= 1
    # (that no parse step holds the event loop is measured in CPU time, per call, by
    # tests/unit/receivers/prometheus/test_target.py: wall-clock gaps here would measure
    # the machine's load)


# --- file_sd --------------------------------------------------------------------------


async def test_file_sd_changes_are_picked_up(tmp_path: Path) -> None:
    a, b = Target(), Target()
    a.body, b.body = "from_a 1\n", "from_b 2\n"
    await a.up()
    await b.up()
    sd = tmp_path / "targets.json"
    sd.write_text(json.dumps([{"targets": [a.address], "labels": {"zone": "a"}}]))
    sink = Sink()
    rcv = receiver([{"job_name": "sd", "scrape_interval": "1s",
                     "file_sd_configs": [{"files": [str(tmp_path / "*.json")]}]}], sink)
    await rcv.start(None)  # type: ignore[arg-type]
    try:
        await running(rcv, lambda: latest(sink, "sd", "from_a"), "target a scraped")
        assert latest(sink, "sd", "from_a").attrs == {"zone": "a"}  # type: ignore[union-attr]
        sd.write_text(json.dumps([{"targets": [b.address], "labels": {"zone": "b"}}]))
        await running(rcv, lambda: latest(sink, "sd", "from_b"), "target b scraped")
        # a was removed: its series got a stale marker, and it is no longer scraped
        stale = [p for p in pts(sink, "sd") if p.stale]
        assert [(p.name, p.resource["service.instance.id"]) for p in stale] == \
            [("from_a", a.address)]
        assert [t.target.instance for t in rcv.targets()] == [b.address]
    finally:
        await rcv.shutdown()
        await a.down()
        await b.down()


# --- TLS, authentication, params, gzip ------------------------------------------------


async def test_https_with_ca_bearer_params_and_gzip(tmp_path: Path) -> None:
    import gzip
    import ssl

    from tests.certs import make_certs

    certs = make_certs(tmp_path / "certs")
    seen: list[tuple[str | None, str, str]] = []

    async def metrics(request: web.Request) -> web.Response:
        seen.append((request.headers.get("Authorization"), request.query_string,
                     request.headers.get("Accept-Encoding", "")))
        if request.headers.get("Authorization") != "Bearer t0ken":
            return web.Response(status=401)
        return web.Response(body=gzip.compress(b"# TYPE jobs_total counter\njobs_total 3\n"),
                            headers={"Content-Encoding": "gzip",
                                     "Content-Type": "text/plain; version=0.0.4"})

    app = web.Application()
    app.router.add_get("/probe", metrics)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs.server_cert, certs.server_key)
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    sink = Sink()
    rcv = receiver([
        {"job_name": "tls", "scrape_interval": "1s", "scheme": "https",
         "metrics_path": "/probe", "params": {"module": ["http_2xx"]},
         "tls_config": {"ca_file": str(certs.ca)},
         "authorization": {"credentials_file": str(token)},
         "static_configs": [{"targets": [f"localhost:{port}"]}]},
        {"job_name": "untrusted", "scrape_interval": "1s", "scheme": "https",
         "metrics_path": "/probe", "authorization": {"credentials": "t0ken"},
         "static_configs": [{"targets": [f"localhost:{port}"]}]},
        {"job_name": "wrongauth", "scrape_interval": "1s", "scheme": "https",
         "metrics_path": "/probe", "tls_config": {"ca_file": str(certs.ca)},
         "basic_auth": {"username": "u", "password": "p"},
         "static_configs": [{"targets": [f"localhost:{port}"]}]},
    ], sink)
    await rcv.start(None)  # type: ignore[arg-type]
    try:
        await running(rcv, lambda: latest(sink, "tls", "jobs_total") and ups(sink, "untrusted")
                      and ups(sink, "wrongauth"), "a scrape of each job")
        errors = {t.job.job_name: t.last_error for t in rcv.targets()}
    finally:
        await rcv.shutdown()
        await runner.cleanup()
    hits = latest(sink, "tls", "jobs_total")
    assert hits is not None
    assert hits.value == 3.0
    assert hits.resource["url.scheme"] == "https"
    assert ("Bearer t0ken", "module=http_2xx", "gzip") in seen
    assert ups(sink, "untrusted")[0] == 0.0  # the server's CA is not trusted
    assert "certificate" in errors["untrusted"].lower()
    assert ups(sink, "wrongauth")[0] == 0.0
    assert "HTTP status 401" in errors["wrongauth"]


# --- the whole process: otelpipe run, file exporter -------------------------------------


def test_otelpipe_run_scrapes_the_app_into_the_file_exporter(promapp: Any,
                                                            tmp_path: Path) -> None:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    from tests.promscrape import points
    from tests.support import OtelpipeProcess, eventually

    promapp({"pool_size": 20, "pool_checked_out": 19, "rate_limited": 4, "requests": 200})
    out = tmp_path / "metrics.jsonl"
    config = {
        "receivers": {"prometheus": {"config": {"scrape_configs": [{
            "job_name": "shop", "scrape_interval": "1s",
            "static_configs": [{"targets": [f"127.0.0.1:{promapp.port}"]}],
            "metric_relabel_configs": [
                {"source_labels": ["__name__"], "regex": "db_pool_.*|rate_limit_.*|up",
                 "action": "keep"}]}]}}},
        "exporters": {"file": {"path": str(out)}},
        "service": {"pipelines": {"metrics": {"receivers": ["prometheus"],
                                              "exporters": ["file"]}}},
    }

    def read() -> list[Point]:
        if not out.exists():
            return []
        found = []
        for line in out.read_text().splitlines():
            if line.strip():
                req = json_format.Parse(line, ExportMetricsServiceRequest())
                found += points(req)
        return found

    with OtelpipeProcess(config, tmp_path) as proc:
        got = eventually(lambda: [p for p in read() if p.name == "db_pool_checked_out"],
                         what="a scrape in the file", timeout=60)
        assert proc.proc is not None
    p = got[0]
    assert p.value == 19.0
    assert p.resource["service.name"] == "shop"
    assert p.resource["service.instance.id"] == f"127.0.0.1:{promapp.port}"
    names = {q.name for q in read()}
    # metric_relabel_configs kept only these (up and scrape_* are the scrape's own)
    assert names == {"db_pool_checked_out", "db_pool_size", "db_pool_overflow",
                     "rate_limit_rejections_total", "up", "scrape_duration_seconds",
                     "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
                     "scrape_series_added"}
    rl = next(q for q in read() if q.name == "rate_limit_rejections_total")
    assert rl.value == 4.0
    assert rl.monotonic


# --- bad bodies: each fails its scrape with a precise reason, costs little -------------


async def test_bad_bodies_fail_the_scrape_precisely() -> None:
    import zlib

    co = zlib.compressobj(9, zlib.DEFLATED, 31)
    line = b"a 1\n" * (1 << 20)
    bomb = b"".join(co.compress(line) for _ in range(64)) + co.flush()  # 256 MiB inflated
    bodies: dict[str, tuple[bytes, dict[str, str], int]] = {
        "bomb": (bomb, {"Content-Encoding": "gzip"}, 200),
        "utf8": (b'a{x="\xff\xfe"} 1\n', {}, 200),
        "line": (b"ok 1\nbroken{ 2\n", {}, 200),
        "noeof": (b"# TYPE a gauge\na 1\n",
                  {"Content-Type": "application/openmetrics-text; version=1.0.0"}, 200),
        "status": (b"oops", {}, 500),
    }

    async def handler(request: web.Request) -> web.Response:
        body, headers, status = bodies[request.match_info["name"]]
        return web.Response(body=body, status=status,
                            headers={"Content-Type": "text/plain", **headers})

    app = web.Application()
    app.router.add_get("/{name}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    sink = Sink()
    rcv = receiver([{"job_name": name, "scrape_interval": "5s", "metrics_path": f"/{name}",
                     "body_size_limit": "10MB",
                     "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                    for name in bodies], sink)
    await rcv.start(None)  # type: ignore[arg-type]
    try:
        await running(rcv, lambda: all(ups(sink, n) for n in bodies), "a scrape of each")
        errors = {t.job.job_name: t.last_error for t in rcv.targets()}
    finally:
        await rcv.shutdown()
        await runner.cleanup()
    assert all(ups(sink, n) == [0.0] for n in bodies)
    assert "body_size_limit" in errors["bomb"]
    assert "not valid UTF-8" in errors["utf8"]
    assert errors["line"].startswith("line 2:")
    assert "# EOF" in errors["noeof"]
    assert "HTTP status 500" in errors["status"]
    assert not [p for p in pts(sink) if p.name == "a"]  # nothing of a failed scrape leaks
