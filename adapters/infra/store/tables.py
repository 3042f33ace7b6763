"""The store's tables (SQLModel). JSON is kept as text we write ourselves, so it reads back exactly
on SQLite and PostgreSQL alike (the hash chain is computed over it)."""

from __future__ import annotations

from sqlalchemy import Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class RulesetVersion(SQLModel, table=True):
    __tablename__ = "ruleset_versions"

    version: str = Field(primary_key=True, max_length=64)  # sha-256 of the canonical content
    name: str = Field(index=True, max_length=100)
    source: str = Field(sa_column=Column(Text, nullable=False))
    loaded_at: float
    published_at: float | None = None
    published_by: str | None = Field(default=None, max_length=200)
    # what a listing shows, stored with the version (None: stored before revision 0007, filled when listed)
    description: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    rules: int | None = None
    tests: int | None = None


class PublicationRow(SQLModel, table=True):
    """One request to make a ruleset version live: submitted by an editor, approved or rejected by another
    person (four eyes), effective from a given time. The history regulators ask for."""

    __tablename__ = "publications"
    __table_args__ = (Index("ix_publications_ruleset_status", "ruleset", "status", "effective_from"),)

    id: str = Field(primary_key=True, max_length=40)
    ruleset: str = Field(max_length=100)
    version: str = Field(max_length=64, index=True)
    status: str = Field(max_length=20)  # pending | published | rejected
    submitted_by: str = Field(max_length=200)
    submitted_at: float
    note: str = Field(default="", sa_column=Column(Text, nullable=False))
    requested_from: float | None = None  # the effective date the editor asked for
    effective_from: float | None = None  # set on approval: the later of the request and the approval
    decided_by: str | None = Field(default=None, max_length=200)
    decided_at: float | None = None
    decision_note: str = Field(default="", sa_column=Column(Text, nullable=False))


class ShadowRow(SQLModel, table=True):
    """A candidate version attached in shadow mode to a live ruleset."""

    __tablename__ = "shadows"

    id: str = Field(primary_key=True, max_length=40)
    ruleset: str = Field(max_length=100, index=True)
    version: str = Field(max_length=64)
    attached_by: str = Field(max_length=200)
    attached_at: float
    detached_at: float | None = None


class ShadowResultRow(SQLModel, table=True):
    """A live decision evaluated again against a shadow version: recorded answers only, never effects."""

    __tablename__ = "shadow_results"
    __table_args__ = (Index("ix_shadow_results_version_created", "shadow_version", "created_at"),)

    decision_id: str = Field(primary_key=True, max_length=40)
    shadow_version: str = Field(primary_key=True, max_length=64)
    ruleset: str = Field(max_length=100)
    live_version: str = Field(max_length=64)
    live_outcome: str = Field(max_length=20)
    shadow_outcome: str = Field(max_length=20)
    changed: bool
    unanswered: int = 0
    detail: str = Field(sa_column=Column(Text, nullable=False))  # JSON: both decisions and the first divergence
    created_at: float


class DocumentRow(SQLModel, table=True):
    """A document sent with a decision, stored once by the SHA-256 of its bytes: the original bytes and
    the text read from it (what extraction and replay use, whatever a later PDF library would read)."""

    __tablename__ = "documents"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=300)
    media_type: str = Field(max_length=100)
    size: int
    pages: str = Field(sa_column=Column(Text, nullable=False))  # JSON list of each page's text
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: float


class CorpusRow(SQLModel, table=True):
    """One indexing of a folder of policy documents. Re-indexing makes a new version; old ones stay."""

    __tablename__ = "corpora"

    name: str = Field(primary_key=True, max_length=100)
    version: int = Field(primary_key=True)
    status: str = Field(max_length=20)  # building | ready
    documents: int = 0
    passages: int = 0
    source: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_at: float


