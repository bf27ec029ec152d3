"""otelpipe: a telemetry pipeline shaped like the OpenTelemetry Collector."""

from importlib.metadata import PackageNotFoundError, version

try:
    # One version source: pyproject.toml, as installed.
    __version__ = version("otelpipe")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
