"""Per-connector TLS: ``tls: {ca: FILE, cert: FILE, key: FILE, verify: true}`` on a tool, effect or
consumer. ``ca`` is the bundle that verifies the server; ``cert``/``key`` are this client's certificate
for mutual TLS. Paths are relative to the config file."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def tls_context(spec: Any, base: Path, where: str) -> ssl.SSLContext | None:
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or set(spec) - {"ca", "cert", "key", "verify"}:
        raise ValueError(f"{where}: tls takes ca, cert, key and verify")

    def path(key: str) -> str | None:
        value = spec.get(key)
        if value is None:
            return None
        p = Path(str(value))
        p = p if p.is_absolute() else base / p
        if not p.is_file():
            raise ValueError(f"{where}.{key}: no such file: {p}")
        return str(p)

    ca, cert, key = path("ca"), path("cert"), path("key")
    if bool(cert) != bool(key):
        raise ValueError(f"{where}: a client certificate needs both cert and key")
    try:
        context = ssl.create_default_context(cafile=ca)
        if spec.get("verify") is False:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if cert and key:
            context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise ValueError(f"{where}: {e}") from None
    return context


def sql_connect_args(spec: Any, url: str, base: Path, where: str) -> dict[str, Any]:
    """TLS for the sql connector's driver: libpq parameters for PostgreSQL, an SSL context for MySQL."""
    if spec is None:
        return {}
    context = tls_context(spec, base, where)
    if url.startswith("postgresql"):
        args: dict[str, Any] = {"sslmode": "verify-full" if spec.get("verify", True) else "require"}
        for key, name in (("ca", "sslrootcert"), ("cert", "sslcert"), ("key", "sslkey")):
            if spec.get(key):
                p = Path(str(spec[key]))
                args[name] = str(p if p.is_absolute() else base / p)
        return args
    if url.startswith("mysql"):
        return {"ssl": context}
    return {}
