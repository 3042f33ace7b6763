"""The console's area of the store: signed-in sessions (kept here so signing out, a removed or rotated
token, and idle or absolute timeouts end a session at once, in every process that reads this database),
and review comments on a pending publication (they stay with it in its history)."""

from __future__ import annotations

import json
import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from adapters.infra.store.base import _IDS, CALLS, DECISIONS, DOCUMENTS, TRACE, StoreBase
from adapters.infra.store.decision_reads import check_row, columns_problem
from engine.audit import GENESIS, chain_hash


class ConsoleSessionRow(SQLModel, table=True):
    """One console sign-in. The cookie carries a random secret; only its SHA-256 is kept (``id``), with the
    SHA-256 of the token signed in with, so a token removed from the configuration ends its sessions."""

    __tablename__ = "console_sessions"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    roles: str = Field(max_length=400)  # comma-separated
    token: str = Field(max_length=64)
    csrf: str = Field(max_length=64)
    created_at: float
    seen_at: float
    ended_at: float | None = None
    ended_why: str | None = Field(default=None, max_length=20)  # signed_out | idle | expired | token | roles


class PublicationCommentRow(SQLModel, table=True):
    """A reviewer's comment on a pending change, on one rule or table row of its diff (``target``) or on
    the change as a whole (``target`` empty)."""

    __tablename__ = "publication_comments"

    id: str = Field(primary_key=True, max_length=40)
    publication_id: str = Field(max_length=40, index=True)
    by: str = Field(max_length=200)
    at: float
    target: str = Field(default="", max_length=300)
    text: str = Field(sa_column=Column(Text, nullable=False))


class EffectNoteRow(SQLModel, table=True):
    """What someone did to an effect from the console (a retry, with their note), one row per effect."""

    __tablename__ = "effect_notes"

    id: str = Field(primary_key=True, max_length=40)
    effect_id: str = Field(max_length=200, index=True)
    by: str = Field(max_length=200)
    at: float
    kind: str = Field(max_length=20)
    text: str = Field(sa_column=Column(Text, nullable=False))


CONSOLE_SESSIONS = ConsoleSessionRow.__table__  # type: ignore[attr-defined]
PUBLICATION_COMMENTS = PublicationCommentRow.__table__  # type: ignore[attr-defined]
EFFECT_NOTES = EffectNoteRow.__table__  # type: ignore[attr-defined]


def _row_problem(row: Any, prev: str) -> str:
    """The checks of the whole-log verification that concern the decision's own row (same messages)."""
    if row.prev_hash != prev:
        return "its previous-hash does not match the decision before it (inserted or reordered)"
    texts = row.trace.split("\n") if row.trace else []
    if chain_hash(prev, int(row.chain_seq), row.head, texts) != row.hash:
        return "its hash does not match its record and trace (edited)"
    try:
        head = json.loads(row.head)
    except ValueError:
        return "its stored record is not valid JSON (edited)"
    return columns_problem(row, head)


