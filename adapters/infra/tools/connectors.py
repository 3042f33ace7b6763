"""Tool connectors behind the engine's ToolConnector port: `sql`, `http` and `lookup`.

A ruleset's tool action names a connector (`connector: policies`); the service config says what that
connector is and how to reach it. Connection details and secrets live only in the config; the ruleset
gives the query, path or table and the params (field references resolved by the engine). Every library
error becomes a failure kind here, once: timeout, error, bad_request, not_configured.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import decimal
import difflib
import json
import re
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from adapters.infra.resilience import Guard, Limits
from adapters.infra.secrets import SECRETS, redact, resolve_secrets
from adapters.infra.tls import sql_connect_args, tls_context
from engine.ports import CallRequest, CallResult

__all__ = ["HttpConnector", "LookupConnector", "SqlConnector", "ToolRouter", "build_tools", "resolve_secrets"]

PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
SELECT_ONLY = re.compile(r"^\s*(\(\s*)*(select|with|values|table|show|explain)\b", re.I)


def _plain(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _coerce(row: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Database quirks at the boundary: SQLite and MySQL booleans arrive as 0/1."""
    props = schema.get("properties") or {}
    for name, value in row.items():
        spec = props.get(name) if isinstance(props, Mapping) else None
        if isinstance(spec, Mapping) and spec.get("type") == "boolean" and value in (0, 1) \
                and not isinstance(value, bool):
            row[name] = bool(value)
    return row


