"""Real apps, instrumented by their own ecosystem's OpenTelemetry distribution, through a
real `otelpipe run`: otlp -> semconv -> redmetrics -> prometheus exporter.

Each app (tests/apps/<lang>, built by `scripts/apps.sh build`, cached outside the repo)
runs on a free port with nothing of ours in its client path: the distribution's own
exporter sends OTLP to otelpipe. A known request mix (a 200 route, a 500 route, a
~300 ms route and a route with a path parameter) must come out exactly:

- one RED series per route / method / status code, on the server spans, with the
  exact call count, whichever semantic-convention version the app sends (the
  `semconv` processor upgrades the old names);
- the slow route's durations above 0.25 s, the others counted in the histogram;
- where the SDK bridges logs, each request's log record carries the trace and span
  of its request's server span;
- the SLO SLI from those RED series (an `slo` connector behind `redmetrics`, read
  through the status page's `/status.json`): availability counts the 14 server
  calls with the 3 `/boom` 500s bad (11/14), latency (<= 250 ms, a bucket bound)
  the 14 calls with the 2 `/slow` ones bad (12/14) -- good, bad and total exactly.

The raw spans (before `semconv`) are also written to a file, so each case states the
status-code attribute its app sends by default or with OTEL_SEMCONV_STABILITY_OPT_IN.
An app that cannot be built fails its test (never skips).
"""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import REPO, OtelpipeProcess, eventually, free_port, port_open

APPS_SH = REPO / "scripts" / "apps.sh"

# Request path -> times requested. /users/{id} is hit with two ids: one route.
MIX = {"/ok": 5, "/boom": 3, "/slow": 2, "/users/7": 2, "/users/42": 2}
# The route each request path belongs to (by its first segment) and its status code.
STATUS = {"ok": "200", "boom": "500", "slow": "200", "users": "200"}
SLOW_EDGE = "0.25"


def segment(path: str) -> str:
    return path.strip("/").split("/")[0]


def calls_per_segment() -> Counter[str]:
    out: Counter[str] = Counter()
    for path, n in MIX.items():
        out[segment(path)] += n
    return out


@dataclass(frozen=True)
class App:
    name: str                       # scripts/apps.sh APP
    protocol: str                   # OTLP protocol the distribution uses by default
    routes: dict[str, str]          # first path segment -> http.route the app reports
    status_attrs: tuple[str, ...]   # status-code attributes on its raw server spans
    opt_in: str | None = None       # OTEL_SEMCONV_STABILITY_OPT_IN value, if any
    logs: bool = True               # the SDK bridges the app's logging to OTLP logs
    warm: bool = True               # its first request is as fast as the others
    env: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.name}-{(self.opt_in or 'default').replace('/', '-')}"


OLD, NEW = "http.status_code", "http.response.status_code"
FLASK_ROUTES = {"ok": "/ok", "boom": "/boom", "slow": "/slow", "users": "/users/<user_id>"}
EXPRESS_ROUTES = {"ok": "/ok", "boom": "/boom", "slow": "/slow", "users": "/users/:id"}
JDK_ROUTES = {"ok": "/ok", "boom": "/boom", "slow": "/slow", "users": "/users/"}
GO_ROUTES = {"ok": "/ok", "boom": "/boom", "slow": "/slow", "users": "/users/{id}"}
PY_LOGS = {"OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true"}

