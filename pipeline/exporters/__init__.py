"""Exporters: where data leaves the pipeline."""
