"""Shared helpers: build rulesets from YAML text and decide with recorded answers."""

from __future__ import annotations

import asyncio
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from engine.clock import FixedClock, SequentialIds
from engine.language.loader import load_ruleset
from engine.loop import Decision, Engine, Limits
from engine.model import Ruleset
from engine.recorded import RecordedAnswers

T = TypeVar("T")


def ruleset(text: str, file: str = "test.yaml") -> Ruleset:
    return load_ruleset(textwrap.dedent(text).lstrip("\n"), file)


def decide(rs: Ruleset | Engine, facts: Any, answers: dict[str, Any] | None = None,
           limits: Limits | None = None) -> Decision:
    engine = rs if isinstance(rs, Engine) else Engine(rs)
    recorded = RecordedAnswers(answers or {})
    return asyncio.run(engine.decide(facts, recorded, recorded, FixedClock(), SequentialIds(), limits))


def strip_timing(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record without ids and timings: what must be identical for identical inputs."""
    out = {k: v for k, v in record.items() if k not in ("decision_id", "latency_ms", "started_at", "finished_at")}
    out["trace"] = [{k: v for k, v in e.items() if k != "latency_ms"} for e in record["trace"]]
    return out


@contextmanager
def serve_app(routes: list[Any], ssl_context: Any = None) -> Iterator[str]:
    """An aiohttp app on a free localhost port, run in a thread: a real HTTP(S) peer for a test."""
    from aiohttp import web

    app = web.Application()
    app.add_routes(routes)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start())
    port = runner.addresses[0][1]
    threading.Thread(target=loop.run_forever, daemon=True).start()
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)


def not_none(value: T | None, what: str = "value") -> T:
    """`value`, asserted present: for a lookup the test has just made sure will find something."""
    assert value is not None, f"{what} is missing"
    return value


def wait_until(condition: Callable[[], T | None], timeout: float = 10.0, what: str = "the condition",
               every: float = 0.02) -> T:
    """Poll `condition` until it returns something truthy, and return that; fail the test naming `what` if it has
    not by `timeout` seconds. For waiting on another process or thread (a server up, a file written, a worker
    gone): the test takes as long as the thing takes, and a slow machine makes it slower, not flaky."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


async def wait_until_async(condition: Callable[[], T | None], timeout: float = 10.0,
                           what: str = "the condition", every: float = 0.02) -> T:
    """`wait_until` for a test running in an event loop: polls without blocking the loop."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(every)
