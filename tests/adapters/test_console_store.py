"""The console's area of the store on SQLite and PostgreSQL: sessions, review comments, effect notes, the
per-row chain check of a page of decisions, and search in documents' stored text."""

from __future__ import annotations

import sqlalchemy as sa

from adapters.infra.store.sql import SqlStore
from tests.adapters.test_store import every_example, store

__all__ = ["store"]


def test_sessions_start_touch_and_end_once(store: SqlStore) -> None:
    store.start_session({"id": "s" * 64, "name": "alex", "roles": "auditor,dpo", "token": "t" * 64, "csrf": "c",
                         "created_at": 100.0, "seen_at": 100.0, "ended_at": None, "ended_why": None})
    store.touch_session("s" * 64, 130.0)
    row = store.console_session("s" * 64)
    assert row is not None and (row["seen_at"], row["roles"], row["ended_at"]) == (130.0, "auditor,dpo", None)
    assert store.end_session("s" * 64, "signed_out", 140.0)
    assert not store.end_session("s" * 64, "idle", 150.0)  # the first reason stays
    store.touch_session("s" * 64, 160.0)  # an ended session is not revived
    row = store.console_session("s" * 64)
    assert row is not None and (row["ended_why"], row["ended_at"], row["seen_at"]) == ("signed_out", 140.0, 130.0)
    assert store.console_session("nope") is None


def test_comments_and_effect_notes_by_item(store: SqlStore) -> None:
    store.comment_publication("pub-1", "carol", "rule high-risk", "why 60k?", 10.0)
    store.comment_publication("pub-1", "ed", "", "see the ticket", 11.0)
    store.comment_publication("pub-2", "carol", "table t · row 1", "ok", 12.0)
    got = store.publication_comments(["pub-1", "pub-2", "pub-3"])
    assert [(c["by"], c["target"], c["text"]) for c in got["pub-1"]] == [("carol", "rule high-risk", "why 60k?"),
                                                                          ("ed", "", "see the ticket")]
    assert len(got["pub-2"]) == 1 and "pub-3" not in got and store.publication_comments([]) == {}
    store.note_effects(["e1", "e2"], "alex", "retried", "endpoint back", 20.0)
    assert [(n["by"], n["kind"], n["text"]) for n in store.effect_notes("e2")] == [("alex", "retried",
                                                                                    "endpoint back")]
    assert store.effect_notes("e3") == []


def test_a_page_of_rows_is_checked_against_the_chain(store: SqlStore) -> None:
    records = every_example(store)
    ids = [r["decision_id"] for r in records]
    assert store.chain_problems(ids) == {}
    edited, relinked = ids[2], ids[5]
    with store.writer.begin() as conn:
        conn.execute(sa.text("UPDATE decisions SET outcome = 'no_decision' WHERE id = :id"), {"id": edited})
        conn.execute(sa.text("UPDATE decisions SET prev_hash = :h WHERE id = :id"), {"h": "0" * 64, "id": relinked})
    problems = store.chain_problems(ids[:10])
    assert set(problems) == {edited, relinked}
    assert "column outcome differs" in problems[edited] and "previous-hash" in problems[relinked]
    assert problems[edited] == store.verify_one(edited)  # the same checks as one decision's


def test_document_text_is_searched_by_page(store: SqlStore) -> None:
    records = every_example(store)
    with_docs = [r for r in records if r.get("documents")]
    assert with_docs, "the examples send documents"
    docs = store.documents_of(with_docs[0])
    page_no, page = next((i, p) for i, p in enumerate(docs[0].pages, 1) if len(p.split()) > 6)
    words = " ".join(page.split()[2:5])
    hits = store.document_search(words.upper())  # case does not matter
    assert any(h["decision_id"] == with_docs[0]["decision_id"] and h["page"] == page_no and
               h["snippet"][1].lower() == words.lower() for h in hits)
    assert all(h["document_id"] for h in hits) and store.document_search("zz-not-in-any-document-zz") == []
    assert store.document_search("   ") == []
