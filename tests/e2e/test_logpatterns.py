"""The `logpatterns` connector in a real `otelpipe run`: jsonlogs -> logstruct (templates)
-> logpatterns -> prometheus exporter, and its events through a file exporter.

Exact counts per template scraped from the exporter; a short warm-up (patterns seen in it
make no event, a pattern after it does, with its first line); a restart with the state
file keeps the known patterns (no events for them) and does not warm up again."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from tests.promdata import parse_text
from tests.support import OtelpipeProcess, eventually, free_port, http_get, with_logs

WARMUP = 4.0

LOGIN = "user <*> logged in from <*>"
FAILED = "connection to <*> failed after <*>"  # the miner masks "7 ms" as one value
DISK = "disk <*> is <*> full"
PAYMENT = "payment gateway timeout for order <*>"
CACHE = "cache shard <*> rebalanced"


def baseline_lines() -> list[dict[str, Any]]:
    return ([{"service": "checkout", "level": "info",
              "message": f"user u{i} logged in from 10.0.0.{i}"} for i in range(30)]
            + [{"service": "checkout", "level": "error",
                "message": f"connection to db-{i} failed after {i * 7} ms"} for i in range(12)]
            + [{"service": "storage", "level": "warn",
                "message": f"disk /dev/sd{c} is {90 + i}% full"}
               for i, c in enumerate("abcde")])


EXPECTED = {("checkout", LOGIN, "INFO"): 30, ("checkout", FAILED, "ERROR"): 12,
            ("storage", DISK, "WARN"): 5}


def post(port: int, records: list[dict[str, Any]]) -> None:
    body = b"\n".join(orjson.dumps(r) for r in records)
    req = urllib.request.Request(f"http://127.0.0.1:{port}/logs", data=body,
                                 headers={"Content-Type": "application/x-ndjson"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def counts(prom: int) -> dict[tuple[str, str, str], float]:
    status, body = http_get(f"http://127.0.0.1:{prom}/metrics")
    assert status == 200
    out = {}
    for (name, labels), v in parse_text(body.decode()).items():
        if name == "log_pattern_count_total":
            d = dict(labels)
            out[(d.get("service_name", ""), d.get("log_template", ""),
                 d.get("severity_text", ""))] = v
    return out


def events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_text().splitlines() if line.strip()]


def config(jl: int, prom: int, data: Path) -> dict[str, Any]:
    return {
        "receivers": {"jsonlogs": {"endpoint": f"127.0.0.1:{jl}"}},
        "processors": {"logstruct": {"auto": True, "templates": {
            "enabled": True, "persist_path": str(data / "templates.json")}}},
        "connectors": {"logpatterns": {"warmup": f"{WARMUP}s", "metrics_flush_interval": "200ms",
                                       "state_file": str(data / "logpatterns.json")}},
        "exporters": {"prometheus": {"endpoint": f"127.0.0.1:{prom}"},
                      "file/events": {"path": str(data / "events.jsonl"), "format": "json"}},
        "service": {"pipelines": {
            "logs": {"receivers": ["jsonlogs"], "processors": ["logstruct"],
                     "exporters": ["logpatterns"]},
            "metrics": {"receivers": ["logpatterns"], "exporters": ["prometheus"]},
            "logs/events": {"receivers": ["logpatterns"], "exporters": ["file/events"]}}},
    }


def test_counts_new_pattern_events_and_restart(tmp_path: Path) -> None:
    jl, prom = free_port(), free_port()
    data = tmp_path / "data"
    cfg = config(jl, prom, data)
    ev_path = data / "events.jsonl"
    payment = [{"service": "checkout", "level": "error",
                "message": f"payment gateway timeout for order {n}"} for n in (1234, 99)]

    with OtelpipeProcess(cfg, tmp_path, wait_ports=(jl, prom)) as proc:
        listening = time.monotonic()
        post(jl, baseline_lines())  # within the warm-up: the baseline
        got = eventually(lambda: counts(prom) == EXPECTED and counts(prom),
                         what=lambda: f"exact counts per template, got {counts(prom)}")
        assert got == EXPECTED
        time.sleep(max(0.0, listening + WARMUP + 0.5 - time.monotonic()))
        post(jl, payment)  # after the warm-up: a new pattern
        eventually(lambda: len(events(ev_path)) >= 1, what=with_logs("new-pattern event", proc))
        assert eventually(lambda: counts(prom).get(("checkout", PAYMENT, "ERROR"))) == 2
    evs = events(ev_path)
    assert len(evs) == 1, evs
    ev = evs[0]
    assert ev["log.pattern.event"] == "new"
    assert ev["log.template"] == PAYMENT
    assert ev["service.name"] == "checkout"
    assert ev["log.pattern.first_line"] == "payment gateway timeout for order 1234"
    assert ev["severity_text"] == "WARN"
    assert "checkout" in ev["body"]
    assert PAYMENT in ev["body"]

    # Restart: the known patterns (baseline and payment) make no event, and there is no
    # second warm-up: a pattern never seen makes one at once.
    with OtelpipeProcess(cfg, tmp_path, wait_ports=(jl, prom)) as proc:
        post(jl, baseline_lines() + payment)
        expected = {**EXPECTED, ("checkout", PAYMENT, "ERROR"): 2}
        eventually(lambda: counts(prom) == expected,
                   what=with_logs("exact counts after the restart", proc))
        post(jl, [{"service": "storage", "level": "info",
                   "message": f"cache shard {n} rebalanced"} for n in range(3)])
        eventually(lambda: len(events(ev_path)) >= 2, what=with_logs("second event", proc))
        time.sleep(0.5)  # a late event for a known pattern would show by now
    evs = events(ev_path)
    assert [(e["log.pattern.event"], e["log.template"], e["service.name"]) for e in evs] == [
        ("new", PAYMENT, "checkout"), ("new", CACHE, "storage")]
    assert evs[1]["log.pattern.first_line"] == "cache shard 0 rebalanced"


def test_reappeared_after_silence_in_a_real_process(tmp_path: Path) -> None:
    jl, prom = free_port(), free_port()
    data = tmp_path / "data"
    cfg = config(jl, prom, data)
    cfg["connectors"]["logpatterns"].update({"warmup": "0s", "reappear_after": "2s"})
    ev_path = data / "events.jsonl"
    line = {"service": "checkout", "level": "error",
            "message": "payment gateway timeout for order 1234"}
    with OtelpipeProcess(cfg, tmp_path, wait_ports=(jl, prom)) as proc:
        post(jl, [line])
        eventually(lambda: len(events(ev_path)) >= 1, what=with_logs("new event", proc))
        post(jl, [line])  # at once: nothing
        time.sleep(2.5)
        post(jl, [{**line, "message": "payment gateway timeout for order 77"}])
        eventually(lambda: len(events(ev_path)) >= 2, what=with_logs("reappeared", proc))
        post(jl, [line])  # right after: nothing
        time.sleep(0.5)
    evs = events(ev_path)
    assert [(e["log.pattern.event"], e["log.pattern.count"]) for e in evs] == [
        ("new", 1), ("reappeared", 3)]
    assert evs[1]["log.pattern.first_line"] == "payment gateway timeout for order 1234"
    assert evs[1]["log.template"] == PAYMENT
