"""The pipeline's own telemetry: Prometheus metrics and structured JSON logs."""
