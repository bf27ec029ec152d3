import pytest

from pipeline.telemetry.metrics import Telemetry


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry()
