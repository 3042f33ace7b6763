"""Deterministic Clock and IdFactory for tests, replays and `baton test` (no real time, no randomness)."""

from __future__ import annotations


class FixedClock:
    """A clock that only moves when told: same inputs, same record."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class SequentialIds:
    def __init__(self, prefix: str = "d") -> None:
        self.prefix = prefix
        self.n = 0

    def new_id(self) -> str:
        self.n += 1
        return f"{self.prefix}{self.n:06d}"
