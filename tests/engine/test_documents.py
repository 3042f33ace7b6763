"""Documents beside facts: the document fact, chunked extraction with provenance, replay, compile checks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine.clock import FixedClock, SequentialIds
from engine.documents import Document, chunks, locate
from engine.errors import CompileErrors, InvalidInput
from engine.loop import Engine
from engine.recorded import RecordedAnswers
from engine.replay import replay
from engine.testing import run_suite
from tests.helpers import ruleset

RULESET = """
ruleset: intake
facts:
  claim_form:
    claimant: str
    policy_number: str
    amount: {type: number, min: 0}
    incident: {enum: [theft, fire, water, collision]}
input: []
models:
  extract:
    group: capable
    produces: claim_form
    from_document: true
    chunk_chars: 500
    prompt: |
      Extract the claim form fields from part {{ chunk.index }} of {{ chunk.count }} of {{ document.name }}.
      {{ chunk.text }}
rules:
  - name: read
    when: exists document
    then: extract
  - name: big
    priority: 10
    when: claim_form.amount > 10000
    then: {decide: {route: adjuster}}
  - name: small
    when: exists claim_form
    then: {decide: {route: auto}}
  - name: unreadable
    priority: 20
    when: failure.action == "extract"
    then: {escalate: {queue: intake-review, reason: "could not read the claim"}}
"""

FILLER = "The insured describes the events in detail. " * 20
PAGES = (
    "CLAIM FORM\nClaimant: Dana Whitfield\nPolicy number: HX-20931\n" + FILLER,
    FILLER + "\nIncident type: theft of a bicycle from a locked shed.\n",
    "Amount claimed: 12,500.00 GBP\n" + FILLER,
)
DOC = Document("d" * 64, "claim.pdf", "application/pdf", PAGES)


def decide(rs: Any, answers: dict[str, Any], docs: tuple[Document, ...] = (DOC,)) -> Any:
    engine = Engine(rs)
    recorded = RecordedAnswers(answers)
    return asyncio.run(engine.decide({}, recorded, recorded, FixedClock(5.0), SequentialIds("x-"), documents=docs))


def test_chunks_cover_the_text_and_know_their_pages() -> None:
    pieces = chunks(DOC, 500)
    assert "".join(c.text for c in pieces) == DOC.text
    assert pieces[0].page_from == 1 and pieces[-1].page_to == 3 and len(pieces) == pieces[0].count > 3
    assert all(len(c.text) <= 500 for c in pieces)
    assert chunks(Document.from_text("e.txt", ""), 500)[0].text == ""
    where = locate(DOC, next(c for c in pieces if "Amount claimed" in c.text), 12500)
    assert where["found"] and where["page"] == 3 and where["offset"] == len("Amount claimed: ")


def test_extraction_merges_chunk_answers_with_provenance() -> None:
    rs = ruleset(RULESET)
    n = len(chunks(DOC, 500))
    per_chunk: list[Any] = [{} for _ in range(n)]
    per_chunk[0] = {"claimant": "Dana Whitfield", "policy_number": "HX-20931"}
    per_chunk[1] = {"claimant": "someone else", "incident": None}
    theft = next(c.index for c in chunks(DOC, 500) if "theft" in c.text)
    amount = next(c.index for c in chunks(DOC, 500) if "Amount claimed" in c.text)
    per_chunk[theft] = {"incident": "theft"}
    per_chunk[amount] = {"amount": 12500, "incident": "fire"}
    d = decide(rs, {"extract": per_chunk})
    assert (d.outcome, d.decision) == ("decided", {"route": "adjuster"})
    calls = [e for e in d.trace if e["kind"] == "call"]
    assert len(calls) == n and [c["request"]["chunk"] for c in calls] == list(range(1, n + 1))
    assert all(c["request"]["document"] == DOC.id for c in calls)
    assert "part 1 of" in calls[0]["request"]["prompt"] and "CLAIM FORM" in calls[0]["request"]["prompt"]
    (fact,) = [e for e in d.trace if e["kind"] == "fact" and e["type"] == "claim_form"]
    assert fact["values"] == {"claimant": "Dana Whitfield", "policy_number": "HX-20931", "amount": 12500,
                              "incident": "theft"}
    prov = fact["provenance"]
    assert prov["document"] == DOC.id and prov["chunks"] == n
    assert prov["fields"]["claimant"] == {"chunk": 1, "pages": [1, 1], "page": 1, "offset": 21, "length": 14,
                                          "found": True}
    assert prov["fields"]["amount"]["page"] == 3 and prov["fields"]["amount"]["found"]
    assert prov["fields"]["incident"]["page"] == 2 and prov["fields"]["incident"]["found"]
    doc_fact = next(e for e in d.trace if e["kind"] == "fact" and e["type"] == "document")
    assert doc_fact["values"] == {"id": DOC.id, "name": "claim.pdf", "media_type": "application/pdf", "pages": 3,
                                  "chars": len(DOC.text)}
    assert d.to_dict()["documents"] == [doc_fact["values"]]


def test_a_missing_required_field_is_a_failure_fact() -> None:
    d = decide(ruleset(RULESET), {"extract": {"claimant": "Dana"}})
    assert (d.outcome, d.reason) == ("escalated", "could not read the claim")
    (failure,) = [e for e in d.trace if e["kind"] == "fact" and e["type"] == "failure"]
    assert failure["values"]["kind"] == "invalid_answer" and "does not give a whole claim_form" in \
        failure["values"]["error"]
    every_chunk_fails = decide(ruleset(RULESET), {"extract": {"failure": {"kind": "timeout", "error": "slow"}}})
    (failure,) = [e for e in every_chunk_fails.trace if e["kind"] == "fact" and e["type"] == "failure"]
    assert failure["values"]["kind"] == "timeout" and "every chunk of claim.pdf failed" in failure["values"]["error"]


def test_a_chunk_answer_with_a_wrong_type_is_left_out() -> None:
    rs = ruleset(RULESET)
    n = len(chunks(DOC, 500))
    answers: list[Any] = [{"claimant": "Dana", "policy_number": "P", "incident": "fire"}, {"amount": "lots"},
                          {"amount": 7}] + [{}] * (n - 3)
    d = decide(rs, {"extract": answers})
    assert d.decision == {"route": "auto"}
    (fact,) = [e for e in d.trace if e["kind"] == "fact" and e["type"] == "claim_form"]
    assert fact["values"]["amount"] == 7 and fact["provenance"]["fields"]["amount"]["chunk"] == 3
    d = decide(rs, {"extract": [{"amount": "lots"}] * n})
    (failure,) = [e for e in d.trace if e["kind"] == "fact" and e["type"] == "failure"]
    assert failure["values"]["kind"] == "invalid_answer" and "lots" not in failure["values"]["error"][:20]


def test_replay_needs_the_stored_documents() -> None:
    rs = ruleset(RULESET)
    engine = Engine(rs)
    answers = RecordedAnswers({"extract": {"claimant": "D", "policy_number": "P", "amount": 1, "incident": "fire"}})
    record = asyncio.run(engine.decide({}, answers, answers, FixedClock(5.0), SequentialIds("x-"),
                                       documents=[DOC])).to_dict()
    assert asyncio.run(replay(engine, record, [DOC])).identical
    without = asyncio.run(replay(engine, record))
    assert not without.identical and without.record is not None and without.record.outcome == "escalated"


def test_documents_in_ruleset_tests() -> None:
    rs = ruleset(RULESET + """
