"""Decisions: search, the trace as rounds, replay, what-if, why / why not."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from adapters.doors.console import svg
from adapters.doors.console.ui import (
    PAGE,
    UI,
    _json,
    _quote,
    timeline,
)
from adapters.infra.checkpoints import prove_stored
from adapters.infra.system import utc_text
from engine.errors import BatonError
from engine.explain import why
from engine.pii import scrubber, secrets_of
from engine.record import DecisionRecord

EXPORT_FILTERS = ("ruleset", "version", "outcome", "from", "to", "text")
EXPORT_COLUMNS = ["id", "created_at", "ruleset", "version", "outcome", "rule", "latency_ms", "cost_usd", "tokens",
                  "caller", "chain"]
EXPORT_PAGE = 500


def _day(value: str, end: bool = False) -> float | None:
    """A From/To filter (YYYY-MM-DD, or a full ISO time) as a UTC timestamp; To's day counts whole."""
    value = value.strip()
    if not value:
        return None
    try:
        d = dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return d.timestamp() + (86400 if end and len(value) == 10 else 0)


def _csv_line(values: list[Any]) -> str:
    """One CSV line; text a spreadsheet would run as a formula (=, +, -, @ first) is quoted with a ' first."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(
        ["'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r") else v for v in values])
    return out.getvalue()


class DecisionPages:
    def __init__(self, ui: UI) -> None:
        self.ui, self.c = ui, ui.c

    async def decisions(self, request: Request) -> Response:
        self.ui.need(request, "auditor")
        q = request.query_params
        found = None
        if q.get("id"):
            record = await asyncio.to_thread(self.c.store.get, q["id"].strip())
            if record is not None:
                return RedirectResponse(f"/decisions/{record['decision_id']}", status_code=303)
            found = f"no decision {q['id'].strip()!r}"

        def day(name: str, end: bool = False) -> float | None:
            return _day(q.get(name, ""), end)

        before = None
        if q.get("before"):
            ts, _, last_id = q["before"].partition("~")
            try:
                before = (float(ts), last_id)
            except ValueError:
                before = None
        started = time.perf_counter()
        rows = await asyncio.to_thread(self.c.store.list_decisions, q.get("ruleset") or None, q.get("outcome") or None,
                                       day("from"), day("to", True), PAGE + 1, before, q.get("version") or None,
                                       q.get("text") or None)
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        params = {k: v for k, v in q.items() if k != "before" and v}
        next_page = None
        if more:
            params["before"] = f"{rows[-1]['created_at']!r}~{rows[-1]['id']}"
            next_page = "/decisions?" + "&".join(f"{k}={_quote(v)}" for k, v in params.items())
        names = sorted({v.name for v in await asyncio.to_thread(self.c.registry.versions)})
        doc_hits = None
        if q.get("doctext", "").strip():  # a search in documents' text: its hits instead of the list
            doc_hits = [h for h in await self.document_hits(request, q["doctext"])
                        if h["ruleset"] == (q.get("ruleset") or h["ruleset"]) and
                        h["outcome"] == (q.get("outcome") or h["outcome"])]
            rows, next_page = [], None
        await self.ui.flag(request, [str(r["id"]) for r in rows] + [h["decision_id"] for h in doc_hits or []])
        return self.ui.page(request, "decisions.html", rows=rows, doc_hits=doc_hits, q=q, next_page=next_page,
                            names=names,
                    found=found, took_ms=(time.perf_counter() - started) * 1000)

    async def document_hits(self, request: Request, text: str) -> list[dict[str, Any]]:
        """Pages of stored documents that contain ``text``, by decision; each snippet masked as its decision's
        record is (personal data a ruleset marks pii, unless the reader's role may see it)."""
        hits = await asyncio.to_thread(self.c.store.document_search, text[:200], PAGE)
        session = request.state.session
        if not hits or (session is not None and self.c.pii_roles and session.has(*self.c.pii_roles)):
            return hits
        records = await asyncio.to_thread(self.c.store.get_many, list(dict.fromkeys(h["decision_id"] for h in hits)))
        masks = {}
        for record in records:
            if record is not None:
                private = await asyncio.to_thread(self.c.registry.private_fields, str(record.get("version", "")))
                masks[record["decision_id"]] = scrubber(secrets_of(record, private or {}))
        out = []
        for h in hits:
            whole, mask = "".join(h["snippet"]), masks.get(h["decision_id"], lambda v: v)
            masked = mask(whole)  # a value across the match's edges is masked too: then shown unhighlighted
            out.append({**h, "snippet": h["snippet"] if masked == whole else [masked, "", ""]})
        return out

    async def decision(self, request: Request) -> Response:
        session = self.ui.need(request, "auditor", "reviewer")
        decision_id = request.path_params["id"]
        if not session.has("auditor"):  # a reviewer reads the decisions of escalations, and what they resumed
            record = await asyncio.to_thread(self.c.store.get, decision_id)
            escalated = (record["resumes"] if record else "") or decision_id
            if await asyncio.to_thread(self.c.store.escalation, str(escalated)) is None:
                raise PermissionError(f"{session.name} (reviewer) may read the decisions of escalations only")
        return await self.render_decision(request, decision_id)

    async def render_decision(self, request: Request, decision_id: str, **extra: Any) -> Response:
        started = time.perf_counter()
        stored = await asyncio.to_thread(self.c.store.get, decision_id)
        if stored is None:
            return self.ui.page(request, "error.html", status=404, message=f"no decision {decision_id!r}")
        record = await self.ui.shown(stored, request.state.session)
        assert record is not None
        try:
            engine = await asyncio.to_thread(self.c.registry.engine_for, record["version"])
        except BatonError:
            engine = None
        chain = await asyncio.to_thread(self.c.store.verify_one, decision_id)
        if chain:
            request.state.rows_broken = {decision_id: chain}
            if getattr(request.state, "chain_alert", None) is None:
                self.ui.verify_soon(decision_id)
        delivery = {e["id"]: e for e in await asyncio.to_thread(self.c.store.effects, None, 500, decision_id)}
        versions = [v for v in await asyncio.to_thread(self.c.registry.versions) if v.name == record["ruleset"]]
        view = timeline(record)
        q = request.query_params
        session = request.state.session
        # computed on the stored record; what they show is masked as the record is
        scrub = scrubber(secrets_of(stored, engine.pii if engine else {})) if record is not stored else \
            (lambda v: v)
        if q.get("replay") and session.has("auditor"):
            extra.setdefault("replay", scrub(await self.replay_view(stored)))
        if q.get("whatif") and session.has("auditor", "editor"):
            for k, v in (await self.whatif_view(stored, q["whatif"])).items():
                if k == "whatif":
                    w = v["w"]
                    v = {**v, "w": replace(w, old=scrub(w.old), new=scrub(w.new))}
                extra.setdefault(k, v)
        why_rule = request.query_params.get("why", "")
        why_lines: list[str] = []
        if why_rule and engine is not None:
            try:
                why_lines = scrub(why(engine.ruleset, stored, why_rule))
            except KeyError:
                why_lines = [f"no rule named {why_rule!r} in this version"]
        # the first signed checkpoint that covers it (docs/audit.md); None with none kept: the line is left out
        signed, any_signed = await asyncio.to_thread(self.c.store.first_checkpoint_covering, decision_id)
        extra.setdefault("checkpoint", json.loads(signed) if signed else {} if any_signed else None)
        extra.setdefault("proof_ok", record is stored)  # a proof holds the record whole, unmasked
        escalation = await asyncio.to_thread(self.c.store.escalation, decision_id) if record.get("escalation") \
            else None  # resolved, closed or expired: who did it, and the decision it resumed into
        return self.ui.page(request, "decision.html", record=record, view=view, chain=chain, versions=versions,
                    delivery=delivery, escalation=escalation, effect_names=self.c.effect_names,
                    graph=svg.decision_graph(view, str(record.get("outcome", ""))),
                    rules=[r.name for r in engine.ruleset.rules] if engine else [], why_rule=why_rule,
                    why_lines=why_lines, server_ms=(time.perf_counter() - started) * 1000, **extra)

    async def proof(self, request: Request) -> Response:
        """The decision's proof of inclusion in the latest signed checkpoint, as `baton log prove` writes it; only
        for a reader who sees the whole record (the proof holds its hashed texts unmasked)."""
        session = self.ui.need(request, "auditor")
        decision_id = request.path_params["id"]
        stored = await asyncio.to_thread(self.c.store.get, decision_id)
        if stored is None:
            return self.ui.page(request, "error.html", status=404, message=f"no decision {decision_id!r}")
        if await self.ui.shown(stored, session) is not stored:
            raise PermissionError(f"{session.name} may not see this decision's personal data, which its proof holds")
        try:
            bundle = await asyncio.to_thread(prove_stored, self.c.store, decision_id)
        except LookupError as e:
            return self.ui.page(request, "error.html", status=404, message=f"no proof yet: {e.args[0]}")
        return Response(json.dumps(bundle, indent=1), media_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="proof-{decision_id}.json"'})

    async def do_replay(self, request: Request) -> Response:
        """Replay and what-if compute, change nothing: the POST (CSRF-checked) redirects to a GET that shows
        the result, so a reload re-reads instead of re-posting (post/redirect/get)."""
        session = self.ui.need(request, "auditor")
        await self.ui.form(request, session)
        return RedirectResponse(f"/decisions/{_quote(request.path_params['id'])}?replay=1#replay-result",
                                status_code=303)

    async def do_whatif(self, request: Request) -> Response:
        session = self.ui.need(request, "auditor", "editor")
        data = await self.ui.form(request, session)
        version = _quote(str(data.get("version", "")))
        return RedirectResponse(f"/decisions/{_quote(request.path_params['id'])}?whatif={version}#whatif-result",
                                status_code=303)

    async def replay_view(self, record: DecisionRecord) -> dict[str, Any]:
        result = await self.c.audit.replay(record)
        div = result.divergence
        where = None if div is None else (f"trace event {div.index + 1}" if div.index >= 0 else div.what)
        return {"identical": result.identical, "where": where,
                "expected": None if div is None else _json(div.expected),
                "got": None if div is None else _json(div.got),
                "graphs": None if div is None or result.record is None else (  # the two decisions side by side
                    svg.decision_graph(timeline(record), record["outcome"], "replay-stored-graph"),
                    svg.decision_graph(timeline(result.record.to_dict()), result.record.outcome,
                                       "replay-new-graph"))}

    async def whatif_view(self, record: DecisionRecord, wanted: str) -> dict[str, Any]:
        try:
            version, w = await self.c.audit.what_if(record, version=wanted, keep=True)
        except BatonError as e:
            return {"whatif_error": e.message}
        graphs = None if w.record is None else (svg.decision_graph(timeline(record), record["outcome"],
                                                                   "whatif-stored-graph"),
                                                svg.decision_graph(timeline(w.record), str(w.record["outcome"]),
                                                                   "whatif-new-graph"))
        return {"whatif": {"version": version, "w": replace(w, record=None), "graphs": graphs}}

    async def export(self, request: Request) -> Response:
        """The decisions a search finds (the list's filters), all of them, streamed page by page as CSV or JSON
        Lines: first what was asked (filters, who, when, the last whole-log verification), then one row per
        decision with its chain status - "ok", or "BROKEN: why" when its stored row fails its hash check."""
        session = self.ui.need(request, "auditor")
        fmt = request.path_params["fmt"]
        if fmt not in ("csv", "jsonl"):
            return self.ui.page(request, "error.html", status=404, message="export as csv or jsonl")
        q = request.query_params
        filters = {k: q[k] for k in EXPORT_FILTERS if q.get(k)}
        checks = await asyncio.to_thread(self.c.store.chain_checks, 1)
        check = checks[0] if checks else None
        now = time.time()
        about = {"export": "decisions", "filters": filters, "by": session.name, "at": utc_text(now),
                 "last_verification": None if check is None else {
                     "by": check["by"], "at": utc_text(check["finished_at"]), "checked": check["checked"],
                     "broken_at": check["broken_seq"], "broken_id": check["broken_id"], "problem": check["problem"]}}

        async def rows() -> AsyncIterator[str]:
            if fmt == "jsonl":
                yield json.dumps(about, ensure_ascii=False) + "\n"
            else:
                said = "; ".join(f"{k}={v}" for k, v in filters.items()) or "none"
                yield _csv_line([f"# decisions exported by {session.name} at {utc_text(now)} UTC; filters: {said}"])
                yield _csv_line(EXPORT_COLUMNS)
            before: tuple[float, str] | None = None
            count = broken = 0
            while True:
                page = await asyncio.to_thread(self.c.store.list_decisions, q.get("ruleset") or None,
                                               q.get("outcome") or None, _day(q.get("from", "")),
                                               _day(q.get("to", ""), True), EXPORT_PAGE, before,
                                               q.get("version") or None, q.get("text") or None)
                problems = await asyncio.to_thread(self.c.store.chain_problems, [str(r["id"]) for r in page])
                for r in page:
                    problem = problems.get(str(r["id"])) or (check["problem"] if check and check["problem"] and
                                                             check["broken_id"] == r["id"] else None)
                    row = {**{k: r[k] for k in EXPORT_COLUMNS if k in r}, "created_at": utc_text(r["created_at"]),
                           "chain": f"BROKEN: {problem}" if problem else "ok"}
                    count, broken = count + 1, broken + bool(problem)
                    yield json.dumps(row, ensure_ascii=False) + "\n" if fmt == "jsonl" else \
                        _csv_line([row.get(c) for c in EXPORT_COLUMNS])
                if len(page) < EXPORT_PAGE:
                    break
                before = (float(page[-1]["created_at"]), str(page[-1]["id"]))
            # the last line says the export is whole: a file cut short (a dropped connection) has none
            end = {"end": True, "decisions": count, "broken": broken}
            yield json.dumps(end) + "\n" if fmt == "jsonl" else \
                _csv_line([f"# end: {count} decisions; {broken} failing the hash check"])

        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        return StreamingResponse(rows(), media_type="text/csv; charset=utf-8" if fmt == "csv" else
                                 "application/x-ndjson", headers={
                                     "Content-Disposition": f'attachment; filename="decisions-{stamp}.{fmt}"'})

    def routes(self) -> list[Route]:
        g = self.ui.guarded
        return [
            Route("/decisions", g(self.decisions)),
            Route("/decisions/export.{fmt:str}", g(self.export)),
            Route("/decisions/{id}", g(self.decision)),
            Route("/decisions/{id}/replay", g(self.do_replay), methods=["POST"]),
            Route("/decisions/{id}/whatif", g(self.do_whatif), methods=["POST"]),
            Route("/decisions/{id}/proof.json", g(self.proof)),
        ]
