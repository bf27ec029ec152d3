"""Connectors: the exporter of one pipeline and the receiver of another."""
