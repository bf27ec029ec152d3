"""tests/e2e: each test starts real processes -- mostly `otelpipe run`
(tests.support.OtelpipeProcess), talked to over the network; sometimes a Python child
to SIGKILL -- and needs no external services. Marked `e2e` here, so `pytest -m "not e2e"`
leaves them out."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A conftest's collection hook sees every collected item, not only this folder's.
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)
