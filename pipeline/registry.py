"""Component factories by kind and type: the built-ins plus entry-point plugins.

Third-party packages register in the `otelpipe.components` entry-point group;
each entry point loads a `Factory` or a list of them.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Iterable
from functools import cache
from importlib.metadata import entry_points

from pipeline.component import Factory, Kind

ENTRY_POINT_GROUP = "otelpipe.components"

# Built-in components are found by module: every module (or package) directly
# under these packages that defines `factory` (or `factories`) is registered, so a
# component type lives in exactly one place and there is no list to keep in sync.
BUILTIN_PACKAGES = (
    "pipeline.receivers",
    "pipeline.processors",
    "pipeline.exporters",
    "pipeline.connectors",
    "pipeline.extensions",
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
    found = getattr(module, "factories", None)
    if found is None:
        found = [module.factory] if hasattr(module, "factory") else []
    return list(found)


def builtin_modules() -> list[str]:
    names = []
    for package_name in BUILTIN_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_"):
                names.append(f"{package_name}.{info.name}")
    return sorted(names)


@cache
def default_registry() -> Registry:
    factories: list[Factory] = []
    for name in builtin_modules():
        factories.extend(_module_factories(name))
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
        except Exception:
            log.exception("cannot load component plugin", extra={"entry_point": ep.name})
            continue
        factories.extend(loaded if isinstance(loaded, list | tuple) else [loaded])
    return Registry(factories)
