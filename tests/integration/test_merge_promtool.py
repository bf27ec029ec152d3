"""`pipeline.telemetry.merge` output checked by the real `promtool check metrics`
(Debian package `prometheus`): the merged exposition of several real registries is
valid, with every family's HELP and TYPE once and no lint problem."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import pytest

from pipeline.telemetry.merge import ExpositionMerger, merge_expositions
from tests.builders import traces_request
from tests.promdata import parse_text, sample
from tests.support import OtelpipeProcess, free_port, http_get
from tests.unit.telemetry.test_merge import child, process

pytestmark = pytest.mark.integration


def check(promtool: str, text: str) -> None:
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60, check=False)
    said = f"promtool check metrics ({proc.returncode}): {proc.stdout}{proc.stderr}\n{text}"
    assert proc.returncode == 0, said
    assert not (proc.stdout + proc.stderr).strip(), said


def test_promtool_accepts_the_merged_exposition(promtool: str) -> None:
    texts = {str(i): process({"traces": i, "logs": 2 * i}, [1.0 * i, 70.0], [0.01 * i],
                             queue=i, offset=10 * i, refusing=i % 2) for i in range(3)}
    texts["3"] = child(2)
    out = merge_expositions(texts)
    assert 'worker="3"' in out
    assert "otelpipe_child_items_total" in out
    check(promtool, out)


def test_promtool_accepts_what_the_merger_carries(promtool: str) -> None:
    merger = ExpositionMerger()
    w0 = process({"traces": 1}, [5.0], [0.2], queue=1, offset=1, refusing=0)
    merger.merge({"0": w0, "1": child(3)})
    out = merger.merge({"0": w0, "1": w0})  # worker 1 restarted, without the counter
    assert "otelpipe_child_items_total" in out
    check(promtool, out)


def test_the_metrics_of_two_real_otelpipe_processes_merge(promtool: str,
                                                          tmp_path: Path) -> None:
    """Two `otelpipe run` processes take spans over OTLP/HTTP; their /metrics merged
    count every span once, keep each process's own families apart, and pass promtool."""
    texts: dict[str, str] = {}
    sent = {"0": 7, "1": 5}
    for worker, spans in sent.items():
        otlp, health = free_port(), free_port()
        cfg = {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{otlp}"}}}},
            "processors": {"batch": {}},
            "exporters": {"nop": {}},
            "extensions": {"health": {"endpoint": f"127.0.0.1:{health}"}},
            "service": {"extensions": ["health"], "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": ["batch"],
                           "exporters": ["nop"]}}},
        }
        workdir = tmp_path / worker
        workdir.mkdir()
        with OtelpipeProcess(cfg, workdir, wait_ports=(otlp, health)):
            req = urllib.request.Request(
                f"http://127.0.0.1:{otlp}/v1/traces",
                data=traces_request(spans).SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                assert resp.status == 200
            texts[worker] = http_get(f"http://127.0.0.1:{health}/metrics")[1].decode()
    out = merge_expositions(texts)
    check(promtool, out)
    samples = parse_text(out)
    assert sample(samples, "otelpipe_receiver_accepted_items_total", signal="traces") == 12
    assert sample(samples, "otelpipe_process_resident_memory_bytes", worker="0")
    assert sample(samples, "otelpipe_process_resident_memory_bytes", worker="1")
    assert sample(samples, "otelpipe_build_info", worker="1") == 1
    lag = [k for k in samples if k[0] == "otelpipe_event_loop_lag_seconds_count"]
    assert sorted(dict(labels)["worker"] for _, labels in lag) == ["0", "1"]
