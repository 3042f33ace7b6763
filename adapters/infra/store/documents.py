"""The documents area of the store: documents decisions read (by content hash), and the retrieval corpora and
their passages."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from adapters.infra.store.base import (
    CORPORA,
    DOCUMENTS,
    PASSAGES,
    StoreBase,
)
from engine.documents import Document
from engine.record import DecisionRecord


class DocumentsArea(StoreBase):
    def documents(self, ids: Sequence[str]) -> list[Document]:
        """Stored documents by id (the text as read when the decision was made)."""
        if not ids:
            return []
        d = DOCUMENTS.c
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(d.id, d.name, d.media_type, d.pages).where(d.id.in_(list(ids)))).all()
        return [Document(r[0], r[1], r[2], tuple(json.loads(r[3]))) for r in rows]

    def documents_of(self, record: DecisionRecord) -> list[Document]:
        return self.documents([str(ref["id"]) for ref in record.get("documents") or ()])

    def document_content(self, doc_id: str) -> tuple[str, str, bytes] | None:
        d = DOCUMENTS.c
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(d.name, d.media_type, d.content).where(d.id == doc_id)).first()
        return (row[0], row[1], bytes(row[2])) if row else None

    # -- retrieval corpora -------------------------------------------------------------------------
    def new_corpus_version(self, corpus: str, source: str, now: float) -> int:
        """A new version of ``corpus``, building (not searched until ``corpus_ready``)."""
        with self.writer.begin() as conn:
            latest = conn.execute(sa.select(sa.func.max(CORPORA.c.version)).where(CORPORA.c.name == corpus)).scalar()
            version = int(latest or 0) + 1
            conn.execute(CORPORA.insert().values(name=corpus, version=version, status="building", documents=0,
                                                 passages=0, source=source, created_at=now))
        return version

    def add_passages(self, rows: list[dict[str, Any]]) -> int:
        """Passages (corpus, version, document, section, position, content, content_hash), one transaction."""
        if not rows:
            return 0
        with self.writer.begin() as conn:
            if self.sqlite:
                first = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(PASSAGES.c.id), 0))).scalar_one()) + 1
                rows = [{**row, "id": first + i} for i, row in enumerate(rows)]
                conn.execute(PASSAGES.insert(), rows)
                conn.exec_driver_sql("INSERT INTO passages_fts (rowid, section, content) VALUES (?, ?, ?)",
                                     [(r["id"], r["section"], r["content"]) for r in rows])
            else:
                conn.execute(PASSAGES.insert(), rows)
        return len(rows)

    def drop_corpus_version(self, corpus: str, version: int) -> None:
        with self.writer.begin() as conn:
            if self.sqlite:
                conn.exec_driver_sql(
                    "INSERT INTO passages_fts (passages_fts, rowid, section, content) SELECT 'delete', id, section, "
                    "content FROM passages WHERE corpus = ? AND version = ?", (corpus, version))
            conn.execute(PASSAGES.delete().where(PASSAGES.c.corpus == corpus, PASSAGES.c.version == version))
            conn.execute(CORPORA.delete().where(CORPORA.c.name == corpus, CORPORA.c.version == version))

    def corpus_ready(self, corpus: str, version: int, documents: int, passages: int) -> None:
        with self.writer.begin() as conn:
            conn.execute(CORPORA.update().where(CORPORA.c.name == corpus, CORPORA.c.version == version)
                         .values(status="ready", documents=documents, passages=passages))

    def corpora(self) -> list[dict[str, Any]]:
        c = CORPORA.c
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(c.name, c.version, c.status, c.documents, c.passages, c.source,
                                          c.created_at).order_by(c.name, c.version)).all()
        return [dict(r._mapping) for r in rows]

    def latest_corpus(self, corpus: str) -> tuple[int, str] | None:
        """(version, source) of the newest ready version of ``corpus``."""
        c = CORPORA.c
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(c.version, c.source).where(c.name == corpus, c.status == "ready")
                                 .order_by(c.version.desc()).limit(1)).first()
        return (int(found[0]), str(found[1])) if found is not None else None

    def latest_corpus_version(self, corpus: str) -> int | None:
        """The newest ready version of ``corpus``."""
        latest = self.latest_corpus(corpus)
        return latest[0] if latest is not None else None

    def passage_candidates(self, corpus: str, version: int, words: list[str], limit: int
                           ) -> list[tuple[int, str, str, str, str, float, int]]:
        """Passages of the corpus version holding any of ``words``, best ranked first (BM25 on SQLite FTS5,
        cover density on PostgreSQL): (id, document, section, content, content_hash, rank, words matched)."""
        with self.engine.connect() as conn:
            if self.sqlite:
                match = " OR ".join(f'"{w}"' for w in words)
                candidates = conn.exec_driver_sql(
                    "SELECT p.id, p.document, p.section, p.content, p.content_hash, -bm25(passages_fts, 2.0, 1.0) "
                    "FROM passages_fts JOIN passages p ON p.id = passages_fts.rowid "
                    "WHERE passages_fts MATCH ? AND p.corpus = ? AND p.version = ? "
                    "ORDER BY 6 DESC, p.id LIMIT ?", (match, corpus, version, limit)).all()
                matched: dict[int, int] = dict.fromkeys((int(r[0]) for r in candidates), 0)
                if candidates:
                    marks = ",".join("?" * len(candidates))
                    for w in words:
                        for (rowid,) in conn.exec_driver_sql(
                                f"SELECT rowid FROM passages_fts WHERE passages_fts MATCH ? AND rowid IN ({marks})",
                                (f'"{w}"', *matched)).all():
                            matched[int(rowid)] += 1
                return [(int(r[0]), r[1], r[2], r[3], r[4], float(r[5]), matched[int(r[0])]) for r in candidates]
            params: dict[str, Any] = {"q": " | ".join(words), "c": corpus, "v": version, "k": limit}
            coord = " + ".join(f"(tsv @@ to_tsquery('english', :t{i}))::int" for i in range(len(words)))
            params.update({f"t{i}": w for i, w in enumerate(words)})
            return [(int(r[0]), r[1], r[2], r[3], r[4], float(r[5]), int(r[6])) for r in conn.execute(sa.text(
                f"SELECT id, document, section, content, content_hash, "
                f"ts_rank_cd(tsv, to_tsquery('english', :q), 32) AS rank, {coord} AS matched FROM passages "
                "WHERE corpus = :c AND version = :v AND tsv @@ to_tsquery('english', :q) "
                "ORDER BY rank DESC, id LIMIT :k"), params).all()]
