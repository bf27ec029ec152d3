"""`nop` exporter: accepts and discards everything (for benchmarks and tests)."""

from __future__ import annotations

from pydantic import Field

from pipeline.component import ComponentConfig, ExporterCreateSettings, Factory, Kind, Signal
from pipeline.exporterhelper import Exporter
from pipeline.pdata.batch import Batch


class NopConfig(ComponentConfig):
    serialize: bool = Field(
        False, description="encode every batch as OTLP protobuf before discarding it (for "
                           "benchmarks: what an exporter that sends OTLP pays)")


class NopExporter(Exporter):
    def __init__(self, settings: ExporterCreateSettings, serialize: bool = False):
        super().__init__(settings)
        self.serialize = serialize

    async def send(self, batch: Batch) -> None:
        if self.serialize:
            batch.to_bytes()
        return None


def _create(settings: ExporterCreateSettings, config: NopConfig) -> NopExporter:
    return NopExporter(settings, config.serialize)


factory = Factory(type="nop", kind=Kind.EXPORTER, config_model=NopConfig, create=_create,
                  signals=frozenset(Signal), description="discards all data")
