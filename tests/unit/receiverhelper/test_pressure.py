from __future__ import annotations

from pipeline.receiverhelper.pressure import MemoryPressure, Refusal


def test_refusing_while_any_limiter_refuses() -> None:
    memory = MemoryPressure()
    assert memory.refusal() is None
    memory.refuse("processor memory_limiter in traces", "over 100 MiB", 1.0)
    memory.refuse("processor memory_limiter in logs", "over 100 MiB", 5.0)
    assert memory.refusal() == Refusal("processor memory_limiter in traces: over 100 MiB", 5.0)
    memory.accept("processor memory_limiter in traces")
    assert memory.refusal() == Refusal("processor memory_limiter in logs: over 100 MiB", 5.0)
    memory.accept("processor memory_limiter in logs")
    memory.accept("processor memory_limiter in logs")  # twice: no error
    assert memory.refusal() is None
