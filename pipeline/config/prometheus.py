"""Settings shared by the exporters that turn OTLP metrics into Prometheus series
(`prometheus` and `prometheusremotewrite`), with the Collector's key names."""

from __future__ import annotations

from pipeline.component import ComponentConfig


class Enabled(ComponentConfig):
    enabled: bool = False


class TargetInfo(ComponentConfig):
    enabled: bool = True
