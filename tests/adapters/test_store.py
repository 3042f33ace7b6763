"""The decision store on SQLite and PostgreSQL: round trip, idempotency, atomic writes, the hash chain,
exact replay of every example decision, what-if, and `log why`."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from adapters.infra.documents import Incoming
from adapters.infra.rulesets import load_file, ruleset_files
from adapters.infra.store.sql import Pending, SqlStore
from adapters.infra.store.writer import GroupWriter
from engine.clock import FixedClock, SequentialIds
from engine.explain import why
from engine.language.loader import load_ruleset
from engine.loop import Engine
from engine.record import DecisionRecord
from engine.recorded import RecordedAnswers
from engine.replay import replay, what_if
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = [load_file(p) for p in ruleset_files([ROOT / "rulesets"])]
TRIAGE = next(rs for rs in EXAMPLES if rs.name == "claims-triage")


def decide_test(engine: Engine, i: int, prefix: str = "d") -> DecisionRecord:
    test = engine.ruleset.tests[i]
    answers = RecordedAnswers(test.answers)
    d = asyncio.run(engine.decide(test.given, answers, answers, FixedClock(1_700_000_000 + i),
                                  SequentialIds(f"{prefix}-{engine.ruleset.name}-{i}-"), documents=test.documents))
    return d.to_dict()


@pytest.fixture
def store(db_url: str) -> SqlStore:
    s = SqlStore(db_url)
    for rs in EXAMPLES:
        s.save_ruleset(rs)
    return s


def every_example(store: SqlStore) -> list[DecisionRecord]:
    records = []
    for rs in EXAMPLES:
        engine = Engine(rs)
        for i, test in enumerate(rs.tests):
            record = decide_test(engine, i)
            store.save_batch([Pending(record, documents=[Incoming(d, d.text.encode()) for d in test.documents])])
            records.append(record)
    return records


def test_round_trip_of_every_event_kind(store: SqlStore) -> None:
    engine = Engine(TRIAGE)
    record = decide_test(engine, 3)  # a failed call, a failure fact, proposals, an escalation
    kinds = {e["kind"] for e in record["trace"]}
    assert kinds == {"fact", "fired", "proposal", "call"}
    assert {e.get("status") for e in record["trace"] if e["kind"] == "call"} == {"ok", "failed"}
    saved = store.save(record, caller="svc", idempotency_key="k1")
    assert saved.chain_seq == 1 and not saved.existing
    got = store.get(record["decision_id"])
    assert got == {**record, "caller": "svc", "idempotency_key": "k1"}
    assert store.get("nope") is None


def test_idempotency_key_returns_the_stored_decision_without_a_second_row(store: SqlStore) -> None:
    engine = Engine(TRIAGE)
    first = decide_test(engine, 0, "a")
    again = decide_test(engine, 0, "b")
    s1 = store.save(first, caller="svc", idempotency_key="claim-1")
    s2 = store.save(again, caller="svc", idempotency_key="claim-1")
    assert s2.existing and s2.decision_id == s1.decision_id == first["decision_id"]
    other = store.save(again, caller="other-svc", idempotency_key="claim-1")  # keys are per caller
    assert not other.existing
    assert store.count() == 2
    assert store.find("svc", "claim-1")["decision_id"] == first["decision_id"]  # type: ignore[index]
    batch = store.save_batch([Pending(decide_test(engine, 1, "c"), "svc", "k2"),
                              Pending(decide_test(engine, 1, "d"), "svc", "k2")])
    assert batch[1].existing and batch[1].decision_id == batch[0].decision_id
    assert store.count() == 3


def test_a_failing_write_leaves_no_partial_decision(store: SqlStore) -> None:
    engine = Engine(TRIAGE)
    good = decide_test(engine, 0, "g")
    store.save(good)
    clash = decide_test(engine, 1, "x")
    fine = decide_test(engine, 2, "y")
    with pytest.raises(sa.exc.IntegrityError):  # the second record reuses a stored id: whole batch fails
        store.save_batch([Pending(fine), Pending({**clash, "decision_id": good["decision_id"]})])
    assert store.count() == 1 and store.get(fine["decision_id"]) is None
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from decisions")).scalar() == 1
    writer = GroupWriter(store)  # through group commit, the bad record fails alone
    unwritable: DecisionRecord = {**decide_test(engine, 4, "u"), "decision": {"route": object()}}  # no JSON for it
    futures = [writer.submit(fine), writer.submit({**clash, "decision_id": good["decision_id"]}),
               writer.submit(unwritable), writer.submit(decide_test(engine, 3, "z"))]
    writer.close()
    assert futures[0].result().chain_seq >= 2 and futures[3].result().chain_seq >= 2
    assert isinstance(futures[1].exception(), sa.exc.IntegrityError)
    assert isinstance(futures[2].exception(), TypeError)  # serialised on the writer thread, failed there alone
    assert store.count() == 3 and store.verify() == (3, None)


def test_records_are_serialised_on_the_writer_thread_not_by_the_caller(store: SqlStore,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller on a busy event loop hands the record over; the writer serialises it (and holds the GIL for
    that) itself, so the two do not trade the lock back and forth for every record."""
    import threading

    from adapters.infra.store import writer as writer_module

    threads: list[str] = []

    class Watched(Pending):
        __slots__ = ()

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            threads.append(threading.current_thread().name)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(writer_module, "Pending", Watched)
    engine = Engine(TRIAGE)
    writer = GroupWriter(store)

    records = [decide_test(engine, i, f"t{i}") for i in range(3)]

    async def save_three() -> list[int]:
        saved = await asyncio.gather(*(writer.save(record, "svc") for record in records))
        return [s.chain_seq for s in saved]

    seqs = asyncio.run(save_three())
    writer.close()
    assert sorted(seqs) == [1, 2, 3] and store.verify() == (3, None)
    assert threads == [writer_module.WRITER_THREAD] * 3