tests:
  - name: a claim read from a text document
    documents:
      - {name: claim.txt, text: "Claimant Dana, policy P-1, water damage, 300 GBP"}
    answers:
      extract: {claimant: Dana, policy_number: P-1, amount: 300, incident: water}
    expect: {outcome: decided, decision: {route: auto}, fired: [read, small]}
  - name: pages
    documents:
      - {name: claim.pdf, pages: ["page one", "page two"]}
    answers:
      extract: {claimant: Dana, policy_number: P-1, amount: 30000, incident: water}
    expect: {decision: {route: adjuster}}
""")
    suite = asyncio.run(run_suite(rs))
    assert all(r.passed for r in suite.results), [r.failures for r in suite.results]


def test_no_facts_and_no_documents_is_refused() -> None:
    with pytest.raises(InvalidInput):
        Engine(ruleset(RULESET)).validate_input({})


@pytest.mark.parametrize(("change", "code"), [
    (("when: exists document\n    then: extract", "when: exists claim_form\n    then: extract"), "needs_document"),
    (("      {{ chunk.text }}\n", "\n"), "missing_key"),
    (("chunk_chars: 500", "chunk_chars: 5"), "bad_value"),
])
def test_compile_checks(change: tuple[str, str], code: str) -> None:
    with pytest.raises(CompileErrors) as e:
        ruleset(RULESET.replace(*change))
    assert code in [x.code for x in e.value.errors]


def test_document_and_passage_are_builtin_and_reserved() -> None:
    with pytest.raises(CompileErrors) as e:
        ruleset(RULESET.replace("facts:\n", "facts:\n  passage:\n    text: str\n"))
    assert e.value.errors[0].code == "bad_name"
