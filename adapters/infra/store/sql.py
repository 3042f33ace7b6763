"""The decision store on SQLModel/SQLAlchemy: SQLite (embedded default, WAL) or PostgreSQL (by URL).

A decision, its trace and its call records are written in one transaction, chained by hash to the
decision before it. Writers lock the one ``chain_head`` row, so several processes on one PostgreSQL
database keep a single valid chain. ``save_batch`` writes many decisions in one transaction (the
group-commit writer in writer.py feeds it); each is whole or absent.

The store is split by area, one module each over a common base (base.py): decisions and the chain
(decisions.py), governance - ruleset versions, publications, shadows (governance.py), documents and
retrieval corpora (documents.py), escalations and the effects outbox (escalations.py). ``SqlStore`` joins
them; nothing outside ``adapters/infra/store/`` touches the database (an import-linter contract)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from adapters.infra.store.base import (
    CALLS,
    CORPORA,
    DECISIONS,
    DOCUMENTS,
    ESCALATIONS,
    MIGRATIONS,
    OUTBOX,
    PASSAGES,
    PUBLICATIONS,
    RULESETS,
    SHADOW_RESULTS,
    SHADOWS,
    default_db_path,
    resolve_url,
    unavailable,
)
from adapters.infra.store.console import ConsoleArea
from adapters.infra.store.decisions import DecisionsArea
from adapters.infra.store.documents import DocumentsArea
from adapters.infra.store.escalations import EscalationsArea
from adapters.infra.store.governance import GovernanceArea, store_version
from adapters.ports import Conflict, Pending, Problem, Resolution, Saved, Store, call_row

__all__ = ["CALLS", "CORPORA", "DECISIONS", "DOCUMENTS", "ESCALATIONS", "MIGRATIONS", "OUTBOX", "PASSAGES",
           "PUBLICATIONS", "RULESETS", "SHADOWS", "SHADOW_RESULTS", "Conflict", "Pending", "Problem", "Resolution",
           "Saved", "SqlStore", "call_row", "default_db_path", "resolve_url", "store_version", "unavailable"]


class SqlStore(DecisionsArea, GovernanceArea, DocumentsArea, EscalationsArea, ConsoleArea):
    """The whole store: every area over one set of connections."""


if TYPE_CHECKING:  # mypy holds SqlStore to every port of adapters/ports.py
    _serves_every_port: Store = cast(SqlStore, None)
