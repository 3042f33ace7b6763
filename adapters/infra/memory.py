"""The store's ports (adapters/ports.py) served from dicts under one lock: for tests of the use cases and
doors without a database. What it promises is what the ports promise, and tests/adapters/test_store_ports.py
holds it, SQLite and PostgreSQL to the same suite: a batch stored whole or not at all, idempotency by
(caller, key), the same hash chain (the same records get the same chain hashes as in SqlStore), newest-first
keyset paging, escalations opened and closed with the decisions, the outbox's compare-and-set claims.

Records are kept as the canonical JSON SqlStore keeps, and parsed on every read: a caller that changes a
record it got back changes nothing stored. Not modelled: what only a database does (connections, migrations,
other processes), and the methods the ports leave out (adapters/ports.py says which)."""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import orjson

from adapters.infra.system import TimeOrderedIds
from adapters.ports import (
    PENDING,
    PUBLISHED,
    Conflict,
    Pending,
    Problem,
    Publication,
    Saved,
    ShadowInfo,
    Store,
    VersionSource,
)
from engine.audit import GENESIS, canonical, chain_hash, chain_hash_of
from engine.documents import Document
from engine.model import Ruleset
from engine.record import DecisionRecord

_IDS = TimeOrderedIds()
_WORD = re.compile(r"\w+")


@dataclass(slots=True)
class _Decision:
    """A stored decision: the columns SqlStore lists and searches by, and the hashed text."""

    id: str
    seq: int
    ruleset: str
    version: str
    outcome: str
    rule: str | None
    caller: str
    idempotency_key: str | None
    created_at: float
    latency_ms: float
    cost_usd: float
    tokens: int
    head: str
    prev_hash: str
    hash: str
    trace: str
    words: tuple[str, ...]  # the search text's words, lower case

    def listed(self) -> dict[str, Any]:
        return {"id": self.id, "ruleset": self.ruleset, "version": self.version, "outcome": self.outcome,
                "rule": self.rule, "created_at": self.created_at, "latency_ms": self.latency_ms,
                "cost_usd": self.cost_usd, "tokens": self.tokens, "caller": self.caller}

    def record(self) -> DecisionRecord:
        record: DecisionRecord = orjson.loads(self.head)
        record["trace"] = orjson.loads("[" + self.trace.replace("\n", ",") + "]")
        return record


