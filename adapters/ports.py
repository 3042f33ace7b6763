"""The store behind ports, one per area: what the use cases, doors and senders ask of it, and the plain values
it takes and returns. ``SqlStore`` (adapters/infra/store/sql.py) serves every port on SQLite or PostgreSQL;
``MemoryStore`` (adapters/infra/memory.py) serves them from dicts, for tests of what sits above the store.
tests/adapters/test_store_ports.py runs one contract suite over all three.

This module imports the engine and the standard library only (an import-linter contract): a port that named
an adapter would tie every user of the port to it.

Left out of the ports, because a fake of them would be a second database rather than a fake: operations
figures (``stats``, ``cost_totals``, ``cost_by_ruleset``), the Merkle tree and checkpoints (tree.py), retrieval
corpora and their ranked search (BM25 / ts_rank), the console's own tables (sessions, publication comments,
effect notes, document search, ``chain_problems``). Those stay methods of ``SqlStore``."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from engine.audit import canonical, hashed_body
from engine.documents import Document
from engine.model import Ruleset
from engine.pii import scrubber, searchable, secrets_of
from engine.record import DecisionRecord

# a publication's status
PENDING, PUBLISHED, REJECTED = "pending", "published", "rejected"

# version -> {fact type: pii fields}, or None when the version is not known
PrivateFields = Callable[[str], Mapping[str, Collection[str]] | None]


# -- values: decisions ---------------------------------------------------------------------------------
@dataclass(slots=True)
class Saved:
    decision_id: str
    chain_seq: int
    hash: str
    existing: bool = False  # an earlier decision with the same idempotency key


@dataclass(slots=True)
class Resolution:
    """Closing an escalation, in the same transaction as the decision that resumes it."""

    escalation_id: str
    by: str
    answer: str  # canonical JSON of the reviewer's fact
    status: str = "resolved"  # or "expired"


class Conflict(Exception):
    """The escalation was already resolved (by another reviewer or replica)."""


@dataclass(slots=True)
class Problem:
    chain_seq: int
    decision_id: str
    problem: str


class IncomingDocument(Protocol):
    """A document a decision read: the engine's view of it and the bytes to keep (adapters/infra/documents.py's
    ``Incoming``)."""

    @property
    def document(self) -> Document: ...

    @property
    def content(self) -> bytes: ...


class Pending:
    """A decision waiting to be stored, serialised up front: only hashing and inserting happen while the
    chain head is locked, so writers in other processes wait as little as possible."""

    __slots__ = ("body", "caller", "calls", "documents", "event_jsons", "head_json", "idempotency_key", "record",
                 "resolves", "search_text", "trace_text")

    def __init__(self, record: DecisionRecord, caller: str = "", idempotency_key: str | None = None,
                 resolves: Resolution | None = None, documents: Sequence[IncomingDocument] = (),
                 private: Mapping[str, Collection[str]] | None = None) -> None:
        self.record, self.caller, self.idempotency_key = record, caller, idempotency_key
        self.resolves = resolves
        self.documents = documents
        head = {k: v for k, v in record.items() if k != "trace"}
        head["caller"], head["idempotency_key"] = caller, idempotency_key
        self.head_json = canonical(head)
        events = record["trace"]
        self.event_jsons = [canonical(e) for e in events]
        self.trace_text = "\n".join(self.event_jsons)  # what decisions.trace holds (canonical JSON has no newline)
        # the hashed text that does not depend on the chain position; the joined trace is the events joined
        self.body = hashed_body(self.head_json, (self.trace_text,) if events else ())
        self.calls = [tuple(call_row(record["decision_id"], e).values()) for e in events if e["kind"] == "call"]
        # what the console's "fact text" search looks in: the values of every fact of the decision - input,
        # read from documents, answered by models and tools, derived - and document names; never a field the
        # ruleset marks pii (each value at most 500 characters: a passage's text is found by its start)
        facts = [(e["type"], e["values"]) for e in events if e.get("kind") == "fact"] or \
            [(i["type"], i["values"]) for i in record["inputs"]]
        text = " ".join(str(v)[:500] for t, values in facts for v in searchable(values, t, private)) + " " + \
            " ".join(str(d.get("name", "")) for d in record.get("documents") or ())
        # a pii value quoted elsewhere (a model's reason citing the IBAN) is not indexed either
        self.search_text = scrubber(secrets_of(record, private))(text) if private else text


def call_row(decision_id: str, event: Mapping[str, Any]) -> dict[str, Any]:
    """A call event projected to the calls table (keys in the table's column order). A call carried over from
    the escalated decision a resumption continues costs nothing here: its tokens and cost are that one's."""
    meta = event.get("meta") or {}
    paid = event.get("carried") is not True
    return {
        "decision_id": decision_id, "call_no": event["call"], "action": event["action"], "kind": event["type"],
        "status": event["status"], "model": str(meta.get("model", ""))[:200],
        "tokens": int(meta.get("total_tokens") or 0) if paid else 0,
        "cost_usd": float(meta.get("cost_usd") or 0.0) if paid else 0.0,
        "latency_ms": float(event.get("latency_ms") or 0.0), "attempts": int(event.get("attempts") or 0),
        "request": canonical(event["request"]),
        "answer": canonical(event.get("answer") if "answer" in event else event.get("failure")),
    }


# -- values: governance --------------------------------------------------------------------------------
@dataclass(slots=True)
class VersionInfo:
    name: str
    version: str
    loaded_at: float
    published_at: float | None
    published_by: str | None
    description: str = ""
    rules: int = 0
    tests: int = 0


@dataclass(slots=True)
class Publication:
    id: str
    ruleset: str
    version: str
    status: str
    submitted_by: str
    submitted_at: float
    note: str
    requested_from: float | None
    effective_from: float | None
    decided_by: str | None
    decided_at: float | None
    decision_note: str

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(slots=True)
class ShadowInfo:
    id: str
    ruleset: str
    version: str
    attached_by: str
    attached_at: float


@dataclass(frozen=True, slots=True)
class VersionSource:
    """A version as it is stored: its source and what a listing shows of it. A candidate compiled by the
    bounded child (adapters/infra/candidates.py) is stored from this, never compiled in the worker to be stored."""

    name: str
    version: str
    source: str
    description: str
    rules: int
    tests: int

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version[:12]}"

    @staticmethod
    def of(rs: Ruleset | VersionSource) -> VersionSource:
        if isinstance(rs, VersionSource):
            return rs
        return VersionSource(rs.name, rs.version, rs.source, rs.description, len(rs.rules), len(rs.tests))