APPS = [
    App("python", "grpc", FLASK_ROUTES, (OLD,), env=PY_LOGS),
    App("python", "grpc", FLASK_ROUTES, (NEW,), opt_in="http", env=PY_LOGS),
    # Both names on every span: semconv must not count a span twice.
    App("python", "grpc", FLASK_ROUTES, (OLD, NEW), opt_in="http/dup", env=PY_LOGS),
    # Node's auto-instrumentations bridge winston/pino/bunyan, not console: no logs here.
    # instrumentation-http 0.300 sends only the stable names (http/dup adds nothing).
    App("node", "http/protobuf", EXPRESS_ROUTES, (NEW,), logs=False),
    # The Java agent 2.x sends the stable names (no opt-in left); java.util.logging is
    # bridged to OTLP logs.
    # Its first request, on a cold JVM (the agent loads its instrumentation then), can
    # take over 250 ms (seen in 1 of 2 runs here): the latency SLI may count one more bad.
    App("java", "http/protobuf", JDK_ROUTES, (NEW,), warm=False),
    # otelhttp (per route, see tests/apps/go/main.go) with the OTLP/HTTP exporters; slog
    # bridged by otelslog. v0.72 sends only the stable names (http/dup adds nothing).
    App("go", "http/protobuf", GO_ROUTES, (NEW,)),
]


@pytest.fixture(scope="module")
def built() -> dict[str, str]:
    """`scripts/apps.sh build APP` per app (a no-op when cached); an app that fails to
    build fails its tests with the script's output."""
    return {}


def build(app: str, cache: dict[str, str]) -> None:
    if app not in cache:
        proc = subprocess.run([str(APPS_SH), "build", app], capture_output=True, text=True,
                              timeout=1200, check=False)
        cache[app] = "" if proc.returncode == 0 else (
            f"scripts/apps.sh build {app} failed ({proc.returncode}):\n{proc.stdout}\n"
            f"{proc.stderr[-4000:]}")
    if cache[app]:
        pytest.fail(cache[app], pytrace=False)


def slo_definitions(service: str) -> list[dict[str, Any]]:
    server = {"service.name": service, "span.kind": "SPAN_KIND_SERVER"}
    return [
        {"name": "availability", "service": service, "objective": 99,
         "sli": {"type": "availability", "match": server}},
        {"name": "latency", "service": service, "objective": 95,
         "sli": {"type": "latency", "threshold": SLOW_EDGE, "match": server}},
    ]


def expected_slo_events(fast: float) -> dict[str, dict[str, float]]:
    """What the request mix implies: every call is an event; /boom answers 500 (bad for
    availability); `fast` calls took at most 250 ms (the mix: all but the 2 /slow ones)."""
    total = float(sum(MIX.values()))
    return {"availability": {"good": total - MIX["/boom"], "bad": float(MIX["/boom"]),
                             "total": total},
            "latency": {"good": fast, "bad": total - fast, "total": total}}


