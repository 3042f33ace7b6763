"""Publications: four-eyes approval, with each candidate's notes and test results; a page per publication
where approvers (and editors, auditors) read the candidate's tests, its rule-level diff against the version
in effect and its impact over recent decisions, and comment on a rule or a table row of the diff (the
comments stay with the publication in its history)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from adapters.doors.console.rulesets import RulesetPages
from adapters.doors.console.ui import (
    UI,
    _int,
    _quote,
)
from adapters.infra.candidates import SuiteOutcome
from adapters.usecases.registry import GovernanceError
from engine.codes import Status, status_of
from engine.errors import BatonError
from engine.language.diff import diff_sources

MAX_COMMENT = 4000
# a refused approval or rejection: the HTTP status for the code's gRPC status (others: 409, the publication's state)
REVIEW_REFUSED: dict[Status | None, int] = {Status.PERMISSION_DENIED: 403, Status.INVALID_ARGUMENT: 400}


SUITE_TTL_S = 60.0


class PublicationPages:
    def __init__(self, ui: UI) -> None:
        self.ui, self.c = ui, ui.c
        # version -> (when, its tests' outcome, why they could not run): a version's tests give the same
        # answer for a while (only those that read the clock differ), and each run starts a child
        self.suites: dict[str, tuple[float, SuiteOutcome | None, str]] = {}

    async def publications(self, request: Request) -> Response:
        self.ui.need(request, "editor", "approver", "auditor")
        return await self.render_publications(request)

    async def render_publications(self, request: Request, error: str = "", status: int = 200) -> Response:
        pubs = await asyncio.to_thread(self.c.registry.publications)
        await asyncio.to_thread(self.c.registry.refresh, True)
        # what an approver weighs: each pending candidate's own tests, run by bounded children side by side
        pending = list(dict.fromkeys(p.version for p in pubs if p.status == "pending"))
        suites = await asyncio.gather(*(self.suite(v) for v in pending))
        checks: dict[str, Any] = {v: found for v, (found, _) in zip(pending, suites, strict=True)}
        comments = await asyncio.to_thread(self.c.store.publication_comments, [p.id for p in pubs])
        return self.ui.page(request, "publications.html", status=status, pubs=pubs, error=error,
                            active=self.c.registry.active, checks=checks, comments=comments)

    def source_now(self, version: str) -> str:
        found = self.c.store.ruleset_source(version)
        if found is None:
            raise BatonError("unknown_version", f"no ruleset version {version[:12]}")
        return found[1]

    async def source(self, version: str) -> str:
        return await asyncio.to_thread(self.source_now, version)

    async def suite(self, version: str) -> tuple[SuiteOutcome | None, str]:
        """A stored version's own tests, run by the bounded child; or why they could not run (it no longer
        compiles, or is over the limits)."""
        cached = self.suites.get(version)
        if cached is not None and time.monotonic() - cached[0] < SUITE_TTL_S:
            return cached[1], cached[2]
        try:
            found: tuple[SuiteOutcome | None, str] = (await self.c.candidates.asuite(
                await self.source(version), f"{version[:12]}.yaml", time.time()))[1], ""
        except BatonError as e:
            found = None, e.message
        if len(self.suites) > 256:
            self.suites.clear()
        self.suites[version] = (time.monotonic(), *found)
        return found

    async def publication(self, request: Request, error: str = "", status: int = 200) -> Response:
        """One publication, read-only: the candidate's tests, its changes against the version it replaces
        (the one in effect while pending; the one before it once decided) and, while pending, its impact
        over the last decisions of its ruleset; comments by rule and table row."""
        self.ui.need(request, "editor", "approver", "auditor")
        pub = await asyncio.to_thread(self.c.store.publication, request.path_params["id"])
        if pub is None:
            return self.ui.page(request, "error.html", status=404, message="no such publication")
        await asyncio.to_thread(self.c.registry.refresh, True)
        base = self.c.registry.active.get(pub.ruleset) if pub.status == "pending" else None
        if pub.status != "pending":  # the version in effect before this one was decided
            earlier = [p for p in await asyncio.to_thread(self.c.registry.publications, pub.ruleset, "published")
                       if p.id != pub.id and (p.decided_at or 0) <= (pub.decided_at or pub.submitted_at)]
            base = max(earlier, key=lambda p: p.decided_at or 0).version if earlier else None
        suite, changes, impact, problem = None, None, None, ""
        last = _int(request.query_params.get("last"), 200, 1, 5000)
        try:  # a pending version is not trusted yet: its tests and impact run in the bounded child
            source = await self.source(pub.version)
            if pub.status == "pending":  # its tests and its impact, each in a bounded child, side by side
                (suite, problem), impact = await asyncio.gather(self.suite(pub.version),
                                                                RulesetPages(self.ui).impact(source, last))
            else:
                suite, problem = await self.suite(pub.version)
            if base and base != pub.version:
                changes = await self.c.candidates.arun(lambda: diff_sources(self.source_now(base), source))
        except BatonError as e:
            problem = e.message
        comments = (await asyncio.to_thread(self.c.store.publication_comments, [pub.id])).get(pub.id, [])
        by_target: dict[str, list[dict[str, Any]]] = {}
        for c in comments:
            by_target.setdefault(str(c["target"]), []).append(c)
        return self.ui.page(request, "publication.html", status=status, p=pub, base=base, suite=suite,
                            changes=changes, impact=impact, last=last, problem=problem, comments=comments,
                            by_target=by_target, error=error)

    async def comment(self, request: Request) -> Response:
        """A review comment on a pending publication: on the change as a whole, or on one rule or table row
        of its diff (``target``: "rule high-risk", "table risk-band · row 1")."""
        session = self.ui.need(request, "approver", "editor")
        data = await self.ui.form(request, session)
        pub_id = request.path_params["id"]
        pub = await asyncio.to_thread(self.c.store.publication, pub_id)
        if pub is None:
            return self.ui.page(request, "error.html", status=404, message="no such publication")
        text, target = str(data.get("text", "")).strip(), str(data.get("target", "")).strip()[:300]
        if pub.status != "pending":
            return await self.publication(request, f"this change is already {pub.status}: comments are closed", 409)
        if not text:
            return await self.publication(request, "a comment needs some text", 400)
        if len(text) > MAX_COMMENT:
            return await self.publication(request, f"a comment is at most {MAX_COMMENT} characters", 400)
        await asyncio.to_thread(self.c.store.comment_publication, pub_id, session.name, target, text, time.time())
        return RedirectResponse(f"/publications/{_quote(pub_id)}#comments", status_code=303)

    async def review(self, request: Request) -> Response:
        session = self.ui.need(request, "approver")
        data = await self.ui.form(request, session)
        approve = request.path_params["verb"] == "approve"
        try:
            await asyncio.to_thread(self.c.registry.decide, request.path_params["id"], session.name, approve,
                                    str(data.get("note", "")))
        except (GovernanceError, BatonError) as e:
            return await self.render_publications(request, e.message, REVIEW_REFUSED.get(status_of(e.code), 409))
        if data.get("back") == "publication":
            return RedirectResponse(f"/publications/{_quote(request.path_params['id'])}", status_code=303)
        return RedirectResponse("/publications", status_code=303)

    def routes(self) -> list[Route]:
        g = self.ui.guarded
        return [
            Route("/publications", g(self.publications)),
            Route("/publications/{id}", g(self.publication)),
            Route("/publications/{id}/comment", g(self.comment), methods=["POST"]),
            Route("/publications/{id}/{verb:str}", g(self.review), methods=["POST"]),
        ]
