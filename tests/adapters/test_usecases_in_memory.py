"""The decision path, escalations and governance run over the in-memory store (adapters/infra/memory.py),
with no database: what they ask of the store is what its ports promise (tests/adapters/test_store_ports.py
holds the fake to SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.infra.fakes import Unconfigured
from adapters.infra.memory import MemoryStore
from adapters.infra.store.writer import GroupWriter
from adapters.ports import Conflict
from adapters.usecases.commands import DecideCommand, Refused
from adapters.usecases.decide import Decide
from adapters.usecases.decisions import DecisionPath
from adapters.usecases.escalations import Escalations, NotOpen
from adapters.usecases.registry import GovernanceError, RulesetRegistry
from engine.clock import FixedClock, SequentialIds
from engine.loop import Engine
from engine.replay import replay

T0 = 1_700_000_000.0
RULES = """
ruleset: claims
facts:
  claim: {ref: str, amount: number}
  approval: {ref: str, by: str}
input: [claim]
rules:
  - name: large
    when: claim.amount >= 1000 and not exists approval
    then:
      escalate: {queue: review, reason: "large claim", expects: approval, identity: by}
  - name: small
    when: claim.amount < 1000
    then:
      - effect: {name: notify, with: {claim: "{{ claim.ref }}"}}
      - decide: {route: auto}
  - name: approved
    priority: 10
    when: exists approval
    then:
      decide: {route: pay}
