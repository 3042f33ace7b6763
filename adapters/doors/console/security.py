"""Console sessions, roles, CSRF and security headers.

Sign-in exchanges a bearer token (the same tokens and roles as gRPC) for a session kept in the store
(who, roles, the token's digest, a CSRF token, since when, last seen) and a cookie naming it (a random
secret, signed with HMAC-SHA256). Signing out, a token removed or rotated, its roles changed, and the idle
and absolute timeouts (config `console_sessions`) end it at once; the sign-in page then says why. The
cookie is HttpOnly, SameSite=Strict, and Secure when the console is served over TLS. Every state-changing
request must carry the session's CSRF token (a form field or the X-CSRF-Token header); a caller-only token
cannot sign in. Every response carries a strict Content-Security-Policy (no inline script or style).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from adapters.doors.grpc.auth import Auth, AuthError, Identity
from adapters.infra.store.console import ConsoleArea

COOKIE = "baton_session"
IDLE_S = 30 * 60  # defaults of console_sessions.idle_s and .absolute_s
SESSION_S = 8 * 3600
SEEN_EVERY_S = 15.0  # how often a session's last activity is written (the idle timeout's granularity)
CONSOLE_ROLES = {"editor", "approver", "auditor", "reviewer", "admin"}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, slots=True)
class Session:
    name: str
    roles: frozenset[str]
    csrf: str
    expires: float
    id: str = ""  # the SHA-256 of the cookie's secret: the stored row

    def has(self, *roles: str) -> bool:
        return "admin" in self.roles or bool(self.roles & set(roles))


def _minutes(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 and seconds % 3600 == 0 else f"{seconds / 60:g} min"


class Sessions:
    """Sessions kept in the store: the cookie is a random secret (signed, so a forged one is refused before
    the database is asked), the row says who, with which roles and token, since when, last seen when, and
    whether and why it ended. Every request re-checks the row, the timeouts and the token."""

    def __init__(self, auth: Auth, key: bytes | None = None, secure: bool = False, idle_s: float = IDLE_S,
                 absolute_s: float = SESSION_S) -> None:
        self.auth = auth
        self.key = key or secrets.token_bytes(32)
        self.secure = secure
        self.idle_s, self.absolute_s = idle_s, absolute_s
        self.store: ConsoleArea | None = None  # set by create_app (the console's store)

    def why(self, code: str) -> str:
        """What the sign-in page says about a session that ended (fixed text per reason, nothing reflected)."""
        return {
            "signed_out": "You signed out. Sign in again to continue.",
            "idle": f"Your session ended after {_minutes(self.idle_s)} without activity. Sign in again.",
            "expired": f"Your session reached its limit of {_minutes(self.absolute_s)}. Sign in again.",
            "token": "The token this session signed in with was removed or rotated. Sign in with the current one.",
            "roles": "The roles of the token this session signed in with changed. Sign in again.",
            "unknown": "This browser's session is not known to the console (it was forged, or the console's "
                       "database was replaced). Sign in again.",
        }.get(code, "")

    def identify(self, token: str) -> Identity:
        """The identity of a valid token whose roles include a console role; raises AuthError otherwise."""
        ident: Identity = self.auth.identify(f"Bearer {token.strip()}" if token.strip() else None) \
            if self.auth.enabled else self.auth.identify(None)
        if not ident.roles & CONSOLE_ROLES:
            raise AuthError("permission_denied", f"this token's roles ({', '.join(sorted(ident.roles))}) cannot "
                            "sign in to the console")
        return ident

    def sign_in(self, token: str, now: float | None = None) -> tuple[Session, str]:
        """A new stored session and the cookie that names it; raises AuthError for a token that may not."""
        ident = self.identify(token)
        now = time.time() if now is None else now
        secret = secrets.token_urlsafe(32)
        session = Session(ident.name, ident.roles, secrets.token_urlsafe(24), now + self.absolute_s,
                          _digest(secret))
        assert self.store is not None, "create_app binds the console's store"
        self.store.start_session({"id": session.id, "name": ident.name[:200], "roles": ",".join(sorted(ident.roles)),
                                  "token": _token_digest(token) if self.auth.enabled else "", "csrf": session.csrf,
                                  "created_at": now, "seen_at": now, "ended_at": None, "ended_why": None})
        return session, f"{secret}.{self._sign(secret)}"

    def check(self, cookie: str | None, now: float | None = None) -> tuple[Session | None, str]:
        """The live session a cookie names, or (None, why it is not: a reason code, "" for no cookie). A
        session found past a timeout, or whose token is gone or changed roles, is ended here, for good."""
        if not cookie or "." not in cookie:
            return None, ""
        secret, sig = cookie.rsplit(".", 1)
        if not hmac.compare_digest(sig, self._sign(secret)):
            return None, "unknown"
        assert self.store is not None, "create_app binds the console's store"
        session_id = _digest(secret)
        row = self.store.console_session(session_id)
        if row is None:
            return None, "unknown"
        if row["ended_at"] is not None:
            return None, str(row["ended_why"] or "signed_out")
        now = time.time() if now is None else now
        roles = frozenset(r for r in str(row["roles"]).split(",") if r)
        why = ""
        if now >= row["created_at"] + self.absolute_s:
            why = "expired"
        elif now >= row["seen_at"] + self.idle_s:
            why = "idle"
        elif self.auth.enabled:
            ident = self.auth.by_digest.get(str(row["token"]))
            why = "token" if ident is None else "roles" if ident.roles != roles or ident.name != row["name"] else ""
        if why:
            self.store.end_session(session_id, why, now)
            return None, why
        if now - row["seen_at"] >= SEEN_EVERY_S:
            self.store.touch_session(session_id, now)
        return Session(str(row["name"]), roles, str(row["csrf"]), float(row["created_at"]) + self.absolute_s,
                       session_id), ""

    def end(self, session: Session, why: str = "signed_out", now: float | None = None) -> None:
        assert self.store is not None, "create_app binds the console's store"
        self.store.end_session(session.id, why, time.time() if now is None else now)

    def _sign(self, body: str) -> str:
        return hmac.new(self.key, body.encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def csrf_ok(session: Session, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(session.csrf, str(sent))


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _token_digest(token: str) -> str:
    """As Auth keeps tokens (SHA-256 of the stripped token)."""
    return hashlib.sha256(token.strip().encode("utf-8", "replace")).hexdigest()
