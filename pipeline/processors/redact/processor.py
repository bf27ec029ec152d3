"""The `redact` processor: each OTLP item of a batch (resources, log records, spans
with their events and links, data points) through the `Redactor`, a batch without a
trigger word passed on as its bytes; the summary attributes."""

from __future__ import annotations

from typing import Any

from pipeline.component import Component, Consumer, ProcessorCreateSettings, Signal
from pipeline.pdata.batch import Batch
from pipeline.processors._otlp import data_points, find, resources
from pipeline.processors.redact.config import RedactConfig
from pipeline.processors.redact.redactor import Redactor

SUMMARY_COUNT = "redaction.masked.count"
SUMMARY_KEYS = "redaction.masked.keys"


class RedactProcessor(Component, Consumer):
    def __init__(self, settings: ProcessorCreateSettings, config: RedactConfig):
        self.next = settings.next_consumer
        self.signal = settings.signal
        self.config = config
        self.redactor = Redactor(config)

    async def consume(self, batch: Batch) -> None:
        self.redact(batch)
        await self.next.consume(batch)

    def redact(self, batch: Batch) -> int:
        """Mask secrets in the batch in place; the number masked."""
        r = self.redactor
        if batch.has_raw and not r.batch_may_hold_secrets(batch.to_bytes()):
            return 0
        r.count = 0
        # Scanning writes in place. A batch that passed the byte check almost always
        # holds something to mask; one that did not is not decoded at all.
        request = batch.mutable()
        signal = self.signal
        summary = self.config.summary
        # Each item is gated on its own bytes first: serializing one item and one byte
        # scan cost less than gating each of its strings in Python.
        may = r.activate
        for res in resources(signal, request):
            if may(res.resource.SerializeToString()):
                r.redact_attributes(res.resource.attributes)
            if signal is Signal.LOGS:
                self._logs(res, summary)
            elif signal is Signal.TRACES:
                self._spans(res, summary)
            else:
                for sm in res.scope_metrics:
                    for m in sm.metrics:
                        for dp in data_points(m):
                            if may(dp.SerializeToString()):
                                r.redact_attributes(dp.attributes)
        r.activate(None)
        return r.count

    def _logs(self, res: Any, summary: bool) -> None:
        r = self.redactor
        may = r.activate
        for sl in res.scope_logs:
            for lr in sl.log_records:
                if not may(lr.SerializeToString()):
                    continue
                n = r.count
                keys = r.redact_attributes(lr.attributes)
                if lr.HasField("body") and r.redact_value(lr.body):
                    keys = [*(keys or ()), "(body)"]
                if summary and r.count > n:
                    _summarize(lr.attributes, r.count - n, keys)

    def _spans(self, res: Any, summary: bool) -> None:
        r = self.redactor
        may = r.activate
        for ss in res.scope_spans:
            for sp in ss.spans:
                if not may(sp.SerializeToString()):
                    continue
                n = r.count
                keys = r.redact_attributes(sp.attributes)
                for ev in sp.events:
                    r.redact_attributes(ev.attributes)
                for ln in sp.links:
                    r.redact_attributes(ln.attributes)
                msg = sp.status.message
                if msg:
                    new = r.redact_str(msg)
                    if new is not None:
                        sp.status.message = new
                if summary and r.count > n:
                    _summarize(sp.attributes, r.count - n, keys)


def _summarize(attributes: Any, count: int, keys: list[str] | None) -> None:
    kv = find(attributes, SUMMARY_COUNT)
    if kv is None:
        kv = attributes.add()
        kv.key = SUMMARY_COUNT
        kv.value.int_value = count
    else:
        kv.value.int_value = (kv.value.int_value or 0) + count
    if keys:
        kv = find(attributes, SUMMARY_KEYS)
        if kv is None:
            kv = attributes.add()
            kv.key = SUMMARY_KEYS
        kv.value.string_value = ",".join(sorted(set(keys)))
