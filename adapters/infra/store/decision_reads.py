"""The decisions area's reading side: decisions by id or idempotency key, listed and counted, the operations
figures the console and `baton log list` show, and the walk that verifies the hash chain row by row (and the
checks of one row the console's chain view shares)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from adapters.infra.store.base import (
    _IDS,
    CALLS,
    CHAIN_CHECKS,
    DECISIONS,
    ESCALATIONS,
    HEAD,
    HEAD_FIELDS,
    OUTBOX,
    TRACE,
)
from adapters.infra.store.tree import TreeArea
from adapters.ports import Problem, call_row
from engine.audit import GENESIS, chain_hash
from engine.record import DecisionRecord

KEYS_PER_QUERY = 500  # idempotency keys looked up in one query (SQLite's parameter limit is far above)


class DecisionReads(TreeArea):
    """Everything the decisions area answers without writing (DecisionsArea adds the writing)."""

    # -- reading -----------------------------------------------------------------------------------
    def get(self, decision_id: str) -> DecisionRecord | None:
        return self.get_many([decision_id])[0]

    def get_many(self, ids: Sequence[str]) -> list[DecisionRecord | None]:
        """Stored records in the order asked (None where there is none), in two queries."""
        if not ids:
            return []
        wanted = list(dict.fromkeys(ids))
        with self.engine.connect() as conn:
            rows: dict[str, tuple[str, str | None]] = {i: (h, t) for i, h, t in conn.execute(
                sa.select(DECISIONS.c.id, DECISIONS.c.head, DECISIONS.c.trace).where(DECISIONS.c.id.in_(wanted)))}
            legacy: dict[str, list[Any]] = {}
            older = [i for i, (_, t) in rows.items() if t is None]  # stored before revision 0009
            if older:
                for decision_id, event in conn.execute(
                        sa.select(TRACE.c.decision_id, TRACE.c.event).where(TRACE.c.decision_id.in_(older))
                        .order_by(TRACE.c.decision_id, TRACE.c.idx)):
                    legacy.setdefault(decision_id, []).append(orjson.loads(event))
        out: list[DecisionRecord | None] = []
        for decision_id in ids:
            found = rows.get(decision_id)
            if found is None:
                out.append(None)
                continue
            head, trace = found
            record: DecisionRecord = orjson.loads(head)
            record["trace"] = legacy.get(decision_id, []) if trace is None else \
                orjson.loads("[" + trace.replace("\n", ",") + "]")
            out.append(record)
        return out

    def find(self, caller: str, idempotency_key: str) -> DecisionRecord | None:
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(DECISIONS.c.id).where(
                DECISIONS.c.caller == caller, DECISIONS.c.idempotency_key == idempotency_key)).scalar()
        return self.get(found) if found else None

    def find_many(self, caller: str, keys: Sequence[str]) -> dict[str, DecisionRecord]:
        """The caller's decisions stored under any of ``keys``, by key: one query for the ids (per
        KEYS_PER_QUERY keys), then the records as ``get_many`` reads them (a DecideBatch's idempotency check)."""
        unique = list(dict.fromkeys(k for k in keys if k))
        ids: dict[str, str] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(unique), KEYS_PER_QUERY):
                ids.update(conn.execute(sa.select(DECISIONS.c.idempotency_key, DECISIONS.c.id).where(
                    DECISIONS.c.caller == caller,
                    DECISIONS.c.idempotency_key.in_(unique[start:start + KEYS_PER_QUERY]))).tuples().all())
        records = self.get_many(list(ids.values())) if ids else []
        return {key: record for key, record in zip(ids, records, strict=True) if record is not None}

    def list_decisions(self, ruleset: str | None = None, outcome: str | None = None, since: float | None = None,
             until: float | None = None, limit: int = 50, before: tuple[float, str] | None = None,
             version: str | None = None, text: str | None = None) -> list[dict[str, Any]]:
        """Newest first; ``before`` = (created_at, id) of the last row of the previous page (keyset).
        ``version`` is a hash prefix; ``text`` is searched (case-insensitively) in the decision's facts."""
        d = DECISIONS.c
        q = sa.select(d.id, d.ruleset, d.version, d.outcome, d.rule, d.created_at, d.latency_ms, d.cost_usd,
                      d.tokens, d.caller)
        if version:
            q = q.where(d.version.like(f"{version.replace('%', '').replace('_', '')}%"))
        if text:
            words = [w for w in re.findall(r"\w+", text.lower()) if w][:16]
            if words and self.sqlite:  # a phrase of the text's words, through the FTS5 index
                phrase = '"' + " ".join(words) + '"'
                q = q.where(d.id.in_(sa.select(sa.literal_column("decision_id")).select_from(
                    sa.text("decision_search")).where(sa.text("decision_search MATCH :phrase").bindparams(
                        phrase=phrase))))
            elif words:
                q = q.where(d.id.in_(sa.select(sa.literal_column("decision_id")).select_from(
                    sa.text("decision_search")).where(sa.text("tsv @@ phraseto_tsquery('simple', :phrase)")
                                                      .bindparams(phrase=text[:500]))))  # parsed as the facts were
        if ruleset:
            q = q.where(d.ruleset == ruleset)
        if outcome:
            q = q.where(d.outcome == outcome)
        if since is not None:
            q = q.where(d.created_at >= since)
        if until is not None:
            q = q.where(d.created_at < until)
        if before is not None:
            q = q.where(sa.or_(d.created_at < before[0], sa.and_(d.created_at == before[0], d.id < before[1])))
        q = q.order_by(d.created_at.desc(), d.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def verify_one(self, decision_id: str) -> str | None:
        """This decision's place in the hash chain: None when its hash, its link to the decision before
        it and its stored trace all check out; else what is wrong."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(DECISIONS).where(DECISIONS.c.id == decision_id)).first()
            if row is None:
                return "not stored"
            prev = GENESIS if row.chain_seq == 1 else conn.execute(sa.select(DECISIONS.c.hash).where(
                DECISIONS.c.chain_seq == row.chain_seq - 1)).scalar()
            if prev is None:
                return "the decision before it in the chain is missing"
            traces = conn.execute(sa.select(TRACE).where(TRACE.c.decision_id == decision_id)
                                  .order_by(TRACE.c.idx)).all()
            calls = conn.execute(sa.select(CALLS).where(CALLS.c.decision_id == decision_id)
                                 .order_by(CALLS.c.call_no)).all()
        return check_row(row, str(prev), int(row.chain_seq), list(traces), list(calls)) or None

    def stats(self, since: float, buckets: int = 12) -> dict[str, Any]:
        """For the operations page: counts by outcome, latency percentiles, decisions per bucket, model
        cost by ruleset and model per bucket, open escalations, pending and dead effects."""
        d, c = DECISIONS.c, CALLS.c
        now = time.time()
        width = max(1.0, (now - since) / buckets)
        with self.engine.connect() as conn:
            outcomes: dict[str, int] = dict(conn.execute(sa.select(d.outcome, sa.func.count())
                                                         .where(d.created_at >= since).group_by(d.outcome)).all())
            latencies = sorted(float(x) for x in conn.execute(sa.select(d.latency_ms).where(
                d.created_at >= since).order_by(d.created_at.desc()).limit(20_000)).scalars())
            bucket = sa.cast((d.created_at - since) / width, sa.Integer)
            per_bucket = dict(conn.execute(sa.select(bucket, sa.func.count()).where(d.created_at >= since)
                                           .group_by(bucket)).all())
            cost_rows = conn.execute(sa.select(d.ruleset, c.model, bucket, sa.func.sum(c.cost_usd))
                                     .select_from(CALLS.join(DECISIONS, DECISIONS.c.id == CALLS.c.decision_id))
                                     .where(d.created_at >= since, c.kind == "model")
                                     .group_by(d.ruleset, c.model, bucket)).all()
            escalations = conn.execute(sa.select(sa.func.count()).select_from(ESCALATIONS).where(
                ESCALATIONS.c.status == "open")).scalar_one()
            effects: dict[str, int] = dict(conn.execute(sa.select(OUTBOX.c.status, sa.func.count())
                                                        .group_by(OUTBOX.c.status)).all())

        def pct(p: float) -> float | None:
            return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else None

        cost: dict[tuple[str, str], list[float]] = {}
        for ruleset, model, b, total in cost_rows:
            series = cost.setdefault((str(ruleset), str(model or "?")), [0.0] * buckets)
            if b is not None and 0 <= int(b) < buckets:
                series[int(b)] += float(total or 0)
        return {"since": since, "bucket_s": width, "outcomes": outcomes,
                "per_bucket": [int(per_bucket.get(i, 0)) for i in range(buckets)],
                "p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99), "cost": cost,
                "open_escalations": int(escalations), "effects": effects}

    def cost_totals(self, since: float, limit: int = 200_000) -> dict[str, list[dict[str, Any]]]:
        """Model use since ``since``: calls, tokens and cost per ruleset, per model group and model, and per
        day (UTC). The group is read from each call's request (as the decision recorded it)."""
        d, c = DECISIONS.c, CALLS.c
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(d.ruleset, d.created_at, c.model, c.request, c.tokens, c.cost_usd)
                                .select_from(CALLS.join(DECISIONS, DECISIONS.c.id == CALLS.c.decision_id))
                                .where(d.created_at >= since, c.kind == "model").limit(limit)).all()
        tables: dict[str, dict[tuple[str, ...], list[float]]] = {"ruleset": {}, "model": {}, "day": {}}
        for ruleset, created, model, request, tokens, cost in rows:
            try:
                group = str(json.loads(request).get("group") or "")
            except (ValueError, AttributeError):
                group = ""
            day = time.strftime("%Y-%m-%d", time.gmtime(float(created)))
            for table, key in (("ruleset", (str(ruleset),)), ("model", (group, str(model or ""))), ("day", (day,))):
                acc = tables[table].setdefault(key, [0, 0, 0.0])
                acc[0] += 1
                acc[1] += int(tokens or 0)
                acc[2] += float(cost or 0.0)
        names = {"ruleset": ("ruleset",), "model": ("group", "model"), "day": ("day",)}
        return {t: [{**dict(zip(names[t], k, strict=True)), "calls": int(v[0]), "tokens": int(v[1]),
                     "cost_usd": round(v[2], 6)} for k, v in sorted(acc.items())] for t, acc in tables.items()}

    # -- whole-log verification -----------------------------------------------------------------------
    def record_chain_check(self, by: str, started: float, finished: float, checked: int,
                           problem: Problem | None) -> dict[str, Any]:
        row = {"id": _IDS.new_id(), "by": by[:200], "started_at": started,
               "finished_at": finished, "checked": checked,
               "broken_seq": problem.chain_seq if problem else None, "broken_id": (problem.decision_id or None)
               if problem else None, "problem": problem.problem if problem else None}
        with self.writer.begin() as conn:
            conn.execute(CHAIN_CHECKS.insert().values(**row))
        return row

    def chain_checks(self, limit: int = 20) -> list[dict[str, Any]]:
        c = CHAIN_CHECKS.c
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(CHAIN_CHECKS).order_by(
                c.started_at.desc()).limit(limit))]

    def cost_by_ruleset(self) -> list[dict[str, Any]]:
        d = DECISIONS.c
        q = sa.select(d.ruleset, sa.func.count().label("decisions"), sa.func.sum(d.cost_usd).label("cost_usd"),
                      sa.func.sum(d.tokens).label("tokens")).group_by(d.ruleset).order_by(d.ruleset)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def recent_ids(self, ruleset: str, limit: int | None = None, since: float | None = None) -> list[str]:
        d = DECISIONS.c
        q = sa.select(d.id).where(d.ruleset == ruleset)
        if since is not None:
            q = q.where(d.created_at >= since)
        q = q.order_by(d.created_at.desc(), d.id.desc())
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return list(conn.execute(q).scalars())

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(DECISIONS)).scalar_one())

    # -- verification ------------------------------------------------------------------------------
    def verify(self, chunk: int = 500, progress: Callable[[int, int], None] | None = None,
               verified: Callable[[str], None] | None = None) -> tuple[int, Problem | None]:
        """Walk the chain; return how many decisions verified and the first problem (None: intact).
        ``progress(checked, total)`` is called after each chunk; ``verified(hash)`` with each decision's chain
        hash, in chain order, once the walk has recomputed it from the record (what a checkpoint audit must build
        its tree from: a second query for the hashes may be answered differently)."""
        prev, expected_seq, checked = GENESIS, 1, 0
        with self.engine.begin() as conn:  # one snapshot for the whole walk
            total = int(conn.execute(sa.select(sa.func.count()).select_from(DECISIONS)).scalar_one()) \
                if progress is not None else 0
            for rows, traces, calls in self._chunks(conn, chunk):
                if progress is not None:
                    progress(checked, total)
                for row in rows:
                    problem = check_row(row, prev, expected_seq, traces.get(row.id, []), calls.get(row.id, []))
                    if problem:
                        return checked, Problem(row.chain_seq, row.id, problem)
                    if verified is not None:
                        verified(row.hash)
                    prev, expected_seq, checked = row.hash, expected_seq + 1, checked + 1
            head = conn.execute(sa.select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == 1)).one()
            if (int(head[0]), head[1]) != (expected_seq - 1, prev):
                return checked, Problem(int(head[0]), "", f"the chain head says {head[0]} decisions ending in "
                                        f"{head[1][:12]}, the table has {expected_seq - 1} ending in {prev[:12]} "
                                        "(a decision was deleted from the end?)")
            orphans = conn.execute(sa.select(sa.func.count()).select_from(TRACE).where(
                ~TRACE.c.decision_id.in_(sa.select(DECISIONS.c.id)))).scalar_one()
            if orphans:
                return checked, Problem(0, "", f"{orphans} trace events belong to no stored decision")
        return checked, None

    def _chunks(self, conn: Connection, size: int) -> Iterator[tuple[Sequence[Any], dict[str, list[Any]],
                                                                     dict[str, list[Any]]]]:
        last = 0
        while True:
            rows = conn.execute(sa.select(DECISIONS).where(DECISIONS.c.chain_seq > last)
                                .order_by(DECISIONS.c.chain_seq).limit(size)).all()
            if not rows:
                return
            ids = [r.id for r in rows]
            traces: dict[str, list[Any]] = {}
            for t in conn.execute(sa.select(TRACE).where(TRACE.c.decision_id.in_(ids))
                                  .order_by(TRACE.c.decision_id, TRACE.c.idx)):
                traces.setdefault(t.decision_id, []).append(t)
            calls: dict[str, list[Any]] = {}
            for c in conn.execute(sa.select(CALLS).where(CALLS.c.decision_id.in_(ids))
                                  .order_by(CALLS.c.decision_id, CALLS.c.call_no)):
                calls.setdefault(c.decision_id, []).append(c)
            yield rows, traces, calls
            last = rows[-1].chain_seq


