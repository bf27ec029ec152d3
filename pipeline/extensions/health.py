"""Extension `health`: liveness, readiness, a status page and the pipeline's metrics.

```yaml
extensions:
  health:
    endpoint: localhost:13133   # the default (0.0.0.0:13133: every interface)
service:
  extensions: [health]
```

Endpoints (all JSON via orjson, `Cache-Control: no-store`):

- `GET /health`: 200 `{"status": "healthy", "timestamp", "version"}` while the
  service runs; 503 `"unhealthy"` while it starts or shuts down.
- `GET /health/liveness`: 200 `{"status": "alive"}` whenever the event loop
  answers (a Kubernetes liveness probe: restart only a wedged process).
- `GET /health/readiness`: 200 `{"status": "ready"}` when the service runs and
  every component reports healthy; else 503 `{"status": "not_ready", "failing":
  [{"component": "exporter file/traces", "error": "…"}]}` (a readiness probe:
  stop routing traffic to a pod whose exporters cannot deliver); also 503, with
  `"reason": "memory_limiter refusing data: …"` and `Retry-After`, while a
  memory_limiter refuses data (see docs/security.md for what that does to a
  Kubernetes Service).
- `GET /health/detailed`: always 200: version, uptime, status (`healthy`,
  `degraded` when some component is unhealthy, `unhealthy` when not running),
  pipelines, and each component's kind, id, pipeline, health and queue; with
  the status page enabled, `status_page`: how many throughput samples failed
  and the last failure (scrubbed) with its time; `memory_limiter_refusing`
  (the reason, or null), `event_loop_lag_seconds` (how late the service's
  100 ms timer fired last) and `event_loop_lag_max_seconds` (the most over the
  last 10 s); with `service.workers` > 1, `workers`: each process (index, pid,
  state, restarts, last exit, `failing`: its unhealthy components as it last
  reported, within a second; index 0 is this one, the primary), and the status
  is `degraded` while one is not running (readiness is not affected: the other
  processes serve) or while a worker's component is unhealthy (then readiness
  is not_ready too, the worker's components listed as `worker N: …`).
- `GET /metrics`, `GET /health/metrics`: the pipeline's own metrics in the
  Prometheus text format (process RSS/CPU as `otelpipe_process_*`); with
  workers, summed over every process (per-process gauges keep a `worker` label).
- `GET /status` (HTML) and `GET /status.json`: pipelines and components with
  health, throughput and queue depth, and every SLO of the `slo` connectors
  with a burn-down chart (see `pipeline/extensions/_statuspage/`).

Budgets: its own listener, with its own `max_connections` (default 100) and
timeouts (`read_header_timeout`, `read_timeout`, `idle_timeout`), so liveness
answers while the data ports are saturated.

Only component ids and `ComponentHealth` fields are ever shown, never configs;
error texts are scrubbed of URL credentials and `password=…`-style pairs, as
an exporter's error may quote the URL it failed to reach.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import orjson
from pydantic import Field

from pipeline import __version__
from pipeline.component import (
    Component,
    ComponentConfig,
    ComponentHealth,
    ComponentID,
    ExtensionCreateSettings,
    Factory,
    Host,
    Kind,
)
from pipeline.config.types import Duration, Endpoint
from pipeline.extensions._statuspage.page import PATHS as STATUS_PATHS
from pipeline.extensions._statuspage.page import StatusPage, StatusPageSettings
from pipeline.receiverhelper import pressure
from pipeline.receiverhelper.http import (
    HTTPServer,
    ServerLimits,
    idle_timeout_field,
    max_connections_field,
    read_header_timeout_field,
    read_timeout_field,
)

if TYPE_CHECKING:
    from aiohttp import web

DEFAULT_ENDPOINT = "localhost:13133"
# Its own connections, apart from the data ports': probes answer while those are full.
DEFAULT_MAX_CONNECTIONS = 100
PATHS = ("/health", "/health/liveness", "/health/readiness", "/health/detailed",
         "/health/metrics", "/metrics", *STATUS_PATHS)
MAX_ERROR_CHARS = 1000
_NOT_RUNNING = "service is not running (starting or shutting down)"

# Credentials an error text may quote: `scheme://user:pass@host`, `Bearer <token>`,
# `password=…` / `token: …` / `?api_key=…`.
_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")
_AUTH_SCHEME = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_SECRET_PAIR = re.compile(
    r"\b(password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|"
    r"secret[_-]?key|authorization|credentials?)(\s*[=:]\s*)"
    r"(?:(?:Bearer|Basic)\s+)?(?:\"[^\"]*\"|'[^']*'|[^\s&,;]+)",
    re.IGNORECASE)


def scrub(text: str) -> str:
    """An error text fit for a status page: credentials masked, length bounded."""
    text = _URL_USERINFO.sub(r"\1***@", text)
    text = _SECRET_PAIR.sub(r"\1\2***", text)
    text = _AUTH_SCHEME.sub(r"\1 ***", text)
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS] + "…"
    return text


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class HealthConfig(ComponentConfig):
    endpoint: Endpoint = Field(default=DEFAULT_ENDPOINT,
                               description="host:port of the health and metrics server.")
    status_page: StatusPageSettings = Field(
        default_factory=StatusPageSettings,
        description="the HTML status page at /status (and /status.json)")
    max_connections: int = max_connections_field(DEFAULT_MAX_CONNECTIONS)
    read_header_timeout: Duration = read_header_timeout_field()
    read_timeout: Duration = read_timeout_field()
    idle_timeout: Duration = idle_timeout_field()


@runtime_checkable
class Supervised(Protocol):
    """A host that may run in several processes (`service.workers`): the service."""

    def workers(self) -> list[dict[str, Any]] | None: ...

    async def metrics_exposition(self) -> bytes: ...


@dataclass
class _Row:
    kind: Kind
    id: ComponentID
    pipeline: str | None
    health: ComponentHealth

    @property
    def name(self) -> str:  # as ComponentEntry.name: "processor batch in traces"
        suffix = f" in {self.pipeline}" if self.pipeline else ""
        return f"{self.kind.value} {self.id}{suffix}"


class HealthExtension(Component):
    def __init__(self, settings: ExtensionCreateSettings, config: HealthConfig,
                 clock: Callable[[], float] = time.time):
        self.settings = settings
        self.config = config
        self.log = settings.logger
        self.telemetry = settings.telemetry
        self.clock = clock
        self.host: Host | None = None
        self.started_at = clock()
        self._server: HTTPServer | None = None
        self.status_page = StatusPage(
            config.status_page, self.telemetry, host=lambda: self.host, rows=self._rows,
            running=self._running, scrub=scrub, started_at=lambda: self.started_at,
            clock=self.clock, logger=self.log)

    # Lifecycle ----------------------------------------------------------------
    async def start(self, host: Host) -> None:
        self.host = host
        self.started_at = self.clock()
        from aiohttp import web

        # What @web.middleware does, on the bound method (aiohttp loads at start).
        errors = web.middleware(functools.partial(HealthExtension._errors, self))
        app = web.Application(middlewares=[errors])
        app.router.add_get("/health", self._health)
        app.router.add_get("/health/liveness", self._liveness)
        app.router.add_get("/health/readiness", self._readiness)
        app.router.add_get("/health/detailed", self._detailed)
        app.router.add_get("/health/metrics", self._metrics)
        app.router.add_get("/metrics", self._metrics)
        self.status_page.install(app)
        self._server = HTTPServer(app, self.config.endpoint, self.log, shutdown_timeout=1.0,
                                  limits=ServerLimits.of(self.config), telemetry=self.telemetry)
        await self._server.start()
        await self.status_page.start()

    async def shutdown(self) -> None:
        await self.status_page.stop()
        if self._server is not None:
            await self._server.stop()
            self._server = None

    # State ----------------------------------------------------------------------
    def _running(self) -> bool:
        return self.host is not None and self.host.started()

    def _rows(self) -> list[_Row]:
        host = self.host
        if host is None:
            return []
        rows = []
        for e in host.component_entries():  # processors once per pipeline
            try:
                h = e.component.health()
            except Exception as exc:  # a bug in health() must not break the probe
                h = ComponentHealth(healthy=False,
                                    last_error=f"health check failed: {type(exc).__name__}")
            rows.append(_Row(e.kind, e.id, e.pipeline, h))
        return rows

    @staticmethod
    def _failing(rows: list[_Row]) -> list[dict[str, Any]]:
        return [{"component": r.name,
                 "error": scrub(r.health.last_error) if r.health.last_error else "unhealthy"}
                for r in rows if not r.health.healthy]

    # Handlers -------------------------------------------------------------------
    async def _health(self, request: web.Request) -> web.Response:
        running = self._running()
        return _json({"status": "healthy" if running else "unhealthy",
                      "timestamp": rfc3339(self.clock()), "version": __version__},
                     200 if running else 503)

    async def _liveness(self, request: web.Request) -> web.Response:
        return _json({"status": "alive", "timestamp": rfc3339(self.clock())})

    def _workers(self) -> list[dict[str, Any]] | None:
        return self.host.workers() if isinstance(self.host, Supervised) else None

    @staticmethod
    def _workers_failing(workers: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        """The unhealthy components of the other processes, as each last reported."""
        return [{"component": f"worker {w['index']}: {f['component']}",
                 "error": scrub(f["error"])}
                for w in workers or () for f in w.get("failing") or ()]

    async def _readiness(self, request: web.Request) -> web.Response:
        running = self._running()
        failing = self._failing(self._rows()) + self._workers_failing(self._workers())
        refusal = pressure.MEMORY.refusal()
        now = rfc3339(self.clock())
        if running and not failing and refusal is None:
            return _json({"status": "ready", "timestamp": now})
        body: dict[str, Any] = {"status": "not_ready", "timestamp": now}
        if not running:
            body["reason"] = _NOT_RUNNING
        elif refusal is not None:
            body["reason"] = f"memory_limiter refusing data: {refusal.reason}"
        body["failing"] = failing
        return _json(body, 503, {"Retry-After": str(max(1, round(refusal.retry_after)))}
                     if refusal is not None else None)

    async def _detailed(self, request: web.Request) -> web.Response:
        running = self._running()
        rows = self._rows()
        healthy = all(r.health.healthy for r in rows)
        status = ("healthy" if healthy else "degraded") if running else "unhealthy"
        now = self.clock()
        pipelines = [] if self.host is None else [
            {"id": p.id, "signal": p.signal.value,
             "receivers": [str(c) for c in p.receivers],
             "processors": [str(c) for c in p.processors],
             "exporters": [str(c) for c in p.exporters]}
            for p in self.host.pipelines().values()]
        components = [
            {"kind": r.kind.value, "id": str(r.id), "pipeline": r.pipeline,
             "healthy": r.health.healthy,
             "last_error": scrub(r.health.last_error) if r.health.last_error else None,
             "queue_size": r.health.queue_size, "queue_capacity": r.health.queue_capacity}
            for r in rows]
        body = {"status": status, "ready": running and healthy, "version": __version__,
                "timestamp": rfc3339(now), "start_time": rfc3339(self.started_at),
                "uptime_seconds": round(max(0.0, now - self.started_at), 3),
                "pipelines": pipelines, "components": components}
        refusal = pressure.MEMORY.refusal()
        body["memory_limiter_refusing"] = refusal.reason if refusal is not None else None
        body["event_loop_lag_seconds"] = pressure.LOOP_LAG.current
        body["event_loop_lag_max_seconds"] = pressure.LOOP_LAG.recent_max
        if self.config.status_page.enabled:
            body["status_page"] = self.status_page.sampler_state()
        workers = self._workers()
        if workers is not None:
            body["workers"] = workers
            if self._workers_failing(workers):  # a worker's component is unhealthy
                body["ready"] = False
                if status == "healthy":
                    body["status"] = "degraded"
            if status == "healthy" and any(w["state"] != "running" for w in workers):
                body["status"] = "degraded"  # one starting or being restarted
        if not running:
            body["reason"] = _NOT_RUNNING
        return _json(body)

    async def _metrics(self, request: web.Request) -> web.Response:
        from aiohttp import web

        host = self.host
        text = await host.metrics_exposition() if isinstance(host, Supervised) \
            else self.telemetry.render()
        return web.Response(body=text,
                            headers={"Content-Type": self.telemetry.content_type,
                                     "Cache-Control": "no-store"})

    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        from aiohttp import web

        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPNotFound:
            return _json({"status": "not_found", "error": "no such endpoint",
                          "endpoints": list(PATHS)}, 404)
        except web.HTTPMethodNotAllowed as exc:
            return _json({"status": "method_not_allowed", "error": "use GET"}, 405,
                         {"Allow": ", ".join(sorted(exc.allowed_methods))})
        except web.HTTPException:
            raise
        except Exception:
            self.log.exception("health endpoint failed", extra={"path": request.path})
            return _json({"status": "error", "error": "internal error"}, 500)


def _json(body: dict[str, Any], status: int = 200,
          headers: dict[str, str] | None = None) -> web.Response:
    from aiohttp import web

    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json",
                        headers={"Cache-Control": "no-store", **(headers or {})})


def _create(settings: ExtensionCreateSettings, config: HealthConfig) -> HealthExtension:
    return HealthExtension(settings, config)


factory = Factory(
    type="health",
    kind=Kind.EXTENSION,
    config_model=HealthConfig,
    create=_create,
    description="Liveness/readiness probes, a JSON status page and the pipeline's own "
                "Prometheus metrics on one HTTP endpoint.",
    aliases=("health_check",),
)
