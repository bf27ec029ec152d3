"""Component factories by kind and type: the built-ins plus entry-point plugins.

Third-party packages register in the `otelpipe.components` entry-point group;
each entry point loads a `Factory` or a list of them.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from functools import cache
from importlib.metadata import entry_points

from pipeline.component import Factory, Kind

ENTRY_POINT_GROUP = "otelpipe.components"

# Each module defines `factory` (or `factories`).
BUILTIN_MODULES = (
    "pipeline.receivers.otlp",
    "pipeline.receivers.jsonlogs",
    "pipeline.receivers.filelog",
    "pipeline.receivers.kafka",
    "pipeline.processors.batch",
    "pipeline.processors.memory_limiter",
    "pipeline.processors.logstruct",
    "pipeline.exporters.debug",
    "pipeline.exporters.nop",
    "pipeline.exporters.file",
    "pipeline.exporters.kafka",
    "pipeline.connectors.forward",
    "pipeline.extensions.health",
)

log = logging.getLogger("otelpipe.registry")


class Registry:
    def __init__(self, factories: Iterable[Factory]):
        self._by_key: dict[tuple[Kind, str], Factory] = {}
        for f in factories:
            for name in (f.type, *f.aliases):
                self._by_key[(f.kind, name)] = f

    def get(self, kind: Kind, type_: str) -> Factory | None:
        return self._by_key.get((kind, type_))

    def types(self, kind: Kind) -> list[str]:
        return sorted(t for (k, t) in self._by_key if k is kind)

    def factories(self) -> list[Factory]:
        unique = {id(f): f for f in self._by_key.values()}
        return sorted(unique.values(), key=lambda f: (list(Kind).index(f.kind), f.type))


def _module_factories(module_name: str) -> list[Factory]:
    module = importlib.import_module(module_name)
    found = getattr(module, "factories", None) or [module.factory]
    return list(found)


@cache
def default_registry() -> Registry:
    factories: list[Factory] = []
    for name in BUILTIN_MODULES:
        factories.extend(_module_factories(name))
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
        except Exception:
            log.exception("cannot load component plugin", extra={"entry_point": ep.name})
            continue
        factories.extend(loaded if isinstance(loaded, list | tuple) else [loaded])
    return Registry(factories)
