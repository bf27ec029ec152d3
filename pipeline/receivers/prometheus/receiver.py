"""The `prometheus` receiver's runtime: one scrape pool per job (discovery,
targets), one loop per target (jittered ticks, fetch, chunked parse, delivery).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import TYPE_CHECKING, Any

from pipeline import __version__
from pipeline.component import Component, Host, ReceiverCreateSettings, Signal
from pipeline.config.secrets import mask_text, mask_url
from pipeline.errors import PermanentError, RetryableError
from pipeline.pdata.batch import Batch
from pipeline.receiverhelper.obs import ReceiverObs
from pipeline.receivers.prometheus.config import PrometheusReceiverConfig, ScrapeConfig
from pipeline.receivers.prometheus.discovery import FileSD, Group, Target, build_targets
from pipeline.receivers.prometheus.otlpmetrics import (
    ScrapeResult,
    attrs_bytes,
    gauge_metric,
    resource_metrics,
)
from pipeline.receivers.prometheus.relabel import compile_rules
from pipeline.receivers.prometheus.target import (
    CHUNK_LINES,
    ParseError,
    SampleLimitExceeded,
    TargetState,
)
from pipeline.telemetry.metrics import CounterSpec

if TYPE_CHECKING:
    import aiohttp

SCRAPES = CounterSpec(
    "otelpipe_prometheus_scrapes",
    "Scrapes of the prometheus receiver by job and result: ok, or why it failed "
    "(timeout, http_status, connection, body_size_limit, sample_limit, parse).",
    ("receiver", "job", "result"))

ACCEPT = ("application/openmetrics-text;version=1.0.0;q=0.5,"
          "application/openmetrics-text;version=0.0.1;q=0.4,"
          "text/plain;version=0.0.4;q=0.3,*/*;q=0.2")
# `body_size_limit: 0` (Prometheus: no limit) still stops here, to bound memory.
MAX_BODY = 256 * 1024 * 1024
FILE_SD_POLL = 1.0


class ScrapeFailure(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _host_port(instance: str) -> tuple[str, str]:
    if instance.startswith("["):
        host, _, rest = instance[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else ""
    host, sep, port = instance.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, port
    return instance, ""


class TargetLoop:
    """Scrapes one target every interval, at its hash-derived phase."""

    def __init__(self, rcv: PrometheusReceiver, job: ScrapeConfig, target: Target):
        self.rcv = rcv
        self.job = job
        self.target = target
        self.interval = rcv.config.config.interval(job)
        self.timeout = rcv.config.config.timeout(job)
        self.state = TargetState(
            target_labels=target.public_labels, rules=rcv.metric_rules[job.job_name],
            honor_labels=job.honor_labels, honor_timestamps=job.honor_timestamps,
            sample_limit=job.sample_limit, max_series=rcv.config.max_series_per_target)
        host, port = _host_port(target.instance)
        res = [("service.name", target.job), ("service.instance.id", target.instance),
               ("server.address", host)]
        if port:
            res.append(("server.port", port))
        res.append(("url.scheme", target.scheme))
        self.resource = res
        extra = sorted((k, v) for k, v in target.public_labels.items()
                       if k not in ("job", "instance"))
        self.own_attrs = attrs_bytes(extra)
        self.task: asyncio.Task[None] | None = None
        self.up: bool | None = None
        self.scrapes = 0
        self.last_error = ""

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"scrape {self.target.url}")

    async def stop(self, *, stale: bool) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        if stale and self.state.live:
            res = self.state.fail(time.time_ns())
            await self.rcv.deliver(self, res)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.interval
        now = time.time()
        first = now - now % interval + self.target.offset(interval)
        if first < now:
            first += interval
        next_tick = loop.time() + (first - now)
        while True:
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            try:
                await self.scrape()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.rcv.log.exception("scrape failed unexpectedly",
                                       extra={"url": mask_url(self.target.url)})
            next_tick += interval
            now_l = loop.time()
            if now_l - next_tick >= interval:  # overran: skip missed ticks, keep the phase
                next_tick += (now_l - next_tick) // interval * interval

    async def scrape(self) -> None:
        """One scrape: fetch, parse, deliver (also the failure case: up=0, stale)."""
        start_ns = time.time_ns()
        t0 = time.perf_counter()
        try:
            body, om = await self.fetch()
            res = await self.parse(body, om, start_ns)
            up = 1.0
            reason = "ok"
        except ScrapeFailure as exc:
            res = self.state.fail(start_ns)
            up = 0.0
            reason = exc.reason
            self.last_error = mask_text(str(exc))
        duration = time.perf_counter() - t0
        self.scrapes += 1
        self.rcv.scrapes.labels(self.rcv.rid, self.job.job_name, reason).inc()
        if (up == 1.0) != self.up:
            if up:
                self.rcv.log.info("target up", extra={"url": mask_url(self.target.url)})
            else:
                self.rcv.log.warning("target down", extra={"url": mask_url(self.target.url),
                                                           "error": self.last_error})
            self.up = up == 1.0
        a = self.own_attrs
        for field in (
            gauge_metric("up", "The scraping was successful", "", up, start_ns, a),
            gauge_metric("scrape_duration_seconds", "Duration of the scrape", "s",
                         duration, start_ns, a),
            gauge_metric("scrape_samples_scraped", "The number of samples the target exposed",
                         "", float(res.samples), start_ns, a),
            gauge_metric("scrape_samples_post_metric_relabeling",
                         "The number of samples remaining after metric relabeling was applied",
                         "", float(res.samples_post), start_ns, a),
            gauge_metric("scrape_series_added",
                         "The approximate number of new series in this scrape", "",
                         float(res.added), start_ns, a),
        ):
            res.add(field)
        res.points += 5
        await self.rcv.deliver(self, res)

    def _headers(self) -> dict[str, str]:
        h = {"Accept": ACCEPT, "Accept-Encoding": "gzip",
             "User-Agent": f"otelpipe/{__version__}",
             "X-Prometheus-Scrape-Timeout-Seconds": f"{self.timeout:g}"}
        try:
            if self.job.basic_auth is not None:
                h["Authorization"] = self.job.basic_auth.header()
            elif self.job.authorization is not None:
                h["Authorization"] = self.job.authorization.header()
        except OSError as exc:
            raise ScrapeFailure("connection", f"cannot read credentials file: {exc}") from None
        return h

    async def fetch(self) -> tuple[bytes, bool]:
        session = self.rcv.session
        assert session is not None, "start() first"
        limit = self.job.body_size_limit or MAX_BODY
        kwargs: dict[str, Any] = {}
        if self.job.scheme == "https" or self.target.scheme == "https":
            kwargs["ssl"] = self.rcv.ssl_contexts.get(self.job.job_name, True)
            if self.job.tls_config is not None and self.job.tls_config.server_name:
                kwargs["server_hostname"] = self.job.tls_config.server_name
        try:
            async with asyncio.timeout(self.timeout):
                async with session.get(self.target.url, headers=self._headers(),
                                       **kwargs) as resp:
                    if resp.status != 200:
                        raise ScrapeFailure("http_status",
                                            f"server returned HTTP status {resp.status}")
                    if resp.content_length is not None and resp.content_length > limit \
                            and "gzip" not in resp.headers.get("Content-Encoding", ""):
                        raise ScrapeFailure("body_size_limit",
                                            f"body larger than body_size_limit ({limit} bytes)")
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in resp.content.iter_chunked(1 << 16):
                        size += len(chunk)
                        if size > limit:
                            raise ScrapeFailure(
                                "body_size_limit",
                                f"body larger than body_size_limit ({limit} bytes)")
                        chunks.append(chunk)
                    ctype = resp.headers.get("Content-Type", "")
        except TimeoutError:
            raise ScrapeFailure("timeout",
                                f"no complete response within {self.timeout:g}s") from None
        except ScrapeFailure:
            raise
        except Exception as exc:
            raise ScrapeFailure("connection", f"{type(exc).__name__}: {exc}") from None
        return b"".join(chunks), ctype.startswith("application/openmetrics-text")

    async def parse(self, body: bytes, om: bool, now_ns: int) -> ScrapeResult:
        """Parse and encode in chunks of lines, yielding to the loop between them."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ScrapeFailure("parse", f"body is not valid UTF-8 (byte {exc.start})") from None
        del body
        lines = text.split("\n")
        del text
        st = self.state
        st.begin(om)
        n = len(lines)
        try:
            i = 0
            while i < n and not st.eof:
                i = st.feed(lines, i, n, now_ns)
                await asyncio.sleep(0)
            if om and not st.eof:
                raise ParseError("OpenMetrics body does not end with # EOF")
            for i in range(0, st.touched, CHUNK_LINES):
                st.encode(i, i + CHUNK_LINES)
                await asyncio.sleep(0)
        except ParseError as exc:
            raise ScrapeFailure("parse", str(exc)) from None
        except SampleLimitExceeded as exc:
            raise ScrapeFailure("sample_limit", str(exc)) from None
        return st.finish(now_ns)