"""


@dataclass
class World:
    store: MemoryStore
    clock: FixedClock  # the escalations' clock: notes are ordered by it
    registry: RulesetRegistry
    path: DecisionPath
    escalations: Escalations


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    (tmp_path / "claims.yaml").write_text(textwrap.dedent(RULES).lstrip())
    store = MemoryStore()
    registry = RulesetRegistry(store)
    registry.load_directory(tmp_path)
    writer = GroupWriter(store)
    path = DecisionPath(writer, tracer=None)
    clock = FixedClock(T0)
    escalations = Escalations(store, writer, registry, Unconfigured("model"), Unconfigured("tool"), clock,
                              SequentialIds("r-"), path=path)
    yield World(store, clock, registry, path, escalations)
    writer.close()


async def decide(w: World, ref: str, amount: float, key: str | None = None) -> tuple[str, bool]:
    engine: Engine = w.registry.engine("claims")
    tools = Unconfigured("tool")
    record, saved = await w.path.decide(
        "claims", lambda: engine.decide({"claim": {"ref": ref, "amount": amount}}, Unconfigured("model"), tools,
                                        FixedClock(T0), SequentialIds(f"{ref}-")), "app", key)
    return record["decision_id"], saved.existing


def test_a_repeated_request_is_answered_with_the_stored_decision(world: World) -> None:
    async def run() -> list[tuple[str, bool]]:
        return [await decide(world, "C-1", 10, "k-1"), await decide(world, "C-1", 10, "k-1")]

    (first, existing_first), (second, existing_second) = asyncio.run(run())
    assert (existing_first, existing_second) == (False, True) and first == second
    assert world.store.count() == 1 and len(world.store.effects()) == 1
    stored = world.store.find("app", "k-1")
    assert stored is not None and stored["decision"] == {"route": "auto"}
    assert world.store.verify() == (1, None)


def test_decide_answers_a_retry_and_a_lost_race_with_the_stored_decision(world: World) -> None:
    decide_uc = Decide(registry=world.registry, log=world.store, path=world.path, models=Unconfigured("model"),
                       tools=Unconfigured("tool"), clock=FixedClock(T0), ids=SequentialIds("u-"))

    def cmd(amount: float, key: str, fresh: bool = False) -> DecideCommand:
        return DecideCommand(caller="app", ruleset="claims", facts={"claim": {"ref": "C-9", "amount": amount}},
                             key=key, fresh=fresh)

    async def run() -> None:
        first = await decide_uc.one(cmd(10, "k-9"))
        retry = await decide_uc.one(cmd(10, "k-9"))
        assert (first.replayed, retry.replayed) == (False, True)
        assert retry.record["decision_id"] == first.record["decision_id"]
        with pytest.raises(Refused) as refused:  # the same key for another request
            await decide_uc.one(cmd(20, "k-9"))
        assert refused.value.code == "idempotency_conflict"
        # both skip the lookup (``fresh``) and decide; the store keeps one, the other answers with it
        a, b = await asyncio.gather(decide_uc.one(cmd(10, "k-10", fresh=True)),
                                    decide_uc.one(cmd(10, "k-10", fresh=True)))
        assert sorted((a.replayed, b.replayed)) == [False, True]
        assert a.record["decision_id"] == b.record["decision_id"]

    asyncio.run(run())
    assert world.store.count() == 2 and world.store.verify() == (2, None)


def test_resolving_an_escalation_resumes_its_decision_once(world: World) -> None:
    async def run() -> str:
        escalated, _ = await decide(world, "C-2", 5000)
        esc, resumed = await world.escalations.resolve(escalated, {"ref": "C-2"}, "carol")
        assert (esc["status"], esc["resolved_by"], esc["resumed_decision_id"]) == (
            "resolved", "carol", resumed["decision_id"])
        assert resumed["decision"] == {"route": "pay"} and resumed["resumes"] == escalated
        with pytest.raises(NotOpen):
            await world.escalations.resolve(escalated, {"ref": "C-2"}, "dave")
        return str(resumed["decision_id"])

    resumed_id = asyncio.run(run())
    stored = world.store.get(resumed_id)
    assert stored is not None
    assert asyncio.run(replay(world.registry.engine_for(stored["version"]), stored)).identical
    assert world.store.escalations() == []


def test_two_reviewers_resolving_at_once_resume_it_once(world: World) -> None:
    async def run() -> list[object]:
        escalated, _ = await decide(world, "C-3", 5000)
        return list(await asyncio.gather(world.escalations.resolve(escalated, {"ref": "C-3"}, "carol"),
                                         world.escalations.resolve(escalated, {"ref": "C-3"}, "dave"),
                                         return_exceptions=True))

    outcomes = asyncio.run(run())
    lost = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(lost) == 1 and isinstance(lost[0], (Conflict, NotOpen))
    assert world.store.count() == 2  # the escalated decision and one resumption


def test_closing_an_escalation_keeps_the_reason_and_ends_it(world: World) -> None:
    async def run() -> None:
        escalated, _ = await decide(world, "C-4", 5000)
        await world.escalations.assign(escalated, "bob", "ann")
        world.clock.advance(60)
        esc = await world.escalations.close(escalated, "duplicate claim", "bob")
        assert (esc["status"], esc["assigned_to"], esc["resolved_by"]) == ("declined", "bob", "bob")
        with pytest.raises(NotOpen):
            await world.escalations.close(escalated, "again", "ann")
        notes = world.store.escalation_notes(escalated)
        assert [(n["kind"], n["text"]) for n in notes] == [("assigned", "assigned to bob"),
                                                          ("declined", "duplicate claim")]

    asyncio.run(run())


def test_a_publication_needs_a_second_person(world: World, tmp_path: Path) -> None:
    source = textwrap.dedent(RULES).lstrip().replace("amount < 1000", "amount < 2000")
    (tmp_path / "next").mkdir()
    (tmp_path / "next" / "claims.yaml").write_text(source)
    [candidate] = RulesetRegistry(MemoryStore()).load_directory(tmp_path / "next")
    pub = world.registry.submit(candidate, "ann", "raise the automatic limit")
    with pytest.raises(GovernanceError):
        world.registry.decide(pub.id, "ann", approve=True)
    done = world.registry.decide(pub.id, "bob", approve=True)
    assert (done.status, done.decided_by) == ("published", "bob")
    assert world.registry.active_version("claims") == candidate.version
