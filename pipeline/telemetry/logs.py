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

from pipeline.config.secrets import mask_text

_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "taskName"}


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": self.vet(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.vet(self.formatException(record.exc_info))
        return orjson.dumps(out, default=str).decode()

    def vet(self, text: str) -> str:
        return text  # our own messages mask what they log where they log it


class LibraryJSONFormatter(JSONFormatter):
    """Libraries' records (aiokafka, grpc, asyncio …) in the same JSON lines. Their text
    is not ours to vet, so URLs and secret `name=value` pairs in it are masked."""

    def vet(self, text: str) -> str:
        return mask_text(text)


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a record comes (as logging's own last
    resort does), not to the stream of the moment it was made."""

    def __init__(self, level: int) -> None:
        logging.Handler.__init__(self, level)

    @property
    def stream(self) -> Any:
        return sys.stderr


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    ours = logging.getLogger("otelpipe")
    ours.handlers[:] = [handler]
    ours.setLevel(level.upper())
    ours.propagate = False
    # Libraries' warnings and errors reach logging's last resort (no handler is set on
    # the root logger); by default it prints them as bare text, breaking
    # one-JSON-object-per-line.
    library = _CurrentStderr(logging.WARNING)
    library.setFormatter(LibraryJSONFormatter())
    logging.lastResort = library


def component_logger(kind: str, component_id: str) -> logging.Logger:
    return logging.getLogger(f"otelpipe.{kind}.{component_id}")