def columns_problem(row: Any, head: dict[str, Any]) -> str:
    """How a decision row's searchable columns differ from the record they were hashed with ("": they agree)."""
    columns = {"created_at": head.get("started_at"), **{f: head.get(f) for f in HEAD_FIELDS}}
    for name, value in columns.items():
        if getattr(row, name) != value and not (value is None and name == "idempotency_key"):
            return f"column {name} differs from the hashed record (edited)"
    if row.id != head.get("decision_id"):
        return "its id differs from the hashed record (edited)"
    return ""


def check_row(row: Any, prev: str, seq: int, traces: list[Any], calls: list[Any]) -> str:
    if row.chain_seq != seq:
        return f"expected chain position {seq}, found {row.chain_seq}: a decision before it was deleted"
    if row.prev_hash != prev:
        return "its previous-hash does not match the decision before it (inserted or reordered)"
    if row.trace is not None and traces:
        return "trace events are stored apart from its record (inserted)"
    if [t.idx for t in traces] != list(range(len(traces))):
        return "its trace events are not contiguous (an event was deleted or inserted)"
    # stored before revision 0009 (trace NULL): one trace_events row per event
    texts = [t.event for t in traces] if row.trace is None else row.trace.split("\n") if row.trace else []
    if chain_hash(prev, seq, row.head, texts) != row.hash:
        return "its hash does not match its record and trace (edited)"
    try:
        head = json.loads(row.head)
        events = [json.loads(t) for t in texts]
    except ValueError:
        return "its stored record is not valid JSON (edited)"
    problem = columns_problem(row, head)
    if problem:
        return problem
    expected_calls = [call_row(row.id, e) for e in events if e.get("kind") == "call"]
    got_calls = [{k: getattr(c, k) for k in expected_calls[0]} for c in calls] if expected_calls else [
        dict(c._mapping) for c in calls]
    if got_calls != expected_calls:
        return "its call records differ from the calls in its hashed trace (edited, inserted or deleted)"
    if traces and any(t.kind != e.get("kind") for t, e in zip(traces, events, strict=True)):
        return "a trace event's kind column differs from the event (edited)"
    return ""
