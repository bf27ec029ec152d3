"""Structured JSON logs for the pipeline itself, one object per line on stderr.

Stable keys: `ts`, `level`, `logger`, `msg`, then any `extra=` fields.
Components log through `logging.getLogger("otelpipe.<kind>.<id>")`.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "taskName"}


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger("otelpipe")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def component_logger(kind: str, component_id: str) -> logging.Logger:
    return logging.getLogger(f"otelpipe.{kind}.{component_id}")
