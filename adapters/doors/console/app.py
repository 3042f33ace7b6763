"""The console's pages and actions (Starlette + Jinja2, server-rendered; a little JavaScript of our own
for live validation, impact progress and SLA countdowns — every page works without it).

Roles are the gRPC ones: auditors read decisions, replay, what-if, why and verify; editors edit,
validate, test, preview impact and submit rulesets; approvers approve or reject (never their own);
reviewers answer escalations; admins do everything. Facts, prompts and model answers are hostile
text: templates autoescape everything and nothing user-supplied is marked safe.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from adapters.doors.console.decisions import DecisionPages
from adapters.doors.console.dmn import DmnPages
from adapters.doors.console.escalations import EscalationPages
from adapters.doors.console.operations import OperationPages
from adapters.doors.console.publications import PublicationPages
from adapters.doors.console.rulesets import RulesetPages
from adapters.doors.console.security import HEADERS
from adapters.doors.console.session import SessionPages
from adapters.doors.console.tables import TablePages
from adapters.doors.console.ui import HERE, UI, Console

__all__ = ["Console", "create_app"]


def create_app(console: Console) -> Starlette:
    """The console: one class of pages per area (as the gRPC services are grouped), sharing one UI."""
    ui = UI(console)
    console.sessions.store = console.store  # sessions are kept in the store
    areas = (SessionPages(ui), DecisionPages(ui), RulesetPages(ui), PublicationPages(ui), EscalationPages(ui),
             OperationPages(ui), TablePages(ui), DmnPages(ui))
    routes: list[BaseRoute] = [route for pages in areas for route in pages.routes()]
    routes.append(Mount("/static", StaticFiles(directory=HERE / "static"), name="static"))

    async def not_found(request: Request, exc: Exception) -> Response:
        response = ui.page(request, "error.html", status=404, message="no such page")
        response.headers.update(HEADERS)
        return response

    app = Starlette(routes=routes, exception_handlers={404: not_found})
    app.state.console = console  # the service fills in what only it knows (effect_names)
    return app
