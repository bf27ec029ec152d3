"""The same traces through the Go Collector's tail_sampling (contrib v0.161.0, built by
`scripts/otelcol.sh build sampling`) and otelpipe's, with the same policies: both keep
exactly the same traces. Probabilistic sampling agrees trace by trace (the same FNV-1a
hash and salt), and so do the attribute, status, latency, span-count, trace-state and
combined (and / not / drop) policies and the final decision rules."""

from __future__ import annotations

import json
import random
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.component import Signal
from pipeline.pdata.otlpjson import decode_request
from tests.support import (
    REPO,
    OtelpipeProcess,
    eventually,
    free_port,
    http_get,
    port_open,
    with_logs,
)
from tests.unit.processors.tail_sampling.spans import S, request

POLICIES: list[dict[str, Any]] = [
    {"name": "baseline", "type": "probabilistic", "probabilistic": {"sampling_percentage": 10}},
    {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
    {"name": "slow", "type": "latency", "latency": {"threshold_ms": 300}},
    {"name": "vip", "type": "boolean_attribute", "boolean_attribute": {"key": "vip",
                                                                       "value": True}},
    {"name": "big", "type": "span_count", "span_count": {"min_spans": 4}},
    {"name": "flagged", "type": "trace_state",
     "trace_state": {"key": "mark", "values": ["keep"]}},
    {"name": "checkout-5xx", "type": "and", "and": {"and_sub_policy": [
        {"name": "checkout", "type": "string_attribute",
         "string_attribute": {"key": "http.route", "values": ["^/checkout"],
                              "enabled_regex_matching": True}},
        {"name": "5xx", "type": "numeric_attribute",
         "numeric_attribute": {"key": "http.response.status_code", "min_value": 500,
                               "max_value": 599}}]}},
    {"name": "not-internal", "type": "not", "not": {"not_sub_policy": {
        "name": "internal", "type": "string_attribute",
        "string_attribute": {"key": "tier", "values": ["internal", "batch"]}}}},
    {"name": "no-health", "type": "drop", "drop": {"drop_sub_policy": [
        {"name": "health", "type": "string_attribute",
         "string_attribute": {"key": "http.route", "values": ["/healthz"]}}]}},
]


@pytest.fixture(scope="module")
def collector() -> str:
    """The Collector peer with tail_sampling (`scripts/otelcol.sh build sampling`), built
    here only if missing (a build in progress elsewhere is not restarted); fails loudly."""
    script = str(REPO / "scripts" / "otelcol.sh")
    path = Path(subprocess.run([script, "path", "sampling"], capture_output=True, text=True,
                               check=True).stdout.strip())
    if not path.is_file():
        build = subprocess.run([script, "build", "sampling"], capture_output=True, text=True,
                               timeout=3600, check=False)
        if build.returncode != 0:
            pytest.fail(f"scripts/otelcol.sh build sampling failed:\n{build.stdout[-3000:]}"
                        f"\n{build.stderr[-3000:]}", pytrace=False)
    assert path.is_file(), path
    return str(path)


def traces(n: int, seed: int = 11) -> list[S]:
    rnd = random.Random(seed)
    out: list[S] = []
    for _ in range(n):
        t = rnd.getrandbits(128)
        spans = rnd.choice([1, 1, 2, 3, 5])
        route = rnd.choice(["/checkout/pay", "/checkout", "/api/items", "/healthz"])
        tier = rnd.choice(["web", "web", "internal", "batch"])
        for i in range(spans):
            attrs: dict[str, Any] = {"http.route": route, "tier": tier,
                                     "http.response.status_code":
                                         rnd.choice([200, 200, 200, 404, 500, 503])}
            if rnd.random() < 0.03:
                attrs["vip"] = True
            out.append(S(t, f"op{i}", start_ms=i * 5, ms=rnd.choice([5, 20, 80, 350]) / (i + 1),
                         status="ERROR" if rnd.random() < 0.04 else "UNSET", attrs=attrs,
                         trace_state="mark=keep" if rnd.random() < 0.02 else ""))
    return out


def post(url: str, body: bytes) -> None:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/x-protobuf"})
    with urllib.request.urlopen(req, timeout=20) as resp:
        assert resp.status == 200


def sampled_ids(path: Path) -> set[bytes]:
    if not path.exists():
        return set()
    out: set[bytes] = set()
    for line in path.read_bytes().splitlines():
        msg = decode_request(Signal.TRACES, line)
        out.update(sp.trace_id for rs in msg.resource_spans for ss in rs.scope_spans
                   for sp in ss.spans)
    return out


def test_same_traces_kept_as_the_collector(collector: str, tmp_path: Path) -> None:
    ours_http, peer_http, back_grpc, health = (free_port() for _ in range(4))
    ts = {"decision_wait": "1s", "num_traces": 10_000, "policies": POLICIES}
    peer_cfg = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{peer_http}"}}}},
        "processors": {"tail_sampling": ts},
        "exporters": {"otlp": {"endpoint": f"127.0.0.1:{back_grpc}", "tls": {"insecure": True}}},
        "service": {"telemetry": {"metrics": {"level": "none"}},
                    "pipelines": {"traces": {"receivers": ["otlp"],
                                             "processors": ["tail_sampling"],
                                             "exporters": ["otlp"]}}}}
    (tmp_path / "peer.yaml").write_text(yaml.safe_dump(peer_cfg))
    ours_out, peer_out = tmp_path / "ours.jsonl", tmp_path / "peer.jsonl"
    cfg = {
        "receivers": {"otlp/ours": {"protocols": {"http": {"endpoint": f"127.0.0.1:{ours_http}"}}},
                      "otlp/peer": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{back_grpc}"}}}},
        "processors": {"tail_sampling": ts},
        "exporters": {"file/ours": {"path": str(ours_out)}, "file/peer": {"path": str(peer_out)}},
        "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
        "service": {"extensions": ["health"], "pipelines": {
            "traces/ours": {"receivers": ["otlp/ours"], "processors": ["tail_sampling"],
                            "exporters": ["file/ours"]},
            "traces/peer": {"receivers": ["otlp/peer"], "exporters": ["file/peer"]}}}}
    spans = traces(800)
    all_ids = {s.trace.to_bytes(16, "big") for s in spans}
    with OtelpipeProcess(cfg, tmp_path, wait_ports=(ours_http, back_grpc, health)) as ours:
        log = (tmp_path / "peer.log").open("wb")
        peer = subprocess.Popen([collector, "--config", str(tmp_path / "peer.yaml")],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            eventually(lambda: port_open(peer_http), what="the Collector to listen")
            for k in range(0, len(spans), 200):
                body = request(spans[k:k + 200]).SerializeToString()
                post(f"http://127.0.0.1:{ours_http}/v1/traces", body)
                post(f"http://127.0.0.1:{peer_http}/v1/traces", body)
            time.sleep(1.0)

            def settled() -> bool:
                _, body = http_get(f"http://127.0.0.1:{health}/status.json")
                items = json.loads(body).get("sampling") or []
                return bool(items) and items[0]["traces_in_memory"] == 0 and \
                    items[0]["traces_sampled"] + items[0]["traces_not_sampled"] == len(all_ids)

            eventually(settled, what=with_logs("otelpipe decided every trace", ours))
            stable: list[int] = []

            def peer_done() -> bool:  # the Collector's output stops growing
                stable.append(len(sampled_ids(peer_out)))
                return len(stable) >= 6 and len(set(stable[-6:])) == 1 and stable[-1] > 0

            eventually(peer_done, what="the Collector's decisions to arrive")
        finally:
            peer.terminate()
            peer.wait(30)
            log.close()
    ours_ids, peer_ids = sampled_ids(ours_out), sampled_ids(peer_out)
    assert peer_ids, (tmp_path / "peer.log").read_text()[-3000:]
    assert ours_ids <= all_ids
    print(f"{len(all_ids)} traces: otelpipe kept {len(ours_ids)}, the Collector "
          f"{len(peer_ids)}, in common {len(ours_ids & peer_ids)}")
    assert ours_ids == peer_ids

