"""Processors: transform, batch or guard data inside one pipeline."""