# -- ports ---------------------------------------------------------------------------------------------
class DecisionLog(Protocol):
    """Decisions, chained by hash. A batch is stored whole or not at all. A (caller, idempotency key) stored
    before - or earlier in the same batch - is not stored again: its ``Saved`` comes back with ``existing``.
    A decision that escalates opens its escalation, and its effects enter the outbox, in the same write; one
    that ``resolves`` an escalation no longer open raises ``Conflict`` (and the batch is not stored)."""

    def save(self, record: DecisionRecord, caller: str = "", idempotency_key: str | None = None,
             private: Mapping[str, Collection[str]] | None = None) -> Saved:
        """``private``: the record's version's pii fields by fact type, which search never indexes."""
        ...

    def save_batch(self, items: Sequence[Pending]) -> list[Saved]: ...

    def get(self, decision_id: str) -> DecisionRecord | None: ...

    def get_many(self, ids: Sequence[str]) -> list[DecisionRecord | None]:
        """In the order asked, None where there is none."""
        ...

    def find(self, caller: str, idempotency_key: str) -> DecisionRecord | None: ...

    def find_many(self, caller: str, keys: Sequence[str]) -> dict[str, DecisionRecord]: ...

    def list_decisions(self, ruleset: str | None = None, outcome: str | None = None, since: float | None = None,
                       until: float | None = None, limit: int = 50, before: tuple[float, str] | None = None,
                       version: str | None = None, text: str | None = None) -> list[dict[str, Any]]:
        """Newest first (created_at, then id, descending); ``before`` = (created_at, id) of the previous page's
        last row; ``version`` a hash prefix; ``text`` a phrase of words among the decision's fact values."""
        ...

    def recent_ids(self, ruleset: str, limit: int | None = None, since: float | None = None) -> list[str]: ...

    def count(self) -> int: ...

    def verify_one(self, decision_id: str) -> str | None:
        """None when the decision's place in the chain checks out; else what is wrong ("not stored")."""
        ...

    def verify(self, chunk: int = 500, progress: Callable[[int, int], None] | None = None,
               verified: Callable[[str], None] | None = None) -> tuple[int, Problem | None]: ...

    def record_chain_check(self, by: str, started: float, finished: float, checked: int,
                           problem: Problem | None) -> dict[str, Any]: ...

    def chain_checks(self, limit: int = 20) -> list[dict[str, Any]]:
        """Newest first."""
        ...


