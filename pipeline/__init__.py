"""otelpipe: a telemetry pipeline shaped like the OpenTelemetry Collector."""

__version__ = "0.1.0"
