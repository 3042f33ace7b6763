"""Fields a ruleset marks pii: masked for every role not configured to see them, on every page that shows
a decision (facts, matched facts, tool requests, model answers, proposals, why-not), and never indexed
for search."""

from __future__ import annotations

import asyncio
import gc
import re
import weakref
from pathlib import Path
from typing import cast

from starlette.testclient import TestClient

from adapters.doors.console.app import Console, create_app
from adapters.doors.console.security import Sessions
from adapters.doors.grpc.auth import Auth, Identity
from adapters.infra.rulesets import load_file
from adapters.infra.store.sql import SqlStore
from adapters.usecases.registry import RulesetRegistry
from engine.clock import FixedClock, SequentialIds
from engine.loop import Engine
from engine.pii import MASK, mask_record, scrubber
from engine.record import DecisionRecord
from engine.recorded import RecordedAnswers

ROOT = Path(__file__).resolve().parents[2]
IBAN = "DE44500105175407324931"
TOKENS = {"t-auditor": Identity("ana", frozenset({"auditor"})), "t-dpo": Identity("dora", frozenset({"auditor",
                                                                                                       "dpo"}))}


def decided(tmp_path: Path) -> tuple[SqlStore, RulesetRegistry, DecisionRecord]:
    store = SqlStore(str(tmp_path / "pii.db"))
    registry = RulesetRegistry(store)
    rs = load_file(ROOT / "rulesets/payment-approval.yaml")
    registry.publish_reviewed(rs, "test")
    engine = Engine(rs)
    # the anomaly model's raw answer and the reason quote the IBAN: masked there too
    answers = RecordedAnswers({"lookup_limit": {"user": "alice", "single_limit": 5000},
                               "anomaly_model": {"score": 0.1, "reasons": [f"beneficiary {IBAN} seen before"]}})
    record = asyncio.run(engine.decide({"payment": {"payment_ref": "PAY-77", "amount": 3000, "currency": "EUR",
                                                    "beneficiary_iban": IBAN, "initiated_by": "alice",
                                                    "new_beneficiary": False}}, answers, answers,
                                       FixedClock(1_764_000_000.0), SequentialIds("p-"))).to_dict()
    store.save(record, private=registry.private_fields(str(record["version"])))
    return store, registry, record


def client(store: SqlStore, registry: RulesetRegistry, token: str, pii_roles: tuple[str, ...]) -> TestClient:
    app = create_app(Console(store, registry, Sessions(Auth(TOKENS)), None, pii_roles))
    c = TestClient(app)
    nonce = re.search(r'name="nonce" value="([^"]+)"', c.get("/login").text).group(1)  # type: ignore[union-attr]
    assert c.post("/login", data={"nonce": nonce, "token": token}, follow_redirects=False).status_code == 303
    return c


def test_masked_everywhere_for_roles_without_pii_and_clear_for_those_with_it(tmp_path: Path) -> None:
    store, registry, record = decided(tmp_path)
    page = f"/decisions/{record['decision_id']}"
    auditor = client(store, registry, "t-auditor", ("dpo",))
    for url in (page, page + "?why=self-approval", page + "?why=routine-payment"):
        text = auditor.get(url).text
        assert IBAN not in text and MASK in text, url
    assert "PAY-77" in auditor.get(page).text  # what is not pii stays readable
    dpo = client(store, registry, "t-dpo", ("dpo",))
    assert IBAN in dpo.get(page).text


def test_search_does_not_index_pii(tmp_path: Path) -> None:
    store, registry, record = decided(tmp_path)
    auditor = client(store, registry, "t-dpo", ("dpo",))  # even a role that may read it cannot search by it
    assert record["decision_id"] not in auditor.get(f"/decisions?text={IBAN}").text
    assert record["decision_id"] in auditor.get("/decisions?text=PAY-77").text


def test_mask_record_scrubs_the_values_from_every_string() -> None:
    record = cast(DecisionRecord, {"inputs": [{"type": "p", "values": {"iban": IBAN, "ref": "R1"}}],
              "trace": [{"kind": "fact", "type": "p", "values": {"iban": IBAN, "ref": "R1"}},
                        {"kind": "call", "request": {"prompt": f"pay to {IBAN}"}, "answer": {"note": IBAN}},
                        {"kind": "proposal", "payload": {"to": IBAN}}],
              "decision": {"to": IBAN}, "reason": f"to {IBAN}"})  # the fields that can hold pii
    masked = mask_record(record, {"p": ["iban"]})
    assert IBAN not in str(masked) and "R1" in str(masked)
    assert record["decision"] == {"to": IBAN}  # a copy: the stored record is untouched


def test_scrubber_masks_nested_values_and_is_freed_without_the_collector() -> None:
    scrub = scrubber([IBAN, IBAN[:8]])  # the longer value first: no part of it is left behind
    assert scrub({"a": [f"to {IBAN}", 3, {"b": IBAN[:8]}]}) == {"a": [f"to {MASK}", 3, {"b": MASK}]}
    assert scrubber([])("x") == "x"
    gc.disable()
    try:  # one is made per decision with pii; a closure that called itself was a cycle the collector had to find
        ref = weakref.ref(scrub)
        del scrub
        assert ref() is None
    finally:
        gc.enable()


def test_facts_from_models_and_tools_are_searchable(tmp_path: Path) -> None:
    store, registry, record = decided(tmp_path)
    auditor = client(store, registry, "t-auditor", ())
    # the anomaly model's answer (its reasons, minus the pii value) and the limit tool's answer are indexed
    assert record["decision_id"] in auditor.get("/decisions?text=seen before").text
    assert record["decision_id"] in auditor.get("/decisions?text=alice").text
