"""The import-linter contracts in pyproject.toml name every built-in component, so a
new component cannot slip past the rule that components never import each other."""

from __future__ import annotations

import tomllib

from pipeline.registry import builtin_modules
from tests.support import REPO


def test_independence_contract_lists_every_builtin_component() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    [independence] = [c for c in contracts if c["type"] == "independence"]
    assert sorted(independence["modules"]) == builtin_modules(), (
        "add the new component module to the independence contract in pyproject.toml")
