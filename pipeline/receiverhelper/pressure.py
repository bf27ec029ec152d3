"""What the process is under, shared without components importing each other.

Written by those who measure it, read by those who act on it:

- `MEMORY`: the memory_limiter processors say when they refuse data; listeners
  refuse a request *before* reading its body while any of them does, and the
  health extension reports not-ready;
- `LOOP_LAG`: the service's loop-lag monitor writes how late its last timer
  fired; the health extension shows it in `/health/detailed`.

Process-wide on purpose: one event loop, one RSS. Plain state, no I/O and no
imports beyond the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Refusal:
    """Why data is refused now, and when a sender should try again."""

    reason: str
    retry_after: float


class MemoryPressure:
    """Which memory limiters refuse data now (one per pipeline it is in)."""

    def __init__(self) -> None:
        self._refusing: dict[str, Refusal] = {}

    def refuse(self, owner: str, reason: str, retry_after: float) -> None:
        self._refusing[owner] = Refusal(reason, retry_after)

    def accept(self, owner: str) -> None:
        """`owner` accepts again (also when it shuts down)."""
        self._refusing.pop(owner, None)

    def refusal(self) -> Refusal | None:
        """None while no limiter refuses, else the first refusal (longest delay)."""
        if not self._refusing:
            return None
        first = next(iter(self._refusing.items()))
        retry_after = max(r.retry_after for r in self._refusing.values())
        return Refusal(f"{first[0]}: {first[1].reason}", retry_after)


class LoopLag:
    """The latest measured lag of the event loop, in seconds (None: not measured)."""

    def __init__(self) -> None:
        self.current: float | None = None
        self.recent_max: float | None = None


MEMORY = MemoryPressure()
LOOP_LAG = LoopLag()
