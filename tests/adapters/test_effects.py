"""Effects run only after their decision is committed, from the outbox: at least once, deduplicated by
the receiver with the idempotency key, retried, dead-lettered, never for a failed write or a replay."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web

from adapters.infra.effects import HttpWebhook, LogEffect, OutboxWorker
from adapters.infra.store.sql import Pending, SqlStore
from engine.clock import FixedClock, SequentialIds
from engine.loop import Engine
from engine.record import DecisionRecord
from engine.recorded import RecordedAnswers
from engine.replay import replay
from tests.helpers import ruleset, serve_app, wait_until

ROOT = Path(__file__).resolve().parents[2]
RULES = """
ruleset: notify
facts:
  claim: {claim_ref: str, amount: number}
rules:
  - name: big
    when: claim.amount > 100
    then:
      - effect: {name: notify-adjuster, with: {claim: "{{ claim.claim_ref }}", channel: email}}
      - decide: {route: adjuster}
"""


class Receiver:
    """A downstream system: applies each effect once, however often it is delivered."""

    def __init__(self) -> None:
        self.deliveries: list[str] = []
        self.applied: dict[str, dict[str, Any]] = {}
        self.fail = False
        self.slow_first_s = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        key = request.headers["Idempotency-Key"]
        self.deliveries.append(key)
        if self.slow_first_s and len(self.deliveries) == 1:
            body = await request.json()
            self.applied.setdefault(key, body)  # applied, but the sender dies before it hears back
            await asyncio.sleep(self.slow_first_s)  # kept: a receiver slow to answer is the behaviour under test
        if self.fail:
            return web.json_response({"error": "down"}, status=500)
        self.applied.setdefault(key, await request.json())
        return web.json_response({"ok": True})


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    rec = Receiver()
    with serve_app([web.post("/hook", rec.handle)]) as base:
        yield rec, f"{base}/hook"


def decide(engine: Engine, i: int) -> DecisionRecord:
    answers = RecordedAnswers({})
    d = asyncio.run(engine.decide({"claim": {"claim_ref": f"C-{i}", "amount": 500}}, answers, answers,
                                  FixedClock(1_700_000_000), SequentialIds(f"e{i}-")))
    return d.to_dict()


def test_effects_are_delivered_once_after_commit_and_never_in_replay(db_url: str,
                                                                    receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    store = SqlStore(db_url)
    engine = Engine(ruleset(RULES))
    record = decide(engine, 1)
    effect = next(e for e in record["trace"] if e["kind"] == "effect")
    assert effect["with"] == {"claim": "C-1", "channel": "email"} and effect["name"] == "notify-adjuster"
    store.save(record)
    assert [e["status"] for e in store.effects()] == ["pending"]
    worker = OutboxWorker(store, {"notify-adjuster": HttpWebhook(url)})
    assert asyncio.run(worker.run_once()) == 1
    assert asyncio.run(worker.run_once()) == 0
    assert [e["status"] for e in store.effects()] == ["done"]
    assert rec.deliveries == [f"{record['decision_id']}:1"]
    assert rec.applied[rec.deliveries[0]]["with"] == {"claim": "C-1", "channel": "email"}
    assert asyncio.run(replay(engine, store.get(record["decision_id"]))).identical  # type: ignore[arg-type]
    assert len(store.effects()) == 1 and len(rec.deliveries) == 1
    clash = decide(engine, 2)
    with pytest.raises(sa.exc.IntegrityError):  # a failed write: no decision, so no effect
        store.save_batch([Pending(clash), Pending({**decide(engine, 3), "decision_id": record["decision_id"]})])
    assert len(store.effects()) == 1


def test_failures_retry_then_dead_letter_and_operators_retry_them(db_url: str,
                                                                  receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    rec.fail = True
    store = SqlStore(db_url)
    store.save(decide(Engine(ruleset(RULES)), 4))
    worker = OutboxWorker(store, {"notify-adjuster": HttpWebhook(url)}, max_attempts=3, first_retry_s=0.01)
    def delivered_until_dead() -> list[Any]:
        asyncio.run(worker.run_once())
        return store.effects("dead")

    dead = wait_until(delivered_until_dead, 10, "the effect to be a dead letter after 3 attempts", every=0.01)
    assert len(dead) == 1 and dead[0]["attempts"] == 3 and "HTTP 500" in dead[0]["last_error"]
    assert len(rec.deliveries) == 3
    rec.fail = False
    assert store.retry_effects(None, time.time(), by="ops-anna") == 1
    again = store.effect(dead[0]["id"])
    assert again is not None and again["retried_by"] == "ops-anna" and again["status"] == "pending"
    asyncio.run(worker.run_once())
    assert [e["status"] for e in store.effects()] == ["done"] and len(rec.applied) == 1


def test_retries_back_off_exponentially_to_a_cap_and_give_up_after_a_configured_time(db_url: str,
                                                                                      receiver: tuple[Receiver, str]
                                                                                      ) -> None:
    rec, url = receiver
    rec.fail = True
    store = SqlStore(db_url)
    worker = OutboxWorker(store, {"notify-adjuster": HttpWebhook(url)}, first_retry_s=2.0,
                          max_retry_s=600.0, give_up_after_s=3600.0)
    assert [worker.retry_in(n) for n in (1, 2, 3, 4, 9, 10, 50)] == [2, 4, 8, 16, 512, 600, 600]
    store.save(decide(Engine(ruleset(RULES)), 6))
    effect_id = store.effects()[0]["id"]
    asyncio.run(worker.run_once())
    first = store.effect(effect_id)
    assert first is not None and first["status"] == "pending" and 1.5 < first["next_at"] - time.time() <= 2.0
    assert abs(first["failing_since"] - time.time()) < 5
    # one that has been failing for longer than give_up_after_s when it fails again is a dead letter
    with store.writer.begin() as conn:
        conn.exec_driver_sql("UPDATE outbox SET failing_since = failing_since - 7200, next_at = 0 WHERE id = "
                             f"'{effect_id}'")
    asyncio.run(worker.run_once())
    assert store.effect(effect_id)["status"] == "dead"  # type: ignore[index]


def test_an_effect_with_no_connector_waits_in_the_outbox_untouched(db_url: str) -> None:
    store = SqlStore(db_url)
    store.save(decide(Engine(ruleset(RULES)), 7))
    worker = OutboxWorker(store, {"some-other-effect": LogEffect(None)})
    for _ in range(3):
        assert asyncio.run(worker.run_once()) == 0
    waiting = store.effects()
    assert [(e["status"], e["attempts"]) for e in waiting] == [("pending", 0)]


@pytest.mark.slow
def test_a_worker_killed_mid_delivery_redelivers_and_the_receiver_applies_once(
        tmp_path: Path, receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    rec.slow_first_s = 3.0
    db = str(tmp_path / "fx.db")
    store = SqlStore(db)
    engine = Engine(ruleset(RULES))
    ids = [decide(engine, i)["decision_id"] for i in range(10, 15)]
    for i in range(10, 15):
        store.save(decide(engine, i))
    config = tmp_path / "baton.yaml"
    config.write_text(f"effects:\n  notify-adjuster: {{type: http, url: '{url}'}}\n")
    cmd = [sys.executable, "-m", "adapters.doors.cli.main", "effects", "run", "--config", str(config), "--db", db,
           "--lease", "1"]
    worker = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: rec.deliveries, 60, "the first delivery to reach the receiver")  # a CLI start, then a claim
    os.kill(worker.pid, signal.SIGKILL)  # mid-delivery: the receiver has it, the outbox does not know
    worker.wait()
    assert [e["status"] for e in store.effects()].count("done") < 5
    worker = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: all(e["status"] == "done" for e in store.effects()), 60, "every effect delivered",
                   every=0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(10)
    assert all(e["status"] == "done" for e in store.effects())
    assert len(rec.deliveries) > 5  # at least once: something was delivered twice
    assert sorted(rec.applied) == sorted(f"{i}:1" for i in ids)  # exactly once where it matters


def _outbox_rows(store: SqlStore, rows: list[tuple[str, str, str, float, float | None]]) -> None:
    """(id, name, status, next_at, lease_until) straight into the outbox, in one transaction."""
    with store.writer.begin() as conn:
        conn.execute(sa.text("INSERT INTO outbox (id, decision_id, name, payload, status, attempts, next_at, "
                             "lease_until, created_at) VALUES (:id, :id, :name, '{}', :status, 0, :next_at, "
                             ":lease_until, 0)"),
                     [{"id": i, "name": n, "status": s, "next_at": at, "lease_until": lease}
                      for i, n, s, at, lease in rows])


def test_a_claim_takes_the_earliest_due_effects_of_its_connectors_whatever_waits_for_others(db_url: str) -> None:
    store = SqlStore(db_url)
    now = time.time()
    _outbox_rows(store, [
        ("a-late", "email", "pending", now - 1, None), ("b-first", "sms", "pending", now - 30, None),
        ("a-second", "email", "pending", now - 20, None), ("a-not-due", "email", "pending", now + 60, None),
        ("a-lease-out", "email", "sending", now - 10, now - 5), ("a-leased", "email", "sending", now - 25, now + 30),
        ("a-done", "email", "done", now - 40, None), ("x-other", "fax", "pending", now - 50, None)])
    claimed = store.claim_effects(now, 30, limit=3, names=["email", "sms"])
    assert [e["id"] for e in claimed] == ["b-first", "a-second", "a-lease-out"]  # earliest due first, across names
    assert all(e["status"] == "sending" for e in store.effects() if e["id"] in {"b-first", "a-second"})
    assert [e["id"] for e in store.claim_effects(now, 30, names=["email", "sms"])] == ["a-late"]
    assert store.claim_effects(now, 30, names=[]) == []  # a sender with no connectors reads nothing
    assert [e["id"] for e in store.claim_effects(now, 30)] == ["x-other"]  # no names: every due effect
    assert store.effect("a-leased")["status"] == "sending"  # type: ignore[index]


def test_the_work_of_a_claim_does_not_grow_with_effects_waiting_for_another_connector(tmp_path: Path) -> None:
    """Effects for a connector no sender here has (down, or configured on another host) pile up; a poll by
    this sender must not read them. Measured in SQLite virtual-machine steps, not time: with 2,000 and with
    20,000 of them waiting, a claim of the same 10 effects does the same work (the one query that sorted
    every due row did ten times as much: 1,056 and 10,062 x 10 steps; so did an update whose OR SQLite
    answered from the status index)."""
    store = SqlStore(str(tmp_path / "baton.db"))
    now = time.time()
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    def on_checkout(dbapi_conn: Any, *_: Any) -> None:
        dbapi_conn.set_progress_handler(count, 10)

    @contextlib.contextmanager
    def counted() -> Iterator[None]:
        """Count the VM steps (in tens) of every connection checked out inside: reads and the compare-and-set."""
        steps[0] = 0
        for engine in (store.engine, store.writer):
            sa.event.listen(engine, "checkout", on_checkout)
        try:
            yield
        finally:
            for engine in (store.engine, store.writer):
                sa.event.remove(engine, "checkout", on_checkout)

    work = []
    for backlog, start in ((2_000, 0), (18_000, 2_000)):
        _outbox_rows(store, [(f"w{i:06d}", "down-connector", "pending", now - 100 + i / 1e5, None)
                             for i in range(start, start + backlog)])
        _outbox_rows(store, [(f"e{start + i}", "email", "pending", now - 50 + i, None) for i in range(10)])
        with counted():
            claimed = store.claim_effects(now, 30, limit=32, names=["email"])
        assert [e["id"] for e in claimed] == [f"e{start + i}" for i in range(10)]
        work.append(steps[0])
    assert work[1] < work[0] * 1.5, f"claim work grew with the backlog: {work} (x10 steps per 10 VM instructions)"
    with counted():
        assert store.claim_effects(now, 30, names=[]) == []
    assert steps[0] == 0  # no connectors: nothing is read


def test_delivered_effects_are_counted_as_delivered_and_the_gauges_read_only_undelivered_ones(
        db_url: str, receiver: tuple[Receiver, str]) -> None:
    from prometheus_client import REGISTRY

    rec, url = receiver
    store = SqlStore(db_url)
    engine = Engine(ruleset(RULES))
    labels = {"effect": "notify-adjuster", "result": "delivered"}
    before = REGISTRY.get_sample_value("baton_effect_attempts_total", labels) or 0.0
    for i in (21, 22, 23):
        store.save(decide(engine, i))
    worker = OutboxWorker(store, {"notify-adjuster": HttpWebhook(url)})
    assert asyncio.run(worker.run_once()) == 3
    assert REGISTRY.get_sample_value("baton_effect_attempts_total", labels) == before + 3
    store.save(decide(engine, 24))
    assert store.effects_by_status() == [("pending", 1), ("sending", 0), ("dead", 0)]  # done ones not counted
    rec.fail = True
    failed = {"effect": "notify-adjuster", "result": "failed"}
    before_failed = REGISTRY.get_sample_value("baton_effect_attempts_total", failed) or 0.0
    asyncio.run(worker.run_once())
    assert REGISTRY.get_sample_value("baton_effect_attempts_total", failed) == before_failed + 1
