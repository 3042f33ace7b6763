"""Per-connector limits: concurrency, rate, and a circuit breaker — small asyncio code of our own
(the well-known libraries are thread- or sync-oriented, and these need to fail fast inside one loop).

- Concurrency: at most ``concurrency`` calls at once; a call waits up to ``queue_s`` for a slot, then
  fails fast as ``rate_limited``.
- Rate: a token bucket of ``rate_per_s`` with ``burst``; an empty bucket fails fast as ``rate_limited``.
- Circuit breaker: ``failures`` consecutive failures (timeouts, errors — not "not found" or a bad
  request) open it; while open every call fails fast as ``circuit_open``; after ``reset_s`` one trial
  call is let through (half-open): success closes it, failure opens it again.

The failure kinds reach rules as ``failure {action, kind, error}`` facts (route on
``failure.kind == "circuit_open"``), the call's ``meta.circuit`` is recorded in the decision, and the
state and trips are Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.infra import metrics
from engine.ports import CallResult

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_VALUE = {CLOSED: 0, OPEN: 1, HALF_OPEN: 2}
NOT_FAILURES = {"bad_request", "not_found", "rate_limited", "circuit_open", "read_only", "invalid_answer"}


@dataclass(slots=True)
class Limits:
    concurrency: int | None = None
    queue_s: float = 1.0
    rate_per_s: float | None = None
    burst: int | None = None
    failures: int | None = None  # consecutive failures that open the circuit
    reset_s: float = 30.0

    @staticmethod
    def from_config(spec: Mapping[str, Any] | None, where: str) -> Limits:
        if spec is None:
            return Limits()
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where}: limits is a mapping (concurrency, rate_per_s, burst, breaker)")
        unknown = set(spec) - {"concurrency", "queue_s", "rate_per_s", "burst", "breaker"}
        if unknown:
            raise ValueError(f"{where}: unknown key {sorted(unknown)[0]!r} (concurrency, queue_s, rate_per_s, burst, "
                             "breaker)")
        breaker = spec.get("breaker") or {}
        if not isinstance(breaker, Mapping) or set(breaker) - {"failures", "reset_s"}:
            raise ValueError(f"{where}.breaker: {{failures: N, reset_s: S}}")

        def number(value: Any, key: str, whole: bool = False) -> Any:
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or (
                    whole and not isinstance(value, int)):
                raise ValueError(f"{where}.{key}: a positive {'whole ' if whole else ''}number")
            return value

        return Limits(concurrency=number(spec.get("concurrency"), "concurrency", True),
                      queue_s=float(number(spec.get("queue_s"), "queue_s") or 1.0),
                      rate_per_s=number(spec.get("rate_per_s"), "rate_per_s"),
                      burst=number(spec.get("burst"), "burst", True),
                      failures=number(breaker.get("failures"), "breaker.failures", True),
                      reset_s=float(number(breaker.get("reset_s"), "breaker.reset_s") or 30.0))


@dataclass(slots=True)
class Breaker:
    name: str
    failures: int
    reset_s: float
    clock: Callable[[], float] = time.monotonic
    state: str = CLOSED
    consecutive: int = 0
    opened_at: float = 0.0
    trial: bool = False  # a half-open trial call is in flight

    def allow(self) -> bool:
        if self.state == CLOSED:
            return True
        if self.state == OPEN and self.clock() - self.opened_at >= self.reset_s:
            self._set(HALF_OPEN)
        if self.state == HALF_OPEN and not self.trial:
            self.trial = True
            return True
        return False

    def record(self, ok: bool) -> None:
        if self.state == HALF_OPEN:
            self.trial = False
            if ok:
                self.consecutive = 0
                self._set(CLOSED)
            else:
                self._open()
            return
        if ok:
            self.consecutive = 0
            return
        self.consecutive += 1
        if self.state == CLOSED and self.consecutive >= self.failures:
            self._open()

    def _open(self) -> None:
        self.opened_at = self.clock()
        self._set(OPEN)
        metrics.CIRCUIT_TRIPS.labels(connector=self.name).inc()

    def _set(self, state: str) -> None:
        self.state = state
        metrics.CIRCUIT_STATE.labels(connector=self.name).set(STATE_VALUE[state])


@dataclass(slots=True)
class Bucket:
    rate_per_s: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    tokens: float = field(default=-1.0)
    at: float = 0.0

    def take(self) -> bool:
        now = self.clock()
        if self.tokens < 0:
            self.tokens, self.at = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate_per_s)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Refused(Exception):
    """A call failed fast by a connector's limits (``kind`` is circuit_open or rate_limited)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


class Guard:
    """One connector's limits, around every call it makes."""

    def __init__(self, name: str, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.limits = limits
        self.slots = asyncio.Semaphore(limits.concurrency) if limits.concurrency else None
        self.bucket = Bucket(limits.rate_per_s, float(limits.burst or max(1, int(limits.rate_per_s))), clock) \
            if limits.rate_per_s else None
        self.breaker = Breaker(name, limits.failures, limits.reset_s, clock) if limits.failures else None
        if self.breaker is not None:
            metrics.CIRCUIT_STATE.labels(connector=name).set(0)

    @property
    def active(self) -> bool:
        return bool(self.slots or self.bucket or self.breaker)

    def _refused(self, kind: str, error: str) -> CallResult:
        metrics.CONNECTOR_REFUSED.labels(connector=self.name, reason=kind).inc()
        circuit = self.breaker.state if self.breaker is not None else "none"
        return CallResult(failure_kind=kind, error=f"{self.name}: {error}", attempts=0, meta={"circuit": circuit})

    async def run(self, call: Callable[[], Awaitable[CallResult]]) -> CallResult:
        if not self.active:
            return await call()
        if self.breaker is not None and not self.breaker.allow():
            return self._refused("circuit_open", f"circuit open after {self.breaker.failures} consecutive failures; "
                                 f"retrying after {self.breaker.reset_s:g}s")
        trial = self.breaker is not None and self.breaker.state == HALF_OPEN
        if self.bucket is not None and not self.bucket.take():
            if trial and self.breaker is not None:
                self.breaker.trial = False
            return self._refused("rate_limited", f"over {self.limits.rate_per_s:g} calls/s")
        if self.slots is not None:
            try:
                await asyncio.wait_for(self.slots.acquire(), self.limits.queue_s)
            except TimeoutError:
                if trial and self.breaker is not None:
                    self.breaker.trial = False
                return self._refused("rate_limited", f"{self.limits.concurrency} calls in flight; no slot within "
                                     f"{self.limits.queue_s:g}s")
        try:
            result = await call()
        except BaseException:
            if self.breaker is not None:
                self.breaker.record(False)
            raise
        finally:
            if self.slots is not None:
                self.slots.release()
        if self.breaker is not None:
            self.breaker.record(result.ok or result.failure_kind in NOT_FAILURES)
            result.meta = {**result.meta, "circuit": self.breaker.state}
        return result

    async def protect(self, send: Callable[[], Awaitable[None]]) -> None:
        """For effects: the same limits around a delivery that raises on failure; a refusal raises Refused."""

        async def as_result() -> CallResult:
            try:
                await send()
            except Exception as e:
                return CallResult(failure_kind="error", error=f"{type(e).__name__}: {e}", meta={"exception": e})
            return CallResult()

        result = await self.run(as_result)
        if result.failure_kind in ("circuit_open", "rate_limited"):
            raise Refused(result.failure_kind, result.error)
        error = result.meta.get("exception")
        if isinstance(error, BaseException):
            raise error
