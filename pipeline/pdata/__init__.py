"""Telemetry data in flight: OTLP batches that decode lazily."""

from pipeline.pdata.batch import Batch

__all__ = ["Batch"]
