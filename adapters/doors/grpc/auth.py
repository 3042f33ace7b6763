"""Bearer tokens mapped to identities and roles, enforced on every method.

Tokens come from a YAML/JSON file (``tokens: [{token, name, roles}]``) or the ``BATON_TOKENS`` variable
(``token=name:role+role,token2=name2:role``). Only SHA-256 digests of tokens are kept in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

ROLES = {"caller", "editor", "approver", "auditor", "reviewer", "admin"}

# method -> roles allowed (admin is allowed everything)
METHOD_ROLES: dict[str, frozenset[str]] = {
    "Decide": frozenset({"caller"}),
    "DecideBatch": frozenset({"caller"}),
    "DecideStream": frozenset({"caller"}),
    "GetDecision": frozenset({"caller", "auditor"}),
    "ListDecisions": frozenset({"auditor"}),
    "ReplayDecision": frozenset({"auditor"}),
    "WhatIf": frozenset({"auditor", "editor"}),
    "WhyRule": frozenset({"auditor"}),
    "ListRulesets": frozenset({"editor", "auditor", "approver"}),
    "GetRuleset": frozenset({"editor", "auditor", "approver"}),
    "ValidateRuleset": frozenset({"editor"}),
    "PublishRuleset": frozenset({"editor"}),
    "Impact": frozenset({"editor"}),
    "ApproveRuleset": frozenset({"approver"}),
    "RejectRuleset": frozenset({"approver"}),
    "ListPublications": frozenset({"editor", "auditor", "approver"}),
    "DiffRulesets": frozenset({"editor", "auditor", "approver"}),
    "AttachShadow": frozenset({"editor"}),
    "DetachShadow": frozenset({"editor"}),
    "ShadowReport": frozenset({"editor", "auditor", "approver"}),
    "VerifyLog": frozenset({"auditor"}),
    "ListEscalations": frozenset({"reviewer", "auditor"}),
    "GetEscalation": frozenset({"reviewer", "auditor"}),
    "ResolveEscalation": frozenset({"reviewer"}),
}


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    roles: frozenset[str]

    def may(self, method: str) -> bool:
        return "admin" in self.roles or bool(self.roles & METHOD_ROLES.get(method, frozenset()))


ANONYMOUS = Identity("anonymous", frozenset({"admin"}))


class AuthError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # unauthenticated | permission_denied
        self.message = message


class Auth:
    def __init__(self, tokens: dict[str, Identity]) -> None:
        self.by_digest = {_digest(t): ident for t, ident in tokens.items()}

    def replace(self, tokens: dict[str, Identity]) -> bool:
        """Put ``tokens`` in force at once (one assignment: a call in flight sees the old map or the new);
        whether anything changed."""
        new = {_digest(t): ident for t, ident in tokens.items()}
        changed = new != self.by_digest
        self.by_digest = new
        return changed

    @property
    def enabled(self) -> bool:
        return bool(self.by_digest)

    def identify(self, authorization: str | None) -> Identity:
        if not self.enabled:
            return ANONYMOUS
        if not authorization or not authorization.lower().startswith("bearer "):
            raise AuthError("unauthenticated", "missing bearer token (metadata 'authorization: Bearer <token>')")
        # the token exactly as sent after "Bearer ": a trailing space or newline makes another token, as it
        # would in the configuration (docs/deploy.md, Authentication)
        digest = _digest(authorization[7:])
        for known, ident in self.by_digest.items():
            if hmac.compare_digest(known, digest):
                return ident
        raise AuthError("unauthenticated", "invalid bearer token")

    def check(self, authorization: str | None, method: str) -> Identity:
        ident = self.identify(authorization)
        if not ident.may(method):
            raise AuthError("permission_denied", f"{ident.name} may not call {method} "
                            f"(needs one of: {', '.join(sorted(METHOD_ROLES.get(method, ())))})")
        return ident


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def parse_env(value: str, extra_roles: Collection[str] = ()) -> dict[str, Identity]:
    out = {}
    for entry in filter(None, (e.strip() for e in value.split(","))):
        token, _, rest = entry.partition("=")
        name, _, roles = rest.partition(":")
        out[token] = _identity(name, roles.split("+"), f"BATON_TOKENS entry for {name or '?'}", extra_roles)
    return out


def _identity(name: str, roles: list[str], where: str, extra_roles: Collection[str] = ()) -> Identity:
    """An identity whose roles are the built-in ones or those the config names (``pii_roles``: ``dpo``)."""
    known = ROLES | set(extra_roles)
    bad = [r for r in roles if r not in known]
    if not name or not roles or bad:
        raise ValueError(f"{where}{f' ({name})' if name else ''}: " + (
            f"unknown role {bad[0]!r}; roles are {', '.join(sorted(known))} (pii_roles may name more)" if bad else
            f"needs a name and roles from {', '.join(sorted(known))}"))
    return Identity(name, frozenset(roles))


def load_tokens(path: Path | None, entries: list[tuple[str, str, list[str]]] | None = None,
                extra_roles: Collection[str] = ()) -> dict[str, Identity]:
    """Tokens from a file, from config entries (token, name, roles), and from BATON_TOKENS; roles beyond the
    built-in ones are those ``extra_roles`` names (the config's pii_roles)."""
    tokens: dict[str, Identity] = {t: _identity(n, r, f"tokens entry for {n}", extra_roles)
                                   for t, n, r in entries or []}
    if path is not None:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else YAML(typ="safe").load(text)
        entries = data.get("tokens", []) if isinstance(data, dict) else []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
                raise ValueError(f"{path}: tokens[{i}] needs token, name and roles")
            tokens[entry["token"]] = _identity(str(entry.get("name", "")), list(entry.get("roles") or []),
                                               f"{path}: tokens[{i}]", extra_roles)
    if os.environ.get("BATON_TOKENS"):
        tokens.update(parse_env(os.environ["BATON_TOKENS"], extra_roles))
    return tokens