class ConsoleArea(StoreBase):
    # -- sessions ----------------------------------------------------------------------------------
    def start_session(self, row: dict[str, Any]) -> None:
        with self.writer.begin() as conn:
            conn.execute(CONSOLE_SESSIONS.insert().values(**row))

    def console_session(self, session_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(CONSOLE_SESSIONS).where(CONSOLE_SESSIONS.c.id == session_id)).first()
        return dict(row._mapping) if row else None

    def touch_session(self, session_id: str, now: float) -> None:
        with self.writer.begin() as conn:
            conn.execute(CONSOLE_SESSIONS.update().where(CONSOLE_SESSIONS.c.id == session_id,
                                                         CONSOLE_SESSIONS.c.ended_at.is_(None)).values(seen_at=now))

    def end_session(self, session_id: str, why: str, now: float) -> bool:
        """End a live session (False when it had already ended: the first reason stays)."""
        with self.writer.begin() as conn:
            return bool(conn.execute(CONSOLE_SESSIONS.update().where(
                CONSOLE_SESSIONS.c.id == session_id, CONSOLE_SESSIONS.c.ended_at.is_(None)).values(
                ended_at=now, ended_why=why)).rowcount)

    # -- chain status of the rows a page shows -----------------------------------------------------
    def chain_problems(self, ids: list[str]) -> dict[str, str]:
        """What is wrong with each of these stored decisions' rows (only those with a problem): its hash
        against its stored record and trace, its columns against the hashed record, its link to the decision
        before it. A page's worth in two queries, without parsing the traces (the whole-log verification
        also checks the calls table and the order of the chain)."""
        out: dict[str, str] = {}
        wanted = list(dict.fromkeys(ids))
        with self.engine.begin() as conn:
            for i in range(0, len(wanted), 500):
                rows = conn.execute(sa.select(DECISIONS).where(DECISIONS.c.id.in_(wanted[i:i + 500]))).all()
                seqs = [int(r.chain_seq) - 1 for r in rows if int(r.chain_seq) > 1]
                before = {int(q): str(h) for q, h in conn.execute(sa.select(DECISIONS.c.chain_seq, DECISIONS.c.hash)
                                                                   .where(DECISIONS.c.chain_seq.in_(seqs)))}
                for row in rows:
                    seq = int(row.chain_seq)
                    prev = GENESIS if seq == 1 else before.get(seq - 1)
                    if prev is None:
                        problem = "the decision before it in the chain is missing"
                    elif row.trace is None:  # stored before revision 0009: its events are rows of their own
                        problem = self._legacy_problem(conn, row, prev)
                    else:
                        problem = _row_problem(row, prev)
                    if problem:
                        out[str(row.id)] = problem
        return out

    @staticmethod
    def _legacy_problem(conn: Any, row: Any, prev: str) -> str:
        traces = conn.execute(sa.select(TRACE).where(TRACE.c.decision_id == row.id).order_by(TRACE.c.idx)).all()
        calls = conn.execute(sa.select(CALLS).where(CALLS.c.decision_id == row.id).order_by(CALLS.c.call_no)).all()
        return check_row(row, prev, int(row.chain_seq), list(traces), list(calls))

    # -- document text, by page ---------------------------------------------------------------------
    def document_search(self, text: str, limit: int = 50, scan: int = 5000) -> list[dict[str, Any]]:
        """Decisions whose documents' stored text (page by page) contains ``text`` (case and runs of spaces
        ignored): one hit per decision, document and page, newest decision first, each with a snippet (the
        text before the match, the match, the text after). The
        newest ``scan`` documents are read (narrowed first by each ASCII word of the text); the decisions that
        sent a matching document are found by its id in their stored record."""
        wanted = " ".join(text.lower().split())
        if not wanted:
            return []
        d = DOCUMENTS.c
        query = sa.select(d.id, d.name, d.pages).order_by(d.created_at.desc()).limit(scan)
        for word in re.findall(r"[a-z0-9]{3,}", wanted)[:8]:  # pages are JSON: ASCII words appear as typed
            query = query.where(sa.func.lower(d.pages).contains(word, autoescape=True))
        found: list[tuple[str, str, int, str, str, str]] = []  # document, name, page, before, match, after
        with self.engine.connect() as conn:
            for doc_id, name, pages in conn.execute(query):
                for no, page in enumerate(json.loads(pages), 1):
                    flat = " ".join(str(page).split())
                    at = flat.lower().find(wanted)
                    if at >= 0:
                        end = at + len(wanted)
                        found.append((str(doc_id), str(name), no, ("…" if at > 80 else "") + flat[max(0, at - 80):at],
                                      flat[at:end], flat[end:end + 80] + ("…" if len(flat) > end + 80 else "")))
            if not found:
                return []
            hits: list[dict[str, Any]] = []
            c = DECISIONS.c
            for doc_id in dict.fromkeys(f[0] for f in found):
                rows = conn.execute(sa.select(c.id, c.created_at, c.ruleset, c.outcome).where(
                    c.head.contains(f'"{doc_id}"', autoescape=True)).order_by(c.created_at.desc()).limit(limit))
                for row in rows:
                    hits.extend({"decision_id": row.id, "created_at": row.created_at, "ruleset": row.ruleset,
                                 "outcome": row.outcome, "document_id": f[0], "name": f[1], "page": f[2],
                                 "snippet": [f[3], f[4], f[5]]} for f in found if f[0] == doc_id)
        hits.sort(key=lambda h: (-h["created_at"], h["decision_id"], h["page"]))
        return hits[:limit]

    # -- review comments on publications -----------------------------------------------------------
    def comment_publication(self, publication_id: str, by: str, target: str, text: str, now: float) -> str:
        comment_id = _IDS.new_id()
        with self.writer.begin() as conn:
            conn.execute(PUBLICATION_COMMENTS.insert().values(id=comment_id, publication_id=publication_id,
                                                              by=by[:200], at=now, target=target[:300],
                                                              text=text[:4000]))
        return comment_id

    def publication_comments(self, publication_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Comments by publication, oldest first."""
        if not publication_ids:
            return {}
        c = PUBLICATION_COMMENTS.c
        out: dict[str, list[dict[str, Any]]] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(publication_ids), 500):
                rows = conn.execute(sa.select(PUBLICATION_COMMENTS).where(
                    c.publication_id.in_(publication_ids[i:i + 500])).order_by(c.at, c.id))
                for r in rows:
                    out.setdefault(str(r.publication_id), []).append(dict(r._mapping))
        return out

    # -- notes on effects --------------------------------------------------------------------------
    def note_effects(self, effect_ids: list[str], by: str, kind: str, text: str, now: float) -> None:
        if not effect_ids:
            return
        with self.writer.begin() as conn:
            conn.execute(EFFECT_NOTES.insert(), [{"id": _IDS.new_id(), "effect_id": i, "by": by[:200], "at": now,
                                                  "kind": kind, "text": text[:4000]} for i in effect_ids])

    def effect_notes(self, effect_id: str) -> list[dict[str, Any]]:
        n = EFFECT_NOTES.c
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(EFFECT_NOTES).where(
                n.effect_id == effect_id).order_by(n.at, n.id))]