class SqlConnector:
    """Parameterised queries on a configured SQLAlchemy URL (PostgreSQL, MariaDB/MySQL, SQLite, ...), each
    connector with its own connection pool and statement timeout. Read-only unless the config says
    otherwise: enforced by the database (a read-only transaction; SQLite's query_only) and, before that,
    by refusing any statement that is not a query. An async driver in the URL (``mysql+aiomysql://``,
    ``postgresql+psycopg://`` with ``async: true``) runs on the event loop; others run in a thread."""

    def __init__(self, name: str, url: str, read_only: bool = True, timeout_s: float = 10.0, pool_size: int = 5,
                 use_async: bool | None = None, connect_args: dict[str, Any] | None = None) -> None:
        self.name, self.read_only, self.timeout_s, self.pool_size = name, read_only, timeout_s, pool_size
        self.connect_args = dict(connect_args or {})
        self.url_template = url
        driver = sa.engine.make_url(SECRETS.value(url)).get_dialect()
        self.use_async = bool(getattr(driver, "is_async", False)) if use_async is None else use_async
        self.version = -1
        self.engine: sa.Engine | None = None
        self.async_engine: AsyncEngine | None = None
        self._connect()

    def _connect(self) -> None:
        """(Re)create the pool when the URL's secret was rotated."""
        if self.version == SECRETS.version and (self.engine or self.async_engine):
            return
        url = SECRETS.value(self.url_template)
        old_sync, old_async = self.engine, self.async_engine
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if self.connect_args:
            kwargs["connect_args"] = self.connect_args
        if not url.startswith("sqlite"):
            kwargs.update(pool_size=self.pool_size, max_overflow=self.pool_size)
        if self.use_async:
            self.async_engine = create_async_engine(url, **kwargs)
            self.dialect = self.async_engine.dialect.name
        else:
            self.engine = sa.create_engine(url, **kwargs)
            self.dialect = self.engine.dialect.name
        self.version = SECRETS.version
        if old_sync is not None:
            old_sync.dispose()
        if old_async is not None:
            asyncio.get_event_loop().create_task(old_async.dispose())

    def _setup(self, timeout_s: float) -> list[str]:
        """Statements that start each call's transaction: timeout and read-only, per dialect."""
        out = []
        if self.dialect == "postgresql":
            out.append(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
            if self.read_only:
                out.append("SET TRANSACTION READ ONLY")
        elif self.dialect in ("mysql", "mariadb"):
            if self.read_only:
                out.append("SET TRANSACTION READ ONLY")  # applies to the transaction the query starts
            out.append(f"SET SESSION max_statement_time = {timeout_s:g}")
        elif self.dialect == "sqlite" and self.read_only:
            out.append("PRAGMA query_only = ON")
        return out

    def _run(self, query: str, params: Mapping[str, Any], timeout_s: float) -> list[dict[str, Any]]:
        assert self.engine is not None
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                deadline = time.monotonic() + timeout_s
                conn.connection.driver_connection.set_progress_handler(  # type: ignore[union-attr]
                    lambda: int(time.monotonic() > deadline), 10_000)
            tx = conn.begin()
            try:
                for statement in self._setup(timeout_s):
                    conn.exec_driver_sql(statement)
                result = conn.execute(sa.text(query), dict(params))
                rows = [{k: _plain(v) for k, v in row._mapping.items()} for row in result] if result.returns_rows \
                    else []
            finally:
                if self.read_only or not tx.is_valid:
                    tx.rollback()
                else:
                    tx.commit()
                if self.dialect == "sqlite":
                    conn.connection.driver_connection.set_progress_handler(None, 0)  # type: ignore[union-attr]
                    if self.read_only:
                        conn.exec_driver_sql("PRAGMA query_only = OFF")
                        conn.commit()
        return rows

    async def _run_async(self, query: str, params: Mapping[str, Any], timeout_s: float) -> list[dict[str, Any]]:
        assert self.async_engine is not None
        async with self.async_engine.connect() as conn:
            tx = await conn.begin()
            try:
                for statement in self._setup(timeout_s):
                    await conn.exec_driver_sql(statement)
                result = await conn.execute(sa.text(query), dict(params))
                rows = [{k: _plain(v) for k, v in row._mapping.items()} for row in result] if result.returns_rows \
                    else []
            finally:
                if self.read_only or not tx.is_valid:
                    await tx.rollback()
                else:
                    await tx.commit()
        return rows

    async def call(self, call: CallRequest) -> CallResult:
        query = call.request.get("query")
        if not isinstance(query, str) or not query.strip():
            return CallResult(failure_kind="bad_request", error=f"{call.action}: the tool needs a query")
        if self.read_only and (not SELECT_ONLY.match(query) or ";" in query.strip().rstrip(";")):
            return CallResult(failure_kind="read_only", error=f"{self.name}: read-only connector: only a single "
                              "query (SELECT/WITH) may run")
        params = call.request.get("params") or {}
        assert isinstance(params, Mapping)
        timeout = min(call.timeout_s, self.timeout_s)
        self._connect()
        try:
            if self.use_async:
                rows = await asyncio.wait_for(self._run_async(query, params, timeout), timeout + 1)
            else:
                rows = await asyncio.wait_for(asyncio.to_thread(self._run, query, params, timeout), timeout + 1)
        except TimeoutError:
            return CallResult(failure_kind="timeout", error=f"{self.name}: no result within {timeout}s")
        except sa.exc.DBAPIError as e:
            return self._failure(e)
        except sa.exc.SQLAlchemyError as e:
            return CallResult(failure_kind="error", error=f"{self.name}: {type(e).__name__}: "
                              f"{str(getattr(e, 'orig', e)).splitlines()[0][:300]}")
        return CallResult(answer=[_coerce(r, call.schema) for r in rows])

    def _failure(self, e: sa.exc.DBAPIError) -> CallResult:
        text = str(e.orig)
        low = text.lower()
        kind = "error"
        if any(s in low for s in ("timeout", "canceling statement", "max_statement_time", "interrupted",
                                  "query execution was interrupted")):
            kind = "timeout"
        if any(s in low for s in ("read-only", "readonly", "read only")):
            kind = "read_only"
        return CallResult(failure_kind=kind, error=f"{self.name}: {text.splitlines()[0][:300]}")


class HttpConnector:
    """JSON API calls with a timeout, retries with backoff on 429/5xx/transport errors, headers from config."""

    def __init__(self, name: str, base_url: str, headers: Mapping[str, str] | None = None, timeout_s: float = 10.0,
                 retries: int = 2, backoff_s: float = 0.1, tls: ssl.SSLContext | None = None) -> None:
        self.name, self.timeout_s, self.retries, self.backoff_s = name, timeout_s, retries, backoff_s
        self.header_templates = dict(headers or {})
        self.version = SECRETS.version
        self.client = httpx.AsyncClient(base_url=base_url, headers=self._headers(), timeout=timeout_s,
                                        verify=tls if tls is not None else True)

    def _headers(self) -> dict[str, str]:
        return {k: SECRETS.value(v) for k, v in self.header_templates.items()}

    async def call(self, call: CallRequest) -> CallResult:
        if self.version != SECRETS.version:  # a secret was rotated: send its new value from now on
            self.version = SECRETS.version
            self.client.headers.update(self._headers())
        req = call.request
        method = str(req.get("method", "GET")).upper()
        params = dict(req.get("params") or {})  # type: ignore[call-overload]
        path = PARAM.sub(lambda m: str(params.pop(m.group(1), "")), str(req.get("path", "/")))
        retries = max(call.retries, self.retries)
        timeout = min(call.timeout_s, self.timeout_s)
        last = ""
        for attempt in range(1 + retries):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                if method in ("GET", "DELETE"):
                    response = await self.client.request(method, path, params=params, timeout=timeout)
                else:
                    response = await self.client.request(method, path, json=params, timeout=timeout)
            except httpx.TimeoutException:
                last = "timeout"
                continue
            except httpx.HTTPError as e:
                last = f"error: {type(e).__name__}"
                continue
            if response.status_code == 404:
                return CallResult(answer=None, attempts=attempt + 1)  # nothing found: no fact
            if response.status_code == 429 or response.status_code >= 500:
                last = f"error: HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                return CallResult(failure_kind="bad_request", error=f"{self.name}: HTTP {response.status_code}",
                                  attempts=attempt + 1)
            try:
                body = response.json()
            except ValueError:
                return CallResult(failure_kind="error", error=f"{self.name}: the response is not JSON",
                                  attempts=attempt + 1)
            pick = req.get("result")
            if isinstance(pick, str) and pick:
                for part in pick.split("."):
                    body = body.get(part) if isinstance(body, Mapping) else None
            return CallResult(answer=body, attempts=attempt + 1)
        kind = "timeout" if last == "timeout" else "error"
        return CallResult(failure_kind=kind, error=f"{self.name}: {last} after {1 + retries} attempts",
                          attempts=1 + retries)

    async def close(self) -> None:
        await self.client.aclose()


