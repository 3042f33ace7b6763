"""Console sessions, roles, CSRF and security headers.

Sign-in exchanges a bearer token (the same tokens and roles as gRPC) for a session cookie: the
identity, its roles, an expiry and a CSRF token, signed with HMAC-SHA256. The cookie is HttpOnly,
SameSite=Strict, and Secure when the console is served over TLS. Every state-changing request must
carry the session's CSRF token (a form field or the X-CSRF-Token header); a caller-only token cannot
sign in. Every response carries a strict Content-Security-Policy (no inline script or style).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from starlette.requests import Request

from adapters.grpc.auth import Auth, AuthError, Identity

COOKIE = "baton_session"
SESSION_S = 8 * 3600
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

    def has(self, *roles: str) -> bool:
        return "admin" in self.roles or bool(self.roles & set(roles))


class Sessions:
    def __init__(self, auth: Auth, key: bytes | None = None, secure: bool = False) -> None:
        self.auth = auth
        self.key = key or secrets.token_bytes(32)
        self.secure = secure

    def sign_in(self, token: str) -> Session:
        """A session for a valid token whose roles include a console role; raises AuthError otherwise."""
        ident: Identity = self.auth.identify(f"Bearer {token.strip()}" if token.strip() else None) \
            if self.auth.enabled else self.auth.identify(None)
        if not ident.roles & CONSOLE_ROLES:
            raise AuthError("permission_denied", "this token's roles (caller) cannot sign in to the console")
        return Session(ident.name, ident.roles, secrets.token_urlsafe(24), time.time() + SESSION_S)

    def encode(self, s: Session) -> str:
        body = base64.urlsafe_b64encode(json.dumps({"n": s.name, "r": sorted(s.roles), "c": s.csrf,
                                                    "e": s.expires}).encode()).decode()
        return f"{body}.{self._sign(body)}"

    def decode(self, cookie: str | None) -> Session | None:
        if not cookie or "." not in cookie:
            return None
        body, sig = cookie.rsplit(".", 1)
        if not hmac.compare_digest(sig, self._sign(body)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body))
            session = Session(str(data["n"]), frozenset(data["r"]), str(data["c"]), float(data["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires > time.time() else None

    def _sign(self, body: str) -> str:
        return hmac.new(self.key, body.encode(), hashlib.sha256).hexdigest()

    def session(self, request: Request) -> Session | None:
        return self.decode(request.cookies.get(COOKIE))

    @staticmethod
    def csrf_ok(session: Session, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(session.csrf, str(sent))
