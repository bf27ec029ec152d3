"""Every logstruct test runs on OTLP batches and on batches of Python log records: the
two paths must give the same records."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.processors.logstruct import helpers


@pytest.fixture(autouse=True, params=["otlp", "records"])
def batch_mode(request: pytest.FixtureRequest) -> Iterator[str]:
    helpers.MODE = request.param
    yield request.param
    helpers.MODE = "otlp"