TAMPER = {
    "edit outcome column": "update decisions set outcome = 'failed' where chain_seq = 2",
    "edit hashed record": "update decisions set head = replace(head, '\"steps\":', '\"steps\":1') "
                          "where chain_seq = 3",
    "edit a trace event": "update decisions set trace = replace(trace, 'fired', 'fired ') where chain_seq = 2",
    "delete a trace event": "update decisions set trace = {first_line} where chain_seq = 4",
    "add a trace event": "update decisions set trace = trace || {newline} || '{}' where chain_seq = 3",
    "insert a trace event apart": "insert into trace_events (decision_id, idx, kind, event) select id, 0, "
                                  "'fact', '{}' from decisions where chain_seq = 1",
    "edit a call record": "update calls set answer = '{\"category\":\"auto\"}' where call_no = 1 and "
                          "decision_id = (select id from decisions where chain_seq = 5)",
    "delete a call record": "delete from calls where call_no = 2 and decision_id = "
                            "(select id from decisions where chain_seq = 5)",
    "delete a decision in the middle": "delete from calls where decision_id = (select id from decisions where "
                                       "chain_seq = 3); delete from decisions where "
                                       "chain_seq = 3",
    "delete the last decision": "delete from calls where decision_id = (select id from decisions where chain_seq"
                                " = 6); delete from decisions where chain_seq = 6",
    "insert a forged decision": "insert into decisions (id, chain_seq, ruleset, version, outcome, rule, caller, "
                                "idempotency_key, created_at, latency_ms, cost_usd, tokens, head, prev_hash, hash) "
                                "select 'forged', 7, ruleset, version, outcome, rule, caller, idempotency_key, "
                                "created_at, latency_ms, cost_usd, tokens, head, hash, hash from decisions "
                                "where chain_seq = 6",
}


