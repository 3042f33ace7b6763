"""The start gate (adapters/usecases/decisions.py): under load decisions start their engine runs in groups; without
load, or with the gate off, nothing waits; a waiter cancelled leaves the others waiting; a decision
through the one path is stored and counted as before, gate or not."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from adapters.infra.rulesets import load_file
from adapters.infra.store.sql import SqlStore
from adapters.infra.store.writer import GroupWriter
from adapters.infra.system import SystemClock, TimeOrderedIds
from adapters.usecases.config import load_config
from adapters.usecases.decisions import DecisionPath, StartGate
from adapters.usecases.runtime import Runtime
from engine.loop import Engine
from engine.recorded import RecordedAnswers

ROOT = Path(__file__).resolve().parents[2]


async def _started(gate: StartGate, n: int) -> tuple[list[asyncio.Task[None]], list[int]]:
    """``n`` decisions entering the gate in turn (each stays in flight); the order in which they start."""
    order: list[int] = []

    async def one(i: int) -> None:
        await gate.enter()
        order.append(i)

    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(one(i)))
        await asyncio.sleep(0)  # each reaches the gate before the next arrives
    return tasks, order


def test_few_in_flight_start_at_once() -> None:
    async def go() -> None:
        gate = StartGate(window_s=10.0, min_active=4)
        tasks, order = await _started(gate, 3)
        assert order == [0, 1, 2]  # none waited for the 10 s window
        await asyncio.gather(*tasks)
        assert gate.groups == 0

    asyncio.run(go())


def test_under_load_a_group_starts_together_when_half_are_waiting() -> None:
    async def go() -> None:
        gate = StartGate(window_s=10.0, min_active=4, share=0.5)
        gate.active += 6  # six decisions already in flight (being stored, say)
        tasks, order = await _started(gate, 6)
        # 12 in flight: the sixth waiter makes half, and all six start in one pass, long before 10 s
        await asyncio.wait_for(asyncio.gather(*tasks), 1.0)
        assert sorted(order) == list(range(6))
        assert (gate.groups, gate.grouped) == (1, 6)

    asyncio.run(go())


def test_a_group_short_of_half_starts_when_the_window_ends() -> None:
    async def go() -> None:
        gate = StartGate(window_s=0.05, min_active=2, share=0.5)
        gate.active += 20
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks, order = await _started(gate, 3)
        assert order == []  # waiting: 3 of 23 in flight
        await asyncio.wait_for(asyncio.gather(*tasks), 1.0)
        assert loop.time() - start >= 0.04
        assert order == [0, 1, 2] and gate.groups == 1

    asyncio.run(go())


def test_when_load_falls_those_waiting_start_with_the_next_arrival() -> None:
    async def go() -> None:
        gate = StartGate(window_s=10.0, min_active=4, share=0.9)
        gate.active += 8
        tasks, order = await _started(gate, 2)
        assert order == []
        for _ in range(8):  # the decisions in flight finish
            gate.leave()
        late, _ = await _started(gate, 1)  # 3 in flight now: below min_active
        await asyncio.wait_for(asyncio.gather(*tasks, *late), 1.0)
        assert sorted(order) == [0, 1]

    asyncio.run(go())


def test_a_cancelled_waiter_leaves_the_others_waiting_and_then_starting() -> None:
    async def go() -> None:
        gate = StartGate(window_s=0.05, min_active=2, share=1.0)
        gate.active += 10
        tasks, order = await _started(gate, 3)
        tasks[1].cancel()
        with pytest.raises(asyncio.CancelledError):
            await tasks[1]
        await asyncio.wait_for(asyncio.gather(tasks[0], tasks[2]), 1.0)
        assert order == [0, 2]

    asyncio.run(go())


def test_window_zero_is_off() -> None:
    async def go() -> None:
        gate = StartGate(window_s=0.0, min_active=1)
        gate.active += 50
        tasks, order = await _started(gate, 5)
        assert order == [0, 1, 2, 3, 4]
        await asyncio.gather(*tasks)

    asyncio.run(go())


def test_waiters_left_by_an_ended_loop_do_not_hold_the_next_one() -> None:
    gate = StartGate(window_s=10.0, min_active=2, share=1.0)

    async def strand() -> None:
        gate.active += 5
        waiter = asyncio.ensure_future(gate.enter())
        await asyncio.sleep(0)  # not a wait: one turn of the loop, so the waiter reaches the gate
        assert gate._waiting  # left waiting when this loop ends
        stranded.append(waiter)

    stranded: list[asyncio.Future[None]] = []
    loop = asyncio.new_event_loop()
    loop.run_until_complete(strand())
    loop.close()
    gate.active = 0

    async def next_loop() -> None:
        await asyncio.wait_for(gate.enter(), 1.0)  # alone in flight on a new loop: starts at once

    asyncio.run(next_loop())
    stranded[0]._log_destroy_pending = False  # type: ignore[attr-defined]  # its loop is gone, as meant


def test_decisions_through_the_one_path_under_load_start_in_groups_and_are_all_stored(tmp_path: Path) -> None:
    rs = load_file(ROOT / "rulesets/claims-triage.yaml")
    engine, test = Engine(rs), rs.tests[0]
    store = SqlStore(str(tmp_path / "gate.db"))
    writer = GroupWriter(store)
    gate = StartGate(window_s=0.02, min_active=4)
    path = DecisionPath(writer, gate=gate)
    clock, ids = SystemClock(), TimeOrderedIds()

    async def one(i: int) -> str:
        answers = RecordedAnswers(test.answers)
        record, saved = await path.decide(rs.name, lambda: engine.decide(test.given, answers, answers, clock, ids),
                                          "caller", idempotency_key=f"k-{i}")
        assert not saved.existing and record["outcome"] == "decided"
        return str(record["decision_id"])

    async def go() -> list[str]:
        return await asyncio.gather(*(one(i) for i in range(40)))

    def counted() -> tuple[float, float]:
        return (REGISTRY.get_sample_value("baton_start_groups_total") or 0.0,
                REGISTRY.get_sample_value("baton_start_grouped_decisions_total") or 0.0)

    try:
        groups_before, grouped_before = counted()
        stored = asyncio.run(go())
        assert len(set(stored)) == 40 and store.count() == 40
        assert all(store.get(d) is not None for d in stored)
        assert gate.groups >= 1 and gate.grouped / gate.groups > 1  # they did start in groups
        assert gate.active == 0  # every enter() was paired with a leave()
        groups, grouped = counted()  # and the metrics say so
        assert (groups - groups_before, grouped - grouped_before) == (gate.groups, gate.grouped)
    finally:
        writer.close()
        store.close()


def test_the_window_comes_from_the_config_and_stays_inside_the_deadline_margin(tmp_path: Path) -> None:
    assert load_config(None, {}).limits.batch_window_ms == 4.0
    with pytest.raises(ValueError, match=r"limits\.batch_window_ms"):  # more than Decide keeps back (50 ms)
        load_config(None, {"BATON_LIMITS__BATCH_WINDOW_MS": "60"})
    cfg = load_config(None, {"BATON_LIMITS__BATCH_WINDOW_MS": "0", "BATON_DB": str(tmp_path / "rt.db")})
    rt = Runtime.build(cfg, tmp_path, serving=False)
    try:
        assert rt.path.gate.window_s == 0  # the one path's gate is the configured one: off
    finally:
        rt.writer.close()
        rt.store.close()
