"""Tool connectors against real things: SQLite and PostgreSQL, a local HTTP server, a CSV table."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web

from adapters.infra.tools.connectors import HttpConnector, LookupConnector, SqlConnector, ToolRouter, build_tools
from engine.clock import FixedClock, SequentialIds
from engine.loop import Engine
from engine.ports import CallRequest, CallResult
from engine.recorded import RecordedAnswers
from tests.helpers import ruleset, serve_app

ROOT = Path(__file__).resolve().parents[2]


def req(action: str, request: dict[str, Any], timeout_s: float = 5.0, retries: int = 0) -> CallRequest:
    return CallRequest(action, "tool", request, "policy", {}, retries, timeout_s)


@pytest.fixture
def sql_url(db_url: str) -> str:
    url = db_url if "://" in db_url else f"sqlite:///{db_url}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE policies (policy_ref VARCHAR(20) PRIMARY KEY, active BOOLEAN, "
                             "coverage_limit NUMERIC(12, 2))")
        conn.exec_driver_sql("INSERT INTO policies VALUES ('P-1', TRUE, 100000.00), ('P-2', FALSE, 5000.50)")
    engine.dispose()
    return url


def run(coro: Any) -> CallResult:
    return asyncio.run(coro)  # type: ignore[no-any-return]


def test_sql_parameterised_query_read_only_and_errors(sql_url: str) -> None:
    sql = SqlConnector("policies", sql_url)
    query = "select policy_ref, active, coverage_limit from policies where policy_ref = :ref"
    result = run(sql.call(req("lookup_policy", {"query": query, "params": {"ref": "P-2"}})))
    assert result.ok and result.answer == [{"policy_ref": "P-2", "active": False, "coverage_limit": 5000.5}]
    injected = run(sql.call(req("lookup_policy", {"query": query, "params": {"ref": "P-1' OR '1'='1"}})))
    assert injected.answer == []  # a value, never SQL
    write = run(sql.call(req("lookup_policy", {"query": "update policies set active = FALSE", "params": {}})))
    assert write.failure_kind == "read_only", write.error
    check = run(sql.call(req("lookup_policy", {"query": "select count(*) as n from policies where active",
                                               "params": {}})))
    assert check.answer == [{"n": 1}]
    bad = run(sql.call(req("lookup_policy", {"query": "select nope from policies", "params": {}})))
    assert bad.failure_kind == "error"
    if sql.dialect == "postgresql":
        slow = run(sql.call(req("x", {"query": "select pg_sleep(3)", "params": {}}, timeout_s=0.3)))
        assert slow.failure_kind == "timeout", slow.error


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    state: dict[str, int] = {"flaky": 0}

    async def policy(request: web.Request) -> web.Response:
        assert request.headers.get("Authorization") == "Bearer s3cret"
        ref = request.match_info["ref"]
        if ref == "missing":
            return web.json_response({"error": "no"}, status=404)
        if ref == "slow":
            await asyncio.sleep(2)  # kept: a slow API is the behaviour under test
        if ref == "flaky":
            state["flaky"] += 1
            if state["flaky"] % 3:
                return web.json_response({"error": "busy"}, status=503)
        if ref == "broken":
            return web.json_response({"error": "down"}, status=500)
        return web.json_response({"data": {"policy_ref": ref, "active": True, "coverage_limit": 10}})

    with serve_app([web.get("/policies/{ref}", policy)]) as base:
        yield base


def http(base: str) -> HttpConnector:
    return HttpConnector("policy_api", base, {"Authorization": "Bearer s3cret"}, timeout_s=0.5, retries=2,
                         backoff_s=0.01)


def call_http(base: str, ref: str) -> CallResult:
    async def go() -> CallResult:
        conn = http(base)
        try:
            return await conn.call(req("get_policy", {"path": "/policies/{ref}", "params": {"ref": ref},
                                                      "result": "data"}))
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.mark.slow
def test_http_connector_timeouts_errors_and_retries(http_server: str) -> None:
    ok = call_http(http_server, "P-1")
    assert ok.answer == {"policy_ref": "P-1", "active": True, "coverage_limit": 10} and ok.attempts == 1
    flaky = call_http(http_server, "flaky")
    assert flaky.ok and flaky.attempts == 3
    assert call_http(http_server, "missing").answer is None
    broken = call_http(http_server, "broken")
    assert broken.failure_kind == "error" and broken.attempts == 3 and "HTTP 500" in broken.error
    slow = call_http(http_server, "slow")
    assert slow.failure_kind == "timeout"


def test_lookup_table_exact_and_fuzzy(tmp_path: Path) -> None:
    table = tmp_path / "sanctions.csv"
    table.write_text("name,list_name\nIvan Petrov,EU consolidated\nJohn Smith,OFAC SDN\n")
    lookup = LookupConnector("sanctions", table)
    exact = run(lookup.call(req("s", {"key": "name", "params": {"name": "john smith", "applicant_ref": "A-3"}})))
    assert exact.answer == [{"applicant_ref": "A-3", "name": "John Smith", "list_name": "OFAC SDN"}]
    fuzzy = run(lookup.call(req("s", {"key": "name", "fuzzy": 0.8, "score_field": "match_score",
                                      "params": {"name": "Ivan Petrow", "applicant_ref": "A-2"}})))
    assert len(fuzzy.answer) == 1 and fuzzy.answer[0]["match_score"] > 0.9  # type: ignore[index, arg-type]
    assert run(lookup.call(req("s", {"key": "name", "params": {"name": "Nobody"}}))).answer == []


def test_connectors_from_config_serve_a_ruleset(tmp_path: Path, sql_url: str, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    monkeypatch.setenv("POLICY_DB_URL", sql_url)
    router = build_tools({"policies": {"type": "sql", "url": "${env:POLICY_DB_URL}"}}, tmp_path)
    assert isinstance(router, ToolRouter)
    text = (ROOT / "rulesets/claims-triage.yaml").read_text().replace("connector: sql", "connector: policies")
    engine = Engine(ruleset(text))
    claim = {"claim_ref": "C-1", "amount": 80000, "policy_ref": "P-2", "description": "d", "customer_tier": "gold"}
    models = RecordedAnswers({"classify": {"category": "injury", "confidence": 0.9, "fraud_signals": []}})
    d = asyncio.run(engine.decide({"claim": claim}, models, router, FixedClock(), SequentialIds()))
    assert d.decision == {"route": "reject"} and d.rule == "inactive-policy"
    call = next(e for e in d.trace if e["kind"] == "call" and e["action"] == "lookup_policy")
    assert call["answer"] == [{"policy_ref": "P-2", "active": False, "coverage_limit": 5000.5}]
    with pytest.raises(ValueError, match="NOT_SET_ANYWHERE"):
        build_tools({"x": {"type": "http", "base_url": "http://h", "headers": {"A": "${env:NOT_SET_ANYWHERE}"}}},
                    tmp_path)
    json.dumps(d.to_dict())
