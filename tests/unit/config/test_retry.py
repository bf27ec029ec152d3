"""The exporter settings models (timeout, retry_on_failure, sending_queue, in-flight caps)."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.config.retry import (
    DEFAULT_DISK_QUEUE_BYTES,
    DEFAULT_MAX_IN_FLIGHT_BYTES,
    DEFAULT_MAX_IN_FLIGHT_REQUESTS,
    DEFAULT_MEMORY_QUEUE_BYTES,
    ExporterSettings,
    QueueSettings,
    RetrySettings,
)

MIB = 1024 * 1024


def test_disk_storage_needs_a_directory() -> None:
    with pytest.raises(ValueError, match="directory is required"):
        ExporterSettings.model_validate({"sending_queue": {"storage": "disk"}})


def test_defaults_and_keys() -> None:
    s = ExporterSettings()
    assert s.timeout == 5.0
    assert s.retry_on_failure == RetrySettings()
    assert s.sending_queue == QueueSettings()
    assert s.max_in_flight_requests == DEFAULT_MAX_IN_FLIGHT_REQUESTS == 1000
    assert s.max_in_flight_bytes == DEFAULT_MAX_IN_FLIGHT_BYTES == 64 * MIB
    assert set(ExporterSettings.model_fields) == {
        "timeout", "retry_on_failure", "sending_queue", "max_in_flight_requests",
        "max_in_flight_bytes"}


def test_queue_is_bounded_in_bytes_by_default() -> None:
    q = QueueSettings()
    assert (q.sizer, q.queue_size, q.capacity, q.max_bytes) == \
        ("bytes", None, DEFAULT_MEMORY_QUEUE_BYTES, None)
    assert DEFAULT_MEMORY_QUEUE_BYTES == 64 * MIB
    disk = QueueSettings(storage="disk", directory="/q")
    assert (disk.capacity, disk.max_bytes) == (DEFAULT_DISK_QUEUE_BYTES, 1024 * MIB)


@pytest.mark.parametrize(("queue", "sizer", "capacity", "max_bytes"), [
    ({"queue_size": "16MiB"}, "bytes", 16 * MIB, None),
    ({"queue_size": 1000, "sizer": "bytes"}, "bytes", 1000, None),
    ({"sizer": "requests"}, "requests", 1000, None),
    ({"sizer": "items", "queue_size": 5000}, "items", 5000, None),
    ({"sizer": "requests", "storage": "disk", "directory": "/q", "max_size_mib": 10},
     "requests", 1000, 10 * MIB),
])
def test_sizer_and_capacity(queue: dict[str, Any], sizer: str, capacity: int,
                            max_bytes: int | None) -> None:
    q = QueueSettings.model_validate(queue)
    assert (q.sizer, q.capacity, q.max_bytes) == (sizer, capacity, max_bytes)


@pytest.mark.parametrize(("queue", "message"), [
    # The Collector counts requests by default: a bare number is ambiguous here.
    ({"queue_size": 1000}, "needs a sizer"),
    ({"queue_size": "1000"}, "needs a sizer"),
    ({"queue_size": "1MiB", "sizer": "items"}, "is a size in bytes but the sizer is items"),
    ({"queue_size": 0, "sizer": "requests"}, "greater than 0"),
    ({"queue_size": "lots"}, "invalid size"),
])
def test_queue_size_errors(queue: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QueueSettings.model_validate(queue)


def test_in_flight_caps_accept_sizes_and_zero() -> None:
    s = ExporterSettings.model_validate({"max_in_flight_bytes": "8MiB",
                                         "max_in_flight_requests": 0})
    assert (s.max_in_flight_bytes, s.max_in_flight_requests) == (8 * MIB, 0)
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        ExporterSettings.model_validate({"max_in_flight_requests": -1})