class MemoryStore:
    def __init__(self) -> None:
        self._lock = threading.RLock()  # decide_publication's callback may read the store
        self._decisions: dict[str, _Decision] = {}
        self._chain: list[_Decision] = []  # in chain order: position n is _chain[n - 1]
        self._keys: dict[tuple[str, str], _Decision] = {}
        self._escalations: dict[str, dict[str, Any]] = {}
        self._notes: list[dict[str, Any]] = []
        self._outbox: dict[str, dict[str, Any]] = {}
        self._documents: dict[str, tuple[Document, bytes]] = {}
        self._checks: list[dict[str, Any]] = []
        self._rulesets: dict[str, dict[str, Any]] = {}
        self._publications: dict[str, Publication] = {}
        self._shadows: list[tuple[ShadowInfo, float | None]] = []  # (attachment, detached_at)
        self._shadow_results: dict[tuple[str, str], dict[str, Any]] = {}

    def close(self) -> None:
        """Nothing to release."""

    # -- the decision log ------------------------------------------------------------------------------
    def save(self, record: DecisionRecord, caller: str = "", idempotency_key: str | None = None,
             private: Mapping[str, Collection[str]] | None = None) -> Saved:
        return self.save_batch([Pending(record, caller, idempotency_key, private=private)])[0]

    def save_batch(self, items: Sequence[Pending]) -> list[Saved]:
        """As SqlStore writes a batch: everything is worked out first and applied at the end, so a batch that
        raises leaves the store as it was (a rolled-back transaction)."""
        with self._lock:
            seq, prev = len(self._chain), self._chain[-1].hash if self._chain else GENESIS
            out: list[Saved] = []
            new: list[_Decision] = []
            keys: dict[tuple[str, str], Saved] = {}
            closing: dict[str, dict[str, Any]] = {}
            opened: list[dict[str, Any]] = []
            effects: list[dict[str, Any]] = []
            documents: dict[str, tuple[Document, bytes]] = {}
            for item in items:
                key = (item.caller, item.idempotency_key) if item.idempotency_key else None
                if key is not None and (key in keys or key in self._keys):
                    found = keys.get(key) or _saved(self._keys[key])
                    out.append(Saved(found.decision_id, found.chain_seq, found.hash, existing=True))
                    continue
                record = item.record
                decision_id = record["decision_id"]
                if decision_id in self._decisions or any(d.id == decision_id for d in new):
                    raise ValueError(f"decision {decision_id} is already stored")  # SqlStore: an IntegrityError
                if item.resolves is not None:
                    r = item.resolves
                    esc = self._escalations.get(r.escalation_id)
                    if esc is None or esc["status"] != "open" or r.escalation_id in closing:
                        raise Conflict(f"escalation {r.escalation_id} is no longer open")
                    closing[r.escalation_id] = {"status": r.status, "resolved_by": r.by, "answer": r.answer,
                                                "resolved_at": record["started_at"],
                                                "resumed_decision_id": decision_id}
                seq += 1
                digest = chain_hash_of(prev, seq, item.body)
                new.append(_Decision(
                    decision_id, seq, record["ruleset"], record["version"], record["outcome"], record["rule"],
                    item.caller, item.idempotency_key, record["started_at"], record["latency_ms"],
                    record["cost_usd"], record["tokens"], item.head_json, prev, digest, item.trace_text,
                    tuple(_WORD.findall(item.search_text.lower()))))
                opened.extend(_escalation_opened(record))
                effects.extend(_effects_of(record))
                documents.update((i.document.id, (i.document, i.content)) for i in item.documents)
                saved = Saved(decision_id, seq, digest)
                if key is not None:
                    keys[key] = saved
                out.append(saved)
                prev = digest
            for escalation_id, values in closing.items():
                self._escalations[escalation_id].update(values)
            for d in new:
                self._decisions[d.id] = d
                self._chain.append(d)
                if d.idempotency_key:
                    self._keys[(d.caller, d.idempotency_key)] = d
            self._escalations.update((e["id"], e) for e in opened)
            self._outbox.update((e["id"], e) for e in effects)
            for doc_id, doc in documents.items():
                self._documents.setdefault(doc_id, doc)
            return out

    def get(self, decision_id: str) -> DecisionRecord | None:
        return self.get_many([decision_id])[0]

    def get_many(self, ids: Sequence[str]) -> list[DecisionRecord | None]:
        with self._lock:
            found = [self._decisions.get(i) for i in ids]
        return [d.record() if d is not None else None for d in found]

    def find(self, caller: str, idempotency_key: str) -> DecisionRecord | None:
        with self._lock:
            found = self._keys.get((caller, idempotency_key))
        return found.record() if found is not None else None

    def find_many(self, caller: str, keys: Sequence[str]) -> dict[str, DecisionRecord]:
        with self._lock:
            found = {k: self._keys[(caller, k)] for k in keys if k and (caller, k) in self._keys}
        return {k: d.record() for k, d in found.items()}

    def list_decisions(self, ruleset: str | None = None, outcome: str | None = None, since: float | None = None,
                       until: float | None = None, limit: int = 50, before: tuple[float, str] | None = None,
                       version: str | None = None, text: str | None = None) -> list[dict[str, Any]]:
        prefix = version.replace("%", "").replace("_", "") if version else None
        words = tuple(_WORD.findall(text.lower()))[:16] if text else ()
        with self._lock:
            rows = [d for d in self._chain
                    if (not ruleset or d.ruleset == ruleset) and (not outcome or d.outcome == outcome)
                    and (since is None or d.created_at >= since) and (until is None or d.created_at < until)
                    and (before is None or (d.created_at, d.id) < before)
                    and (prefix is None or d.version.startswith(prefix)) and (not words or _phrase(words, d.words))]
        rows.sort(key=lambda d: (d.created_at, d.id), reverse=True)
        return [d.listed() for d in rows[:limit]]

    def recent_ids(self, ruleset: str, limit: int | None = None, since: float | None = None) -> list[str]:
        with self._lock:
            rows = [d for d in self._chain if d.ruleset == ruleset and (since is None or d.created_at >= since)]
        rows.sort(key=lambda d: (d.created_at, d.id), reverse=True)
        return [d.id for d in rows[:limit]]

    def count(self) -> int:
        with self._lock:
            return len(self._chain)

    def verify_one(self, decision_id: str) -> str | None:
        with self._lock:
            d = self._decisions.get(decision_id)
            if d is None:
                return "not stored"
            prev = GENESIS if d.seq == 1 else self._chain[d.seq - 2].hash
        return _problem(d, prev, d.seq) or None

    def verify(self, chunk: int = 500, progress: Callable[[int, int], None] | None = None,
               verified: Callable[[str], None] | None = None) -> tuple[int, Problem | None]:
        with self._lock:
            chain = list(self._chain)
        prev = GENESIS
        for checked, d in enumerate(chain):
            if progress is not None and checked % chunk == 0:
                progress(checked, len(chain))
            problem = _problem(d, prev, checked + 1)
            if problem:
                return checked, Problem(d.seq, d.id, problem)
            if verified is not None:
                verified(d.hash)
            prev = d.hash
        return len(chain), None

    def record_chain_check(self, by: str, started: float, finished: float, checked: int,
                           problem: Problem | None) -> dict[str, Any]:
        row = {"id": _IDS.new_id(), "by": by[:200], "started_at": started, "finished_at": finished,
               "checked": checked, "broken_seq": problem.chain_seq if problem else None,
               "broken_id": (problem.decision_id or None) if problem else None,
               "problem": problem.problem if problem else None}
        with self._lock:
            self._checks.append(row)
        return dict(row)

    def chain_checks(self, limit: int = 20) -> list[dict[str, Any]]:
        with self._lock:
            rows = sorted(self._checks, key=lambda r: r["started_at"], reverse=True)[:limit]
        return [dict(r) for r in rows]

    # -- documents -------------------------------------------------------------------------------------
    def documents(self, ids: Sequence[str]) -> list[Document]:
        with self._lock:
            return [self._documents[i][0] for i in dict.fromkeys(ids) if i in self._documents]

    def documents_of(self, record: DecisionRecord) -> list[Document]:
        return self.documents([str(ref["id"]) for ref in record.get("documents") or ()])

    def document_content(self, doc_id: str) -> tuple[str, str, bytes] | None:
        with self._lock:
            found = self._documents.get(doc_id)
        return (found[0].name, found[0].media_type, found[1]) if found is not None else None

    # -- escalations -----------------------------------------------------------------------------------
    def escalations(self, queue: str | None = None, status: str | None = "open", limit: int = 100,
                    due_before: float | None = None) -> list[dict[str, Any]]:
        with self._lock:
            rows = [dict(e) for e in self._escalations.values()
                    if (not queue or e["queue"] == queue) and (not status or e["status"] == status)
                    and (due_before is None or (e["sla_at"] is not None and e["sla_at"] < due_before))]
        return sorted(rows, key=lambda e: e["created_at"])[:limit]

    def escalation(self, escalation_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._escalations.get(escalation_id)
            return dict(found) if found is not None else None

    def escalation_note(self, escalation_id: str, by: str, kind: str, text: str, now: float,
                        assign: str | None = None, close_as: str | None = None) -> bool:
        with self._lock:
            esc = self._escalations.get(escalation_id)
            if close_as is not None:
                if esc is None or esc["status"] != "open":
                    return False
                esc.update(status=close_as, resolved_by=by, resolved_at=now)
            if assign is not None and esc is not None:
                esc["assigned_to"] = assign or None
            self._notes.append({"id": _IDS.new_id(), "escalation_id": escalation_id, "by": by[:200], "at": now,
                                "kind": kind, "text": text[:4000]})
        return True

    def escalation_notes(self, escalation_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = [dict(n) for n in self._notes if n["escalation_id"] == escalation_id]
        return sorted(rows, key=lambda n: (n["at"], n["id"]))

    def open_escalations_by_queue(self) -> list[tuple[str, int]]:
        counts: dict[str, int] = {}
        with self._lock:
            for e in self._escalations.values():
                if e["status"] == "open":
                    counts[e["queue"]] = counts.get(e["queue"], 0) + 1
        return list(counts.items())

    # -- the outbox ------------------------------------------------------------------------------------
    def claim_effects(self, now: float, lease_s: float, limit: int = 32,
                      names: Collection[str] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            due = [e for e in self._outbox.values() if (names is None or e["name"] in names) and (
                (e["status"] == "pending" and e["next_at"] <= now)
                or (e["status"] == "sending" and e["lease_until"] is not None and e["lease_until"] < now))]
            taken = sorted(due, key=lambda e: (e["next_at"], e["id"]))[:limit]
            for e in taken:
                e.update(status="sending", lease_until=now + lease_s, attempts=e["attempts"] + 1)
            return [dict(e) for e in taken]

    def effect_done(self, effect_id: str, attempts: int, now: float) -> None:
        with self._lock:
            e = self._outbox.get(effect_id)
            if e is not None and e["attempts"] == attempts:
                e.update(status="done", done_at=now, lease_until=None, last_error=None)

    def effect_failed(self, effect_id: str, attempts: int, error: str, next_at: float | None,
                      now: float | None = None) -> None:
        with self._lock:
            e = self._outbox.get(effect_id)
            if e is not None and e["attempts"] == attempts:
                e.update(status="dead" if next_at is None else "pending", next_at=next_at or 0.0, lease_until=None,
                         last_error=error[:2000],
                         failing_since=e["failing_since"] if e["failing_since"] is not None else now or time.time())

    def effects(self, status: str | None = None, limit: int = 200, decision_id: str | None = None
                ) -> list[dict[str, Any]]:
        with self._lock:
            rows = [dict(e) for e in self._outbox.values()
                    if (not status or e["status"] == status) and (not decision_id or e["decision_id"] == decision_id)]
        return sorted(rows, key=lambda e: (e["created_at"], e["id"]))[:limit]

    def effect(self, effect_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._outbox.get(effect_id)
            return dict(found) if found is not None else None

    def retry_effects(self, ids: list[str] | None, now: float, by: str = "") -> int:
        with self._lock:
            dead = [e for e in self._outbox.values() if e["status"] == "dead" and (ids is None or e["id"] in ids)]
            for e in dead:
                e.update(status="pending", next_at=now, attempts=0, retried_by=by or None, retried_at=now,
                         failing_since=None)
        return len(dead)

    def effects_by_status(self, statuses: Collection[str] = ("pending", "sending", "dead")
                          ) -> list[tuple[str, int]]:
        with self._lock:
            return [(s, sum(1 for e in self._outbox.values() if e["status"] == s)) for s in statuses]

    # -- governance: versions --------------------------------------------------------------------------
    def _store_version(self, rs: Ruleset | VersionSource, now: float | None = None) -> None:
        v = VersionSource.of(rs)
        self._rulesets.setdefault(v.version, {
            "name": v.name, "version": v.version, "source": v.source,
            "loaded_at": time.time() if now is None else now, "published_at": None, "published_by": None,
            "description": v.description, "rules": v.rules, "tests": v.tests})

    def _mark_published(self, version: str, now: float, by: str) -> None:
        row = self._rulesets.get(version)
        if row is not None and row["published_at"] is None:
            row.update(published_at=now, published_by=by)

    def save_ruleset(self, rs: Ruleset) -> None:
        with self._lock:
            self._store_version(rs)

    def ruleset_source(self, version: str) -> tuple[str, str] | None:
        with self._lock:
            row = self._rulesets.get(version)
        return (row["name"], row["source"]) if row is not None else None

    def versions_starting(self, prefix: str, limit: int = 2) -> list[str]:
        prefix = prefix.replace("%", "").replace("_", "")
        with self._lock:
            return [v for v in self._rulesets if v.startswith(prefix)][:limit]

    def version_rows(self, version: str | None = None) -> list[tuple[Any, ...]]:
        columns = ("name", "version", "loaded_at", "published_at", "published_by", "description", "rules", "tests")
        with self._lock:
            rows = [tuple(r[c] for c in columns) for r in self._rulesets.values()
                    if version is None or r["version"] == version]
        return sorted(rows, key=lambda r: (r[0], r[2]))

    def save_summary(self, version: str, description: str, rules: int, tests: int) -> None:
        with self._lock:
            row = self._rulesets.get(version)
            if row is not None and row["rules"] is None:
                row.update(description=description, rules=rules, tests=tests)

    # -- governance: publications ----------------------------------------------------------------------
    def publish_reviewed(self, rs: Ruleset | VersionSource, by: str, pub_id: str, now: float) -> None:
        with self._lock:
            self._store_version(rs, now)
            if any(p.version == rs.version and p.status == PUBLISHED for p in self._publications.values()):
                return
            self._publications[pub_id] = Publication(
                pub_id, rs.name, rs.version, PUBLISHED, by, now, "deployed from the rulesets directory", None, now,
                by, now, "reviewed in the repository")
            self._mark_published(rs.version, now, by)

    def submit_publication(self, rs: Ruleset | VersionSource, by: str, note: str, effective_from: float | None,
                           pub_id: str, now: float) -> str:
        with self._lock:
            self._store_version(rs, now)
            pending = next((p.id for p in self._publications.values()
                            if p.version == rs.version and p.status == PENDING), None)
            if pending is not None:
                return pending
            self._publications[pub_id] = Publication(pub_id, rs.name, rs.version, PENDING, by, now, note,
                                                     effective_from, None, None, None, "")
        return pub_id

    def decide_publication(self, pub_id: str, decide: Callable[[Publication | None], dict[str, Any]]) -> bool:
        with self._lock:
            found = self._publications.get(pub_id)
            values = decide(dataclasses.replace(found) if found is not None else None)
            assert found is not None
            if found.status != PENDING:
                return False
            self._publications[pub_id] = dataclasses.replace(found, **values)
            if values.get("status") == PUBLISHED:
                self._mark_published(found.version, float(values["decided_at"]), found.submitted_by)
        return True

    def published_schedule(self) -> list[tuple[str, float, float, str]]:
        with self._lock:
            return [(p.ruleset, cast(float, p.effective_from), float(p.decided_at or 0), p.version)
                    for p in self._publications.values() if p.status == PUBLISHED]

    def publication(self, pub_id: str) -> Publication | None:
        with self._lock:
            found = self._publications.get(pub_id)
        return dataclasses.replace(found) if found is not None else None

    def publications(self, name: str = "", status: str = "", version: str = "") -> list[Publication]:
        with self._lock:
            rows = [dataclasses.replace(p) for p in self._publications.values()
                    if (not name or p.ruleset == name) and (not status or p.status == status)
                    and (not version or p.version == version)]
        return sorted(rows, key=lambda p: p.submitted_at, reverse=True)

    # -- governance: shadows ---------------------------------------------------------------------------
    def attach_shadow(self, rs: Ruleset | VersionSource, by: str, shadow_id: str, now: float) -> ShadowInfo:
        with self._lock:
            self._store_version(rs, now)
            attached = next((s for s, detached in self._shadows if s.version == rs.version and detached is None),
                            None)
            if attached is not None:
                return dataclasses.replace(attached)
            info = ShadowInfo(shadow_id, rs.name, rs.version, by, now)
            self._shadows.append((info, None))
        return dataclasses.replace(info)

    def detach_shadow(self, version: str, now: float) -> bool:
        with self._lock:
            found = [i for i, (s, detached) in enumerate(self._shadows) if s.version == version and detached is None]
            for i in found:
                self._shadows[i] = (self._shadows[i][0], now)
        return bool(found)

    def attached_shadows(self) -> list[ShadowInfo]:
        with self._lock:
            rows = [dataclasses.replace(s) for s, detached in self._shadows if detached is None]
        return sorted(rows, key=lambda s: s.attached_at)

    def save_shadow_result(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._shadow_results.setdefault((row["decision_id"], row["shadow_version"]), dict(row))

    def shadow_results(self, version: str, since: float | None = None) -> list[tuple[Any, ...]]:
        columns = ("ruleset", "decision_id", "live_outcome", "shadow_outcome", "changed", "unanswered", "detail")
        with self._lock:
            rows = [r for r in self._shadow_results.values()
                    if r["shadow_version"] == version and (since is None or r["created_at"] >= since)]
        return [tuple(r[c] for c in columns) for r in sorted(rows, key=lambda r: r["created_at"])]


def _saved(d: _Decision) -> Saved:
    return Saved(d.id, d.seq, d.hash)


def _phrase(words: tuple[str, ...], text: tuple[str, ...]) -> bool:
    """Whether ``words`` occur in ``text`` one after another (a phrase query, as FTS5 and tsquery run it)."""
    n = len(words)
    return any(text[i:i + n] == words for i in range(len(text) - n + 1))


def _problem(d: _Decision, prev: str, seq: int) -> str:
    if d.seq != seq:
        return f"expected chain position {seq}, found {d.seq}: a decision before it was deleted"
    if d.prev_hash != prev:
        return "its previous-hash does not match the decision before it (inserted or reordered)"
    if chain_hash(prev, seq, d.head, d.trace.split("\n") if d.trace else []) != d.hash:
        return "its hash does not match its record and trace (edited)"
    return ""


def _escalation_opened(record: DecisionRecord) -> list[dict[str, Any]]:
    """The escalation an escalated decision opens (as SqlStore writes its row)."""
    escalation = record.get("escalation") or {}
    if record["outcome"] != "escalated" or not escalation:
        return []
    sla = escalation.get("sla_s")
    return [{"id": record["decision_id"], "ruleset": record["ruleset"], "version": record["version"],
             "queue": str(escalation.get("queue", "")), "reason": str(escalation.get("reason", "")),
             "expects": str(escalation.get("expects", "")), "created_at": record["started_at"],
             "sla_at": record["started_at"] + sla if isinstance(sla, (int, float)) else None, "status": "open",
             "resolved_by": None, "resolved_at": None, "answer": None, "resumed_decision_id": None,
             "assigned_to": None}]


def _effects_of(record: DecisionRecord) -> list[dict[str, Any]]:
    """The outbox rows of a decision's effects (those not cancelled), as SqlStore writes them."""
    decision_id, at = record["decision_id"], record["finished_at"]
    return [{"id": f"{decision_id}:{e['n']}", "decision_id": decision_id, "name": e["name"],
             "payload": canonical(e["with"]), "status": "pending", "attempts": 0, "next_at": at, "lease_until": None,
             "last_error": None, "created_at": at, "done_at": None, "retried_by": None, "retried_at": None,
             "failing_since": None} for e in record["trace"] if e["kind"] == "effect" and not e.get("cancelled")]


if TYPE_CHECKING:  # mypy holds the fake to every port, as SqlStore is held
    _serves_every_port: Store = cast(MemoryStore, None)
