"""The process's own log lines: one JSON object each, libraries' lines included."""

from __future__ import annotations

import subprocess
import sys

import orjson

# Run in a process of its own: setup_logging changes logging's global last resort.
SCRIPT = """
import logging
from pipeline.telemetry.logs import setup_logging
setup_logging("info")
logging.getLogger("otelpipe.receiver.otlp").info("listening")
logging.getLogger("aiokafka.consumer").warning(
    "Heartbeat failed for group %s via %s", "g1", "http://user:hunter2@broker:9092/?token=abc")
logging.getLogger("aiokafka.consumer").info("below the libraries' level: not shown")
try:
    raise ValueError("bad password=hunter2")
except ValueError:
    logging.getLogger("grpc").exception("handler failed")
"""


def test_library_records_are_json_lines_with_secrets_masked() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=60, check=True)
    lines = [orjson.loads(line) for line in done.stderr.splitlines()]
    assert [(r["logger"], r["level"]) for r in lines] == [
        ("otelpipe.receiver.otlp", "info"), ("aiokafka.consumer", "warning"),
        ("grpc", "error")]
    assert lines[1]["msg"] == "Heartbeat failed for group g1 via http://user:***@broker:9092/?token=***"
    assert "hunter2" not in done.stderr
    assert "ValueError: bad password=***" in lines[2]["exception"]
