"""`httpcheck` receiver: probes HTTP endpoints and reports availability and latency.

    receivers:
      httpcheck:
        collection_interval: 10s
        targets:
          - endpoint: http://api:8000/health          # GET, expects 200
          - endpoint: https://api.example.com/ready
            method: HEAD
            expected_status: [200, 204, "3xx"]
            timeout: 2s
            headers: {Authorization: "Bearer ${env:TOKEN}"}

Every `collection_interval` all targets are probed concurrently and one
metrics batch is emitted. Metric names, units, types and attributes follow
the Collector's `httpcheckreceiver`, so its dashboards and alerts work
unchanged:

- `httpcheck.status` (Sum, non-monotonic, cumulative, Int, unit `1`): five
  points per target, one per `http.status_class` (`1xx` … `5xx`), 1 for the
  class of the response and 0 for the others (all 0 when no response came);
  attributes `http.url`, `http.method`, `http.status_class`, plus
  `http.status_code` on the point of value 1 (as the Collector does).
- `httpcheck.duration` (Gauge, Int, `ms`): from sending the request to the
  response headers, or to the failure; attributes `http.url`, `http.method`.
- `httpcheck.error` (Sum, non-monotonic, cumulative, Int, `{error}`): 1 per
  probe that got no response; attributes `http.url`, `http.method`,
  `error.message` (as the Collector) and `error.type` (stable, low-cardinality:
  `timeout`, `connection_refused`, `connection_error`, `dns_error`, `tls_error`,
  `request_error`).

And one metric of ours, since the Collector's `httpcheck.status` does not know
what a target is expected to answer:

- `httpcheck.success` (Gauge, Int, `1`): 1 when the response status is one of
  `expected_status`, else 0 -- the availability SLI ("`GET /health` returns
  200"). Attributes `http.url`, `http.method`, `http.status_code` when a
  response came, and `error.type` when the check failed (`unexpected_status`,
  or one of the transport errors above).

Secrets: a target's URL appears in attributes (so in Prometheus labels) and
logs masked: `http://user:***@host/…?api_key=***` (`pipeline.config.secrets`:
the password and secret-looking query values; credentials in the URL are still
sent, as basic auth). Error messages are masked the same way.

Each probe opens a new connection (no keep-alive), so a stale pooled socket
can never fail a check that a fresh client would pass, and the duration always
includes connecting. Redirects are followed unless `follow_redirects: false`
(the status judged is the final one). The response body is read (up to 1 MiB)
and discarded. A batch the pipeline refuses is dropped and counted
(`otelpipe_receiver_refused_items{transport="http"}`): the next collection
supersedes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2
from pydantic import Field, SecretStr, field_validator
from yarl import URL

from pipeline import __version__
from pipeline.component import (
    Component,
    ComponentConfig,
    Factory,
    Host,
    Kind,
    ReceiverCreateSettings,
    Signal,
)
from pipeline.config.secrets import mask_text, mask_url
from pipeline.config.types import Duration
from pipeline.errors import PermanentError, RetryableError
from pipeline.pdata.batch import Batch
from pipeline.receiverhelper.obs import ReceiverObs
from pipeline.telemetry.metrics import CounterSpec

if TYPE_CHECKING:
    import aiohttp

FAILED_CHECKS = CounterSpec(
    "otelpipe_httpcheck_failed_checks",
    "httpcheck probes that did not get the expected status, by error.type.",
    ("receiver", "reason"))

SCOPE = "otelpipe/receiver/httpcheck"
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
MAX_BODY = 1024 * 1024
_CUMULATIVE = metrics_pb2.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


def _status_matcher(value: int | str) -> int | str:
    if isinstance(value, bool):
        raise ValueError("expected an HTTP status (e.g. 200) or a class (e.g. 2xx)")
    if isinstance(value, int):
        if not 100 <= value <= 599:
            raise ValueError(f"invalid HTTP status {value}: expected 100-599")
        return value
    text = str(value).strip().lower()
    if text in STATUS_CLASSES:
        return text
    if text.isdigit():
        return _status_matcher(int(text))
    raise ValueError(f"invalid expected status {value!r}: expected e.g. 200 or 2xx")


class TargetConfig(ComponentConfig):
    endpoint: str = Field(description="URL to probe (http or https).")
    method: str = Field("GET", description="HTTP method.")
    expected_status: list[int | str] = Field(
        default_factory=lambda: list[int | str]([200]),
        description="Statuses that count as success: codes (200) or classes (2xx); "
                    "one value or a list.")
    timeout: Duration = Field(5.0, gt=0, description="Limit for the whole probe.")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Request headers (values are kept secret).")
    follow_redirects: bool = Field(True, description="Follow 3xx redirects.")

    @field_validator("endpoint")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            url = URL(value)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"invalid URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("expected an http:// or https:// URL with a host")
        return value

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        value = value.strip().upper()
        if not value.isalpha():
            raise ValueError("expected an HTTP method such as GET or HEAD")
        return value

    @field_validator("expected_status", mode="before")
    @classmethod
    def _statuses(cls, value: Any) -> Any:
        values = value if isinstance(value, list | tuple) else [value]
        if not values:
            raise ValueError("at least one expected status")
        return [_status_matcher(v) for v in values]

    def accepts(self, status: int) -> bool:
        cls = f"{status // 100}xx"
        return any(s in (status, cls) for s in self.expected_status)


class HttpCheckConfig(ComponentConfig):
    targets: list[TargetConfig] = Field(min_length=1, description="Endpoints to probe.")
    collection_interval: Duration = Field(10.0, gt=0, description="How often to probe.")
    initial_delay: Duration = Field(0.0, description="Wait before the first probe.")


@dataclass
class CheckResult:
    target: TargetConfig
    started_ns: int
    duration_ms: int
    status: int | None = None
    error_type: str | None = None
    error_message: str | None = None

    @property
    def success(self) -> bool:
        return self.status is not None and self.target.accepts(self.status)


def _classify(exc: BaseException, timeout: float) -> tuple[str, str]:
    import aiohttp

    if isinstance(exc, TimeoutError):
        return "timeout", f"no response within {timeout:g}s"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "dns_error", str(exc)
    if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ClientConnectorCertificateError):
        return "tls_error", str(exc)
    if isinstance(exc, aiohttp.ClientConnectorError):
        if exc.os_error is not None and getattr(exc.os_error, "errno", None) == errno.ECONNREFUSED:
            return "connection_refused", str(exc)
        return "connection_error", str(exc)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        return "connection_error", str(exc) or type(exc).__name__
    return "request_error", f"{type(exc).__name__}: {exc}"


class HttpCheckReceiver(Component):
    def __init__(self, settings: ReceiverCreateSettings, config: HttpCheckConfig):
        self.config = config
        self.log = settings.logger
        self.consumer = settings.consumers[Signal.METRICS]
        self.obs = ReceiverObs(settings, "http")
        self._failed = settings.telemetry.counter(FAILED_CHECKS)
        self._rid = str(settings.id)
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._start_ns = time.time_ns()
        self._last_ok: dict[int, bool] = {}
        self.collections = 0

    async def start(self, host: Host) -> None:
        import aiohttp

        self._start_ns = time.time_ns()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, limit=0),
            auto_decompress=True, trust_env=False)
        self._task = asyncio.create_task(self._run(), name=f"{self._rid} loop")

    async def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        interval = self.config.collection_interval
        if self.config.initial_delay:
            await asyncio.sleep(self.config.initial_delay)
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            try:
                await self.collect()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("httpcheck collection failed")
            next_tick += interval
            now = loop.time()
            if now - next_tick >= interval:  # overran: skip missed ticks, keep the phase
                next_tick += (now - next_tick) // interval * interval
            await asyncio.sleep(next_tick - now)

    async def collect(self) -> list[CheckResult]:
        """Probe every target once and deliver one batch; returns the results."""
        results = await asyncio.gather(*(self.check(t) for t in self.config.targets))
        for i, r in enumerate(results):
            if not r.success:
                self._failed.labels(self._rid, r.error_type or "unexpected_status").inc()
            if self._last_ok.get(i) != r.success:
                self.log.info("check passed" if r.success else "check failed",
                              extra={"http.url": mask_url(r.target.endpoint),
                                     "http.status_code": r.status,
                                     "error.type": r.error_type,
                                     "error.message": r.error_message})
                self._last_ok[i] = r.success
        batch = self._batch(results)
        try:
            await self.obs.deliver(self.consumer, batch)
        except (RetryableError, PermanentError):
            pass  # counted by deliver(); the next collection supersedes these gauges
        except Exception:
            pass  # counted and logged by deliver()
        self.collections += 1
        return results

    async def check(self, target: TargetConfig) -> CheckResult:
        assert self._session is not None, "start() first"
        headers = {k: v.get_secret_value() for k, v in target.headers.items()}
        started_ns = time.time_ns()
        t0 = time.perf_counter()
        status: int | None = None
        try:
            async with asyncio.timeout(target.timeout):
                async with self._session.request(
                        target.method, target.endpoint, headers=headers,
                        allow_redirects=target.follow_redirects) as resp:
                    status = resp.status
                    elapsed = time.perf_counter() - t0
                    await resp.content.read(MAX_BODY)
        except (Exception, TimeoutError) as exc:
            if status is not None:  # headers came, the body did not: still a response
                return CheckResult(target, started_ns, round(elapsed * 1000), status)
            etype, message = _classify(exc, target.timeout)
            return CheckResult(target, started_ns, round((time.perf_counter() - t0) * 1000),
                               None, etype, mask_text(message))
        return CheckResult(target, started_ns, round(elapsed * 1000), status)

    def _batch(self, results: list[CheckResult]) -> Batch:
        req = ExportMetricsServiceRequest()
        scope = req.resource_metrics.add().scope_metrics.add()
        scope.scope.name = SCOPE
        scope.scope.version = __version__
        now = time.time_ns()

        def metric(name: str, unit: str, description: str) -> Any:
            m = scope.metrics.add()
            m.name, m.unit, m.description = name, unit, description
            return m

        status = metric("httpcheck.status", "1",
                        "1 if the check resulted in status_code matching the status_class, "
                        "otherwise 0.").sum
        status.aggregation_temporality = _CUMULATIVE
        status.is_monotonic = False
        duration = metric("httpcheck.duration", "ms",
                          "Measures the duration of the HTTP check.").gauge
        error = metric("httpcheck.error", "{error}",
                       "Records errors occurring during HTTP check.").sum
        error.aggregation_temporality = _CUMULATIVE
        error.is_monotonic = False
        success = metric("httpcheck.success", "1",
                         "1 if the response status is one of the target's expected statuses, "
                         "otherwise 0.").gauge
        points = 0

        def point(container: Any, value: int, attrs: list[tuple[str, str | int]],
                  cumulative: bool = False) -> None:
            nonlocal points
            dp = container.data_points.add()
            dp.time_unix_nano = now
            if cumulative:
                dp.start_time_unix_nano = self._start_ns
            dp.as_int = value
            for key, v in attrs:
                kv = dp.attributes.add()
                kv.key = key
                if isinstance(v, int):
                    kv.value.int_value = v
                else:
                    kv.value.string_value = v
            points += 1

        for r in results:
            url: tuple[str, str | int] = ("http.url", mask_url(r.target.endpoint))
            method: tuple[str, str | int] = ("http.method", r.target.method)
            code_class = f"{r.status // 100}xx" if r.status is not None else None
            for cls in STATUS_CLASSES:
                attrs: list[tuple[str, str | int]] = [url, method, ("http.status_class", cls)]
                if cls == code_class and r.status is not None:
                    attrs.append(("http.status_code", r.status))
                point(status, int(cls == code_class), attrs, cumulative=True)
            point(duration, r.duration_ms, [url, method])
            if r.error_type is not None:
                point(error, 1, [url, method, ("error.message", r.error_message or ""),
                                 ("error.type", r.error_type)], cumulative=True)
            attrs = [url, method]
            if r.status is not None:
                attrs.append(("http.status_code", r.status))
            if not r.success:
                attrs.append(("error.type", r.error_type or "unexpected_status"))
            point(success, int(r.success), attrs)
        return Batch(Signal.METRICS, message=req, items=points)


def _create(settings: ReceiverCreateSettings, config: HttpCheckConfig) -> HttpCheckReceiver:
    return HttpCheckReceiver(settings, config)


factory = Factory(
    type="httpcheck",
    kind=Kind.RECEIVER,
    config_model=HttpCheckConfig,
    create=_create,
    signals=frozenset({Signal.METRICS}),
    runs_once=lambda config: True,  # one probe per interval, not one per process
    description="Probes HTTP endpoints: status per class, duration, errors, and success "
                "against the expected status (availability SLI).",
)
