"""Loki label names, their rendering, and the cardinality guard (exporters/_lokilabels)."""

from __future__ import annotations

from pipeline.exporters._lokilabels import LabelGuard, render_labels, sanitize_label_name


def test_label_names_are_sanitised() -> None:
    assert sanitize_label_name("service.name") == "service_name"
    assert sanitize_label_name("k8s.pod-name") == "k8s_pod_name"
    assert sanitize_label_name("1st") == "_1st"
    assert sanitize_label_name("ok_name") == "ok_name"
    assert render_labels((("a", 'say "hi"\n'), ("b", "x"))) == '{a="say \\"hi\\"\\n", b="x"}'


def test_label_guard_expires_idle_values() -> None:
    guard = LabelGuard(max_values=2, ttl=60.0)
    assert guard.admit("pod", "a", 0.0)
    assert guard.admit("pod", "b", 10.0)
    assert not guard.admit("pod", "c", 20.0)
    assert guard.admit("pod", "b", 50.0)       # still known: kept fresh
    assert guard.admit("pod", "c", 65.0)       # "a" idle for 65 s: its slot is free
    assert not guard.admit("pod", "a", 66.0)   # now "a" would be the third
    assert guard.values("pod") == 2
    assert guard.admit("other", "a", 66.0)     # per label name
    unlimited = LabelGuard(max_values=0, ttl=0)
    assert all(unlimited.admit("x", str(i), 0.0) for i in range(5000))
