"""A registry of the built-ins plus small test receivers, for validation tests."""

from __future__ import annotations

import importlib
from typing import Any

from pipeline.component import Component, ComponentConfig, Factory, Kind, Signal
from pipeline.registry import Registry

# The core modules; receivers are stood in for by the test factories below.
CORE_MODULES = (
    "pipeline.processors.batch",
    "pipeline.processors.memory_limiter",
    "pipeline.exporters.debug",
    "pipeline.exporters.nop",
    "pipeline.exporters.file",
    "pipeline.connectors.forward",
    "pipeline.extensions.health",
)


class TestReceiverConfig(ComponentConfig):
    endpoint: str = "127.0.0.1:0"


def _create(settings: Any, config: Any) -> Component:
    return Component()


TEST_FACTORIES = [
    Factory(type="anyrecv", kind=Kind.RECEIVER, config_model=TestReceiverConfig,
            create=_create, signals=frozenset(Signal), description="test: every signal"),
    Factory(type="logsrecv", kind=Kind.RECEIVER, config_model=TestReceiverConfig,
            create=_create, signals=frozenset({Signal.LOGS}), description="test: logs only"),
]


def core_factories() -> list[Factory]:
    out: list[Factory] = []
    for name in CORE_MODULES:
        module = importlib.import_module(name)
        out.extend(getattr(module, "factories", None) or [module.factory])
    return out


def test_registry() -> Registry:
    return Registry([*core_factories(), *TEST_FACTORIES])


test_registry.__test__ = False  # type: ignore[attr-defined]
