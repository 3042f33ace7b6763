"""Document intake (PDF, Markdown, text; limits and bad files), storage once by hash, and retrieval over
indexed corpora on SQLite and PostgreSQL, including replay after re-indexing."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from adapters.doors.cli.main import app
from adapters.infra.documents import read_document
from adapters.infra.retrieval import WithRetrieval, index_directory, search, split_passages
from adapters.infra.rulesets import load_file
from adapters.infra.store.sql import DOCUMENTS, Pending, SqlStore
from adapters.usecases.impact import Impact, impact_steps
from engine.clock import FixedClock, SequentialIds
from engine.errors import InvalidInput
from engine.loop import Engine
from engine.record import DecisionRecord
from engine.recorded import RecordedAnswers
from engine.replay import replay
from tests.pdfs import make_pdf

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "rulesets/corpora/claims-policy"
TOPICS = ["gardening", "pension transfers", "car servicing", "travel delays", "pet vaccinations", "office chairs",
          "solar panels", "school uniforms", "dental check-ups", "roof tiles", "wedding catering", "boat moorings"]


def test_pdf_markdown_and_text_are_read_by_page() -> None:
    pdf = make_pdf(["Page one: Claimant Dana", "Page two: total 1,240.00 GBP"])
    got = read_document("claim.pdf", pdf)
    assert got.document.media_type == "application/pdf" and len(got.document.pages) == 2
    assert "Dana" in got.document.pages[0] and "1,240.00" in got.document.pages[1]
    assert got.content == pdf and len(got.document.id) == 64
    md = read_document("claim.md", b"# Claim\r\nDana\r\n")
    assert md.document.media_type == "text/markdown" and md.document.pages == ("# Claim\nDana\n",)
    txt = read_document("notes", b"\xef\xbb\xbfplain text", "text/plain")
    assert txt.document.pages == ("plain text",)


@pytest.mark.parametrize(("name", "content", "media_type", "code", "text"), [
    ("big.txt", b"x" * 2048, "", "document_too_large", "limit is 1,024"),
    ("empty.txt", b"", "", "empty_document", "is empty"),
    ("broken.pdf", b"%PDF-1.7\n" + b"\x00garbage" * 50, "", "unreadable_document", "not a readable PDF"),
    ("fake.pdf", b"hello", "application/pdf", "unreadable_document", "no %PDF- header"),
    ("latin1.txt", "café".encode("latin-1"), "", "unreadable_document", "not UTF-8"),
    ("binary.txt", b"abc\x00def", "", "unreadable_document", "binary data"),
    ("photo.png", b"\x89PNG....", "image/png", "unsupported_document", "image/png is not supported"),
])
def test_bad_documents_are_refused_with_the_reason(name: str, content: bytes, media_type: str, code: str,
                                                   text: str) -> None:
    with pytest.raises(InvalidInput) as e:
        read_document(name, content, media_type, path="documents[3]", max_bytes=1024)
    assert e.value.code == code and text in e.value.message and e.value.message.startswith("documents[3]: ")


def test_a_pdf_without_text_is_refused() -> None:
    with pytest.raises(InvalidInput) as e:
        read_document("scan.pdf", make_pdf([""]))
    assert "no text layer" in e.value.message
    truncated = make_pdf(["Claimant Dana"])[:200]
    with pytest.raises(InvalidInput):
        read_document("cut.pdf", truncated)


def test_passages_follow_markdown_sections() -> None:
    text = (CORPUS / "02-theft.md").read_text()
    passages = split_passages("02-theft.md", text)
    assert [p.section for p in passages] == [
        "Home Contents Policy HC-2026 — Section 2: Theft > 2.1 Theft from the home",
        "Home Contents Policy HC-2026 — Section 2: Theft > 2.2 Theft from outbuildings and sheds",
        "Home Contents Policy HC-2026 — Section 2: Theft > 2.3 What is not covered under theft"]
    long = split_passages("x.md", "# A\n\n" + ("word " * 250 + "\n\n") * 3, max_chars=1500)
    assert len(long) == 3 and all(len(p.content) <= 1500 for p in long)


def corpus_with_distractors(tmp: Path, n: int = 60) -> Path:
    folder = tmp / "corpus"
    shutil.copytree(CORPUS, folder)
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        (folder / f"zz-{i:03d}.md").write_text(
            f"# Guide {i}: {topic}\n\n## About {topic}\nThis guide explains {topic} for customers, with forms, "
            f"timelines and contacts for {topic}. Keep receipts for {topic} and call us about {topic}.\n")
    (folder / "brochure.pdf").write_bytes(make_pdf(["Brochure: our pet insurance and travel cover products."]))
    return folder


@pytest.fixture
def store(db_url: str) -> SqlStore:
    return SqlStore(db_url)


def test_full_text_retrieval_finds_the_right_clause_among_many_documents(store: SqlStore, tmp_path: Path) -> None:
    folder = corpus_with_distractors(tmp_path)
    version, documents, passages = index_directory(store, folder, "policy")
    assert (version, documents) == (1, 69) and passages > 80
    top = search(store, "policy", "my bicycle was stolen from the locked garden shed", 3)
    assert top[0]["document"] == "02-theft.md" and "2.2 Theft from outbuildings and sheds" in top[0]["section"]
    assert top[0]["score"] >= top[1]["score"] and top[0]["corpus_version"] == 1
    water = search(store, "policy", "the washing machine hose burst and flooded the kitchen", 3)
    assert water[0]["document"] == "04-water.md" and "4.1" in water[0]["section"]
    fraud = search(store, "policy", "exaggerated claim supported by false documents", 1)
    assert fraud[0]["document"] == "08-claims-conditions.md" and fraud[0]["section"].endswith("Fraud")
    assert search(store, "policy", "the and of", 3) == []  # stopwords only: nothing to look for
    assert {p["document"] for p in search(store, "policy", "pet insurance brochure", 5)} >= {"brochure.pdf"}
    # re-indexing makes a new version; searches use the latest
    (folder / "02-theft.md").write_text("# Theft\n\n## Bicycles\nBicycles are never covered.\n")
    assert index_directory(store, folder, "policy")[0] == 2
    again = search(store, "policy", "are bicycles covered", 1)
    assert again[0]["corpus_version"] == 2 and again[0]["text"] == "Bicycles are never covered."
    assert search(store, "policy", "bicycle stolen shed", 1, version=1)[0]["section"].endswith("sheds")


def intake_decision(store: SqlStore, answers: dict[str, Any], pdf: bytes, prefix: str = "intake-") -> DecisionRecord:
    rs = load_file(ROOT / "rulesets/claims-intake.yaml")
    store.save_ruleset(rs)
    incoming = read_document("claim-theft.pdf", pdf)
    recorded = RecordedAnswers(answers)
    engine = Engine(rs)
    d = asyncio.run(engine.decide({}, recorded, WithRetrieval(recorded, store), FixedClock(7.0),
                                  SequentialIds(prefix), documents=[incoming.document]))
    record = d.to_dict()
    store.save_batch([Pending(record, "test", documents=[incoming])])
    return record


ANSWERS = {
    "extract_claim": {"claim_ref": "CLM-1", "policy_number": "HC-1", "claimant": "Dana Whitfield",
                      "incident_date": "2026-10-03", "reported_date": "2026-10-04",
                      "incident_type": "theft", "amount": 1240,
                      "description": "bicycle stolen from the locked garden shed, padlock forced"},
    "assess_risk": {"tier": "low", "signals": []},
    "check_coverage": {"covered": True, "clause": "2.2", "confidence": 0.9, "exclusions": []},
}


def test_replay_after_reindexing_uses_the_stored_passages(store: SqlStore, tmp_path: Path) -> None:
    folder = corpus_with_distractors(tmp_path, 50)
    index_directory(store, folder, "claims-policy")
    pdf = (ROOT / "rulesets/samples/claim-theft.pdf").read_bytes()
    record = intake_decision(store, ANSWERS, pdf)
    assert record["decision"] == {"route": "auto-approve"}
    passages = [e["values"] for e in record["trace"] if e["kind"] == "fact" and e["type"] == "passage"]
    assert passages and passages[0]["document"] == "02-theft.md"
    coverage_call = next(e for e in record["trace"] if e["kind"] == "call" and e["action"] == "check_coverage")
    assert passages[0]["text"] in coverage_call["request"]["prompt"]
    extraction = next(e for e in record["trace"] if e["kind"] == "fact" and e["type"] == "claim")
    assert extraction["provenance"]["fields"]["claimant"]["page"] == 1
    # the corpus changes; the stored decision still replays identically, on its own passages
    for f in folder.glob("0*.md"):
        f.write_text("# Nothing\n\nThis policy covers nothing at all.\n")
    index_directory(store, folder, "claims-policy")
    stored = store.get(record["decision_id"])
    assert stored is not None and stored["documents"][0]["name"] == "claim-theft.pdf"
    engine = Engine(load_file(ROOT / "rulesets/claims-intake.yaml"))
    result = asyncio.run(replay(engine, stored, store.documents_of(stored)))
    assert result.identical, result.divergence
    # the same document sent again is stored once
    intake_decision(store, ANSWERS, pdf, prefix="again-")
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(DOCUMENTS)).scalar_one() == 1
    (doc,) = store.documents_of(stored)
    assert doc.pages == read_document("x.pdf", pdf).document.pages
    assert store.document_content(doc.id) == ("claim-theft.pdf", "application/pdf", pdf)


def test_impact_reads_stored_decisions_in_batches_with_their_documents(store: SqlStore, tmp_path: Path) -> None:
    """Impact reads records and documents a batch at a time; each what-if gets its own decision's documents
    (without them the extraction would fail and every decision would show as changed)."""
    index_directory(store, corpus_with_distractors(tmp_path, 5), "claims-policy")
    pdf = (ROOT / "rulesets/samples/claim-theft.pdf").read_bytes()
    ids = [intake_decision(store, ANSWERS, pdf, prefix=f"imp{i}-")["decision_id"] for i in range(3)]
    assert [r and r["decision_id"] for r in store.get_many([ids[2], "nope", ids[0]])] == [ids[2], None, ids[0]]
    impact = Impact()
    steps = asyncio.run(_steps(store, [ids[0], "nope", ids[1], ids[2]], impact))
    assert steps == [(2, 4), (4, 4)]
    assert [w.decision_id for w in impact.results] == [ids[0], ids[1], ids[2]]
    assert not impact.changed and not impact.unanswered


async def _steps(store: SqlStore, ids: list[str], impact: Impact) -> list[tuple[int, int]]:
    engine = Engine(load_file(ROOT / "rulesets/claims-intake.yaml"))
    return [step async for step in impact_steps(store, engine, ids, impact, every=2)]


def test_cli_index_search_and_decide_with_a_document(tmp_path: Path) -> None:
    runner = CliRunner()
    db = str(tmp_path / "cli.db")
    folder = corpus_with_distractors(tmp_path, 10)
    result = runner.invoke(app, ["index", str(folder), "--corpus", "claims-policy", "--db", db])
    assert result.exit_code == 0, result.output
    assert "corpus claims-policy v1: 19 documents" in result.output
    found = runner.invoke(app, ["search", "claims-policy", "bicycle stolen from shed", "--db", db, "--json"])
    assert found.exit_code == 0 and '"02-theft.md"' in found.output
    listed = runner.invoke(app, ["corpora", "--db", db])
    assert "claims-policy" in listed.output and "ready" in listed.output
    answers = tmp_path / "answers.json"
    import json

    answers.write_text(json.dumps(ANSWERS))
    decided = runner.invoke(app, ["decide", str(ROOT / "rulesets/claims-intake.yaml"), "--document",
                                  str(ROOT / "rulesets/samples/claim-theft.pdf"), "--answers", str(answers),
                                  "--db", db])
    assert decided.exit_code == 0, decided.output
    record = json.loads(decided.output)
    assert record["decision"] == {"route": "auto-approve"} and record["documents"][0]["pages"] == 2
    replayed = runner.invoke(app, ["replay", record["decision_id"], "--db", db])
    assert replayed.exit_code == 0 and "identical" in replayed.output
    (tmp_path / "blob.txt").write_bytes(b"claim\x00\x01binary")
    bad = runner.invoke(app, ["decide", "claims-intake", "--rulesets", str(ROOT / "rulesets"), "--document",
                              str(tmp_path / "blob.txt")])
    assert bad.exit_code == 1 and "binary data" in bad.output
    blob = str(tmp_path / "blob.txt")  # named as the command was given it, once; not as a request's documents[0]
    assert f"--document {blob}: unreadable_document: blob.txt holds" in bad.output.replace("\n", "")
    assert "documents[" not in bad.output
    (tmp_path / "empty.md").write_bytes(b"")
    stored = runner.invoke(app, ["decide", "claims-intake", "--rulesets", str(ROOT / "rulesets"), "--document",
                                 str(ROOT / "rulesets/samples/claim-theft.pdf"), "--document",
                                 str(tmp_path / "empty.md"), "--db", db])
    assert stored.exit_code == 1 and f"--document {tmp_path / 'empty.md'}: empty_document" in \
        stored.output.replace("\n", "") and "documents[" not in stored.output
    missing = runner.invoke(app, ["index", str(tmp_path / "nowhere"), "--corpus", "x", "--db", db])
    assert missing.exit_code != 0
