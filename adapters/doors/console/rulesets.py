"""Rulesets: versions, a readable view, diffs, the editor (validate, test, impact, what-if, submit)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from adapters.doors.console import svg
from adapters.doors.console.security import Session, Sessions
from adapters.doors.console.ui import (
    UI,
    _int,
    error_dict,
    timeline,
)
from adapters.infra.candidates import CompileLimitExceeded
from adapters.infra.store.governance import VersionSource
from adapters.usecases.audits import ImpactReport
from adapters.usecases.impact import Impact, decision_label
from adapters.usecases.registry import GovernanceError
from engine.errors import BatonError, CompileErrors
from engine.language.diff import diff_sources


class RulesetPages:
    def __init__(self, ui: UI) -> None:
        self.ui, self.c = ui, ui.c

    async def rulesets(self, request: Request) -> Response:
        self.ui.need(request, "editor", "auditor", "approver")
        versions = await asyncio.to_thread(self.c.registry.versions)
        pubs = await asyncio.to_thread(self.c.registry.publications)
        await asyncio.to_thread(self.c.registry.refresh, True)  # a query: never on the event loop
        active = self.c.registry.active
        by_version: dict[str, list[Any]] = {}
        for p in pubs:
            by_version.setdefault(p.version, []).append(p)
        return self.ui.page(request, "rulesets.html", versions=versions, active=active, pubs=by_version,
                    pending=[p for p in pubs if p.status == "pending"])

    async def ruleset_view(self, request: Request) -> Response:
        self.ui.need(request, "editor", "auditor", "approver")
        try:
            version = await asyncio.to_thread(self.c.registry.resolve, request.path_params["version"])
            info = await asyncio.to_thread(self.c.registry.info, "", version)
            if info is None:
                raise BatonError("unknown_version", f"no ruleset version {version[:12]}")
            pubs = await asyncio.to_thread(self.c.registry.publications, "", "", version)
            if info.published_at is None and self.c.registry.loaded(version) is None:
                # never published: not compiled in this worker - its source, and its summary as the bounded
                # child found it; its tests and impact are on its publication's page
                source = await asyncio.to_thread(self.c.store.ruleset_source, version)
                return self.ui.page(request, "ruleset_pending.html", info=info, pubs=pubs,
                                    source=source[1] if source else "")
            engine = await asyncio.to_thread(self.c.registry.engine_for, version)
        except BatonError as e:
            return self.ui.page(request, "error.html", status=404, message=e.message)
        table_rules = {t.rule_name(r) for t in engine.ruleset.tables for r in t.rows}
        return self.ui.page(request, "ruleset.html", rs=engine.ruleset, pubs=pubs, table_rules=table_rules,
                    active=self.c.registry.active_version(engine.ruleset.name) == version)

    async def ruleset_diff(self, request: Request) -> Response:
        self.ui.need(request, "editor", "auditor", "approver")
        q = request.query_params
        versions = await asyncio.to_thread(self.c.registry.versions)
        changes, error = None, ""
        if q.get("from") and q.get("to"):
            try:
                a, b = await asyncio.to_thread(self.sources, q["from"], q["to"])
                changes = await self.c.candidates.arun(lambda: diff_sources(a, b))
            except BatonError as e:
                error = e.message
        return self.ui.page(request, "diff.html", versions=versions, changes=changes, q=q, error=error)

    async def stored(self, version: str) -> tuple[str, str, bool]:
        """A stored version's name and source, and whether this worker may compile it: once published (or
        loaded here already). One never published is compiled and read by the bounded child instead."""
        if not version:
            raise BatonError("unknown_version", "no version given and none in effect")
        info = await asyncio.to_thread(self.c.registry.info, "", version)
        if info is None:
            raise BatonError("unknown_version", f"no ruleset version {version[:12]}")
        source = (await asyncio.to_thread(self.sources, version))[0]
        return info.name, source, info.published_at is not None or self.c.registry.loaded(version) is not None

    def sources(self, *versions: str) -> list[str]:
        """Stored versions' sources (by hash or prefix), read without compiling them."""
        out = []
        for v in versions:
            found = self.c.store.ruleset_source(self.c.registry.resolve(v))
            if found is None:
                raise BatonError("unknown_version", f"no ruleset version {v[:12]}")
            out.append(found[1])
        return out

    async def editor(self, request: Request) -> Response:
        session = self.ui.need(request, "editor", "approver")  # approvers read, test and preview; editors submit
        name = request.path_params["name"]
        source = ""
        if request.method == "POST":
            data = await self.ui.form(request, session)
            source = str(data.get("source", ""))
            action = request.query_params.get("do", "validate")
            if action == "submit" and not session.has("editor"):
                raise PermissionError(f"{session.name} may review changes but not submit them (needs editor)")
            return await self.editor_action(request, session, name, source, action, data)
        try:
            version = request.query_params.get("version", "") or self.c.registry.active_version(name)
            source = (await asyncio.to_thread(self.sources, version))[0]
        except BatonError:
            source = f"ruleset: {name}\nfacts:\n  example: {{ref: str}}\nrules:\n  - name: first\n" \
                     "    when: exists example\n    then: {decide: {route: review}}\n"
        return self.ui.page(request, "editor.html", name=name, source=source, check=await self.validate(source))

    async def validate(self, source: str) -> dict[str, Any]:
        """What an editor typed, compiled by a bounded child process (adapters/infra/candidates.py): no draft can
        stall this event loop or grow this worker."""
        try:
            rs = await self.c.candidates.acheck(source, "draft.yaml")
        except CompileErrors as e:
            return {"valid": False, "errors": [error_dict(x) for x in e.errors], "warnings": []}
        except CompileLimitExceeded as e:
            return {"valid": False, "errors": [{**error_dict(e), "line": 1, "column": 1}], "warnings": []}
        return {"valid": True, "errors": [], "warnings": [error_dict(x) for x in rs.warnings], "version": rs.version,
                "name": rs.name, "rules": rs.rules, "tests": rs.tests, "description": rs.description}

    async def editor_action(self, request: Request, session: Session, name: str, source: str, action: str,
                            data: FormData) -> Response:
        check = await self.validate(source)
        context: dict[str, Any] = {"name": name, "source": source, "check": check}
        if len(source) > self.c.candidates.limits.source.max_chars:  # refused; the analyst's text stays in the editor
            return self.ui.page(request, "editor.html", status=413, **context)
        if check["valid"] and check["name"] != name:
            check = {**check, "valid": False, "errors": [{"code": "bad_name", "message": f"this editor is for "
                                                          f"{name!r}, the source says {check['name']!r}", "line": 1,
                                                          "column": 1, "hint": ""}]}
            context["check"] = check
        if action == "test" and check["valid"]:  # run by the bounded child, as every run of a draft
            context["suite"] = (await self.c.candidates.asuite(source, "draft.yaml", time.time()))[1]
        elif action == "whatif" and check["valid"]:  # the unsaved text against a stored decision
            decision_id = str(data.get("decision", "")).strip()
            context["decision_id"] = decision_id
            record = await asyncio.to_thread(self.c.store.get, decision_id) if decision_id else None
            if record is None:
                context["whatif_error"] = f"no stored decision {decision_id[:80]!r}"
            else:
                version, w = await self.c.audit.what_if(record, source=source, file="draft.yaml", keep=True)
                graphs = None if w.record is None else (  # the stored decision and the draft's, drawn
                    svg.decision_graph(timeline(record), record["outcome"], "whatif-stored-graph"),
                    svg.decision_graph(timeline(w.record), str(w.record["outcome"]), "whatif-new-graph"))
                context["whatif"] = {"version": version, "w": replace(w, record=None), "draft": True,
                                     "graphs": graphs}
        elif action == "impact" and check["valid"]:
            last = _int(data.get("last"), 200, 1, 5000)
            context["impact"] = await self.impact(source, last)
        elif action == "submit" and check["valid"]:
            effective = None
            if data.get("effective_from"):
                try:
                    effective = dt.datetime.fromisoformat(str(data["effective_from"])).replace(
                        tzinfo=dt.UTC).timestamp()
                except ValueError:
                    context["submit_error"] = "effective from: use YYYY-MM-DDTHH:MM (UTC)"
            if "submit_error" not in context:
                rs = VersionSource(check["name"], check["version"], source, check["description"], check["rules"],
                                   check["tests"])  # as the child compiled it: compiled here once approved
                try:
                    pub = await asyncio.to_thread(self.c.registry.submit, rs, session.name, str(data.get("note", "")),
                                                  effective)
                except GovernanceError as e:  # no note, or the version already in effect: the text stays
                    context["submit_error"] = e.message
                    context["note"] = str(data.get("note", ""))
                    return self.ui.page(request, "editor.html", status=400, **context)
                return RedirectResponse(f"/publications#{pub.id}", status_code=303)
        return self.ui.page(request, "editor.html", **context)

    async def impact(self, source: str, last: int, progress: Callable[[int, int], Awaitable[None]] | None = None
                     ) -> dict[str, Any]:
        """The draft over the ``last`` stored decisions of its ruleset, run by the bounded child."""
        report = ImpactReport(Impact())
        async for step in self.c.audit.impact(source, file="draft.yaml", last=last, every=10):
            if isinstance(step, ImpactReport):
                report = step
            elif progress is not None:
                await progress(step.done, step.total)
        if not report.ids and progress is not None:
            await progress(0, 0)
        result, ids = report.impact, report.ids
        changes = result.moves(decision_label)
        tampered = await asyncio.to_thread(self.c.store.chain_problems, ids)  # replayed, but edited since hashed
        return {"decisions": result.decisions, "changed": len(result.changed), "unanswered": result.unanswered,
                "changes": changes, "chart": svg.bars([(f"{a} → {b}", float(k)) for a, b, k, _ in changes]),
                "tampered": tampered}

    async def impact_stream(self, request: Request) -> Response:
        """NDJSON: progress lines, then the rendered result (used by the editor's script)."""
        session = self.ui.need(request, "editor")
        data = await self.ui.form(request, session)
        source = str(data.get("source", ""))
        check = await self.validate(source)
        if not check["valid"]:
            return JSONResponse({"error": "the draft does not compile"}, status_code=400)
        last = _int(data.get("last"), 200, 1, 5000)
        queue: asyncio.Queue[str | None] = asyncio.Queue()

        async def progress(done: int, total: int) -> None:
            await queue.put(json.dumps({"done": done, "total": total}) + "\n")

        async def run() -> None:
            result = await self.impact(source, last, progress)
            html = self.ui.env.get_template("impact.html").render(impact=result)
            await queue.put(json.dumps({"html": html}) + "\n")
            await queue.put(None)

        task = asyncio.create_task(run())

        async def lines() -> AsyncIterator[str]:
            while (line := await queue.get()) is not None:
                yield line
            await task

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def api_validate(self, request: Request) -> Response:
        session = self.ui.need(request, "editor")
        if not Sessions.csrf_ok(session, request.headers.get("x-csrf-token")):
            return JSONResponse({"error": "csrf"}, status_code=403)
        body = await request.json()
        return JSONResponse(await self.validate(str(body.get("source", "")) if isinstance(body, dict) else ""))

    def routes(self) -> list[Route]:
        g = self.ui.guarded
        return [
            Route("/rulesets", g(self.rulesets)),
            Route("/rulesets/diff", g(self.ruleset_diff)),
            Route("/rulesets/v/{version}", g(self.ruleset_view)),
            Route("/rulesets/edit/{name}", g(self.editor), methods=["GET", "POST"]),
            Route("/rulesets/impact", g(self.impact_stream), methods=["POST"]),
            Route("/api/validate", g(self.api_validate), methods=["POST"]),
        ]
