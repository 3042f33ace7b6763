"""The decisions area of the store: writing decisions in groups, chained by hash and added to the Merkle tree
over the chain (tree.py reads it), with the escalations, effects and documents they open in the same
transaction. Reading them back, listing, operations figures and verifying the chain: decision_reads.py."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Collection, Mapping, Sequence
from itertools import chain
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from adapters.infra.store.base import (
    DECISIONS,
    DOCUMENTS,
    ESCALATIONS,
    MERKLE,
    OUTBOX,
    SQLITE_MAX_PARAMS,
    TREE_KEEP_FROM,
    _FileLock,
)
from adapters.infra.store.decision_reads import KEYS_PER_QUERY, DecisionReads
from adapters.ports import Conflict, IncomingDocument, Pending, Problem, Resolution, Saved, call_row
from engine.audit import canonical, chain_hash_of, tree_leaf
from engine.merkle import Frontier
from engine.record import DecisionRecord

# the values live in adapters/ports.py now; imported from here as before
__all__ = ["Conflict", "DecisionsArea", "Pending", "Problem", "Resolution", "Saved", "call_row"]



class DecisionsArea(DecisionReads):
    # -- writing -----------------------------------------------------------------------------------
    def save(self, record: DecisionRecord, caller: str = "", idempotency_key: str | None = None,
             private: Mapping[str, Collection[str]] | None = None) -> Saved:
        """One decision, committed; ``private``: its version's pii fields by fact type, left out of search."""
        return self.save_batch([Pending(record, caller, idempotency_key, private=private)])[0]

    def save_batch(self, items: Sequence[Pending]) -> list[Saved]:
        """Write decisions in one transaction: all of them, or (on error) none."""
        if self.lock is not None:
            # SQLite's own busy handler polls with sleeps, and one busy writer process starved the others
            # (measured: a second worker stalled in BEGIN IMMEDIATE). A blocking file lock queues the
            # writers of every process in the kernel instead.
            with self.lock, _FileLock(self.lock_path):
                if self._write_conn is None:
                    self._write_conn = self.writer.connect()
                try:
                    with self._write_conn.begin():
                        return self._save_batch(self._write_conn, items)
                except BaseException:
                    # whatever went wrong, the next batch starts on a fresh connection
                    self._write_conn.close()
                    self._write_conn = None
                    raise
        with self.writer.begin() as conn:
            return self._save_batch(conn, items)

    def _save_batch(self, conn: Connection, items: Sequence[Pending]) -> list[Saved]:
        """The batch inside the caller's transaction, chain head locked (SQLite: BEGIN IMMEDIATE).
        The statements every batch runs go straight to the driver's cursor: SQLAlchemy's own work per
        statement was most of a one-decision batch's fixed cost. Driver errors still come out as
        SQLAlchemy's (IntegrityError, ...), without parameters: they hold the decision's facts."""
        dbapi = conn.dialect.loaded_dbapi
        try:
            with contextlib.closing(conn.connection.cursor()) as cur:
                return self._write_batch(conn, cur, items)
        except dbapi.Error as e:
            raise sa.exc.DBAPIError.instance(None, None, e, dbapi.Error, hide_parameters=True,
                                             dialect=conn.dialect) from e

    def _write_batch(self, conn: Connection, cur: Any, items: Sequence[Pending]) -> list[Saved]:
        """Chain every new decision of the batch in order (hash, tree leaf, rows), then insert all the rows at
        once and move the chain head. The loop runs per decision with the chain head locked: it stays whole,
        with no helper call for an ordinary decision."""
        seq, prev, frontier, nodes = self._locked_head(cur)
        out: list[Saved] = []
        decisions: list[tuple[Any, ...]] = []
        calls: list[tuple[Any, ...]] = []
        escalations: list[dict[str, Any]] = []
        outbox: list[dict[str, Any]] = []
        documents: dict[str, IncomingDocument] = {}
        search: list[tuple[str, str]] = []
        keys_in_batch = self._stored_keys(cur, items)  # decisions already stored under the batch's keys
        for item in items:
            key = item.idempotency_key
            if key and (item.caller, key) in keys_in_batch:
                out.append(_existing(keys_in_batch[(item.caller, key)]))
                continue
            if item.resolves is not None:
                _resolve(conn, item.resolves, item.record)
            seq += 1
            record = item.record
            decision_id = record["decision_id"]
            escalation = record.get("escalation") or {}
            if record["outcome"] == "escalated" and escalation:
                sla = escalation.get("sla_s")
                escalations.append({
                    "id": decision_id, "ruleset": record["ruleset"], "version": record["version"],
                    "queue": str(escalation.get("queue", "")), "reason": str(escalation.get("reason", "")),
                    "expects": str(escalation.get("expects", "")), "created_at": record["started_at"],
                    "sla_at": record["started_at"] + sla if isinstance(sla, (int, float)) else None,
                    "status": "open"})
            digest = chain_hash_of(prev, seq, item.body)
            for node in frontier.append(tree_leaf(digest)):
                if node[0] >= TREE_KEEP_FROM:
                    nodes.append((node[0], node[1], node[2].hex()))
            decisions.append((decision_id, seq, record["ruleset"], record["version"], record["outcome"],
                              record["rule"], item.caller, key, record["started_at"], record["latency_ms"],
                              record["cost_usd"], record["tokens"], item.head_json, prev, digest, item.trace_text))
            calls.extend(item.calls)
            search.append((decision_id, item.search_text))
            documents.update((i.document.id, i) for i in item.documents)
            outbox.extend({"id": f"{decision_id}:{e['n']}", "decision_id": decision_id, "name": e["name"],
                           "payload": canonical(e["with"]), "status": "pending", "attempts": 0,
                           "next_at": record["finished_at"], "created_at": record["finished_at"]}
                          for e in record["trace"] if e["kind"] == "effect" and not e.get("cancelled"))
            saved = Saved(record["decision_id"], seq, digest)
            if key:
                keys_in_batch[(item.caller, key)] = saved
            out.append(saved)
            prev = digest
        if decisions:
            self._insert_batch(conn, cur, decisions, calls, search, escalations, outbox, documents, nodes, items[-1])
            cur.execute(self.move_head_sql, (seq, prev, frontier.size, frontier.to_hex()))
        return out

    def _locked_head(self, cur: Any) -> tuple[int, str, Frontier, list[tuple[Any, ...]]]:
        """The chain head, locked until the transaction ends: the last position and hash, the tree's frontier
        to extend and the subtrees to store with this batch."""
        cur.execute(self.head_sql)
        head = cur.fetchone()
        if head is None:
            raise RuntimeError("the chain head row is missing (the store was not migrated)")
        seq, prev = int(head[0]), str(head[1])
        frontier, nodes = self._tree_at(cur, seq, int(head[2]), str(head[3]))
        return seq, prev, frontier, nodes

    def _insert_batch(self, conn: Connection, cur: Any, decisions: list[tuple[Any, ...]],
                      calls: list[tuple[Any, ...]], search: list[tuple[str, str]], escalations: list[dict[str, Any]],
                      outbox: list[dict[str, Any]], documents: dict[str, IncomingDocument],
                      nodes: list[tuple[Any, ...]], last: Pending) -> None:
        """The batch's rows, each table in one go; a document is stored once, by content hash (dated by the
        batch's ``last`` decision)."""
        self._insert_rows(cur, "decisions", decisions)
        self._insert_rows(cur, "calls", calls)
        self._insert_rows(cur, "decision_search", search)
        if escalations:
            self._insert_dicts(cur, ESCALATIONS.name, escalations)
        if outbox:
            self._insert_dicts(cur, OUTBOX.name, outbox)
        if documents:  # stored once by content hash; the chain head lock serialises writers
            known = set(conn.execute(sa.select(DOCUMENTS.c.id).where(
                DOCUMENTS.c.id.in_(list(documents)))).scalars())
            new = [i for d, i in documents.items() if d not in known]
            if new:
                conn.execute(DOCUMENTS.insert(), [
                    {"id": i.document.id, "name": i.document.name, "media_type": i.document.media_type,
                     "size": len(i.content), "pages": json.dumps(list(i.document.pages)),
                     "content": i.content, "created_at": last.record["finished_at"]} for i in new])
        if nodes:
            self._insert_rows(cur, MERKLE.name, nodes)

    def _stored_keys(self, cur: Any, items: Sequence[Pending]) -> dict[tuple[str, str], Saved]:
        """The decisions already stored under the items' (caller, idempotency key)s: one query per caller
        (of at most KEYS_PER_QUERY keys) for the whole batch, not one per keyed decision - a DecideBatch's
        derived keys made a hundred queries while the chain head was locked."""
        by_caller: dict[str, list[str]] = {}
        for item in items:
            if item.idempotency_key:
                by_caller.setdefault(item.caller, []).append(item.idempotency_key)
        found: dict[tuple[str, str], Saved] = {}
        mark = "?" if self.sqlite else "%s"
        for caller, keys in by_caller.items():
            unique = list(dict.fromkeys(keys))
            for start in range(0, len(unique), KEYS_PER_QUERY):
                chunk = unique[start:start + KEYS_PER_QUERY]
                cur.execute(f"SELECT idempotency_key, id, chain_seq, hash FROM {DECISIONS.name} WHERE caller = "
                            f"{mark} AND idempotency_key IN ({', '.join(mark for _ in chunk)})", (caller, *chunk))
                for key, decision_id, seq, digest in cur.fetchall():
                    found[(caller, key)] = Saved(decision_id, int(seq), digest)
        return found

    def _tree_at(self, cur: Any, seq: int, tree_size: int, stored: str) -> tuple[Frontier, list[tuple[Any, ...]]]:
        """The tree's frontier to extend, from the chain head row, and the subtrees to store with this batch.
        When decisions were written without the tree (a process of an earlier version still running after the
        upgrade), the tree first takes in those decisions, in chain order."""
        frontier = Frontier.from_hex(tree_size, stored)
        nodes: list[tuple[Any, ...]] = []
        if tree_size < seq:
            mark = "?" if self.sqlite else "%s"
            cur.execute(f"SELECT hash FROM {DECISIONS.name} WHERE chain_seq > {mark} ORDER BY chain_seq",
                        (tree_size,))
            for (digest,) in cur.fetchall():
                nodes.extend((level, idx, h.hex()) for level, idx, h in frontier.append(tree_leaf(digest))
                             if level >= TREE_KEEP_FROM)
            if frontier.size != seq:
                raise RuntimeError(f"the chain head says {seq} decisions, the table has {frontier.size}")
        return frontier, nodes

    def _insert_rows(self, cur: Any, table: str, rows: list[tuple[Any, ...]]) -> None:
        """Insert tuples in the table's column order. PostgreSQL: one driver-level executemany (psycopg
        pipelines it; SQLAlchemy's per-row parameter work was a third of the write time). SQLite: multi-row
        VALUES statements, because the sqlite3 module releases and retakes the GIL around every statement
        step - one step per row made the writer thread queue for the GIL behind the event loop hundreds of
        times per batch (a batch's wall time was a multiple of its CPU time; bench/grpc_load.py)."""
        if not rows:
            return
        sql = self.insert_sql[table]
        if not self.sqlite:
            if table not in self.copy_sql:
                cur.executemany(sql, rows)
                return
            with cur.copy(self.copy_sql[table]) as copy:
                for row in rows:
                    copy.write_row(row)
            return
        _multi_row(cur, sql, rows)

    def _insert_dicts(self, cur: Any, table: str, rows: list[dict[str, Any]]) -> None:
        """Insert rows that all name the same columns (the rest take NULL) straight through the driver, as
        ``_insert_rows`` does: through SQLAlchemy, the escalations of a batch cost a twentieth of the writer's
        time in bench/store.py."""
        columns = tuple(rows[0])
        mark = "?" if self.sqlite else "%s"
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(mark for _ in columns)})"
        values = [tuple(row[c] for c in columns) for row in rows]
        if self.sqlite:
            _multi_row(cur, sql, values)
        else:
            cur.executemany(sql, values)


def _resolve(conn: Connection, r: Resolution, record: DecisionRecord) -> None:
    """Close the escalation a resuming decision answers, in the decision's transaction; Conflict when someone
    else closed it first."""
    done = conn.execute(ESCALATIONS.update().where(
        ESCALATIONS.c.id == r.escalation_id, ESCALATIONS.c.status == "open").values(
        status=r.status, resolved_by=r.by, resolved_at=record["started_at"], answer=r.answer,
        resumed_decision_id=record["decision_id"]))
    if done.rowcount != 1:
        raise Conflict(f"escalation {r.escalation_id} is no longer open")


def _existing(saved: Saved) -> Saved:
    return Saved(saved.decision_id, saved.chain_seq, saved.hash, existing=True)


def _multi_row(cur: Any, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """SQLite: ``sql`` (one row's INSERT) run as multi-row VALUES statements, as many rows to a statement as
    the parameter limit allows."""
    head, _, one = sql.partition(" VALUES ")
    per = max(1, SQLITE_MAX_PARAMS // len(rows[0]))
    for start in range(0, len(rows), per):
        chunk = rows[start:start + per]
        cur.execute(f"{head} VALUES {','.join([one] * len(chunk))}", tuple(chain.from_iterable(chunk)))
