"""Component factories by kind and type: the built-ins plus entry-point plugins.

Third-party packages register in the `otelpipe.components` entry-point group;
each entry point loads a `Factory` or a list of them.

Built-in components are found by module: every module (or package) directly under
the kind packages whose name does not start with `_` is a component type and must
define `factory` (or `factories`), so a type lives in exactly one place and there is
no list to keep in sync. The default registry imports a component's module only
when it is asked for that type (`otelpipe run` loads what its config names, not
every component and the libraries behind them); listing or a miss loads them all.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable, Iterable
from functools import cache
from importlib.metadata import entry_points

from pipeline.component import Factory, Kind

ENTRY_POINT_GROUP = "otelpipe.components"

BUILTIN_PACKAGES = {
    Kind.RECEIVER: "pipeline.receivers",
    Kind.PROCESSOR: "pipeline.processors",
    Kind.EXPORTER: "pipeline.exporters",
    Kind.CONNECTOR: "pipeline.connectors",
    Kind.EXTENSION: "pipeline.extensions",
}

log = logging.getLogger("otelpipe.registry")


class Registry:
    """Factories by (kind, type or alias).

    `lazy_modules` maps (kind, type) to a module that defines that type's factory;
    `load_all` returns every factory not given up front (both for the default
    registry; a registry built from a list of factories has neither).
    """

    def __init__(self, factories: Iterable[Factory],
                 lazy_modules: dict[tuple[Kind, str], str] | None = None,
                 load_all: Callable[[], Iterable[Factory]] | None = None):
        self._by_key: dict[tuple[Kind, str], Factory] = {}
        self._lazy_modules = dict(lazy_modules or {})
        self._load_all = load_all
        self._add(factories)

    def _add(self, factories: Iterable[Factory]) -> None:
        for f in factories:
            for name in (f.type, *f.aliases):
                self._by_key[(f.kind, name)] = f

    def _complete(self) -> None:
        if self._load_all is not None:
            load, self._load_all = self._load_all, None
            self._lazy_modules.clear()
            self._add(load())

    def get(self, kind: Kind, type_: str) -> Factory | None:
        found = self._by_key.get((kind, type_))
        if found is None:
            module = self._lazy_modules.pop((kind, type_), None)
            if module is not None:
                self._add(module_factories(module))
                found = self._by_key.get((kind, type_))
        if found is None and self._load_all is not None:
            self._complete()  # an alias or a plugin
            found = self._by_key.get((kind, type_))
        return found

    def types(self, kind: Kind) -> list[str]:
        self._complete()
        return sorted(t for (k, t) in self._by_key if k is kind)

    def factories(self) -> list[Factory]:
        self._complete()
        unique = {id(f): f for f in self._by_key.values()}
        return sorted(unique.values(), key=lambda f: (list(Kind).index(f.kind), f.type))


class MissingFactoryError(ImportError):
    """A built-in component module without a factory (a misspelt `factory`, say)."""


def module_factories(module_name: str) -> list[Factory]:
    module = importlib.import_module(module_name)
    found = getattr(module, "factories", None)
    if found is None:
        if not hasattr(module, "factory"):
            raise MissingFactoryError(
                f"{module_name} defines no `factory` (or `factories`); a module that is not "
                "a component must start with `_` or live in a helper package")
        found = [module.factory]
    return list(found)


def builtin_modules() -> list[str]:
    """Every built-in component module, without importing it."""
    return sorted(builtin_types().values())


def builtin_types() -> dict[tuple[Kind, str], str]:
    """(kind, type) -> module of every built-in component, without importing it."""
    found = {}
    for kind, package_name in BUILTIN_PACKAGES.items():
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_"):
                found[(kind, info.name)] = f"{package_name}.{info.name}"
    return found


def _all_factories() -> list[Factory]:
    factories: list[Factory] = []
    for name in builtin_modules():
        factories.extend(module_factories(name))
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
        except Exception:
            log.exception("cannot load component plugin", extra={"entry_point": ep.name})
            continue
        factories.extend(loaded if isinstance(loaded, list | tuple) else [loaded])
    return factories


@cache
def default_registry() -> Registry:
    return Registry((), lazy_modules=builtin_types(), load_all=_all_factories)
