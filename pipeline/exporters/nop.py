"""`nop` exporter: accepts and discards everything (for benchmarks and tests)."""

from __future__ import annotations

from typing import Any

from pipeline.component import ComponentConfig, CreateSettings, Factory, Kind, Signal
from pipeline.exporterhelper import Exporter
from pipeline.pdata.batch import Batch


class NopConfig(ComponentConfig):
    pass


class NopExporter(Exporter):
    async def send(self, batch: Batch) -> None:
        return None


def _create(settings: CreateSettings, config: Any) -> NopExporter:
    return NopExporter(settings)


factory = Factory(type="nop", kind=Kind.EXPORTER, config_model=NopConfig, create=_create,
                  signals=frozenset(Signal), description="discards all data")
