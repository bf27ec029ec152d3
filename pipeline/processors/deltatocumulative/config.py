"""The keys of the `deltatocumulative` processor (the Collector contrib's, plus
`out_of_order`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.component import ComponentConfig
from pipeline.config.types import Duration

DEFAULT_MAX_STREAMS = 100_000


class DeltaToCumulativeConfig(ComponentConfig):
    max_stale: Duration = Field(
        300.0, gt=0, description="forget a stream that received no point for this long "
                                 "(the Collector's key and default, 5m)")
    max_streams: int = Field(
        DEFAULT_MAX_STREAMS, ge=1,
        description="streams tracked at most; a point of a new stream beyond is dropped and "
                    "counted (the Collector's default is unlimited, otelpipe's 100000)")
    out_of_order: Literal["drop", "accumulate"] = Field(
        "drop", description="drop: a point older than its stream's last one (or starting "
        "before the stream) is dropped, as the Collector does; accumulate: every point is "
        "added (but a repeat of one of the stream's last 8 windows), for streams fed by "
        "several producers (otelpipe's workers)")
    emit: Literal["cumulative", "delta"] = Field(
        "cumulative", description="cumulative: each point leaves as its stream's running "
        "total; delta (otelpipe's): each accepted point leaves as it came, re-timed as its "
        "stream's next window (start = the end of the previous one), so that deltas of "
        "several producers become one writer's contiguous deltas")
