"""configs/tail-sampling-slo.yaml as shipped, run for real: the Python SDK sends
traces of service `api`; after decision_wait the kept ones are in a real Jaeger, the
others are not — the slow server span (bad for the latency SLOs of
configs/slo-definitions.yaml), the error, 5 % of the rest by the Collector's hash, and
never a health check."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from pipeline.processors.tail_sampling.policies import Probabilistic
from tests.integration.conftest import Jaeger
from tests.support import REPO, OtelpipeProcess, eventually, free_port, http_get, with_logs

CONFIG = REPO / "configs" / "tail-sampling-slo.yaml"


def send(port: int, n_fast: int) -> dict[str, str]:
    """{kind: trace id hex}; `fast-<i>`: n_fast fine server spans."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode

    provider = TracerProvider(resource=Resource.create({"service.name": "api"}))
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True),
        max_export_batch_size=64, schedule_delay_millis=100))
    tracer = provider.get_tracer("tail-sampling-it")
    out: dict[str, str] = {}

    def span(kind: str, ms: float, attrs: dict[str, Any], error: bool = False) -> None:
        start = time.time_ns()
        sp = tracer.start_span(f"GET {kind}", kind=SpanKind.SERVER, start_time=start,
                               attributes=attrs)
        if error:
            sp.set_status(Status(StatusCode.ERROR))
        sp.end(end_time=start + int(ms * 1e6))
        out[kind] = f"{sp.get_span_context().trace_id:032x}"

    span("slow", 300, {"url.path": "/orders"})
    span("error", 5, {"url.path": "/orders"}, error=True)
    span("health", 900, {"url.path": "/health"}, error=True)
    for i in range(n_fast):
        span(f"fast-{i}", 5, {"url.path": "/orders"})
    assert provider.force_flush(30_000)
    provider.shutdown()
    return out


def test_shipped_config_keeps_the_traces_behind_the_slos(jaeger: Jaeger,
                                                        tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    shutil.copy(REPO / "configs" / "slo-definitions.yaml", tmp_path / "configs")

    grpc, http, health, prom = (free_port() for _ in range(4))
    env = {"OTELPIPE_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{grpc}",
           "OTELPIPE_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{http}",
           "OTELPIPE_HEALTH_ENDPOINT": f"127.0.0.1:{health}",
           "OTELPIPE_PROMETHEUS_ENDPOINT": f"127.0.0.1:{prom}",
           "OTELPIPE_JAEGER_ENDPOINT": f"127.0.0.1:{jaeger.grpc_port}",
           "OTELPIPE_TAIL_SAMPLING_DIR": str(tmp_path / "waiting")}
    with OtelpipeProcess(CONFIG, tmp_path, env=env, wait_ports=(grpc, health)) as proc:
        ids = send(grpc, n_fast=60)
        baseline = Probabilistic(5, "")
        keep = {"slow", "error"} | {k for k, tid in ids.items() if k.startswith("fast-")
                                    and baseline.sampled(bytes.fromhex(tid))}
        eventually(lambda: all(jaeger.trace(ids[k]) for k in keep), timeout=60,
                   what=with_logs(f"the kept traces {sorted(keep)} in Jaeger", proc))

        def decided() -> bool:
            _, body = http_get(f"http://127.0.0.1:{health}/status.json")
            s = (json.loads(body).get("sampling") or [{}])[0]
            return bool(s.get("traces_sampled", 0) + s.get("traces_not_sampled", 0) == len(ids))

        eventually(decided, timeout=60, what="every trace decided")
        time.sleep(1.0)  # anything wrongly kept would have been exported by now
        for k, tid in ids.items():
            assert bool(jaeger.trace(tid)) == (k in keep), k
        _, metrics = http_get(f"http://127.0.0.1:{health}/metrics")
        text = metrics.decode()
        lines = [x for x in text.splitlines() if "policy_decisions_total{" in x]
        assert [x for x in lines if 'policy="slo-bad-events"' in x and 'sampled="true"' in x
                and x.endswith(" 1.0")], lines
        assert 'policy="no-health-checks"' in text
    assert list((tmp_path / "waiting").iterdir())  # storage: disk
    print(f"\n{len(ids)} traces sent, {len(keep)} kept and found in Jaeger "
          f"({len(keep) - 2} of 60 by the 5% baseline), the health check dropped")