class PassageRow(SQLModel, table=True):
    """A passage (a section or part of one) of a corpus version; full-text indexed (FTS5 / tsvector)."""

    __tablename__ = "passages"
    __table_args__ = (Index("ix_passages_corpus_version", "corpus", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    corpus: str = Field(max_length=100)
    version: int
    document: str = Field(max_length=500)
    section: str = Field(default="", max_length=500)
    position: int
    content: str = Field(sa_column=Column(Text, nullable=False))
    content_hash: str = Field(max_length=64)


class DecisionRow(SQLModel, table=True):
    __tablename__ = "decisions"
    __table_args__ = (
        UniqueConstraint("caller", "idempotency_key", name="uq_decisions_idempotency"),
        Index("ix_decisions_ruleset_created", "ruleset", "created_at"),
        Index("ix_decisions_created", "created_at"),
    )

    id: str = Field(primary_key=True, max_length=40)
    chain_seq: int = Field(unique=True)
    ruleset: str = Field(max_length=100)
    version: str = Field(max_length=64, index=True)
    outcome: str = Field(max_length=20, index=True)
    rule: str = Field(default="", max_length=200)
    caller: str = Field(default="", max_length=200)
    idempotency_key: str | None = Field(default=None, max_length=200)
    created_at: float
    latency_ms: float = 0.0
    cost_usd: float = 0.0
    tokens: int = 0
    head: str = Field(sa_column=Column(Text, nullable=False))  # canonical JSON of the record minus its trace
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
    # the trace events' canonical JSON, newline-separated (revision 0009); NULL: stored before, in trace_events
    trace: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class TraceRow(SQLModel, table=True):
    __tablename__ = "trace_events"

    decision_id: str = Field(primary_key=True, max_length=40, foreign_key="decisions.id")
    idx: int = Field(primary_key=True)
    kind: str = Field(max_length=20)
    event: str = Field(sa_column=Column(Text, nullable=False))


class CallRow(SQLModel, table=True):
    __tablename__ = "calls"

    decision_id: str = Field(primary_key=True, max_length=40, foreign_key="decisions.id")
    call_no: int = Field(primary_key=True)
    action: str = Field(max_length=100)
    kind: str = Field(max_length=10)
    status: str = Field(max_length=20)
    model: str = Field(default="", max_length=200)
    tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    attempts: int = 0
    request: str = Field(sa_column=Column(Text, nullable=False))
    answer: str = Field(sa_column=Column(Text, nullable=False))


class ChainHead(SQLModel, table=True):
    """One row: the last decision in the chain. Writers lock it, so concurrent writers keep one chain."""

    __tablename__ = "chain_head"

    id: int = Field(primary_key=True)
    seq: int
    hash: str = Field(max_length=64)
    # the Merkle tree over the chain hashes (revision 0012): its size (equal to seq once written) and its
    # frontier, the hex roots of its complete subtrees, largest first (engine.merkle.Frontier)
    tree_size: int = 0
    frontier: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    log_id: str | None = Field(default=None, max_length=64)  # names this log in its signed checkpoints


class MerkleNodeRow(SQLModel, table=True):
    """A complete subtree of the Merkle tree over the chain hashes, from level ``TREE_KEEP_FROM`` up (the
    subtrees below are hashed from the decisions' own chain hashes when a proof needs them)."""

    __tablename__ = "merkle_nodes"

    level: int = Field(primary_key=True)
    idx: int = Field(primary_key=True)
    hash: str = Field(max_length=64)


class CheckpointRow(SQLModel, table=True):
    """A signed checkpoint of the log (adapters/infra/checkpoints.py), kept here too so that proofs and the console
    find the latest: signed, so an edit here only makes it fail to verify; the witnesses keep the originals."""

    __tablename__ = "checkpoints"

    id: str = Field(primary_key=True, max_length=120)
    size: int = Field(index=True)
    signed_at: str = Field(max_length=40)
    checkpoint: str = Field(sa_column=Column(Text, nullable=False))  # its JSON


class EscalationRow(SQLModel, table=True):
    """A decision waiting for a person. Resolved (or expired) at most once, by compare-and-set."""

    __tablename__ = "escalations"
    __table_args__ = (Index("ix_escalations_status_queue", "status", "queue"),
                      Index("ix_escalations_status_sla", "status", "sla_at"))

    id: str = Field(primary_key=True, max_length=40)  # the escalated decision's id
    ruleset: str = Field(max_length=100)
    version: str = Field(max_length=64)
    queue: str = Field(max_length=200)
    reason: str = Field(default="", sa_column=Column(Text, nullable=False))
    expects: str = Field(default="", max_length=100)
    created_at: float
    sla_at: float | None = None
    status: str = Field(default="open", max_length=20)  # open | resolved | expired
    resolved_by: str | None = Field(default=None, max_length=200)
    resolved_at: float | None = None
    answer: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    resumed_decision_id: str | None = Field(default=None, max_length=40)
    assigned_to: str | None = Field(default=None, max_length=200)


class OutboxRow(SQLModel, table=True):
    """An effect of a stored decision, written in the decision's transaction and delivered after it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_next", "status", "next_at"),
                      Index("ix_outbox_status_name_next", "status", "name", "next_at"))

    id: str = Field(primary_key=True, max_length=60)  # decision id ":" effect number: the idempotency key
    decision_id: str = Field(max_length=40, index=True)
    name: str = Field(max_length=100)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="pending", max_length=20)  # pending | sending | done | dead
    attempts: int = 0
    next_at: float
    lease_until: float | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: float
    done_at: float | None = None
    retried_by: str | None = Field(default=None, max_length=200)  # who last put it back in the queue
    retried_at: float | None = None
    failing_since: float | None = None  # the first failure since it was written or retried: give-up window


class EscalationNoteRow(SQLModel, table=True):
    """What people said on an escalation: comments, assignments, a close or decline with its reason."""

    __tablename__ = "escalation_notes"

    id: str = Field(primary_key=True, max_length=40)
    escalation_id: str = Field(max_length=40, index=True)
    by: str = Field(max_length=200)
    at: float
    kind: str = Field(max_length=20)  # comment | assigned | closed | declined
    text: str = Field(sa_column=Column(Text, nullable=False))


class ChainCheckRow(SQLModel, table=True):
    """One whole-log verification: who ran it, when, how far it got and what it found."""

    __tablename__ = "chain_checks"

    id: str = Field(primary_key=True, max_length=40)
    by: str = Field(max_length=200)
    started_at: float = Field(index=True)
    finished_at: float
    checked: int
    broken_seq: int | None = None
    broken_id: str | None = Field(default=None, max_length=40)
    problem: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
