from __future__ import annotations

import asyncio
import time

from pipeline.receiverhelper.pressure import LoopLag
from pipeline.service.looplag import LoopLagMonitor
from pipeline.telemetry.metrics import Telemetry


async def test_a_blocked_loop_is_measured() -> None:
    telemetry, state = Telemetry(), LoopLag()
    monitor = LoopLagMonitor(telemetry, state, interval=0.02)
    monitor.start()
    try:
        await asyncio.sleep(0.1)
        assert state.current is not None  # (how small depends on the machine's load)
        time.sleep(0.3)  # noqa: ASYNC251 - the stall under test
        await asyncio.sleep(0.05)
        assert state.recent_max is not None
        assert state.recent_max >= 0.25
    finally:
        monitor.stop()
    sample = telemetry.registry.get_sample_value
    assert (sample("otelpipe_event_loop_lag_seconds_count") or 0) >= 2
    # the stall is in a bucket above 0.25 s (a loaded machine may add other late samples)
    assert (sample("otelpipe_event_loop_lag_seconds_bucket", {"le": "0.25"}) or 0) <= \
        (sample("otelpipe_event_loop_lag_seconds_count") or 0) - 1
    count = sample("otelpipe_event_loop_lag_seconds_count")
    await asyncio.sleep(0.1)
    assert sample("otelpipe_event_loop_lag_seconds_count") == count  # stopped
