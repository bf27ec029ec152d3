"""Backoff, Retry-After and gRPC RetryInfo delays."""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

from pipeline.config.retry import RetrySettings
from pipeline.exporterhelper.retry import Backoff, parse_retry_after, retry_delay


def test_backoff_grows_caps_and_respects_deadline() -> None:
    now = [0.0]
    clock: Callable[[], float] = lambda: now[0]  # noqa: E731
    b = Backoff(RetrySettings(initial_interval=1, max_interval=3, multiplier=2,
                              randomization_factor=0, max_elapsed_time=10), clock)
    assert [b.next_delay(None) for _ in range(4)] == [1.0, 2.0, 3.0, 3.0]
    assert b.next_delay(5.0) == 5.0  # retry_after above the interval wins
    now[0] = 8.0
    assert b.next_delay(5.0) == 2.0  # never past max_elapsed_time
    now[0] = 10.0
    assert b.next_delay(None) is None


def test_backoff_zero_max_elapsed_retries_forever() -> None:
    now = [0.0]
    b = Backoff(RetrySettings(initial_interval=1, max_interval=1, randomization_factor=0,
                              max_elapsed_time=0), lambda: now[0])
    now[0] = 1e9
    assert b.next_delay(None) == 1.0


def test_backoff_jitter_within_factor() -> None:
    b = Backoff(RetrySettings(initial_interval=1, max_interval=1, randomization_factor=0.5))
    delays = [b.next_delay(None) for _ in range(200)]
    assert all(d is not None and 0.5 <= d <= 1.5 for d in delays)
    assert len(set(delays)) > 1


def test_parse_retry_after_seconds_and_http_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_status_details_are_parsed() -> None:
    st = status_pb2.Status(code=14)
    assert retry_delay((("grpc-status-details-bin", st.SerializeToString()),)) is None
    assert retry_delay((("grpc-status-details-bin", b"\xff\xff"),)) is None
    assert retry_delay(None) is None


def test_retry_info_delay() -> None:
    st = status_pb2.Status(code=8)
    st.details.add().Pack(error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=2, nanos=500_000_000)))
    assert retry_delay((("other", "x"), ("grpc-status-details-bin", st.SerializeToString()))) \
        == 2.5
