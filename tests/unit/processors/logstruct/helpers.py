"""Shared helpers: run a logstruct processor over lines and read records back exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from pipeline.component import Signal
from pipeline.pdata.anyvalue import any_value
from pipeline.pdata.batch import Batch
from pipeline.pdata.logrecords import LogGroup, LogRecord
from pipeline.processors.logstruct.config import LogStructConfig
from pipeline.processors.logstruct.processor import LogStructProcessor
from pipeline.telemetry.metrics import Telemetry
from tests.support import Sink, processor_settings

CORPUS = Path(__file__).parent / "corpus"
# 2024-06-15T00:00:00Z: year-less stamps resolve against this.
NOW = 1718409600.0

#: What `batch_of` builds: "otlp" (protobuf bytes) or "records" (Python log records, as
#: the filelog and jsonlogs receivers produce). A test that builds batches takes the
#: `mode` fixture of conftest.py (both, in turn) and passes it on.
Mode = Literal["otlp", "records"]


def make(cfg: dict[str, Any], telemetry: Telemetry | None = None,
         sink: Sink | None = None, now: float = NOW) -> LogStructProcessor:
    settings = processor_settings("logstruct", telemetry=telemetry,
                                  next_consumer=sink or Sink(), signal=Signal.LOGS)
    return LogStructProcessor(settings, LogStructConfig.model_validate(cfg), clock=lambda: now)


def batch_of(mode: Mode, bodies: list[Any], attributes: list[dict[str, Any]] | None = None,
             resource: dict[str, str] | None = None) -> Batch:
    if mode == "records":
        recs = [LogRecord(b, dict((attributes[i] if attributes else None) or {}), 1)
                for i, b in enumerate(bodies)]
        return Batch(Signal.LOGS, logs=[LogGroup(recs, resource=dict(resource or {}))])
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    for k, v in (resource or {}).items():
        rl.resource.attributes.add(key=k).value.string_value = v
    recs = rl.scope_logs.add().log_records
    for i, b in enumerate(bodies):
        lr = recs.add(observed_time_unix_nano=1)
        if isinstance(b, bytes):
            lr.body.bytes_value = b
        elif b is not None:
            lr.body.string_value = b
        for k, v in ((attributes[i] if attributes else None) or {}).items():
            lr.attributes.add(key=k).value.string_value = v
    return Batch(Signal.LOGS, raw=req.SerializeToString())


def records(batch: Batch) -> list[dict[str, Any]]:
    """Every record as a plain dict with the exact fields a test compares."""
    out = []
    for rl in batch.message.resource_logs:
        for sl in rl.scope_logs:
            for lr in sl.log_records:
                d: dict[str, Any] = {
                    "time_unix_nano": lr.time_unix_nano,
                    "severity_number": lr.severity_number,
                    "severity_text": lr.severity_text,
                    "body": any_value(lr.body),
                    "attributes": {kv.key: any_value(kv.value) for kv in lr.attributes},
                }
                if lr.trace_id:
                    d["trace_id"] = lr.trace_id.hex()
                if lr.span_id:
                    d["span_id"] = lr.span_id.hex()
                if lr.flags:
                    d["flags"] = lr.flags
                out.append(d)
    return out


def run(mode: Mode, cfg: dict[str, Any], bodies: list[Any], **kw: Any) -> list[dict[str, Any]]:
    proc = make(cfg)
    b = batch_of(mode, bodies, **kw)
    proc.process(b)
    return records(b)


def corpus_lines(name: str) -> list[str]:
    return (CORPUS / f"{name}.log").read_text(encoding="utf-8").splitlines()
