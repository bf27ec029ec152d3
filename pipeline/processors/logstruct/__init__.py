"""Processor `logstruct`: turn unstructured log lines into structured records.

`config.py` holds the config, `processor.py` the processor (`steps.py` its parser
list's entries and text helpers), `parsers/` one module per parser type,
`normalize.py` (with `timestamps.py`, `severity.py`, `tracecontext.py`, `semconv.py`)
what parsed fields become, `record.py` the parse result, `exceptions.py` stack traces,
`templates.py` the template miner (`templatetree.py` its tree, templates and token
rules, `templatestore.py` its persisted file, `masks.py` its masks) and `grok.py` the
grok library.
See docs/logstruct.md for the configuration reference.
"""

from __future__ import annotations

from pipeline.component import Component, Factory, Kind, ProcessorCreateSettings, Signal
from pipeline.processors.logstruct.config import LogStructConfig

__all__ = ["factory"]


def _create(settings: ProcessorCreateSettings, config: LogStructConfig) -> Component:
    from pipeline.processors.logstruct.processor import LogStructProcessor

    return LogStructProcessor(settings, config)


factory = Factory(
    type="logstruct",
    kind=Kind.PROCESSOR,
    config_model=LogStructConfig,
    create=_create,
    signals=frozenset({Signal.LOGS}),
    runs_once=lambda config: config.templates.enabled,  # template ids
    description="parses log lines (JSON, logfmt, syslog, access/error logs, klog, container "
                "wrappers, regex, grok) into structured records; template mining",
)
