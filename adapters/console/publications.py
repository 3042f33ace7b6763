"""Publications: four-eyes approval, with each candidate's notes and test results."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from adapters.console.ui import (
    UI,
)
from adapters.registry import GovernanceError
from engine.errors import BatonError
from engine.testing import run_suite


class PublicationPages:
    def __init__(self, ui: UI) -> None:
        self.ui, self.c = ui, ui.c

    async def publications(self, request: Request) -> Response:
        self.ui.need(request, "editor", "approver", "auditor")
        return await self.render_publications(request)

    async def render_publications(self, request: Request, error: str = "", status: int = 200) -> Response:
        pubs = await asyncio.to_thread(self.c.registry.publications)
        await asyncio.to_thread(self.c.registry.refresh, True)
        checks: dict[str, Any] = {}  # what an approver weighs: the candidate's own tests, run here
        for p in pubs:
            if p.status == "pending" and p.version not in checks:
                try:
                    engine = await asyncio.to_thread(self.c.registry.engine_for, p.version)
                    checks[p.version] = await run_suite(engine.ruleset, time.time())
                except BatonError:
                    checks[p.version] = None
        return self.ui.page(request, "publications.html", status=status, pubs=pubs, error=error,
                            active=self.c.registry.active, checks=checks)

    async def review(self, request: Request) -> Response:
        session = self.ui.need(request, "approver")
        data = await self.ui.form(request, session)
        approve = request.path_params["verb"] == "approve"
        try:
            await asyncio.to_thread(self.c.registry.decide, request.path_params["id"], session.name, approve,
                                    str(data.get("note", "")))
        except (GovernanceError, BatonError) as e:
            return await self.render_publications(request, e.message, 403 if e.code == "four_eyes" else 400
                                             if e.code == "note_required" else 409)
        return RedirectResponse("/publications", status_code=303)

    def routes(self) -> list[Route]:
        g = self.ui.guarded
        return [
            Route("/publications", g(self.publications)),
            Route("/publications/{id}/{verb:str}", g(self.review), methods=["POST"]),
        ]