class LookupConnector:
    """A reference table (CSV or JSON list of objects) loaded at start, e.g. a sanctions list.

    A tool's `key:` names the column matched against the param of the same name; `fuzzy: 0.8` matches by
    similarity (case-insensitive) and adds the score as `score_field`. Other params are copied into the
    answer (so an answer can carry the applicant's reference), and `fields:` selects the columns kept.
    """

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        if path.suffix == ".json":
            rows = json.loads(path.read_text(encoding="utf-8"))
        else:
            with path.open(newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError(f"{path}: a lookup table is a CSV file or a JSON list of objects")
        self.rows: list[dict[str, Any]] = rows
        self.loaded_at = time.time()

    async def call(self, call: CallRequest) -> CallResult:
        req = call.request
        params = dict(req.get("params") or {})  # type: ignore[call-overload]
        key = str(req.get("key") or "")
        if not key or key not in params:
            return CallResult(failure_kind="bad_request", error=f"{call.action}: a lookup needs key: and that param")
        wanted = str(params.pop(key, "")).casefold()
        fuzzy = req.get("fuzzy")
        score_field = str(req.get("score_field") or "score")
        fields = req.get("fields")
        out = []
        for row in self.rows:
            have = str(row.get(key, "")).casefold()
            if isinstance(fuzzy, (int, float)) and not isinstance(fuzzy, bool):
                score = difflib.SequenceMatcher(None, wanted, have).ratio()
                if score < fuzzy:
                    continue
            elif have != wanted:
                continue
            else:
                score = 1.0
            kept = {k: v for k, v in row.items() if not isinstance(fields, list) or k in fields}
            answer = {**params, **kept}
            if isinstance(fuzzy, (int, float)):
                answer[score_field] = round(score, 4)
            out.append(answer)
        return CallResult(answer=out)


class ToolRouter:
    """The ToolConnector port: dispatch each call to the connector its action names, inside that
    connector's limits (concurrency, rate, circuit breaker); errors are redacted of secrets."""

    def __init__(self, connectors: Mapping[str, Any], guards: Mapping[str, Guard] | None = None) -> None:
        self.connectors = dict(connectors)
        self.guards = dict(guards or {})

    async def call(self, call: CallRequest) -> CallResult:
        name = str(call.request.get("connector", ""))
        connector = self.connectors.get(name)
        if connector is None:
            return CallResult(failure_kind="not_configured", error=f"no tool connector named {name!r} is configured")
        guard = self.guards.get(name)
        result: CallResult = await (guard.run(lambda: connector.call(call)) if guard else connector.call(call))
        if result.error:  # every connector's errors, once, here: none carries a secret into a failure fact
            result.error = redact(result.error)
        return result


def build_tools(section: Mapping[str, Any], base: Path, where: str = "tools") -> ToolRouter:
    """Connectors from the config's `tools:` section: name -> {type: sql|http|lookup, ..., limits: {...}}."""
    connectors: dict[str, Any] = {}
    guards: dict[str, Guard] = {}
    for name, spec in section.items():
        w = f"{where}.{name}"
        if not isinstance(spec, Mapping) or spec.get("type") not in ("sql", "http", "lookup"):
            raise ValueError(f"{w}.type: one of sql, http, lookup")
        kind = spec["type"]
        if kind == "sql":
            url = spec.get("url")
            if not isinstance(url, str):
                raise ValueError(f"{w}.url: a SQLAlchemy URL is required")
            resolve_secrets(url, f"{w}.url")
            try:
                connectors[name] = SqlConnector(name, url, bool(spec.get("read_only", True)),
                                                float(spec.get("timeout_s", 10)), int(spec.get("pool_size", 5)),
                                                spec.get("async") if isinstance(spec.get("async"), bool) else None,
                                                sql_connect_args(spec.get("tls"), url, base, f"{w}.tls"))
            except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as e:
                raise ValueError(f"{w}.url: {redact(str(e))}") from None
        elif kind == "http":
            base_url = spec.get("base_url")
            if not isinstance(base_url, str):
                raise ValueError(f"{w}.base_url: required")
            raw_headers = spec.get("headers") or {}
            for k, v in raw_headers.items():
                resolve_secrets(str(v), f"{w}.headers.{k}")
            headers = {str(k): str(v) for k, v in raw_headers.items()}
            connectors[name] = HttpConnector(name, base_url, headers, float(spec.get("timeout_s", 10)),
                                             int(spec.get("retries", 2)), float(spec.get("backoff_s", 0.1)),
                                             tls_context(spec.get("tls"), base, f"{w}.tls"))
        else:
            path = spec.get("file")
            if not isinstance(path, str):
                raise ValueError(f"{w}.file: a CSV or JSON file is required")
            file = (base / path) if not Path(path).is_absolute() else Path(path)
            try:
                connectors[name] = LookupConnector(name, file)
            except OSError as e:
                raise ValueError(f"{w}.file: {e.strerror}: {file}") from None
        limits = Limits.from_config(spec.get("limits"), f"{w}.limits")
        if limits != Limits():
            guards[name] = Guard(str(name), limits)
    return ToolRouter(connectors, guards)