def slo_events(health: int, service: str) -> dict[str, dict[str, float]]:
    """good / bad / total over the period of each SLO of the app (`/status.json`)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{health}/status.json", timeout=5) as r:
        body = orjson.loads(r.read())
    return {s["name"]: s["events"] for s in body["slos"] if s["service"] == service}


def pipeline_config(grpc: int, http: int, scrape: int, tmp_path: Path,
                    service: str = "", health: int = 0) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc}"},
                                             "http": {"endpoint": f"127.0.0.1:{http}"}}}},
        "processors": {"semconv": {"mode": "upgrade"}},
        "connectors": {"redmetrics": {
            "dimensions": [{"name": "http.route"}, {"name": "http.request.method"},
                           {"name": "http.response.status_code"}],
            "histogram": {"unit": "s", "explicit": {
                "buckets": ["50ms", "100ms", "250ms", "500ms", "1s", "2s", "5s"]}},
            "errors": {"http_5xx": True},
            "metrics_flush_interval": "200ms",
        }, "slo": {"slos": slo_definitions(service or "app"), "flush_interval": "1s"}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health or free_port()}"}},
        "exporters": {
            "prometheus": {"endpoint": f"127.0.0.1:{scrape}"},
            "file/spans": {"path": str(tmp_path / "spans.jsonl"), "format": "json"},
            "file/logs": {"path": str(tmp_path / "logs.jsonl"), "format": "json"},
        },
        "service": {"extensions": ["health"], "pipelines": {
            "traces": {"receivers": ["otlp"], "processors": ["semconv"],
                       "exporters": ["redmetrics"]},
            "traces/raw": {"receivers": ["otlp"], "exporters": ["file/spans"]},
            "logs": {"receivers": ["otlp"], "exporters": ["file/logs"]},
            "metrics": {"receivers": ["redmetrics"], "exporters": ["prometheus", "slo"]},
            "metrics/slo": {"receivers": ["slo"], "exporters": ["prometheus"]},
        }},
    }


class RunningApp:
    """`scripts/apps.sh APP PORT` (which execs the app) with its output in a file."""

    def __init__(self, app: App, service: str, grpc: int, http: int, tmp_path: Path):
        self.port = free_port()
        self.log_path = tmp_path / f"{app.name}.log"
        endpoint = (f"http://127.0.0.1:{grpc}" if app.protocol == "grpc"
                    else f"http://127.0.0.1:{http}")
        env = {**os.environ,
               "OTEL_SERVICE_NAME": service,
               "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
               "OTEL_EXPORTER_OTLP_PROTOCOL": app.protocol,
               "OTEL_TRACES_EXPORTER": "otlp",
               "OTEL_LOGS_EXPORTER": "otlp",
               "OTEL_METRICS_EXPORTER": "none",
               "OTEL_BSP_SCHEDULE_DELAY": "200",
               "OTEL_BLRP_SCHEDULE_DELAY": "200",
               **app.env}
        env.pop("OTEL_SEMCONV_STABILITY_OPT_IN", None)
        if app.opt_in:
            env["OTEL_SEMCONV_STABILITY_OPT_IN"] = app.opt_in
        self._out = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([str(APPS_SH), app.name, str(self.port)], env=env,
                                     stdout=self._out, stderr=subprocess.STDOUT)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait_ready(self) -> None:
        def state() -> str | None:
            if port_open(self.port):
                return "listening"
            code = self.proc.poll()
            return None if code is None else f"exited with {code}"
        got = eventually(state, timeout=120, interval=0.2,
                         what=lambda: f"the app to listen on {self.port}:\n{self.logs()}")
        assert got == "listening", f"the app {got}:\n{self.logs()}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


def drive(port: int) -> None:
    for path, n in MIX.items():
        for _ in range(n):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                    code = r.status
            except urllib.error.HTTPError as e:
                code = e.code
            assert str(code) == STATUS[segment(path)], f"GET {path} answered {code}"


def scrape(port: int) -> list[tuple[str, dict[str, str], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return [(s.name, s.labels, s.value) for fam in text_string_to_metric_families(text)
            for s in fam.samples]


def server_series(samples: list[tuple[str, dict[str, str], float]], name: str,
                  service: str) -> dict[tuple[str, ...], float]:
    """(http_route, method, status code[, le]) -> value of the app's server-span series."""
    out: dict[tuple[str, ...], float] = {}
    for n, labels, value in samples:
        if (n == name and labels.get("service_name") == service
                and labels.get("span_kind") == "SPAN_KIND_SERVER"):
            key = (labels.get("http_route", ""), labels.get("http_request_method", ""),
                   labels.get("http_response_status_code", ""))
            out[key + ((labels["le"],) if "le" in labels else ())] = value
    return out


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if path.exists():
        for line in path.read_bytes().splitlines():
            yield orjson.loads(line)


def expected_calls(app: App) -> dict[tuple[str, ...], float]:
    return {(app.routes[seg], "GET", STATUS[seg]): float(n)
            for seg, n in calls_per_segment().items()}


