"""Every logstruct test that builds batches runs on OTLP batches and on batches of Python
log records: the two paths must give the same records."""

from __future__ import annotations

import pytest

from tests.unit.processors.logstruct.helpers import Mode


@pytest.fixture(params=["otlp", "records"])
def mode(request: pytest.FixtureRequest) -> Mode:
    """What `helpers.batch_of` / `helpers.run` build: take it and pass it on."""
    mode: Mode = request.param
    return mode
