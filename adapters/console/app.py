"""The console's pages and actions (Starlette + Jinja2, server-rendered; a little JavaScript of our own
for live validation, impact progress and SLA countdowns — every page works without it).

Roles are the gRPC ones: auditors read decisions, replay, what-if, why and verify; editors edit,
validate, test, preview impact and submit rulesets; approvers approve or reject (never their own);
reviewers answer escalations; admins do everything. Facts, prompts and model answers are hostile
text: templates autoescape everything and nothing user-supplied is marked safe.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from adapters.console import svg
from adapters.console.security import COOKIE, HEADERS, SESSION_S, Session, Sessions
from adapters.escalations import Escalations, NotOpen, answer_form
from adapters.grpc.auth import AuthError
from adapters.impact import Impact, decision_label, impact_steps
from adapters.pii import MASK, mask_record, scrubber, secrets_of
from adapters.registry import GovernanceError, RulesetRegistry
from adapters.store.sql import SqlStore
from adapters.system import utc_text
from engine.errors import BatonError, CompileErrors, InvalidInput
from engine.explain import why
from engine.language.diff import diff_sources
from engine.language.loader import load_ruleset
from engine.language.source import MAX_SOURCE
from engine.language.types import check_field
from engine.loop import Engine
from engine.replay import replay, what_if
from engine.testing import run_suite

HERE = Path(__file__).parent
PAGE = 50
log = logging.getLogger("baton.console")


@dataclass(slots=True)
class Console:
    store: SqlStore
    registry: RulesetRegistry
    sessions: Sessions
    escalations: Escalations | None = None
    pii_roles: tuple[str, ...] = ()  # who reads fields marked pii in clear; everyone else sees them masked


MAX_FORM = 8_000_000  # bytes of one console form: room for the largest ruleset (MAX_SOURCE characters)


class TooLarge(Exception):
    """A request body beyond what the console reads (HTTP 413)."""


class Denied(Exception):
    pass




def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "), default=str)


def create_app(console: Console) -> Starlette:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=utc_text, json=_json, compact=_compact, short=lambda v: str(v)[:12])
    c = console

    def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        session = getattr(request.state, "session", None)
        html = env.get_template(template).render(request=request, session=session, **context)
        return HTMLResponse(html, status_code=status)

    def need(request: Request, *roles: str) -> Session:
        session: Session | None = request.state.session
        if session is None:
            raise Denied("sign in")
        if roles and not session.has(*roles):
            raise PermissionError(f"{session.name} ({', '.join(sorted(session.roles))}) may not do this; it needs "
                                  f"{' or '.join(roles)}")
        return session

    async def shown(record: dict[str, Any] | None, session: Session | None) -> dict[str, Any] | None:
        """The record as this person may read it: fields the ruleset marks pii masked everywhere, unless
        one of their roles is configured to see them."""
        if record is None or (session is not None and c.pii_roles and session.has(*c.pii_roles)):
            return record
        private = await asyncio.to_thread(c.registry.private_fields, str(record.get("version", "")))
        return mask_record(record, private or {})

    async def form(request: Request, session: Session) -> FormData:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_FORM:
            raise TooLarge(f"the form is {int(length) // 1_000_000} MB; the console accepts at most "
                           f"{MAX_FORM // 1_000_000} MB (a ruleset at most {MAX_SOURCE:,} characters)")
        try:
            data = await request.form(max_part_size=MAX_FORM)
        except MultiPartException as e:
            raise TooLarge(f"the form could not be read: {e.message}") from None
        if not Sessions.csrf_ok(session, str(data.get("csrf", "")) or request.headers.get("x-csrf-token")):
            raise PermissionError("the form's CSRF token is missing or wrong; reload the page and try again")
        return data

    # -- sign-in --------------------------------------------------------------------------------------
    async def login(request: Request) -> Response:
        if request.method == "GET":
            nonce = secrets.token_urlsafe(16)
            response: Response = page(request, "login.html", nonce=nonce, error="",
                                      next=_local(request.query_params.get("next", "")))
            response.set_cookie("baton_login", nonce, httponly=True, samesite="strict", secure=c.sessions.secure,
                                max_age=600)
            return response
        data = await request.form()
        nonce = request.cookies.get("baton_login", "")
        if not nonce or data.get("nonce") != nonce:
            return page(request, "login.html", status=403, nonce=nonce, error="the sign-in form expired; try again",
                        next=_local(str(data.get("next", ""))))
        try:
            session = c.sessions.sign_in(str(data.get("token", "")))
        except AuthError as e:
            return page(request, "login.html", status=403, nonce=nonce, error=e.message,
                        next=_local(str(data.get("next", ""))))
        response = RedirectResponse(_local(str(data.get("next", ""))) or "/", status_code=303)
        response.set_cookie(COOKIE, c.sessions.encode(session), httponly=True, samesite="strict",
                            secure=c.sessions.secure, max_age=SESSION_S)
        response.delete_cookie("baton_login")
        return response

    async def logout(request: Request) -> Response:
        session = need(request)
        await form(request, session)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    async def home(request: Request) -> Response:
        session = need(request)
        for roles, target in ((("auditor",), "/decisions"), (("reviewer",), "/escalations"),
                              (("editor", "approver"), "/rulesets")):
            if session.has(*roles):
                return RedirectResponse(target, status_code=303)
        return RedirectResponse("/ops", status_code=303)

    # -- decisions ------------------------------------------------------------------------------------
    async def decisions(request: Request) -> Response:
        need(request, "auditor")
        q = request.query_params
        found = None
        if q.get("id"):
            record = await asyncio.to_thread(c.store.get, q["id"].strip())
            if record is not None:
                return RedirectResponse(f"/decisions/{record['decision_id']}", status_code=303)
            found = f"no decision {q['id'].strip()!r}"

        def day(name: str, end: bool = False) -> float | None:
            value = q.get(name, "").strip()
            if not value:
                return None
            try:
                d = dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
            except ValueError:
                return None
            return d.timestamp() + (86400 if end and len(value) == 10 else 0)

        before = None
        if q.get("before"):
            ts, _, last_id = q["before"].partition("~")
            try:
                before = (float(ts), last_id)
            except ValueError:
                before = None
        started = time.perf_counter()
        rows = await asyncio.to_thread(c.store.list_decisions, q.get("ruleset") or None, q.get("outcome") or None,
                                       day("from"), day("to", True), PAGE + 1, before, q.get("version") or None,
                                       q.get("text") or None)
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        params = {k: v for k, v in q.items() if k != "before" and v}
        next_page = None
        if more:
            params["before"] = f"{rows[-1]['created_at']!r}~{rows[-1]['id']}"
            next_page = "/decisions?" + "&".join(f"{k}={_quote(v)}" for k, v in params.items())
        names = sorted({v.name for v in await asyncio.to_thread(c.registry.versions)})
        checks = await asyncio.to_thread(c.store.chain_checks, 1)
        broken = checks[0] if checks and checks[0]["problem"] else None
        return page(request, "decisions.html", broken=broken, rows=rows, q=q, next_page=next_page, names=names,
                    found=found, took_ms=(time.perf_counter() - started) * 1000)

    async def decision(request: Request) -> Response:
        session = need(request, "auditor", "reviewer")
        decision_id = request.path_params["id"]
        if not session.has("auditor"):  # a reviewer reads the decisions of escalations, and what they resumed
            record = await asyncio.to_thread(c.store.get, decision_id)
            escalated = (record or {}).get("resumes") or decision_id
            if await asyncio.to_thread(c.store.escalation, str(escalated)) is None:
                raise PermissionError(f"{session.name} (reviewer) may read the decisions of escalations only")
        return await render_decision(request, decision_id)

    async def render_decision(request: Request, decision_id: str, **extra: Any) -> Response:
        started = time.perf_counter()
        stored = await asyncio.to_thread(c.store.get, decision_id)
        if stored is None:
            return page(request, "error.html", status=404, message=f"no decision {decision_id!r}")
        record = await shown(stored, request.state.session)
        assert record is not None
        try:
            engine = await asyncio.to_thread(c.registry.engine_for, record["version"])
        except BatonError:
            engine = None
        chain = await asyncio.to_thread(c.store.verify_one, decision_id)
        delivery = {e["id"]: e for e in await asyncio.to_thread(c.store.effects, None, 500, decision_id)}
        versions = [v for v in await asyncio.to_thread(c.registry.versions) if v.name == record["ruleset"]]
        view = timeline(record)
        q = request.query_params
        session = request.state.session
        # computed on the stored record; what they show is masked as the record is
        scrub = scrubber(secrets_of(stored, engine.pii if engine else {})) if record is not stored else \
            (lambda v: v)
        if q.get("replay") and session.has("auditor"):
            extra.setdefault("replay", scrub(await replay_view(stored)))
        if q.get("whatif") and session.has("auditor", "editor"):
            for k, v in (await whatif_view(stored, q["whatif"])).items():
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
        return page(request, "decision.html", record=record, view=view, chain=chain, versions=versions,
                    delivery=delivery,
                    rules=[r.name for r in engine.ruleset.rules] if engine else [], why_rule=why_rule,
                    why_lines=why_lines, server_ms=(time.perf_counter() - started) * 1000, **extra)

    async def do_replay(request: Request) -> Response:
        """Replay and what-if compute, change nothing: the POST (CSRF-checked) redirects to a GET that shows
        the result, so a reload re-reads instead of re-posting (post/redirect/get)."""
        session = need(request, "auditor")
        await form(request, session)
        return RedirectResponse(f"/decisions/{_quote(request.path_params['id'])}?replay=1#replay-result",
                                status_code=303)

    async def do_whatif(request: Request) -> Response:
        session = need(request, "auditor", "editor")
        data = await form(request, session)
        version = _quote(str(data.get("version", "")))
        return RedirectResponse(f"/decisions/{_quote(request.path_params['id'])}?whatif={version}#whatif-result",
                                status_code=303)

    async def replay_view(record: dict[str, Any]) -> dict[str, Any]:
        engine = await asyncio.to_thread(c.registry.engine_for, record["version"])
        docs = await asyncio.to_thread(c.store.documents_of, record)
        result = await replay(engine, record, docs)
        div = result.divergence
        where = None if div is None else (f"trace event {div.index + 1}" if div.index >= 0 else div.what)
        return {"identical": result.identical, "where": where,
                "expected": None if div is None else _json(div.expected),
                "got": None if div is None else _json(div.got)}

    async def whatif_view(record: dict[str, Any], wanted: str) -> dict[str, Any]:
        try:
            version = await asyncio.to_thread(c.registry.resolve, wanted)
            engine = await asyncio.to_thread(c.registry.engine_for, version)
        except BatonError as e:
            return {"whatif_error": e.message}
        docs = await asyncio.to_thread(c.store.documents_of, record)
        w = await what_if(engine, record, documents=docs)
        return {"whatif": {"version": version, "w": w}}

    # -- rulesets -------------------------------------------------------------------------------------
    async def rulesets(request: Request) -> Response:
        need(request, "editor", "auditor", "approver")
        versions = await asyncio.to_thread(c.registry.versions)
        pubs = await asyncio.to_thread(c.registry.publications)
        await asyncio.to_thread(c.registry.refresh, True)  # a query: never on the event loop
        active = c.registry.active
        by_version: dict[str, list[Any]] = {}
        for p in pubs:
            by_version.setdefault(p.version, []).append(p)
        return page(request, "rulesets.html", versions=versions, active=active, pubs=by_version,
                    pending=[p for p in pubs if p.status == "pending"])

    async def ruleset_view(request: Request) -> Response:
        need(request, "editor", "auditor", "approver")
        try:
            version = await asyncio.to_thread(c.registry.resolve, request.path_params["version"])
            engine = await asyncio.to_thread(c.registry.engine_for, version)
        except BatonError as e:
            return page(request, "error.html", status=404, message=e.message)
        pubs = await asyncio.to_thread(c.registry.publications, "", "", version)
        table_rules = {t.rule_name(r) for t in engine.ruleset.tables for r in t.rows}
        return page(request, "ruleset.html", rs=engine.ruleset, pubs=pubs, table_rules=table_rules,
                    active=c.registry.active_version(engine.ruleset.name) == version)

    async def ruleset_diff(request: Request) -> Response:
        need(request, "editor", "auditor", "approver")
        q = request.query_params
        versions = await asyncio.to_thread(c.registry.versions)
        changes, error = None, ""
        if q.get("from") and q.get("to"):
            try:
                a = (await asyncio.to_thread(c.registry.engine_for, c.registry.resolve(q["from"]))).ruleset.source
                b = (await asyncio.to_thread(c.registry.engine_for, c.registry.resolve(q["to"]))).ruleset.source
                changes = diff_sources(a, b)
            except BatonError as e:
                error = e.message
        return page(request, "diff.html", versions=versions, changes=changes, q=q, error=error)

    async def editor(request: Request) -> Response:
        session = need(request, "editor", "approver")  # approvers read, test and preview; editors submit
        name = request.path_params["name"]
        source = ""
        if request.method == "POST":
            data = await form(request, session)
            source = str(data.get("source", ""))
            action = request.query_params.get("do", "validate")
            if action == "submit" and not session.has("editor"):
                raise PermissionError(f"{session.name} may review changes but not submit them (needs editor)")
            return await editor_action(request, session, name, source, action, data)
        try:
            version = request.query_params.get("version", "")
            source = (await asyncio.to_thread(c.registry.engine_for, version)).ruleset.source if version else (
                await asyncio.to_thread(c.registry.engine, name)).ruleset.source
        except BatonError:
            source = f"ruleset: {name}\nfacts:\n  example: {{ref: str}}\nrules:\n  - name: first\n" \
                     "    when: exists example\n    then: {decide: {route: review}}\n"
        return page(request, "editor.html", name=name, source=source, check=validate(source))

    def validate(source: str) -> dict[str, Any]:
        try:
            rs = load_ruleset(source, "draft.yaml")
        except CompileErrors as e:
            return {"valid": False, "errors": [error_dict(x) for x in e.errors], "warnings": []}
        return {"valid": True, "errors": [], "warnings": [error_dict(x) for x in rs.warnings], "version": rs.version,
                "name": rs.name, "rules": len(rs.rules), "tests": len(rs.tests)}

    async def editor_action(request: Request, session: Session, name: str, source: str, action: str,
                            data: FormData) -> Response:
        check = validate(source)
        context: dict[str, Any] = {"name": name, "source": source, "check": check}
        if len(source) > MAX_SOURCE:  # refused, but the analyst's text stays in the editor
            return page(request, "editor.html", status=413, **context)
        if check["valid"] and check["name"] != name:
            check = {**check, "valid": False, "errors": [{"code": "bad_name", "message": f"this editor is for "
                                                          f"{name!r}, the source says {check['name']!r}", "line": 1,
                                                          "column": 1, "hint": ""}]}
            context["check"] = check
        if action == "test" and check["valid"]:
            suite = await run_suite(load_ruleset(source, "draft.yaml"), time.time())
            context["suite"] = suite
        elif action == "whatif" and check["valid"]:  # the unsaved text against a stored decision
            decision_id = str(data.get("decision", "")).strip()
            context["decision_id"] = decision_id
            record = await asyncio.to_thread(c.store.get, decision_id) if decision_id else None
            if record is None:
                context["whatif_error"] = f"no stored decision {decision_id[:80]!r}"
            else:
                docs = await asyncio.to_thread(c.store.documents_of, record)
                draft = load_ruleset(source, "draft.yaml")
                w = await what_if(Engine(draft), record, documents=docs)
                context["whatif"] = {"version": draft.version, "w": w, "draft": True}
        elif action == "impact" and check["valid"]:
            last = _int(data.get("last"), 200, 1, 5000)
            context["impact"] = await impact(load_ruleset(source, "draft.yaml"), last)
        elif action == "submit" and check["valid"]:
            effective = None
            if data.get("effective_from"):
                try:
                    effective = dt.datetime.fromisoformat(str(data["effective_from"])).replace(
                        tzinfo=dt.UTC).timestamp()
                except ValueError:
                    context["submit_error"] = "effective from: use YYYY-MM-DDTHH:MM (UTC)"
            if "submit_error" not in context:
                rs = load_ruleset(source, f"{name}.yaml")
                try:
                    pub = await asyncio.to_thread(c.registry.submit, rs, session.name, str(data.get("note", "")),
                                                  effective)
                except GovernanceError as e:  # no note, or the version already in effect: the text stays
                    context["submit_error"] = e.message
                    context["note"] = str(data.get("note", ""))
                    return page(request, "editor.html", status=400, **context)
                return RedirectResponse(f"/publications#{pub.id}", status_code=303)
        return page(request, "editor.html", **context)

    async def impact(rs: Any, last: int, progress: Callable[[int, int], Awaitable[None]] | None = None
                     ) -> dict[str, Any]:
        ids = await asyncio.to_thread(c.store.recent_ids, rs.name, last)
        result = Impact()
        async for done, total in impact_steps(c.store, Engine(rs), ids, result, every=10):
            if progress is not None:
                await progress(done, total)
        changes = result.moves(decision_label)
        return {"decisions": result.decisions, "changed": len(result.changed), "unanswered": result.unanswered,
                "changes": changes, "chart": svg.bars([(f"{a} → {b}", float(k)) for a, b, k, _ in changes])}

    async def impact_stream(request: Request) -> Response:
        """NDJSON: progress lines, then the rendered result (used by the editor's script)."""
        session = need(request, "editor")
        data = await form(request, session)
        source = str(data.get("source", ""))
        check = validate(source)
        if not check["valid"]:
            return JSONResponse({"error": "the draft does not compile"}, status_code=400)
        rs = load_ruleset(source, "draft.yaml")
        last = _int(data.get("last"), 200, 1, 5000)
        queue: asyncio.Queue[str | None] = asyncio.Queue()

        async def progress(done: int, total: int) -> None:
            await queue.put(json.dumps({"done": done, "total": total}) + "\n")

        async def run() -> None:
            result = await impact(rs, last, progress)
            html = env.get_template("impact.html").render(impact=result)
            await queue.put(json.dumps({"html": html}) + "\n")
            await queue.put(None)

        task = asyncio.create_task(run())

        async def lines() -> AsyncIterator[str]:
            while (line := await queue.get()) is not None:
                yield line
            await task

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def api_validate(request: Request) -> Response:
        session = need(request, "editor")
        if not Sessions.csrf_ok(session, request.headers.get("x-csrf-token")):
            return JSONResponse({"error": "csrf"}, status_code=403)
        body = await request.json()
        return JSONResponse(validate(str(body.get("source", "")) if isinstance(body, dict) else ""))

    async def publications(request: Request) -> Response:
        need(request, "editor", "approver", "auditor")
        return await render_publications(request)

    async def render_publications(request: Request, error: str = "", status: int = 200) -> Response:
        pubs = await asyncio.to_thread(c.registry.publications)
        await asyncio.to_thread(c.registry.refresh, True)
        checks: dict[str, Any] = {}  # what an approver weighs: the candidate's own tests, run here
        for p in pubs:
            if p.status == "pending" and p.version not in checks:
                try:
                    engine = await asyncio.to_thread(c.registry.engine_for, p.version)
                    checks[p.version] = await run_suite(engine.ruleset, time.time())
                except BatonError:
                    checks[p.version] = None
        return page(request, "publications.html", status=status, pubs=pubs, error=error, active=c.registry.active,
                    checks=checks)

    async def review(request: Request) -> Response:
        session = need(request, "approver")
        data = await form(request, session)
        approve = request.path_params["verb"] == "approve"
        try:
            await asyncio.to_thread(c.registry.decide, request.path_params["id"], session.name, approve,
                                    str(data.get("note", "")))
        except (GovernanceError, BatonError) as e:
            return await render_publications(request, e.message, 403 if e.code == "four_eyes" else 400
                                             if e.code == "note_required" else 409)
        return RedirectResponse("/publications", status_code=303)

    # -- escalations ----------------------------------------------------------------------------------
    async def escalations(request: Request) -> Response:
        need(request, "reviewer", "auditor")
        rows = await asyncio.to_thread(c.store.escalations, None, request.query_params.get("status", "open") or None,
                                       500)
        return page(request, "escalations.html", rows=rows, now=time.time())

    async def escalation(request: Request) -> Response:
        session = need(request, "reviewer", "auditor")
        return await render_escalation(request, session, request.path_params["id"])

    async def render_escalation(request: Request, session: Session, esc_id: str, error: str = "",
                                values: dict[str, str] | None = None, status: int = 200,
                                note_text: dict[str, str] | None = None, errors: list[str] | None = None
                                ) -> Response:
        row = await asyncio.to_thread(c.store.escalation, esc_id)
        if row is None:
            return page(request, "error.html", status=404, message=f"no escalation {esc_id!r}")
        stored = await asyncio.to_thread(c.store.get, row["id"])
        record = await shown(stored, session)
        masking = record is not stored
        fields = []
        if row["expects"]:
            engine = await asyncio.to_thread(c.registry.engine_for, row["version"])
            ft = engine.ruleset.types.get(row["expects"])
            identity, fixed = answer_form(engine, stored or {})
            if ft is not None:
                fields = [{"name": n, "kind": spec.kind, "enum": list(spec.enum), "optional": spec.optional,
                           "identity": n == identity, "fixed": n in fixed,
                           "masked": masking and spec.pii and n in fixed,
                           "value": session.name if n == identity else MASK if masking and spec.pii and n in fixed
                           else fixed.get(n)}
                          for n, spec in ft.fields.items()]
        facts = [e for e in (record or {}).get("trace", []) if e.get("kind") == "fact"]
        resumed = await shown(await asyncio.to_thread(c.store.get, row["resumed_decision_id"]), session) \
            if row["resumed_decision_id"] else None
        answer = json.loads(row["answer"]) if row.get("answer") else None
        if answer is not None and masking and stored is not None:
            private = await asyncio.to_thread(c.registry.private_fields, str(stored["version"]))
            answer = scrubber(secrets_of(stored, private or {}))(answer)
        notes = await asyncio.to_thread(c.store.escalation_notes, esc_id)
        return page(request, "escalation.html", status=status, row=row, facts=facts, fields=fields, error=error,
                    values=values or {}, now=time.time(), record=record, resumed=resumed, answer=answer,
                    notes=notes, note_text=note_text or {}, errors=errors or [])

    async def resolve(request: Request) -> Response:
        session = need(request, "reviewer")
        data = await form(request, session)
        esc_id = request.path_params["id"]
        row = await asyncio.to_thread(c.store.escalation, esc_id)
        if row is None or c.escalations is None:
            return page(request, "error.html", status=404, message=f"no escalation {esc_id!r}")
        engine = await asyncio.to_thread(c.registry.engine_for, row["version"])
        ft = engine.ruleset.types.get(row["expects"] or "")
        values = {k: str(v) for k, v in data.items() if k.startswith("f_")}
        record = await asyncio.to_thread(c.store.get, esc_id)
        identity, fixed = answer_form(engine, record or {})
        answer: dict[str, Any] = {}
        problems: list[str] = []  # every field's problem at once, not one per submit
        if ft is not None:
            for n, spec in ft.fields.items():
                if n == identity:
                    continue  # whatever the form says: the escalation records the signed-in reviewer
                raw = values.get(f"f_{n}", "").strip()
                if raw == "":
                    if not spec.optional and n not in fixed:
                        problems.append(f"{n}: required")
                    continue  # left empty: absent (the fact type says whether it may be)
                answer[n] = _typed(raw, spec.kind, spec.items.kind if spec.items else "str")
                try:
                    check_field(spec, answer[n], f"answer.{n}")
                except InvalidInput as e:
                    problems.append(e.message)
        if problems:
            return await render_escalation(request, session, esc_id, error=f"{len(problems)} problem(s) in the "
                                           "answer", values=values, status=400, errors=problems)
        try:
            await c.escalations.resolve(esc_id, answer, session.name)
        except (InvalidInput, NotOpen, BatonError) as e:
            return await render_escalation(request, session, esc_id, error=e.message, values=values, status=400)
        return RedirectResponse(f"/escalations/{esc_id}", status_code=303)

    # -- effects: the outbox, dead letters, retries ---------------------------------------------------
    async def effects(request: Request) -> Response:
        need(request, "auditor")
        status = request.query_params.get("status", "dead")
        rows = await asyncio.to_thread(c.store.effects, status or None, 500)
        return page(request, "effects.html", rows=rows, wanted=status, now=time.time())

    async def effect(request: Request) -> Response:
        need(request, "auditor")
        row = await asyncio.to_thread(c.store.effect, request.path_params["id"])
        if row is None:
            return page(request, "error.html", status=404, message="no such effect")
        return page(request, "effect.html", row=row, payload=json.loads(row["payload"]), now=time.time())

    async def retry_effects(request: Request) -> Response:
        """Dead letters back in the queue (one, or all): an auditor who found them failing may retry them;
        who did it is recorded with each."""
        session = need(request, "auditor")
        await form(request, session)
        effect_id = request.path_params.get("id")
        await asyncio.to_thread(c.store.retry_effects, [effect_id] if effect_id else None, time.time(),
                                session.name)
        return RedirectResponse(f"/effects/{_quote(effect_id)}" if effect_id else "/effects?status=pending",
                                status_code=303)

    # -- the hash chain: verify the whole log -------------------------------------------------------
    async def verify_log(request: Request) -> Response:
        """NDJSON progress, then the result, which is kept with who ran it (the console's script shows it;
        without the script the POST answers when it is done)."""
        session = need(request, "auditor")
        await form(request, session)
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def progress(checked: int, total: int) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, json.dumps({"done": checked, "total": total}) + "\n")

        async def run() -> None:
            started = time.time()
            try:
                checked, problem = await asyncio.to_thread(c.store.verify, 500, progress)
                row = await asyncio.to_thread(c.store.record_chain_check, session.name, started, time.time(),
                                              checked, problem)
                html = env.get_template("_chain.html").render(check=row, session=session)
                await queue.put(json.dumps({"html": html, "intact": problem is None}) + "\n")
            finally:
                await queue.put(None)

        task = asyncio.create_task(run())
        if "text/html" in request.headers.get("accept", ""):
            await task
            return RedirectResponse("/ops#chain", status_code=303)

        async def lines() -> AsyncIterator[str]:
            while (line := await queue.get()) is not None:
                yield line
            await task

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def escalation_action(request: Request) -> Response:
        """Comment, assign (to someone, or to oneself) and close/decline: post/redirect/get; an error shows on
        the escalation's page, what was typed kept."""
        session = need(request, "reviewer")
        data = await form(request, session)
        esc_id = request.path_params["id"]
        verb = request.path_params["verb"]
        if c.escalations is None:
            return page(request, "error.html", status=404, message=f"no escalation {esc_id!r}")
        try:
            if verb == "comment":
                await c.escalations.comment(esc_id, str(data.get("text", "")), session.name)
            elif verb == "assign":
                to = session.name if data.get("me") else str(data.get("to", ""))
                await c.escalations.assign(esc_id, to, session.name)
            elif verb == "close":
                await c.escalations.close(esc_id, str(data.get("reason", "")), session.name)
            else:
                return page(request, "error.html", status=404, message="no such action")
        except (InvalidInput, NotOpen, BatonError) as e:
            return await render_escalation(request, session, esc_id, error=e.message, status=400,
                                           note_text={verb: str(data.get("text") or data.get("reason") or "")})
        return RedirectResponse(f"/escalations/{_quote(esc_id)}#notes", status_code=303)

    # -- operations -----------------------------------------------------------------------------------
    async def ops(request: Request) -> Response:
        need(request)
        hours = _int(request.query_params.get("hours"), 1, 1, 24 * 30)
        since = time.time() - hours * 3600
        st = await asyncio.to_thread(c.store.stats, since)
        checks = await asyncio.to_thread(c.store.chain_checks, 1)
        costs = await asyncio.to_thread(c.store.cost_totals, since)
        labels = [utc_text(since + i * st["bucket_s"])[11:16] for i in range(len(st["per_bucket"]))]
        rate = [n / st["bucket_s"] for n in st["per_bucket"]]
        cost_series = [(f"{r} / {m if m and m != '?' else 'model not reported'}", v)
                       for (r, m), v in sorted(st["cost"].items())]
        return page(request, "ops.html", st=st, hours=hours,
                    rate_chart=svg.columns([("decisions/s", rate)], labels, unit="/s"),
                    cost_chart=svg.columns(cost_series, labels, unit=" USD"),
                    outcome_chart=svg.bars([(k, float(v)) for k, v in sorted(st["outcomes"].items())]),
                    total=sum(st["per_bucket"]), check=checks[0] if checks else None, costs=costs)

    # -- plumbing -------------------------------------------------------------------------------------
    def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            request.state.session = c.sessions.session(request)
            try:
                response = await handler(request)
            except Denied:
                wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                response = RedirectResponse(f"/login?next={_quote(wanted)}" if wanted != "/" else "/login",
                                            status_code=303) if request.method == "GET" else \
                    page(request, "error.html", status=401, message="sign in first")
            except PermissionError as e:
                response = page(request, "error.html", status=403, message=str(e))
            except TooLarge as e:
                response = page(request, "error.html", status=413, message=str(e))
            except Exception:
                incident = secrets.token_hex(6)
                log.exception("console error %s", incident)
                response = page(request, "error.html", status=500, message=f"internal error (incident {incident})")
            for k, v in HEADERS.items():
                response.headers.setdefault(k, v)
            return response

        return run

    routes = [
        Route("/login", guarded(login), methods=["GET", "POST"]),
        Route("/logout", guarded(logout), methods=["POST"]),
        Route("/", guarded(home)),
        Route("/decisions", guarded(decisions)),
        Route("/decisions/{id}", guarded(decision)),
        Route("/decisions/{id}/replay", guarded(do_replay), methods=["POST"]),
        Route("/decisions/{id}/whatif", guarded(do_whatif), methods=["POST"]),
        Route("/rulesets", guarded(rulesets)),
        Route("/rulesets/diff", guarded(ruleset_diff)),
        Route("/rulesets/v/{version}", guarded(ruleset_view)),
        Route("/rulesets/edit/{name}", guarded(editor), methods=["GET", "POST"]),
        Route("/rulesets/impact", guarded(impact_stream), methods=["POST"]),
        Route("/api/validate", guarded(api_validate), methods=["POST"]),
        Route("/publications", guarded(publications)),
        Route("/publications/{id}/{verb:str}", guarded(review), methods=["POST"]),
        Route("/escalations", guarded(escalations)),
        Route("/escalations/{id}", guarded(escalation)),
        Route("/escalations/{id}/resolve", guarded(resolve), methods=["POST"]),
        Route("/escalations/{id}/{verb:str}", guarded(escalation_action), methods=["POST"]),
        Route("/ops", guarded(ops)),
        Route("/ops/verify", guarded(verify_log), methods=["POST"]),
        Route("/effects", guarded(effects)),
        Route("/effects/retry", guarded(retry_effects), methods=["POST"]),
        Route("/effects/{id}", guarded(effect)),
        Route("/effects/{id}/retry", guarded(retry_effects), methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        response = page(request, "error.html", status=404, message="no such page")
        response.headers.update(HEADERS)
        return response

    return Starlette(routes=routes, exception_handlers={404: not_found})


def _local(target: str) -> str:
    """A sign-in's destination, only if it is a path on this console (never another site)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target or any(ord(ch) < 32 for ch in target):
        return ""
    return target[:2000]


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _int(value: Any, default: int, lo: int, hi: int) -> int:
    try:
        return max(lo, min(hi, int(str(value))))
    except (TypeError, ValueError):
        return default


def _typed(raw: str, kind: str, item_kind: str) -> Any:
    """A form field's text as the field's kind; validation against the fact type happens after."""
    if kind == "list":
        return [_typed(x.strip(), item_kind, "str") for x in raw.split(",") if x.strip()]
    if kind in ("number", "int"):
        try:
            return int(raw) if raw.lstrip("-").isdigit() else float(raw)
        except ValueError:
            return raw
    if kind == "bool":
        return {"true": True, "false": False, "on": True, "yes": True, "no": False}.get(raw.lower(), raw)
    return raw


def error_dict(e: BatonError) -> dict[str, Any]:
    return {"code": e.code, "message": e.message, "line": e.where.line if e.where else 0,
            "column": e.where.column if e.where else 0, "hint": e.hint}


def timeline(record: dict[str, Any]) -> dict[str, Any]:
    """The decision as rounds: each round's facts, firings (with the facts they matched), proposals,
    calls and effects, in trace order."""
    facts = {e["seq"]: e for e in record["trace"] if e.get("kind") == "fact"}
    rounds: dict[int, list[dict[str, Any]]] = {}
    current = 1
    for e in record["trace"]:
        current = int(e.get("round", current) or current)
        item = dict(e)
        if e.get("kind") == "fired":
            item["matched"] = [(binding, facts.get(seq)) for binding, seq in e["facts"].items()]
        rounds.setdefault(current, []).append(item)
    inputs = [e for e in record["trace"] if e.get("kind") == "fact" and e.get("source") == "input"]
    return {"rounds": sorted(rounds.items()), "inputs": inputs,
            "calls": [e for e in record["trace"] if e.get("kind") == "call"]}
