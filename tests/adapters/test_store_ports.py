"""The store's ports (adapters/ports.py) as a contract: the same suite over the in-memory fake
(adapters/infra/memory.py), SQLite and PostgreSQL, so a test that runs a use case over the fake tells the
truth about the store it stands in for. Each test states one promise of a port."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.infra.documents import Incoming
from adapters.infra.memory import MemoryStore
from adapters.infra.store.sql import SqlStore
from adapters.ports import PUBLISHED, Conflict, Pending, Problem, Publication, Resolution, Store, VersionSource
from engine.audit import GENESIS, chain_hash_of
from engine.clock import FixedClock, SequentialIds
from engine.documents import Document
from engine.loop import Engine
from engine.record import DecisionRecord
from engine.recorded import RecordedAnswers
from tests.helpers import ruleset

T0 = 1_700_000_000.0
RULES = ruleset("""
ruleset: ports
facts:
  claim: {ref: str, amount: number, note: str}
  approval: {ref: str, by: str}
input: [claim, approval]
rules:
  - name: large
    when: claim.amount >= 1000 and not exists approval
    then:
      escalate: {queue: review, reason: "large claim", expects: approval, sla: 1h}
  - name: small
    when: claim.amount < 1000
    then:
      - effect: {name: notify, with: {claim: "{{ claim.ref }}"}}
      - decide: {route: auto}
  - name: approved
    when: exists approval
    then:
      - effect: {name: pay, with: {claim: "{{ claim.ref }}"}}
      - decide: {route: pay}
