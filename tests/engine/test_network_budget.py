"""A process held to a network budget (engine.driver.set_network_budget, versions.networks_max_mb) registers
networks on first use, frees the least recently used that no decision is on, and decides exactly as a
process holding every network."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from engine import driver
from engine.clock import FixedClock, SequentialIds
from engine.language.loader import load_ruleset
from engine.loop import Engine
from engine.recorded import RecordedAnswers
from tests.scale import inputs, ruleset_text

RULES = 300  # 38 shards of the default cut


@pytest.fixture(autouse=True)
def unbounded() -> Iterator[None]:
    yield
    driver.set_network_budget(None)


def engine_named(name: str) -> Engine:
    """The generated ruleset under its own name: its own networks, apart from every other test's."""
    return Engine(load_ruleset(ruleset_text(RULES).replace("ruleset: scale", f"ruleset: {name}", 1), f"{name}.yaml"))


def decisions(engine: Engine, facts: list[dict[str, Any]], seen: list[int] | None = None) -> list[Any]:
    answers = RecordedAnswers({})

    async def run() -> list[Any]:
        out = []
        for f in facts:
            d = await engine.decide(f, answers, answers, FixedClock(), SequentialIds())
            out.append((d.outcome, d.decision, d.fired, d.trace))
            if seen is not None:
                seen.append(driver.network_budget().networks)
        return out

    return asyncio.run(run())


def test_held_to_a_budget_decisions_and_traces_are_those_of_every_network_registered() -> None:
    facts = inputs(RULES, 150)
    reference = engine_named("budget_reference")
    expected = decisions(reference, facts)
    driver.unload(reference.compiled)
    driver.set_network_budget(0.5)  # about three of these networks (others this process holds are freed now)
    before = driver.network_budget()
    held = engine_named("budget_held")
    assert driver.network_budget().networks == before.networks, "held to a budget, an engine registers none up front"
    seen: list[int] = []
    assert decisions(held, facts, seen) == expected
    after = driver.network_budget()
    assert after.evicted > before.evicted and after.registered - before.registered > len(held.compiled.shards)
    # what one decision reaches stays registered while it runs; nothing else accumulates
    assert max(seen) <= before.networks + 12 < before.networks + len(held.compiled.shards)
    driver.set_network_budget(0.5)  # no decision in flight: down to the budget
    assert driver.network_budget().held_bytes <= 0.5 * (1 << 20)
    assert driver.unload(held.compiled)


def test_a_network_a_decision_is_on_is_never_freed() -> None:
    engine = engine_named("budget_live")
    on, other = engine.pool.shards[0], engine.pool.shards[1]
    driver.set_network_budget(0)  # every network not in use goes as soon as another is registered
    handle, _ = on.acquire()  # a decision's session on it (live until released)
    other.warm()
    assert other.handles, "the network just registered is kept"
    assert [h.name for h in on.handles] == [handle.name], "a network with a live session is kept"
    registered = driver.network_budget().networks
    on.release(handle)
    driver.set_network_budget(0)
    assert not on.handles and driver.network_budget().networks < registered
    # the next decision on it registers it again, under a name of the next generation
    again, _ = on.acquire()
    assert again.name != handle.name and on.handles
    on.release(again)
    assert driver.unload(engine.compiled)


def test_unbounded_again_every_network_stays() -> None:
    driver.set_network_budget(1)
    driver.set_network_budget(None)
    engine = engine_named("budget_none")
    assert all(p.handles for p in engine.pool.shards), "without a budget an engine registers every network"
    before = driver.network_budget()
    decisions(engine, inputs(RULES, 20))
    assert driver.network_budget().evicted == before.evicted
    assert driver.unload(engine.compiled)