class ScrapePool:
    """The targets of one job, kept in step with discovery."""

    def __init__(self, rcv: PrometheusReceiver, job: ScrapeConfig):
        self.rcv = rcv
        self.job = job
        self.rules = compile_rules(job.relabel_configs)
        self.static = [Group(tuple(s.targets), tuple(sorted(s.labels.items())), f"static:{i}")
                       for i, s in enumerate(job.static_configs)]
        self.file_sd = [FileSD(c, rcv.log) for c in job.file_sd_configs]
        self.loops: dict[str, TargetLoop] = {}
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.file_sd:
            await self._poll()
            self.task = asyncio.create_task(self._discover(), name=f"file_sd {self.job.job_name}")
        else:
            await self.sync()

    async def _poll(self) -> bool:
        now = time.monotonic()
        changed = await asyncio.to_thread(lambda: [f.poll(now) for f in self.file_sd])
        if any(changed) or not self.loops:
            await self.sync()
        return any(changed)

    async def _discover(self) -> None:
        while True:
            await asyncio.sleep(FILE_SD_POLL)
            try:
                await self._poll()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.rcv.log.exception("file_sd poll failed")

    async def sync(self) -> None:
        groups = list(self.static)
        for f in self.file_sd:
            groups.extend(f.groups)
        targets = {t.key: t for t in build_targets(self.job, self.rcv.config.config, groups,
                                                   self.rules)}
        gone = [k for k in self.loops if k not in targets]
        for k in gone:
            await self.loops.pop(k).stop(stale=True)
        for k, t in targets.items():
            if k not in self.loops:
                loop = TargetLoop(self.rcv, self.job, t)
                self.loops[k] = loop
                loop.start()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        for loop in self.loops.values():
            await loop.stop(stale=False)
        self.loops.clear()


