"""Signing in and out, and where each role starts."""

from __future__ import annotations

import asyncio
import secrets

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from adapters.doors.console.security import COOKIE
from adapters.doors.console.ui import (
    UI,
    _local,
)
from adapters.doors.grpc.auth import AuthError


class SessionPages:
    def __init__(self, ui: UI) -> None:
        self.ui, self.c = ui, ui.c

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            nonce = secrets.token_urlsafe(16)
            ended = self.c.sessions.why(request.query_params.get("why", ""))
            response: Response = self.ui.page(request, "login.html", nonce=nonce, error="", ended=ended,
                                              next=_local(request.query_params.get("next", "")))
            response.set_cookie("baton_login", nonce, httponly=True, samesite="strict", secure=self.c.sessions.secure,
                                max_age=600)
            return response
        data = await request.form()
        nonce = request.cookies.get("baton_login", "")
        if not nonce or data.get("nonce") != nonce:
            return self.ui.page(request, "login.html", status=403, nonce=nonce,
                                error="the sign-in form expired; try again", next=_local(str(data.get("next", ""))))
        try:
            _, cookie = await asyncio.to_thread(self.c.sessions.sign_in, str(data.get("token", "")))
        except AuthError as e:
            return self.ui.page(request, "login.html", status=403, nonce=nonce, error=e.message,
                        next=_local(str(data.get("next", ""))))
        response = RedirectResponse(_local(str(data.get("next", ""))) or "/", status_code=303)
        response.set_cookie(COOKIE, cookie, httponly=True, samesite="strict", secure=self.c.sessions.secure,
                            max_age=int(self.c.sessions.absolute_s))
        response.delete_cookie("baton_login")
        return response

    async def logout(self, request: Request) -> Response:
        session = self.ui.need(request)
        await self.ui.form(request, session)
        await asyncio.to_thread(self.c.sessions.end, session, "signed_out")  # this cookie is refused from now on
        response = RedirectResponse("/login?why=signed_out", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    async def home(self, request: Request) -> Response:
        session = self.ui.need(request)
        for roles, target in ((("auditor",), "/decisions"), (("reviewer",), "/escalations"),
                              (("editor", "approver"), "/rulesets")):
            if session.has(*roles):
                return RedirectResponse(target, status_code=303)
        return RedirectResponse("/ops", status_code=303)

    def routes(self) -> list[Route]:
        g = self.ui.guarded
        return [
            Route("/login", g(self.login), methods=["GET", "POST"]),
            Route("/logout", g(self.logout), methods=["POST"]),
            Route("/", g(self.home)),
        ]