class Governance(Protocol):
    """Ruleset versions by content hash, their publications and shadows. The rules (four eyes, notes) are the
    registry's; the port keeps the rows, each write compare-and-set where two replicas may race."""

    def save_ruleset(self, rs: Ruleset) -> None: ...

    def ruleset_source(self, version: str) -> tuple[str, str] | None:
        """(name, source)."""
        ...

    def versions_starting(self, prefix: str, limit: int = 2) -> list[str]: ...

    def version_rows(self, version: str | None = None) -> list[tuple[Any, ...]]:
        """(name, version, loaded_at, published_at, published_by, description, rules, tests), by name then age."""
        ...

    def save_summary(self, version: str, description: str, rules: int, tests: int) -> None: ...

    def publish_reviewed(self, rs: Ruleset | VersionSource, by: str, pub_id: str, now: float) -> None: ...

    def submit_publication(self, rs: Ruleset | VersionSource, by: str, note: str, effective_from: float | None,
                           pub_id: str, now: float) -> str:
        """The id of the pending publication of the version (an earlier pending one's, if any)."""
        ...

    def decide_publication(self, pub_id: str, decide: Callable[[Publication | None], dict[str, Any]]) -> bool:
        """False when another request decided it first."""
        ...

    def published_schedule(self) -> list[tuple[str, float, float, str]]: ...

    def publication(self, pub_id: str) -> Publication | None: ...

    def publications(self, name: str = "", status: str = "", version: str = "") -> list[Publication]:
        """Newest first."""
        ...

    def attach_shadow(self, rs: Ruleset | VersionSource, by: str, shadow_id: str, now: float) -> ShadowInfo: ...

    def detach_shadow(self, version: str, now: float) -> bool: ...

    def attached_shadows(self) -> list[ShadowInfo]: ...

    def save_shadow_result(self, row: dict[str, Any]) -> None: ...

    def shadow_results(self, version: str, since: float | None = None) -> list[tuple[Any, ...]]: ...


class Documents(Protocol):
    """Documents decisions read, kept once by content hash when the decision is stored."""

    def documents(self, ids: Sequence[str]) -> list[Document]: ...

    def documents_of(self, record: DecisionRecord) -> list[Document]: ...

    def document_content(self, doc_id: str) -> tuple[str, str, bytes] | None:
        """(name, media type, bytes)."""
        ...


class Escalations(Protocol):
    """Escalations (opened by the decision that escalates, closed by the one that resumes it: DecisionLog)
    and their notes."""

    def escalations(self, queue: str | None = None, status: str | None = "open", limit: int = 100,
                    due_before: float | None = None) -> list[dict[str, Any]]:
        """Oldest first."""
        ...

    def escalation(self, escalation_id: str) -> dict[str, Any] | None: ...

    def escalation_note(self, escalation_id: str, by: str, kind: str, text: str, now: float,
                        assign: str | None = None, close_as: str | None = None) -> bool:
        """False (nothing written) when ``close_as`` finds it no longer open."""
        ...

    def escalation_notes(self, escalation_id: str) -> list[dict[str, Any]]: ...

    def open_escalations_by_queue(self) -> list[tuple[str, int]]: ...


class Outbox(Protocol):
    """Effects decisions asked for, written with the decision and sent (at least once) by adapters/infra/effects.py."""

    def claim_effects(self, now: float, lease_s: float, limit: int = 32,
                      names: Collection[str] | None = None) -> list[dict[str, Any]]:
        """Due effects (or ones whose lease ran out), taken by compare-and-set, the earliest due first."""
        ...

    def effect_done(self, effect_id: str, attempts: int, now: float) -> None: ...

    def effect_failed(self, effect_id: str, attempts: int, error: str, next_at: float | None,
                      now: float | None = None) -> None: ...

    def effects(self, status: str | None = None, limit: int = 200, decision_id: str | None = None
                ) -> list[dict[str, Any]]: ...

    def effect(self, effect_id: str) -> dict[str, Any] | None: ...

    def retry_effects(self, ids: list[str] | None, now: float, by: str = "") -> int: ...

    def effects_by_status(self, statuses: Collection[str] = ("pending", "sending", "dead")
                          ) -> list[tuple[str, int]]: ...


class Store(DecisionLog, Governance, Documents, Escalations, Outbox, Protocol):
    """Every port, as one store serves them all."""

    def close(self) -> None: ...


__all__ = ["PENDING", "PUBLISHED", "REJECTED", "Conflict", "DecisionLog", "Documents", "Escalations",
           "Governance", "IncomingDocument", "Outbox", "Pending", "PrivateFields", "Problem", "Publication",
           "Resolution", "Saved", "ShadowInfo", "Store", "VersionInfo", "VersionSource", "call_row"]