def check_logs(app: App, service: str, tmp_path: Path) -> bool:
    """Every request logged one record inside its server span: same trace, same span."""
    spans = {s["span_id"]: s for s in read_jsonl(tmp_path / "spans.jsonl")
             if s.get("service.name") == service and s.get("kind") == "server"}
    per_route: Counter[str] = Counter()
    for rec in read_jsonl(tmp_path / "logs.jsonl"):
        body = str(rec.get("body", ""))
        if rec.get("service.name") != service or not body.endswith("handled"):
            continue
        span = spans.get(rec.get("span_id", ""))
        assert span is not None, f"log {rec} names no server span of the app"
        assert rec["trace_id"] == span["trace_id"], (rec, span)
        per_route[span["http.route"]] += 1
        word = body.split()[0]  # "ok handled", "user 7 handled" ...
        assert span["http.route"] == app.routes["users" if word == "user" else word], (rec, span)
    want = {app.routes[seg]: n for seg, n in calls_per_segment().items()}
    assert per_route == want or sum(per_route.values()) < sum(want.values()), per_route
    return per_route == want


@pytest.mark.parametrize("app", APPS, ids=lambda a: a.id)
def test_real_app_red_series_and_logs(app: App, built: dict[str, str],
                                      tmp_path: Path) -> None:
    build(app.name, built)
    grpc, http, prom, health = free_port(), free_port(), free_port(), free_port()
    service = f"realapp-{app.id}-{uuid.uuid4().hex[:6]}"
    with OtelpipeProcess(pipeline_config(grpc, http, prom, tmp_path, service, health),
                         tmp_path, wait_ports=(grpc, http, prom, health)) as pipe:
        running = RunningApp(app, service, grpc, http, tmp_path)
        try:
            running.wait_ready()
            drive(running.port)

            def diag() -> str:
                return f"\n--- app ---\n{running.logs()}\n--- otelpipe ---\n{pipe.logs()[-3000:]}"

            want = expected_calls(app)
            calls = eventually(
                lambda: (got := server_series(scrape(prom), "traces_span_metrics_calls_total",
                                              service)) == want and got,
                timeout=60, what=lambda: f"RED calls {want}{diag()}")
            assert calls == want
            samples = scrape(prom)
            counts = server_series(samples, "traces_span_metrics_duration_seconds_count",
                                   service)
            assert counts == want
            buckets = server_series(samples, "traces_span_metrics_duration_seconds_bucket",
                                    service)
            slow = (app.routes["slow"], "GET", "200")
            assert buckets[(*slow, SLOW_EDGE)] == 0, buckets
            assert buckets[(*slow, "+Inf")] == MIX["/slow"]
            errors = {labels.get("http_route"): (labels.get("status_code"), v)
                      for n, labels, v in samples
                      if n == "traces_span_metrics_calls_total"
                      and labels.get("service_name") == service
                      and labels.get("span_kind") == "SPAN_KIND_SERVER"}
            assert errors[app.routes["boom"]] == ("STATUS_CODE_ERROR", MIX["/boom"])

            # The SLIs from those series: exactly what the request mix implies (latency:
            # what the histogram says took <= 250 ms -- all but /slow on a warm app).
            fast = sum(v for k, v in buckets.items() if k[3] == SLOW_EDGE)
            total_calls = sum(MIX.values())
            if app.warm:
                assert fast == total_calls - MIX["/slow"], buckets
            else:
                assert total_calls - MIX["/slow"] - 1 <= fast <= total_calls - MIX["/slow"], \
                    buckets
            want_slo = expected_slo_events(fast)
            got_slo = eventually(
                lambda: (got := slo_events(health, service)) == want_slo and got,
                timeout=30, what=lambda: f"SLO events {want_slo}, got "
                                         f"{slo_events(health, service)}{diag()}")
            assert got_slo == want_slo

            # What the app itself sent (raw spans, before semconv).
            raw = [s for s in read_jsonl(tmp_path / "spans.jsonl")
                   if s.get("service.name") == service and s.get("kind") == "server"]
            assert len(raw) == sum(MIX.values())
            sent = {k for s in raw for k in s if k in ("http.status_code",
                                                       "http.response.status_code")}
            assert sent == set(app.status_attrs), raw[0]

            if app.logs:
                eventually(lambda: check_logs(app, service, tmp_path), timeout=30,
                           what=lambda: f"one log per request in its span{diag()}")
        finally:
            running.stop()
