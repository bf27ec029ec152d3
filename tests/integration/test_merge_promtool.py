"""`pipeline.telemetry.merge` output checked by the real `promtool check metrics`
(Debian package `prometheus`): the merged exposition of several real registries is
valid, with every family's HELP and TYPE once and no lint problem."""

from __future__ import annotations

import subprocess

import pytest

from pipeline.telemetry.merge import ExpositionMerger, merge_expositions
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