""")
ENGINE = Engine(RULES)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    url = str(tmp_path / "baton.db") if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))
    s = SqlStore(url)
    yield s
    s.close()


def decided(n: int, amount: float = 10, at: float = T0, note: str = "", approval: bool = False) -> DecisionRecord:
    """Decision number ``n`` (its id is unique to n): small claims decide with a `notify` effect, large ones
    escalate to `review`, approved ones decide with a `pay` effect."""
    facts: dict[str, Any] = {"claim": {"ref": f"C-{n}", "amount": amount, "note": note}}
    if approval:
        facts["approval"] = {"ref": f"C-{n}", "by": "carol"}
    answers = RecordedAnswers({})
    d = asyncio.run(ENGINE.decide(facts, answers, answers, FixedClock(at), SequentialIds(f"d{n:04d}-")))
    return d.to_dict()


def as_stored(record: DecisionRecord, caller: str = "", key: str | None = None) -> dict[str, Any]:
    """What a store gives back: the record with who stored it under which key."""
    return {**record, "caller": caller, "idempotency_key": key}


# -- the decision log ----------------------------------------------------------------------------------
def test_a_record_comes_back_as_stored_and_a_changed_copy_changes_nothing(store: Store) -> None:
    record = decided(1, note="first")
    saved = store.save(record, "app", "k-1")
    assert (saved.decision_id, saved.chain_seq, saved.existing) == (record["decision_id"], 1, False)
    got = store.get(record["decision_id"])
    assert got == as_stored(record, "app", "k-1")
    got["outcome"] = "edited"
    assert store.get(record["decision_id"]) == as_stored(record, "app", "k-1")
    assert store.get("d-unknown") is None
    assert store.get_many(["d-unknown", record["decision_id"]]) == [None, as_stored(record, "app", "k-1")]
    assert store.get_many([]) == []


def test_a_repeated_key_returns_the_first_decision_and_stores_nothing(store: Store) -> None:
    first = store.save(decided(1), "app", "k-1")
    again = store.save(decided(2), "app", "k-1")
    assert again.existing and (again.decision_id, again.chain_seq, again.hash) == (
        first.decision_id, first.chain_seq, first.hash)
    other_caller = store.save(decided(3), "other", "k-1")  # keys are per caller
    assert not other_caller.existing and other_caller.chain_seq == 2
    # within one batch too: the second item with a key is the first one's
    batch = store.save_batch([Pending(decided(4), "app", "k-4"), Pending(decided(5), "app", "k-4"),
                              Pending(decided(6), "app")])
    assert [(s.decision_id[:5], s.chain_seq, s.existing) for s in batch] == [
        ("d0004", 3, False), ("d0004", 3, True), ("d0006", 4, False)]
    assert store.count() == 4 and store.get(decided(2)["decision_id"]) is None
    found = store.find("app", "k-4")
    assert found is not None and found["decision_id"] == batch[0].decision_id
    assert store.find("app", "k-none") is None and store.find("nobody", "k-1") is None
    many = store.find_many("app", ["k-1", "k-4", "k-none", ""])
    assert {k: r["decision_id"] for k, r in many.items()} == {"k-1": first.decision_id, "k-4": batch[0].decision_id}


def test_the_hash_chain_is_the_same_on_every_store(store: Store) -> None:
    records = [decided(n, amount=10 * n, at=T0 + n) for n in range(1, 6)]
    saved = [store.save(records[0]), *store.save_batch([Pending(r, "app") for r in records[1:]])]
    prev = GENESIS
    for seq, (record, s) in enumerate(zip(records, saved, strict=True), start=1):
        caller = "" if seq == 1 else "app"
        expected = chain_hash_of(prev, seq, Pending(record, caller).body)
        assert (s.chain_seq, s.hash) == (seq, expected)
        prev = expected
    assert store.verify() == (5, None)
    seen: list[str] = []
    progress: list[tuple[int, int]] = []
    store.verify(chunk=2, progress=lambda done, total: progress.append((done, total)), verified=seen.append)
    assert seen == [s.hash for s in saved] and progress == [(0, 5), (2, 5), (4, 5)]
    assert store.verify_one(saved[2].decision_id) is None
    assert store.verify_one("d-unknown") == "not stored"


def test_chain_checks_are_kept_newest_first(store: Store) -> None:
    store.record_chain_check("ops", T0, T0 + 1, 10, None)
    row = store.record_chain_check("x" * 300, T0 + 5, T0 + 6, 3, Problem(4, "d-4", "edited"))
    assert (row["by"], row["broken_seq"], row["broken_id"], row["problem"]) == ("x" * 200, 4, "d-4", "edited")
    checks = store.chain_checks()
    assert [(c["started_at"], c["checked"], c["problem"]) for c in checks] == [(T0 + 5, 3, "edited"), (T0, 10, None)]
    assert len(store.chain_checks(limit=1)) == 1


def test_list_decisions_pages_newest_first_by_time_then_id(store: Store) -> None:
    # three at the same instant: the id orders them, and a page may end between them
    for n, at in ((1, T0), (2, T0 + 10), (3, T0 + 10), (4, T0 + 10), (5, T0 + 20)):
        store.save(decided(n, at=at))
    ids = [r["id"][:5] for r in store.list_decisions()]
    assert ids == ["d0005", "d0004", "d0003", "d0002", "d0001"]
    pages: list[list[str]] = []
    before: tuple[float, str] | None = None
    while True:
        page = store.list_decisions(limit=2, before=before)
        if not page:
            break
        pages.append([r["id"][:5] for r in page])
        before = (page[-1]["created_at"], page[-1]["id"])
    assert pages == [["d0005", "d0004"], ["d0003", "d0002"], ["d0001"]]
    row = store.list_decisions(limit=1)[0]
    assert set(row) == {"id", "ruleset", "version", "outcome", "rule", "created_at", "latency_ms", "cost_usd",
                        "tokens", "caller"}
    assert [r["id"][:5] for r in store.list_decisions(since=T0 + 10, until=T0 + 20)] == ["d0004", "d0003", "d0002"]
    assert store.recent_ids("ports", limit=2) == [r["id"] for r in store.list_decisions(limit=2)]
    assert len(store.recent_ids("ports", since=T0 + 10)) == 4 and store.recent_ids("other") == []


def test_list_decisions_filters_by_outcome_version_prefix_and_fact_text(store: Store) -> None:
    store.save(decided(1, note="water damage in the kitchen"))
    store.save(decided(2, amount=5000, note="kitchen fire"))
    assert [r["outcome"] for r in store.list_decisions(outcome="escalated")] == ["escalated"]
    assert len(store.list_decisions(version=RULES.version[:8])) == 2
    assert store.list_decisions(version="not-a-hash") == []
    assert store.list_decisions(ruleset="other") == []
    assert {r["id"][:5] for r in store.list_decisions(text="Kitchen")} == {"d0001", "d0002"}
    assert [r["id"][:5] for r in store.list_decisions(text="water damage")] == ["d0001"]
    assert store.list_decisions(text="damage water") == []  # a phrase: its words in order
    assert [r["id"][:5] for r in store.list_decisions(text="C-2")] == ["d0002"]


def test_a_field_the_ruleset_marks_private_is_not_searchable(store: Store) -> None:
    store.save(decided(1, note="account DE89370400440532013000"), private={"claim": ["note"]})
    store.save_batch([Pending(decided(2, note="kitchen fire"))])  # no private fields named: all searchable
    assert store.list_decisions(text="DE89370400440532013000") == []
    assert [r["id"][:5] for r in store.list_decisions(text="C-1")] == ["d0001"]
    assert [r["id"][:5] for r in store.list_decisions(text="kitchen fire")] == ["d0002"]


# -- escalations ---------------------------------------------------------------------------------------
def test_an_escalated_decision_opens_its_escalation_and_its_resumption_closes_it_once(store: Store) -> None:
    escalated = decided(1, amount=5000)
    store.save(escalated, "app")
    esc_id = escalated["decision_id"]
    esc = store.escalation(esc_id)
    assert esc is not None
    assert {k: esc[k] for k in ("ruleset", "queue", "reason", "expects", "status", "created_at", "sla_at",
                                "resolved_by", "answer", "resumed_decision_id", "assigned_to")} == {
        "ruleset": "ports", "queue": "review", "reason": "large claim", "expects": "approval", "status": "open",
        "created_at": T0, "sla_at": T0 + 3600, "resolved_by": None, "answer": None, "resumed_decision_id": None,
        "assigned_to": None}
    assert store.open_escalations_by_queue() == [("review", 1)]
    resumed = decided(2, amount=5000, at=T0 + 60, approval=True)
    store.save_batch([Pending(resumed, "carol", resolves=Resolution(esc_id, "carol", '{"by":"carol"}'))])
    esc = store.escalation(esc_id)
    assert esc is not None and (esc["status"], esc["resolved_by"], esc["resolved_at"], esc["answer"],
                                esc["resumed_decision_id"]) == (
        "resolved", "carol", T0 + 60, '{"by":"carol"}', resumed["decision_id"])
    # a second resumption (another replica) conflicts, and nothing of its batch is stored
    late, bystander = decided(3, approval=True, amount=5000), decided(4)
    with pytest.raises(Conflict):
        store.save_batch([Pending(bystander), Pending(late, resolves=Resolution(esc_id, "dave", "{}"))])
    assert store.count() == 2 and store.get(bystander["decision_id"]) is None
    assert store.effects(decision_id=bystander["decision_id"]) == []
    with pytest.raises(Conflict):
        store.save_batch([Pending(late, resolves=Resolution("d-unknown", "dave", "{}"))])
    assert store.open_escalations_by_queue() == [] and store.escalations() == []


def test_two_resumptions_of_one_escalation_in_one_batch_conflict(store: Store) -> None:
    escalated = decided(1, amount=5000)
    store.save(escalated)
    esc_id = escalated["decision_id"]
    with pytest.raises(Conflict):
        store.save_batch([Pending(decided(2, approval=True), resolves=Resolution(esc_id, "a", "{}")),
                          Pending(decided(3, approval=True), resolves=Resolution(esc_id, "b", "{}"))])
    esc = store.escalation(esc_id)
    assert store.count() == 1 and esc is not None and esc["status"] == "open"


def test_escalations_are_listed_oldest_first_by_queue_status_and_due_time(store: Store) -> None:
    for n in range(1, 4):
        store.save(decided(n, amount=5000, at=T0 + n))
    assert [e["id"][:5] for e in store.escalations()] == ["d0001", "d0002", "d0003"]
    assert len(store.escalations(limit=2)) == 2
    assert [e["id"][:5] for e in store.escalations(due_before=T0 + 3602.5)] == ["d0001", "d0002"]
    assert store.escalations(queue="elsewhere") == [] and store.escalations(status="resolved") == []
    assert len(store.escalations(status=None)) == 3


def test_notes_assign_and_close_an_escalation_by_compare_and_set(store: Store) -> None:
    escalated = decided(1, amount=5000)
    store.save(escalated)
    esc_id = escalated["decision_id"]
    assert store.escalation_note(esc_id, "ann", "comment", "looking", T0 + 1)
    assert store.escalation_note(esc_id, "ann", "assigned", "assigned to bob", T0 + 2, assign="bob")
    esc = store.escalation(esc_id)
    assert esc is not None and esc["assigned_to"] == "bob"
    assert store.escalation_note(esc_id, "bob", "declined", "not ours", T0 + 3, close_as="declined")
    assert not store.escalation_note(esc_id, "eve", "closed", "me too", T0 + 4, close_as="closed")
    esc = store.escalation(esc_id)
    assert esc is not None and (esc["status"], esc["resolved_by"], esc["resolved_at"]) == ("declined", "bob", T0 + 3)
    notes = store.escalation_notes(esc_id)
    assert [(n["by"], n["kind"], n["text"], n["at"]) for n in notes] == [
        ("ann", "comment", "looking", T0 + 1), ("ann", "assigned", "assigned to bob", T0 + 2),
        ("bob", "declined", "not ours", T0 + 3)]
    assert store.escalation("d-unknown") is None and store.escalation_notes("d-unknown") == []


# -- the outbox ----------------------------------------------------------------------------------------
def test_effects_enter_the_outbox_with_their_decision_and_are_claimed_once(store: Store) -> None:
    store.save_batch([Pending(decided(1, at=T0)), Pending(decided(2, at=T0 + 1)),
                      Pending(decided(3, amount=5000, approval=True, at=T0 + 2))])
    effects = store.effects()
    assert [(e["id"][:5], e["name"], e["status"], e["attempts"], e["next_at"]) for e in effects] == [
        ("d0001", "notify", "pending", 0, T0), ("d0002", "notify", "pending", 0, T0 + 1),
        ("d0003", "pay", "pending", 0, T0 + 2)]
    assert effects[0]["payload"] == '{"claim":"C-1"}'
    assert store.claim_effects(T0 - 1, lease_s=30) == []  # none due yet
    assert store.claim_effects(T0 + 5, lease_s=30, names=()) == []
    taken = store.claim_effects(T0 + 5, lease_s=30, limit=5, names={"notify"})
    assert [(e["id"][:5], e["status"], e["attempts"], e["lease_until"]) for e in taken] == [
        ("d0001", "sending", 1, T0 + 35), ("d0002", "sending", 1, T0 + 35)]
    assert [e["name"] for e in store.claim_effects(T0 + 5, lease_s=30)] == ["pay"]  # taken ones are not due
    again = store.claim_effects(T0 + 40, lease_s=30, limit=1)  # a lease ran out: another sender takes it
    assert [(e["id"], e["attempts"]) for e in again] == [(taken[0]["id"], 2)]
    store.effect_done(taken[0]["id"], 1, T0 + 41)  # the first sender, too late: its attempt is not the last
    effect = store.effect(taken[0]["id"])
    assert effect is not None and effect["status"] == "sending"
    store.effect_done(taken[0]["id"], 2, T0 + 42)
    effect = store.effect(taken[0]["id"])
    assert effect is not None and (effect["status"], effect["done_at"], effect["lease_until"]) == ("done", T0 + 42,
                                                                                                   None)
    assert store.effect("d-unknown:1") is None
    assert store.effects_by_status(("pending", "sending", "done", "dead")) == [
        ("pending", 0), ("sending", 2), ("done", 1), ("dead", 0)]


def test_a_failed_effect_waits_dies_and_is_retried(store: Store) -> None:
    store.save(decided(1))
    [effect] = store.claim_effects(T0, lease_s=30)
    store.effect_failed(effect["id"], 1, "503", next_at=T0 + 60, now=T0 + 1)
    got = store.effect(effect["id"])
    assert got is not None and (got["status"], got["next_at"], got["last_error"], got["failing_since"],
                                got["lease_until"]) == ("pending", T0 + 60, "503", T0 + 1, None)
    [effect] = store.claim_effects(T0 + 60, lease_s=30)
    store.effect_failed(effect["id"], 2, "e" * 3000, next_at=None, now=T0 + 61)
    got = store.effect(effect["id"])
    assert got is not None and (got["status"], len(got["last_error"]), got["failing_since"]) == ("dead", 2000, T0 + 1)
    assert [e["id"] for e in store.effects(status="dead")] == [effect["id"]]
    assert store.retry_effects(["d-other:1"], T0 + 100) == 0
    assert store.retry_effects(None, T0 + 100, by="ops") == 1
    got = store.effect(effect["id"])
    assert got is not None and (got["status"], got["attempts"], got["next_at"], got["retried_by"],
                                got["failing_since"]) == ("pending", 0, T0 + 100, "ops", None)
    assert store.retry_effects(None, T0 + 101) == 0  # only dead letters go back


# -- documents -----------------------------------------------------------------------------------------
def test_documents_are_kept_once_by_content_hash_with_the_decision(store: Store) -> None:
    content = b"the adjuster's report"
    doc = Document(hashlib.sha256(content).hexdigest(), "report.txt", "text/plain", ("the adjuster's report",))
    records = [decided(1), decided(2)]
    for record in records:
        record["documents"] = [{"id": doc.id, "name": doc.name, "media_type": doc.media_type, "pages": 1,
                                "chars": len(content)}]
    store.save_batch([Pending(records[0], documents=[Incoming(doc, content)])])
    store.save_batch([Pending(records[1], documents=[Incoming(doc, content)])])
    assert store.documents([doc.id, "missing"]) == [doc]
    assert store.documents_of(records[1]) == [doc] and store.documents_of(decided(3)) == []
    assert store.document_content(doc.id) == ("report.txt", "text/plain", content)
    assert store.document_content("missing") is None


# -- governance ----------------------------------------------------------------------------------------
def test_versions_are_stored_once_by_content_hash(store: Store) -> None:
    store.save_ruleset(RULES)
    store.save_ruleset(RULES)
    assert store.ruleset_source(RULES.version) == ("ports", RULES.source)
    assert store.ruleset_source("0" * 64) is None
    assert store.versions_starting(RULES.version[:6]) == [RULES.version]
    [row] = store.version_rows()
    assert (row[0], row[1], row[3], row[4], row[5], row[6], row[7]) == (
        "ports", RULES.version, None, None, RULES.description, len(RULES.rules), len(RULES.tests))
    assert store.version_rows("0" * 64) == []


def test_a_publication_is_decided_once_and_publishes_its_version(store: Store) -> None:
    v = VersionSource.of(RULES)
    pub_id = store.submit_publication(v, "ann", "new limits", T0 + 100, "pub-1", T0)
    assert store.submit_publication(v, "ann", "again", None, "pub-2", T0 + 1) == pub_id == "pub-1"
    seen: list[Publication | None] = []

    def approve(pub: Publication | None) -> dict[str, Any]:
        seen.append(pub)
        return {"status": PUBLISHED, "decided_by": "bob", "decided_at": T0 + 5, "decision_note": "ok",
                "effective_from": T0 + 100}

    assert store.decide_publication(pub_id, approve)
    assert seen[0] is not None and (seen[0].status, seen[0].submitted_by, seen[0].requested_from) == (
        "pending", "ann", T0 + 100)
    assert not store.decide_publication(pub_id, approve)  # decided already: a second approver is too late
    pub = store.publication(pub_id)
    assert pub is not None and (pub.status, pub.decided_by, pub.effective_from) == (PUBLISHED, "bob", T0 + 100)
    assert store.published_schedule() == [("ports", T0 + 100, T0 + 5, RULES.version)]
    [row] = store.version_rows(RULES.version)
    assert (row[3], row[4]) == (T0 + 5, "ann")  # published_by: who submitted it
    assert store.publication("pub-unknown") is None


def test_publications_list_newest_first_and_a_deployed_version_is_published_once(store: Store) -> None:
    other = VersionSource("other", "a" * 64, "ruleset: other\n", "", 1, 0)
    store.submit_publication(other, "ann", "", None, "pub-1", T0)
    store.publish_reviewed(RULES, "deploy", "pub-2", T0 + 1)
    store.publish_reviewed(RULES, "deploy", "pub-3", T0 + 2)
    assert [p.id for p in store.publications()] == ["pub-2", "pub-1"]
    assert [p.id for p in store.publications(name="other")] == ["pub-1"]
    assert [p.id for p in store.publications(status=PUBLISHED, version=RULES.version)] == ["pub-2"]
    pub = store.publication("pub-2")
    assert pub is not None and (pub.effective_from, pub.decided_by) == (T0 + 1, "deploy")
    pub.status = "edited"  # a value handed out, not the stored row
    assert [p.status for p in store.publications(name="ports")] == [PUBLISHED]


def test_a_shadow_is_attached_once_and_its_results_kept_once(store: Store) -> None:
    first = store.attach_shadow(RULES, "ann", "sh-1", T0)
    assert store.attach_shadow(RULES, "bob", "sh-2", T0 + 1) == first
    assert (first.id, first.version, first.attached_by) == ("sh-1", RULES.version, "ann")
    assert store.attached_shadows() == [first]
    row = {"decision_id": "d-1", "shadow_version": RULES.version, "ruleset": "ports", "live_version": "b" * 64,
           "live_outcome": "decided", "shadow_outcome": "escalated", "changed": True, "unanswered": 0,
           "detail": "{}", "created_at": T0 + 10}
    store.save_shadow_result(row)
    store.save_shadow_result({**row, "shadow_outcome": "decided", "changed": False})
    store.save_shadow_result({**row, "decision_id": "d-2", "changed": False, "created_at": T0 + 20})
    assert store.shadow_results(RULES.version) == [("ports", "d-1", "decided", "escalated", True, 0, "{}"),
                                                   ("ports", "d-2", "decided", "escalated", False, 0, "{}")]
    assert [r[1] for r in store.shadow_results(RULES.version, since=T0 + 15)] == ["d-2"]
    assert store.detach_shadow(RULES.version, T0 + 30) and not store.detach_shadow(RULES.version, T0 + 31)
    assert store.attached_shadows() == []
    assert store.attach_shadow(RULES, "bob", "sh-3", T0 + 40).id == "sh-3"  # attached again: a new attachment