@pytest.mark.parametrize("change", list(TAMPER))
def test_log_verify_detects_every_kind_of_tampering(store: SqlStore, change: str) -> None:
    engine = Engine(TRIAGE)
    for i in range(6):
        store.save(decide_test(engine, i))
    assert store.verify() == (6, None)
    with store.writer.begin() as conn:
        sql = TAMPER[change]
        for name, (lite, pg) in {"{newline}": ("char(10)", "chr(10)"), "{first_line}": (
                "substr(trace, 1, instr(trace, char(10)) - 1)", "split_part(trace, chr(10), 1)")}.items():
            sql = sql.replace(name, lite if store.sqlite else pg)
        for statement in sql.split("; "):
            conn.exec_driver_sql(statement)
    checked, problem = store.verify()
    assert problem is not None, change
    assert checked < 6 or change == "insert a forged decision" or change == "insert a trace event apart"


def test_every_example_decision_replays_identically_once_stored(store: SqlStore) -> None:
    records = every_example(store)
    assert len(records) >= 20
    cache: dict[str, Engine] = {}
    for record in records:
        stored = store.get(record["decision_id"])
        assert stored is not None
        version = stored["version"]
        if version not in cache:
            found = store.ruleset_source(version)
            assert found is not None
            cache[version] = Engine(load_ruleset(found[1], found[0]))
        result = asyncio.run(replay(cache[version], stored, store.documents_of(stored)))
        assert result.identical, (record["decision_id"], result.divergence)
    assert store.verify() == (len(records), None)


def test_replay_names_the_first_divergence(store: SqlStore) -> None:
    engine = Engine(TRIAGE)
    record = decide_test(engine, 0)
    for event in record["trace"]:
        if event["kind"] == "call" and event["action"] == "classify":
            event["answer"] = {**event["answer"], "category": "auto"}  # a recorded answer that disagrees
    result = asyncio.run(replay(engine, record))
    assert not result.identical and result.divergence is not None
    assert result.divergence.got["values"]["category"] == "auto"


def test_what_if_shows_the_change_from_one_altered_rule(store: SqlStore) -> None:
    rs = next(r for r in EXAMPLES if r.name == "claims-triage")
    engine = Engine(rs)
    record = decide_test(engine, 0)  # big injury claim -> senior-assessor
    candidate = Engine(load_ruleset(rs.source.replace("claim.amount > 50000", "claim.amount > 90000"), "cand"))
    w = asyncio.run(what_if(candidate, record))
    assert w.changed and w.old["decision"] == {"route": "senior-assessor"}
    assert w.new["decision"] == {"route": "standard-queue"}
    assert w.fired_only_before == ["high-risk", "senior-for-high-risk-injury"] and w.fired_only_after == []
    same = asyncio.run(what_if(Engine(rs), record))
    assert not same.changed
    new_call = Engine(load_ruleset(rs.source.replace("then: lookup_policy", "then: [lookup_policy, classify]")
                                   .replace("Classify this insurance claim.", "Classify this claim."), "c2"))
    w2 = asyncio.run(what_if(new_call, record))
    assert [u["action"] for u in w2.unanswered] == ["classify"]


def test_log_why_explains_a_rule_that_did_not_fire(store: SqlStore) -> None:
    rs = next(r for r in EXAMPLES if r.name == "claims-triage")
    record = decide_test(Engine(rs), 5)  # routine claim: amount 450, property
    lines = why(rs, record, "high-risk")
    text = "\n".join(lines)
    assert "'claim.amount > 50000' is false (claim.amount = 450)" in text
    assert "'assessment.fraud_signals contains \"staged\"' is false (assessment.fraud_signals = [])" in text
    assert "no policy fact" not in text
    assert why(rs, record, "inactive-policy")[1] == "  on policy #2: 'not policy.active' is false " \
                                                    "(policy.active = true)"
    assert "fired at step 3" in why(rs, record, "default-route")[0]
    json.dumps(lines)


