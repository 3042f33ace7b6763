"""What every console page shares: templates, the signed-in session and its roles, forms with their CSRF
token and size limit, personal data masked by role, and the guard that turns errors into pages."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from adapters.doors.console.security import COOKIE, HEADERS, Session, Sessions
from adapters.infra.candidates import CandidateCompiler
from adapters.infra.store.sql import SqlStore
from adapters.infra.system import utc_text
from adapters.usecases.audits import Audits
from adapters.usecases.escalations import Escalations
from adapters.usecases.registry import RulesetRegistry
from engine.errors import BatonError
from engine.language.source import MAX_SOURCE
from engine.pii import mask_record
from engine.record import DecisionRecord

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
    # the effects this service has a connector for (None: not known); others wait in the outbox, never tried
    effect_names: frozenset[str] | None = None
    candidates: CandidateCompiler = field(default_factory=CandidateCompiler)  # what editors type, bounded
    audits: Audits | None = None  # replay, what-if, impact (None: over this console's own store and compiler)

    def __post_init__(self) -> None:
        if self.audits is None:  # the same store, registry and compiler: nothing of its own
            self.audits = Audits(store=self.store, registry=self.registry, candidates=self.candidates)

    @property
    def audit(self) -> Audits:
        assert self.audits is not None
        return self.audits


MAX_FORM = 8_000_000  # bytes of one console form: room for the largest ruleset (MAX_SOURCE characters)


class TooLarge(Exception):
    """A request body beyond what the console reads (HTTP 413)."""


class Denied(Exception):
    pass




def visible(value: Any) -> str:
    """Text a caller named (a document's name) with its control characters written out as escapes: it is
    stored as given, for the record, but a NUL or an ESC[2J is shown, not acted on."""
    return "".join(c if c.isprintable() or c == " " else (f"\\x{ord(c):02x}" if ord(c) < 0x100 else
                                                          f"\\u{ord(c):04x}") for c in str(value))


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "), default=str)




class UI:
    def __init__(self, console: Console) -> None:
        self.c = console
        self._verifying: asyncio.Task[None] | None = None  # the console's own whole-log verification
        self._verified_at = -3600.0
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                               trim_blocks=True, lstrip_blocks=True)
        self.env.filters.update(when=utc_text, json=_json, compact=_compact, short=lambda v: str(v)[:12],
                                visible=visible)

    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        session = getattr(request.state, "session", None)
        context.setdefault("chain_alert", getattr(request.state, "chain_alert", None))
        context.setdefault("rows_broken", getattr(request.state, "rows_broken", {}))
        html = self.env.get_template(template).render(request=request, session=session, **context)
        return HTMLResponse(html, status_code=status)

    async def flag(self, request: Request, ids: list[str]) -> dict[str, str]:
        """The decisions among ``ids`` whose stored rows fail their hash check (id -> what is wrong), kept
        for the page's banner and row marks; finding one starts a whole-log verification (recorded like one
        an auditor runs) unless the last one already found the log broken, so every page then says so."""
        problems = await asyncio.to_thread(self.c.store.chain_problems, ids) if ids else {}
        if problems:
            request.state.rows_broken = {**getattr(request.state, "rows_broken", {}), **problems}
            if getattr(request.state, "chain_alert", None) is None:
                self.verify_soon(next(iter(problems)))
        return problems

    def verify_soon(self, seen: str) -> None:
        """One whole-log verification at a time, at most one a minute, recorded as the console's."""
        if (self._verifying is not None and not self._verifying.done()) or \
                time.monotonic() - self._verified_at < 60:
            return
        self._verified_at = time.monotonic()

        async def run() -> None:
            started = time.time()
            checked, problem = await asyncio.to_thread(self.c.store.verify, 500)
            await asyncio.to_thread(self.c.store.record_chain_check, "console (automatic: decision "
                                    f"{seen[:40]} failed its hash check)", started, time.time(), checked, problem)

        self._verifying = asyncio.create_task(run())

    def need(self, request: Request, *roles: str) -> Session:
        session: Session | None = request.state.session
        if session is None:
            raise Denied("sign in")
        if roles and not session.has(*roles):
            raise PermissionError(f"{session.name} ({', '.join(sorted(session.roles))}) may not do this; it needs "
                                  f"{' or '.join(roles)}")
        return session

    async def shown(self, record: DecisionRecord | None, session: Session | None) -> DecisionRecord | None:
        """The record as this person may read it: fields the ruleset marks pii masked everywhere, unless
        one of their roles is configured to see them."""
        if record is None or (session is not None and self.c.pii_roles and session.has(*self.c.pii_roles)):
            return record
        private = await asyncio.to_thread(self.c.registry.private_fields, str(record.get("version", "")))
        return mask_record(record, private or {})

    async def form(self, request: Request, session: Session) -> FormData:
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

    def guarded(self, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            cookie = request.cookies.get(COOKIE)
            request.state.session, ended = await asyncio.to_thread(self.c.sessions.check, cookie) if cookie else \
                (None, "")
            if request.state.session is not None:  # the banner every page shows once the log is found broken
                checks = await asyncio.to_thread(self.c.store.chain_checks, 1)
                request.state.chain_alert = checks[0] if checks and checks[0]["problem"] else None
            try:
                response = await handler(request)
            except Denied:
                wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                why = f"why={ended}" if ended else ""
                target = "&".join(x for x in (f"next={_quote(wanted)}" if wanted != "/" else "", why) if x)
                response = RedirectResponse("/login" + (f"?{target}" if target else ""), status_code=303) \
                    if request.method == "GET" else \
                    self.page(request, "error.html", status=401, message=self.c.sessions.why(ended) or "sign in first")
                if ended:
                    response.delete_cookie(COOKIE)
            except PermissionError as e:
                response = self.page(request, "error.html", status=403, message=str(e))
            except TooLarge as e:
                response = self.page(request, "error.html", status=413, message=str(e))
            except Exception:
                incident = secrets.token_hex(6)
                log.exception("console error %s", incident)
                response = self.page(request, "error.html", status=500, message=f"internal error (incident {incident})")
            for k, v in HEADERS.items():
                response.headers.setdefault(k, v)
            return response

        return run


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


def timeline(record: DecisionRecord) -> dict[str, Any]:
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