class PrometheusReceiver(Component):
    def __init__(self, settings: ReceiverCreateSettings, config: PrometheusReceiverConfig):
        self.config = config
        self.log = settings.logger
        self.consumer = settings.consumers[Signal.METRICS]
        self.obs = ReceiverObs(settings, "http")
        self.scrapes = settings.telemetry.counter(SCRAPES)
        self.rid = str(settings.id)
        self.metric_rules = {j.job_name: compile_rules(j.metric_relabel_configs)
                             for j in config.config.scrape_configs}
        self.ssl_contexts: dict[str, ssl.SSLContext] = {}
        self.session: aiohttp.ClientSession | None = None
        self.pools: list[ScrapePool] = []

    async def start(self, host: Host) -> None:
        import aiohttp

        for j in self.config.config.scrape_configs:
            if j.tls_config is not None:
                self.ssl_contexts[j.job_name] = j.tls_config.ssl_context()
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=60),
            auto_decompress=True, trust_env=False)
        self.pools = [ScrapePool(self, j) for j in self.config.config.scrape_configs]
        for p in self.pools:
            await p.start()

    async def shutdown(self) -> None:
        for p in self.pools:
            await p.stop()
        if self.session is not None:
            await self.session.close()

    def targets(self) -> list[TargetLoop]:
        return [loop for p in self.pools for loop in p.loops.values()]

    async def deliver(self, loop: TargetLoop, res: ScrapeResult) -> None:
        raw = resource_metrics(loop.resource, res)
        batch = Batch(Signal.METRICS, raw=raw, items=res.points)
        try:
            await self.obs.deliver(self.consumer, batch)
        except (RetryableError, PermanentError):
            pass  # counted by deliver(); the next scrape supersedes (see docs)
        except Exception:
            pass  # counted and logged by deliver()
