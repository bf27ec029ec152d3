"""InFlightLimit: the caps on exports in flight without a queue."""

from __future__ import annotations

from pipeline.exporterhelper.inflight import InFlightLimit


def test_request_cap() -> None:
    limit = InFlightLimit(max_requests=2, max_bytes=0)
    assert limit.try_acquire(10**9)
    assert limit.try_acquire(10**9)
    assert not limit.try_acquire(1)
    limit.release(10**9)
    assert limit.try_acquire(1)
    assert (limit.requests, limit.bytes) == (2, 10**9 + 1)


def test_byte_cap_admits_one_oversized_export_when_idle() -> None:
    limit = InFlightLimit(max_requests=0, max_bytes=100)
    assert limit.try_acquire(60)
    assert limit.try_acquire(40)
    assert not limit.try_acquire(1)
    limit.release(60)
    limit.release(40)
    assert limit.try_acquire(500)  # alone: admitted, or it could never pass
    assert not limit.try_acquire(1)
    limit.release(500)
    assert (limit.requests, limit.bytes) == (0, 0)


def test_zero_means_no_cap() -> None:
    limit = InFlightLimit(0, 0)
    assert all(limit.try_acquire(1 << 30) for _ in range(10_000))
