"""Escalations: the inbox, answering, assigning, commenting, closing and declining."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from adapters.doors.console.security import Session
from adapters.doors.console.ui import (
    UI,
    _quote,
    _typed,
)
from adapters.usecases.escalations import AnswerForm, AnswerProblems, NotOpen
from engine.codes import Code
from engine.errors import BatonError, InvalidInput
from engine.pii import MASK, scrubber, secrets_of

MAX_BULK = 500  # escalations or effects one bulk action handles


class EscalationPages:
    def __init__(self, ui: UI) -> None:
        self.ui, self.c = ui, ui.c

    async def escalations(self, request: Request) -> Response:
        self.ui.need(request, "reviewer", "auditor")
        wanted = request.query_params.get("status", "open") or None
        rows = await asyncio.to_thread(self.c.store.escalations, None, wanted, 500)
        await self.ui.flag(request, [str(r["id"]) for r in rows])  # an escalation is its escalated decision
        return self.ui.page(request, "escalations.html", rows=rows, now=time.time())

    async def escalation(self, request: Request) -> Response:
        session = self.ui.need(request, "reviewer", "auditor")
        return await self.render_escalation(request, session, request.path_params["id"])

    async def render_escalation(self, request: Request, session: Session, esc_id: str, error: str = "",
                                values: dict[str, str] | None = None, status: int = 200,
                                note_text: dict[str, str] | None = None, errors: list[str] | None = None
                                ) -> Response:
        row = await asyncio.to_thread(self.c.store.escalation, esc_id)
        if row is None:
            return self.ui.page(request, "error.html", status=404, message=f"no escalation {esc_id!r}")
        stored = await asyncio.to_thread(self.c.store.get, row["id"])
        record = await self.ui.shown(stored, session)
        masking = record is not stored
        fields = []
        form = await self.c.escalations.form(esc_id) if row["expects"] and self.c.escalations is not None else None
        if form is not None:
            identity, fixed = form.identity, form.fixed
            fields = [{"name": n, "kind": spec.kind, "enum": list(spec.enum), "optional": spec.optional,
                       "identity": n == identity, "fixed": n in fixed, "masked": masking and spec.pii and n in fixed,
                       "value": session.name if n == identity else MASK if masking and spec.pii and n in fixed
                       else fixed.get(n)}
                      for n, spec in form.fields.items()]
        facts = [e for e in (record["trace"] if record else []) if e.get("kind") == "fact"]
        resumed = await self.ui.shown(await asyncio.to_thread(self.c.store.get, row["resumed_decision_id"]), session) \
            if row["resumed_decision_id"] else None
        answer = json.loads(row["answer"]) if row.get("answer") else None
        if answer is not None and masking and stored is not None:
            private = await asyncio.to_thread(self.c.registry.private_fields, str(stored["version"]))
            answer = scrubber(secrets_of(stored, private or {}))(answer)
        notes = await asyncio.to_thread(self.c.store.escalation_notes, esc_id)
        return self.ui.page(request, "escalation.html", status=status, row=row, facts=facts, fields=fields, error=error,
                    values=values or {}, now=time.time(), record=record, resumed=resumed, answer=answer,
                    notes=notes, note_text=note_text or {}, errors=errors or [])

    async def resolve(self, request: Request) -> Response:
        session = self.ui.need(request, "reviewer")
        data = await self.ui.form(request, session)
        esc_id = request.path_params["id"]
        if self.c.escalations is None:
            return self.ui.page(request, "error.html", status=404, message=f"no escalation {esc_id!r}")
        values = {k: str(v) for k, v in data.items() if k.startswith("f_")}

        def typed(form: AnswerForm) -> dict[str, Any]:  # the form's text, typed; checking it is the use case's
            return {n: _typed(raw, spec.kind, spec.items.kind if spec.items else "str")
                    for n, spec in form.fields.items()
                    if (raw := values.get(f"f_{n}", "").strip()) and n != form.identity}  # empty: absent

        try:
            await self.c.escalations.resolve_form(esc_id, typed, session.name)
        except AnswerProblems as e:
            return await self.render_escalation(request, session, esc_id, error=f"{len(e.problems)} problem(s) in "
                                                "the answer", values=values, status=400, errors=e.problems)
        except BatonError as e:
            if e.code == Code.UNKNOWN_ESCALATION:
                return self.ui.page(request, "error.html", status=404, message=f"no escalation {esc_id!r}")
            return await self.render_escalation(request, session, esc_id, error=e.message, values=values, status=400)
        return RedirectResponse(f"/escalations/{esc_id}", status_code=303)

    async def escalation_action(self, request: Request) -> Response:
        """Comment, assign (to someone, or to oneself) and close/decline: post/redirect/get; an error shows on
        the escalation's page, what was typed kept."""
        session = self.ui.need(request, "reviewer")
        data = await self.ui.form(request, session)
        esc_id = request.path_params["id"]
        verb = request.path_params["verb"]
        if self.c.escalations is None:
            return self.ui.page(request, "error.html", status=404, message=f"no escalation {esc_id!r}")
        try:
            if verb == "comment":
                await self.c.escalations.comment(esc_id, str(data.get("text", "")), session.name)
            elif verb == "assign":
                to = session.name if data.get("me") else str(data.get("to", ""))
                await self.c.escalations.assign(esc_id, to, session.name)
            elif verb == "close":
                await self.c.escalations.close(esc_id, str(data.get("reason", "")), session.name)
            else:
                return self.ui.page(request, "error.html", status=404, message="no such action")
        except (InvalidInput, NotOpen, BatonError) as e:
            return await self.render_escalation(request, session, esc_id, error=e.message, status=400,
                                           note_text={verb: str(data.get("text") or data.get("reason") or "")})
        return RedirectResponse(f"/escalations/{_quote(esc_id)}#notes", status_code=303)

    async def bulk_close(self, request: Request) -> Response:
        """The selected open escalations, with one note recorded on each with who did it: closed (no answer
        expected) or declined (an answer expected); or resolved, each with the answer its escalation already
        gives (the reviewer's identity and the fields it fixes) - one that needs more is skipped and listed,
        as is one no longer open."""
        session = self.ui.need(request, "reviewer")
        data = await self.ui.form(request, session)
        picked = list(dict.fromkeys(str(v) for v in data.getlist("pick")))[:MAX_BULK]
        note = str(data.get("note", "")).strip()
        results: list[tuple[str, str, str]] = []  # escalation, what happened, the decision it resumed into
        error = "" if picked else "select at least one escalation"
        resolve = data.get("action") == "resolve"
        if picked and not note:
            error = f"say why they are {'resolved' if resolve else 'closed'} (one note, kept with each)"
        if self.c.escalations is None:
            error = "escalations are not enabled here"
        if not error:
            assert self.c.escalations is not None
            for esc_id in picked:
                try:
                    if resolve:
                        _, resumed = await self.c.escalations.resolve(esc_id, {}, session.name)
                        await self.c.escalations.comment(esc_id, note, session.name)
                        results.append((esc_id, f"resolved: {resumed['outcome']}", str(resumed["decision_id"])))
                    else:
                        done = await self.c.escalations.close(esc_id, note, session.name)
                        results.append((esc_id, str(done["status"]), ""))
                except (InvalidInput, NotOpen, BatonError) as e:
                    results.append((esc_id, f"skipped: {e.message}", ""))
        rows = await asyncio.to_thread(self.c.store.escalations, None, "open", 500)
        await self.ui.flag(request, [str(r["id"]) for r in rows])
        return self.ui.page(request, "escalations.html", status=400 if error else 200, rows=rows, now=time.time(),
                            bulk_error=error, bulk_results=results, bulk_note=note, picked=set(picked),
                            bulk_done=sum(not outcome.startswith("skipped") for _, outcome, _ in results),
                            bulk_verb="resolved" if resolve else "closed")

    def routes(self) -> list[Route]:
        g = self.ui.guarded
        return [
            Route("/escalations", g(self.escalations)),
            Route("/escalations/bulk", g(self.bulk_close), methods=["POST"]),
            Route("/escalations/{id}", g(self.escalation)),
            Route("/escalations/{id}/resolve", g(self.resolve), methods=["POST"]),
            Route("/escalations/{id}/{verb:str}", g(self.escalation_action), methods=["POST"]),
        ]
