"""`debug` exporter: prints what passes through, to stderr.

verbosity `basic` prints one line per batch (signal, items); `normal` one line
per span / log record / metric; `detailed` the whole request as OTLP JSON.
"""

from __future__ import annotations

import sys
from typing import Literal

import orjson

from pipeline.component import ComponentConfig, ExporterCreateSettings, Factory, Kind, Signal
from pipeline.exporterhelper import Exporter
from pipeline.pdata.batch import Batch
from pipeline.pdata.otlpjson import flat_records, message_to_otlp_dict


class DebugConfig(ComponentConfig):
    verbosity: Literal["basic", "normal", "detailed"] = "basic"


class DebugExporter(Exporter):
    def __init__(self, settings: ExporterCreateSettings, config: DebugConfig):
        super().__init__(settings)
        self.verbosity = config.verbosity

    async def send(self, batch: Batch) -> None:
        out = sys.stderr
        out.write(f"{self.id}: {batch.signal} batch, {batch.items} items\n")
        if self.verbosity == "normal":
            if batch.signal is Signal.METRICS:
                for rm in batch.message.resource_metrics:
                    for sm in rm.scope_metrics:
                        for m in sm.metrics:
                            out.write(f"  metric {m.name} ({m.WhichOneof('data')})\n")
            else:
                for rec in flat_records(batch.signal, batch.message):
                    out.write("  " + orjson.dumps(rec).decode() + "\n")
        elif self.verbosity == "detailed":
            out.write(orjson.dumps(message_to_otlp_dict(batch.message),
                                   option=orjson.OPT_INDENT_2).decode() + "\n")
        out.flush()


def _create(settings: ExporterCreateSettings, config: DebugConfig) -> DebugExporter:
    return DebugExporter(settings, config)


factory = Factory(type="debug", kind=Kind.EXPORTER, config_model=DebugConfig, create=_create,
                  signals=frozenset(Signal), description="prints data to the console")