def test_decisions_search_by_fact_text_version_and_keyset(store: SqlStore) -> None:
    records = every_example(store)
    triage = [r for r in records if r["ruleset"] == "claims-triage"]
    ref = next(e["values"]["claim_ref"] for e in triage[0]["trace"] if e["kind"] == "fact" and e["type"] == "claim")
    found = store.list_decisions(text=ref)
    assert {r["id"] for r in found} >= {triage[0]["decision_id"]} and all(r["ruleset"] == "claims-triage"
                                                                            for r in found)
    assert store.list_decisions(text="no such words anywhere zz9") == []
    assert store.list_decisions(text="whiplash", ruleset="claims-triage")  # any input fact's value
    prefix = triage[0]["version"][:10]
    assert {r["version"] for r in store.list_decisions(version=prefix, limit=500)} == {triage[0]["version"]}
    first = store.list_decisions(limit=5)
    second = store.list_decisions(limit=5, before=(first[-1]["created_at"], first[-1]["id"]))
    assert not {r["id"] for r in first} & {r["id"] for r in second} and len(second) == 5


def test_decision_ids_are_crockford_base32_ordered_by_time_and_unique() -> None:
    from adapters.infra.system import TimeOrderedIds

    ids = TimeOrderedIds()
    made = [ids.new_id() for _ in range(20_000)]
    assert len(set(made)) == len(made) and all(len(i) == 26 and set(i) <= set(TimeOrderedIds.ALPHABET)
                                               for i in made)
    time.sleep(0.002)  # kept: time passing is what moves the time part on
    assert ids.new_id()[:10] > made[0][:10]  # the time part sorts


def test_a_decision_id_is_its_time_and_random_bits_encoded(monkeypatch: pytest.MonkeyPatch) -> None:
    """new_id keeps the time's characters from one id to the next within a millisecond: each id is still
    exactly encode_id of its own time and bits."""
    from adapters.infra import system

    ids = system.TimeOrderedIds()
    cases = [(1_700_000_000_123, 0), (1_700_000_000_123, 2**80 - 1), (1_700_000_000_124, 987654321987654321),
             (2**48 - 1, 2**79 + 12345), (0, 1)]
    for millis, bits in cases:
        monkeypatch.setattr(time, "time", lambda m=millis: (m + 0.5) / 1000)  # the module system reads
        monkeypatch.setattr(ids, "_random_bits", lambda b=bits: b)
        assert ids.new_id() == system.encode_id(millis, bits)


def test_decision_ids_encode_time_and_random_bits_exactly() -> None:
    """The fast encoder (ten bits per table lookup) gives what a digit-by-digit Crockford encoding gives."""
    from adapters.infra.system import TimeOrderedIds, encode_id

    def reference(millis: int, bits: int) -> str:
        value, out = (millis << 80) | bits, ""
        for _ in range(26):
            out = TimeOrderedIds.ALPHABET[value & 31] + out
            value >>= 5
        return out

    rng = random.Random(7)
    cases = [(0, 0), (2**48 - 1, 2**80 - 1), (1, 1), (2**47, 2**79)]
    cases += [(rng.getrandbits(48), rng.getrandbits(80)) for _ in range(5000)]
    for millis, bits in cases:
        assert encode_id(millis, bits) == reference(millis, bits)


def test_a_forked_child_does_not_repeat_its_parents_random_bits() -> None:
    import os

    from adapters.infra.system import TimeOrderedIds

    ids = TimeOrderedIds()
    ids.new_id()  # the parent has a chunk of random bytes in hand
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, then exit at once
        os.write(write, ids.new_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert child[10:] != ids.new_id()[10:]


def test_the_writer_thread_is_named_for_the_os(tmp_path: Path) -> None:
    """`top -H`, `ps -L` and `baton bench` tell the store writer's CPU apart by its OS-level thread name."""
    import os
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("thread names are read from /proc")
    def names() -> set[str]:
        return {Path(f"/proc/self/task/{t}/comm").read_text().strip() for t in os.listdir("/proc/self/task")}

    writer = GroupWriter(SqlStore(f"sqlite:///{tmp_path / 'x.db'}"))
    try:
        wait_until(lambda: "baton-writer" in names(), 5, "the writer thread named baton-writer")
    finally:
        writer.close()
