"""Policy retrieval: index a folder of documents into the store, search it by full text.

``baton index DIR --corpus NAME`` splits each document (Markdown, text, PDF) into passages — a
Markdown section, or a part of one when it is long — and stores them as a new *version* of the
corpus; the previous versions stay (a replay uses the passages its record kept anyway). Search is
SQLite FTS5 (BM25, Porter stemming) in the embedded store and PostgreSQL full-text search
(``tsvector`` with a GIN index, ``ts_rank_cd``) in production.

The ``retrieve`` tool connector answers a rule's retrieval action with ``passage`` facts: corpus,
version, document, section, score, content hash and text. The answer is recorded in the decision's
trace like every tool answer, so replay uses exactly the passages the decision saw, whatever has been
re-indexed since.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.infra.documents import SUFFIXES, read_document
from adapters.infra.store.sql import SqlStore
from engine.errors import BatonError, InvalidInput
from engine.ports import CallRequest, CallResult

MAX_PASSAGE = 1500
MAX_QUERY_TERMS = 32
CANDIDATES = 100  # passages ranked by BM25 before coordination re-ranks them
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)
_WORD = re.compile(r"[^\W_]{2,}", re.UNICODE)
STOPWORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in", "is", "it", "its", "of",
    "on", "or", "that", "the", "this", "to", "was", "were", "will", "with", "not", "no", "any", "all", "our", "we",
    "you", "your", "they", "their", "these", "those", "which", "who", "whom", "been", "being", "do", "does", "did",
))


@dataclass(frozen=True, slots=True)
class Passage:
    document: str
    section: str
    position: int
    content: str

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.content.encode("utf-8")).hexdigest()


def split_passages(document: str, text: str, max_chars: int = MAX_PASSAGE) -> list[Passage]:
    """Sections by Markdown heading (the heading path names the section); long sections in paragraph-
    aligned parts of at most ``max_chars``."""
    sections: list[tuple[str, str]] = []
    path: list[str] = []
    last = 0
    heading = ""
    for m in _HEADING.finditer(text):
        sections.append((heading, text[last:m.start()]))
        level = len(m.group(1))
        path = [*path[:level - 1], m.group(2).strip()]
        heading = " > ".join(path)
        last = m.end()
    sections.append((heading, text[last:]))
    out: list[Passage] = []
    for section, body in sections:
        for part in _parts(body.strip(), max_chars):
            out.append(Passage(document, section[:500], len(out), part))
    return out


def _parts(body: str, max_chars: int) -> Iterator[str]:
    if not body:
        return
    current = ""
    for para in re.split(r"\n\s*\n", body):
        para = para.strip()
        while len(para) > max_chars:  # one very long paragraph: cut at a sentence or word boundary
            cut = max(para.rfind(". ", 0, max_chars), para.rfind(" ", 0, max_chars))
            cut = cut + 1 if cut > max_chars // 2 else max_chars
            if current:
                yield current
                current = ""
            yield para[:cut].strip()
            para = para[cut:].strip()
        if current and len(current) + 2 + len(para) > max_chars:
            yield current
            current = ""
        current = f"{current}\n\n{para}" if current else para
    if current:
        yield current


def corpus_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(directory).parts))


def index_directory(store: SqlStore, directory: Path, corpus: str,
                    progress: Callable[[int, int, str], None] | None = None, source: str = ""
                    ) -> tuple[int, int, int]:
    """Index every document under ``directory`` as a new version of ``corpus``: (version, documents,
    passages). A document that cannot be read stops the run with its name, and nothing is published."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,99}", corpus):
        raise BatonError("bad_name", "a corpus name is lowercase letters, digits, - _ .")
    files = corpus_files(directory)
    if not files:
        raise BatonError("empty_corpus", f"no .md, .txt or .pdf files under {directory}")
    version = store.new_corpus_version(corpus, source or str(directory), time.time())
    total = 0
    try:
        batch: list[Passage] = []
        for n, path in enumerate(files, 1):
            rel = path.relative_to(directory).as_posix()
            try:
                doc = read_document(rel, path.read_bytes(), path=rel, max_bytes=50 * 1024 * 1024).document
            except InvalidInput as e:
                raise BatonError("unreadable_document", e.message) from None
            batch.extend(split_passages(rel, doc.text))
            if len(batch) >= 500 or n == len(files):
                total += _insert(store, corpus, version, batch)
                batch = []
            if progress is not None:
                progress(n, len(files), rel)
    except BaseException:
        store.drop_corpus_version(corpus, version)
        raise
    store.corpus_ready(corpus, version, len(files), total)
    return version, len(files), total


def _insert(store: SqlStore, corpus: str, version: int, passages: list[Passage]) -> int:
    return store.add_passages([{"corpus": corpus, "version": version, "document": p.document[:500],
                                "section": p.section, "position": p.position, "content": p.content,
                                "content_hash": p.content_hash} for p in passages])


