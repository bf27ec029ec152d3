"""The status page the `health` extension serves: its settings, the sampler task,
and the `/status` (HTML) and `/status.json` handlers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import Field

from pipeline import __version__
from pipeline.component import ComponentConfig, Host
from pipeline.config.types import Duration
from pipeline.extensions._statuspage.patterns import read_patterns
from pipeline.extensions._statuspage.render import render_html
from pipeline.extensions._statuspage.sampler import ThroughputSampler
from pipeline.extensions._statuspage.sampling import read_sampling
from pipeline.extensions._statuspage.view import (
    RowLike,
    component_views,
    pipeline_views,
    read_slos,
    slo_json,
    ts,
)
from pipeline.telemetry.metrics import Telemetry

if TYPE_CHECKING:
    from aiohttp import web

PATHS = ("/status", "/status.json")


class StatusPageSettings(ComponentConfig):
    enabled: bool = Field(True, description="serve /status and /status.json")
    refresh: Duration = Field(10.0, description="the page reloads itself this often; 0: never")
    sample_interval: Duration = Field(5.0, gt=0,
                                      description="how often throughput counters are sampled")
    throughput_window: Duration = Field(60.0, gt=0,
                                        description="items/s are averaged over this window")


class StatusPage:
    """Builds the status snapshot and renders it; the health extension serves it."""

    def __init__(self, settings: StatusPageSettings, telemetry: Telemetry, *,
                 host: Callable[[], Host | None], rows: Callable[[], Sequence[RowLike]],
                 running: Callable[[], bool], scrub: Callable[[str], str],
                 started_at: Callable[[], float], clock: Callable[[], float] = time.time,
                 logger: logging.Logger | None = None):
        self.settings = settings
        self.host = host
        self.rows = rows
        self.running = running
        self.scrub = scrub
        self.started_at = started_at
        self.clock = clock
        self.sampler = ThroughputSampler(telemetry, settings.throughput_window, scrub=scrub,
                                         wall_clock=clock, logger=logger)
        self._task: asyncio.Task[None] | None = None

    def install(self, app: web.Application) -> None:
        if self.settings.enabled:
            app.router.add_get("/status", self.handle_html)
            app.router.add_get("/status.json", self.handle_json)

    async def start(self) -> None:
        if self.settings.enabled:
            self._task = asyncio.create_task(self.sampler.run(self.settings.sample_interval),
                                             name="statuspage-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def sampler_state(self) -> dict[str, Any]:
        """For `/health/detailed`: how sampling the throughput counters went."""
        err = self.sampler.last_error
        return {"sampler_failures": 0 if err is None else err.failures,
                "sampler_last_error": None if err is None else err.text,
                "sampler_last_error_time": None if err is None else ts(err.at)}

    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        running = self.running()
        rates, failed = self.sampler.rates()
        components = component_views(list(self.rows()), rates, failed, self.scrub)
        host = self.host()
        pipelines = pipeline_views(host, components, rates)
        try:
            views = read_slos(host)
        except Exception as exc:  # a broken read API must not take the page down
            views = []
            slos_error: str | None = f"SLO state unavailable: {type(exc).__name__}"
        else:
            slos_error = None
        healthy = all(c["healthy"] for c in components)
        status = ("healthy" if healthy else "degraded") if running else "unhealthy"
        started = self.started_at()
        body: dict[str, Any] = {
            "status": status, "version": __version__, "timestamp": ts(now),
            "uptime_seconds": round(max(0.0, now - started), 3),
            "refresh_seconds": self.settings.refresh,
            "throughput_window_seconds": self.settings.throughput_window,
            "pipelines": pipelines, "components": components,
            "slos": [slo_json(v) for v in views]}
        if slos_error:
            body["slos_error"] = slos_error
        try:
            body["sampling"] = read_sampling(host)
        except Exception as exc:  # a broken read API must not take the page down
            body["sampling"] = []
            body["sampling_error"] = f"sampling state unavailable: {type(exc).__name__}"
        try:
            body["patterns"] = read_patterns(host)
        except Exception as exc:  # a broken read API must not take the page down
            body["patterns"] = []
            body["patterns_error"] = f"pattern state unavailable: {type(exc).__name__}"
        return body

    # Handlers -----------------------------------------------------------------------
    async def handle_json(self, request: web.Request) -> web.Response:
        from aiohttp import web

        return web.Response(body=orjson.dumps(self.snapshot()), content_type="application/json",
                            headers={"Cache-Control": "no-store"})

    async def handle_html(self, request: web.Request) -> web.Response:
        from aiohttp import web

        return web.Response(text=render_html(self.snapshot(), self.clock()),
                            content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store",
                                     "Content-Security-Policy":
                                         "default-src 'none'; style-src 'unsafe-inline'; "
                                         "img-src data:"})