def corpora(store: SqlStore) -> list[dict[str, Any]]:
    return store.corpora()


def latest_version(store: SqlStore, corpus: str) -> int | None:
    return store.latest_corpus_version(corpus)


def terms(query: str) -> list[str]:
    """The words of a query, lowercased, without stopwords and duplicates (at most 32)."""
    words = [w.lower() for w in _WORD.findall(query)]
    return list(dict.fromkeys(w for w in words if w not in STOPWORDS))[:MAX_QUERY_TERMS]


def search(store: SqlStore, corpus: str, query: str, top_k: int = 5, version: int | None = None
           ) -> list[dict[str, Any]]:
    """The ``top_k`` passages of the corpus version (the latest ready one by default) best matching the
    query. Candidates match any of its words; they are ranked first by how many distinct query words
    they hold (coordination, so a passage repeating one common word does not beat one holding most of
    the query), then by BM25 (SQLite FTS5) or cover density (PostgreSQL). ``score`` is
    ``words matched + rank / (1 + rank)``; ties go to the earlier passage."""
    if version is None:
        version = latest_version(store, corpus)
        if version is None:
            raise BatonError("unknown_corpus", f"no indexed corpus named {corpus!r} (run baton index)")
    words = terms(query)
    if not words:
        return []
    rows = store.passage_candidates(corpus, version, words, CANDIDATES)
    rows.sort(key=lambda r: (-int(r[6]), -float(r[5]), int(r[0])))
    out = []
    for r in rows[:top_k]:
        rank = max(0.0, float(r[5]))
        out.append({"corpus": corpus, "corpus_version": version, "document": r[1], "section": r[2],
                    "score": round(int(r[6]) + rank / (1 + rank), 6), "content_hash": r[4], "text": r[3]})
    return out


def corpus_digest(directory: Path) -> str:
    """What a folder holds: names and contents of its documents (unchanged folder, same digest)."""
    h = hashlib.sha256()
    for path in corpus_files(directory):
        h.update(path.relative_to(directory).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def index_if_changed(store: SqlStore, directory: Path, corpus: str) -> tuple[int, bool]:
    """Index a folder unless its latest ready version was made from the same files: (version, indexed)."""
    digest = corpus_digest(directory)
    latest = store.latest_corpus(corpus)
    if latest is not None and latest[1].endswith(f"#{digest}"):
        return latest[0], False
    version, _, _ = index_directory(store, directory, corpus, source=f"{directory}#{digest}")
    return version, True


class WithRetrieval:
    """A ToolConnector that answers ``connector: retrieve`` from the store's corpora, and everything else
    through the configured (or canned) connectors."""

    def __init__(self, inner: Any, store: SqlStore) -> None:
        self.inner = inner
        self.retrieve = RetrieveConnector(store)

    async def call(self, call: CallRequest) -> CallResult:
        if call.request.get("connector") == "retrieve" and not self._configured():
            return await self.retrieve.call(call)
        result: CallResult = await self.inner.call(call)
        return result

    def answer_now(self, call: CallRequest) -> CallResult | None:
        """Recorded or canned answers stay immediate (the loop skips a task for them); retrieval is awaited."""
        if call.request.get("connector") == "retrieve" and not self._configured():
            return None
        answer = getattr(self.inner, "answer_now", None)
        result: CallResult | None = answer(call) if answer is not None else None
        return result

    def _configured(self) -> bool:
        connectors = getattr(self.inner, "connectors", None)
        return isinstance(connectors, dict) and "retrieve" in connectors


class RetrieveConnector:
    """The ``retrieve`` tool connector: ``corpus`` and ``top_k`` from the ruleset's tool action, the query
    from its ``params: {query: ...}``."""

    def __init__(self, store: SqlStore, name: str = "retrieve") -> None:
        self.store = store
        self.name = name

    async def call(self, call: CallRequest) -> CallResult:
        request = call.request
        corpus = request.get("corpus")
        params = request.get("params")
        query = params.get("query") if isinstance(params, dict) else None
        top_k = request.get("top_k", 5)
        if not isinstance(corpus, str) or not corpus:
            return CallResult(failure_kind="bad_request", error="retrieve needs corpus: NAME in the tool action")
        if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= 50:
            return CallResult(failure_kind="bad_request", error="top_k must be a whole number from 1 to 50")
        if not isinstance(query, str):
            return CallResult(failure_kind="bad_request", error="retrieve needs params: {query: ...}")
        started = time.perf_counter()
        try:
            found = await asyncio.to_thread(search, self.store, corpus, query, top_k)
        except BatonError as e:
            return CallResult(failure_kind=e.code, error=e.message)
        return CallResult(answer=found, meta={"passages": len(found),
                                              "search_ms": round((time.perf_counter() - started) * 1000, 3)})
