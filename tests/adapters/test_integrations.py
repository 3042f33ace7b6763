"""Integration depth against the real local services: the sql connector on PostgreSQL, MariaDB and
SQLite; effects to NATS JetStream and RabbitMQ; rotated secrets; circuit breakers and rate limits."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web

from adapters.infra.effects import OutboxWorker, build_effects
from adapters.infra.resilience import Guard, Limits, Refused
from adapters.infra.secrets import SECRETS, RedactingFilter, Secrets
from adapters.infra.store.sql import OUTBOX, SqlStore
from adapters.infra.tools.connectors import SqlConnector, build_tools
from engine.ports import CallRequest, CallResult
from tests.helpers import decide, not_none, ruleset, serve_app

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB = "mysql+aiomysql://root@127.0.0.1:3306/test"
MARIADB_SYNC = "mysql+pymysql://root@127.0.0.1:3306/test"
NATS = "nats://127.0.0.1:4222"
AMQP = "amqp://guest:guest@127.0.0.1/"
CI = bool(os.environ.get("CI"))


def reachable(url: str) -> bool:
    try:
        sa.create_engine(url).connect().close()
        return True
    except Exception:
        if CI:
            raise
        return False


def call(query: str, params: dict[str, Any] | None = None, timeout_s: float = 5.0) -> CallRequest:
    return CallRequest("lookup", "tool", {"connector": "db", "query": query, "params": params or {}}, "row",
                       {"properties": {}}, 0, timeout_s)


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(connector URL, dialect) with a table `policies` of two rows; dropped afterwards."""
    table = f"policies_{uuid.uuid4().hex[:8]}"
    if request.param == "sqlite":
        admin = f"sqlite:///{tmp_path / 'legacy.db'}"
        url = admin
    elif request.param == "postgresql":
        admin = url = PG_ADMIN
    else:
        admin, url = MARIADB_SYNC, MARIADB
    if not reachable(admin):
        pytest.skip(f"{request.param} not reachable (CI runs these)")
    engine = sa.create_engine(admin)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {table} (ref VARCHAR(20) PRIMARY KEY, active BOOLEAN, cover INTEGER)")
        conn.exec_driver_sql(f"INSERT INTO {table} VALUES ('P-1', TRUE, 100000), ('P-2', FALSE, 5000)")
    request.node.table = table
    yield url, request.param
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {table}")
    engine.dispose()


def test_sql_connector_reads_times_out_and_refuses_writes(database: tuple[str, str],
                                                          request: pytest.FixtureRequest) -> None:
    url, dialect = database
    table = request.node.table
    connector = SqlConnector("db", url, read_only=True, timeout_s=1.0, pool_size=2)
    assert connector.use_async == (dialect == "mariadb")  # MariaDB through the aiomysql async driver

    async def run() -> None:
        found = await connector.call(call(f"SELECT ref, active, cover FROM {table} WHERE ref = :ref", {"ref": "P-1"}))
        assert found.ok and found.answer == [{"ref": "P-1", "active": 1 if dialect != "postgresql" else True,
                                              "cover": 100000}]
        slow = {"postgresql": "SELECT pg_sleep(3)", "mariadb": "SELECT SLEEP(3)",
                "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"}
        timed_out = await connector.call(call(slow[dialect], timeout_s=1.0))
        assert timed_out.failure_kind == "timeout", timed_out
        refused = await connector.call(call(f"DELETE FROM {table}"))
        assert refused.failure_kind == "read_only"
        two = await connector.call(call(f"SELECT 1; DELETE FROM {table}"))
        assert two.failure_kind == "read_only"
        if dialect == "postgresql":  # a write hidden in a query: the database's read-only transaction refuses it
            hidden = await connector.call(call(f"WITH d AS (DELETE FROM {table} RETURNING ref) SELECT ref FROM d"))
            assert hidden.failure_kind == "read_only", hidden
        # below the statement check, the database itself refuses a write in the read-only transaction
        with pytest.raises(sa.exc.DBAPIError) as e:
            if connector.use_async:
                await connector._run_async(f"INSERT INTO {table} VALUES ('P-9', TRUE, 1)", {}, 1.0)
            else:
                await asyncio.to_thread(connector._run, f"INSERT INTO {table} VALUES ('P-9', TRUE, 1)", {}, 1.0)
        assert connector._failure(e.value).failure_kind == "read_only", str(e.value)
        still = await connector.call(call(f"SELECT count(*) AS n FROM {table}"))
        assert still.answer == [{"n": 2}]
        writer = SqlConnector("db", url, read_only=False, timeout_s=1.0)
        written = await writer.call(call(f"UPDATE {table} SET cover = 1 WHERE ref = 'P-2'"))
        assert written.ok
        if writer.async_engine is not None:
            await writer.async_engine.dispose()
        if connector.async_engine is not None:
            await connector.async_engine.dispose()

    asyncio.run(run())


# -- secrets -----------------------------------------------------------------------------------------

def test_secrets_from_files_rotate_and_are_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = Secrets(tmp_path)
    (tmp_path / "token").write_text("tok-one-1234\n")
    monkeypatch.setenv("SECRET_FOR_TEST", "env-secret-5678")
    value = secrets.resolve("Bearer ${file:token} ${env:SECRET_FOR_TEST}", "tools.api.headers.Authorization")
    assert value == "Bearer tok-one-1234 env-secret-5678"
    (tmp_path / "token").write_text("tok-two-9999")
    assert secrets.value("Bearer ${file:token} ${env:SECRET_FOR_TEST}") == value  # not re-read yet
    assert secrets.refresh() == ["tools.api.headers.Authorization"] and secrets.version == 1
    assert secrets.value("Bearer ${file:token} ${env:SECRET_FOR_TEST}") == "Bearer tok-two-9999 env-secret-5678"
    assert secrets.redact("failed with tok-one-1234 and tok-two-9999") == "failed with [secret] and [secret]"
    (tmp_path / "token").unlink()
    assert secrets.refresh() == []  # unreadable now: keeps the last value rather than breaking the connector
    with pytest.raises(ValueError, match=r"tools\.x: cannot read secret file"):
        secrets.resolve("${file:missing}", "tools.x")
    with pytest.raises(ValueError, match="environment variable NOPE_NOT_SET is not set"):
        secrets.resolve("${env:NOPE_NOT_SET}", "tools.y")


def test_log_records_are_redacted() -> None:
    SECRETS.known.add("hunter2-secret")
    SECRETS._pattern = None
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "connect failed: %s", ("pw hunter2-secret",), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "connect failed: pw [secret]"


def test_a_rotated_http_header_is_used_without_restart(tmp_path: Path) -> None:
    SECRETS.configure(tmp_path)
    (tmp_path / "api-token").write_text("first-token-aaaa")
    seen: list[str] = []

    async def policy(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        if request.headers.get("Authorization") != f"Bearer {(tmp_path / 'api-token').read_text()}":
            return web.json_response({"error": "no"}, status=401)
        return web.json_response({"ref": "P-1"})

    with serve_app([web.get("/policies/{ref}", policy)]) as base:
        router = build_tools({"api": {"type": "http", "base_url": base,
                                      "headers": {"Authorization": "Bearer ${file:api-token}"}}}, tmp_path)
        request = CallRequest("get", "tool", {"connector": "api", "path": "/policies/{ref}", "params": {"ref": "P-1"}},
                              "p", {}, 0, 5.0)

        async def run() -> list[CallResult]:
            first = await router.call(request)
            (tmp_path / "api-token").write_text("second-token-bbbb")
            refused = await router.call(request)
            SECRETS.refresh()
            second = await router.call(request)
            return [first, refused, second]

        first, refused, second = asyncio.run(run())
    assert first.ok and second.ok and refused.failure_kind == "bad_request"
    assert seen == ["Bearer first-token-aaaa", "Bearer first-token-aaaa", "Bearer second-token-bbbb"]
    assert "second-token-bbbb" not in refused.error


# -- limits and circuit breakers ---------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_circuit_opens_fails_fast_half_opens_and_closes() -> None:
    clock = Clock()
    guard = Guard("policy-db", Limits(failures=3, reset_s=10), clock)
    calls = []

    def connector(ok: bool) -> Any:
        async def go() -> CallResult:
            calls.append(ok)
            return CallResult() if ok else CallResult(failure_kind="timeout", error="slow")
        return go

    async def run() -> None:
        for _ in range(3):
            assert (await guard.run(connector(False))).failure_kind == "timeout"
        assert guard.breaker is not None and guard.breaker.state == "open"
        fast = await guard.run(connector(True))
        assert fast.failure_kind == "circuit_open" and fast.meta["circuit"] == "open" and len(calls) == 3
        clock.t = 11
        trial = await guard.run(connector(False))  # half-open: one trial, which fails: open again
        assert trial.failure_kind == "timeout" and guard.breaker.state == "open" and len(calls) == 4
        assert (await guard.run(connector(True))).failure_kind == "circuit_open"
        clock.t = 22
        assert (await guard.run(connector(True))).ok and guard.breaker.state == "closed"
        nf = CallResult(failure_kind="bad_request", error="404")
        for _ in range(5):  # answers that are the caller's fault never open the circuit
            await guard.run(lambda: asyncio.sleep(0, nf))  # not a wait: a coroutine that answers nf
        assert guard.breaker.state == "closed"

    asyncio.run(run())


def test_rate_and_concurrency_limits_fail_fast() -> None:
    clock = Clock()
    guard = Guard("api", Limits(rate_per_s=2, burst=2, concurrency=1, queue_s=0.05), clock)

    async def slow() -> CallResult:
        await asyncio.sleep(0.2)  # kept: a slow call holding the one slot is the behaviour under test
        return CallResult()

    async def run() -> None:
        results = await asyncio.gather(guard.run(slow), guard.run(slow))
        assert sorted(r.failure_kind for r in results) == ["", "rate_limited"]  # one slot: the second waits, gives up
        assert (await guard.run(slow)).failure_kind == "rate_limited"  # 2 tokens spent, no time passed
        clock.t = 1.0
        assert (await guard.run(slow)).ok

    asyncio.run(run())


def test_an_open_circuit_is_a_failure_fact_rules_route_on(tmp_path: Path) -> None:
    rs = ruleset("""
    ruleset: guarded
    facts:
      claim: {ref: str}
      policy: {ref: str}
    tools:
      fetch: {connector: api, path: "/p/{ref}", params: {ref: claim.ref}, produces: policy}
    rules:
      - {name: get, when: exists claim, then: fetch}
      - name: circuit
        when: failure.kind == "circuit_open"
        then: {escalate: {queue: ops, reason: "policy service circuit open"}}
      - name: down
        priority: -1
        when: exists failure
        then: {escalate: {queue: ops, reason: "policy service failing"}}
    """)

    async def broken(request: web.Request) -> web.Response:
        return web.json_response({}, status=503)

    with serve_app([web.get("/p/{ref}", broken)]) as base:
        router = build_tools({"api": {"type": "http", "base_url": base, "retries": 0,
                                      "limits": {"breaker": {"failures": 2, "reset_s": 60}}}}, tmp_path)
        outcomes = [decide_with(rs, router) for _ in range(3)]
    assert [o.reason for o in outcomes] == ["policy service failing", "policy service failing",
                                            "policy service circuit open"]
    call_event = next(e for e in outcomes[2].trace if e["kind"] == "call")
    assert call_event["meta"]["circuit"] == "open" and call_event["failure"]["kind"] == "circuit_open"


def decide_with(rs: Any, tools: Any) -> Any:
    import asyncio as aio

    from engine.clock import FixedClock, SequentialIds
    from engine.loop import Engine
    from engine.recorded import RecordedAnswers

    return aio.run(Engine(rs).decide({"claim": {"ref": "P-1"}}, RecordedAnswers({}), tools, FixedClock(),
                                     SequentialIds()))


# -- effects to brokers ------------------------------------------------------------------------------

def broker_up(host: str, port: int) -> bool:
    import socket

    try:
        socket.create_connection((host, port), 1).close()
        return True
    except OSError:
        if CI:
            raise
        return False


class KilledAfterPublish(BaseException):
    """Stands for the publisher process dying between the broker's ack and the outbox update."""


def test_nats_effects_are_delivered_once_even_when_the_publisher_dies_after_publishing(tmp_path: Path) -> None:
    if not broker_up("127.0.0.1", 4222):
        pytest.skip("NATS not reachable")
    import nats

    stream, subject = f"FX_{uuid.uuid4().hex[:8].upper()}", f"baton.fx.{uuid.uuid4().hex[:8]}"
    store = SqlStore(str(tmp_path / "fx.db"))
    rs = ruleset("""
    ruleset: fx
    facts: {claim: {ref: str}}
    rules:
      - name: notify
        when: exists claim
        then: {effect: {name: claims-system, with: {claim: "{{ claim.ref }}"}}}
    """)
    record = decide(rs, {"claim": {"ref": "C-1"}}).to_dict()
    store.save(record)
    connectors = build_effects({"claims-system": {"type": "nats", "url": NATS, "subject": subject,
                                                  "stream": stream}}, tmp_path)
    real = connectors["claims-system"]

    class DiesAfterPublish:
        async def send(self, *args: Any) -> None:
            await real.send(*args)
            raise KilledAfterPublish

    async def run() -> int:
        with pytest.raises(KilledAfterPublish):
            await OutboxWorker(store, {"claims-system": DiesAfterPublish()}, lease_s=0.2).run_once()
        await asyncio.sleep(0.3)  # kept: the dead publisher's lease runs out (a TTL); another takes the effect over
        assert await OutboxWorker(store, connectors, lease_s=0.2).run_once() == 1
        nc = await nats.connect(NATS)
        js = nc.jetstream()
        info = await js.stream_info(stream)
        sub = await js.pull_subscribe(subject, stream=stream)
        msgs = await sub.fetch(5, timeout=2)
        body = json.loads(msgs[0].data)
        assert body["effect_id"] == f"{record['decision_id']}:1" and body["with"] == {"claim": "C-1"}
        assert not_none(msgs[0].headers)["Nats-Msg-Id"] == body["effect_id"]
        await js.delete_stream(stream)
        await nc.close()
        await real.close()  # type: ignore[attr-defined]
        return int(info.state.messages)

    assert asyncio.run(run()) == 1  # published twice, stored once: the stream dropped the repeat
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(OUTBOX.c.status, OUTBOX.c.attempts)).all() == [("done", 2)]


def test_amqp_effects_are_confirmed_and_carry_the_effect_id(tmp_path: Path) -> None:
    if not broker_up("127.0.0.1", 5672):
        pytest.skip("RabbitMQ not reachable")
    import aio_pika

    queue = f"baton-fx-{uuid.uuid4().hex[:8]}"
    connectors = build_effects({"payments": {"type": "amqp", "url": AMQP, "queue": queue,
                                             "limits": {"breaker": {"failures": 3, "reset_s": 5}}}}, tmp_path)

    async def run() -> tuple[Any, Any]:
        await connectors["payments"].send("d-1:2", "payments", "d-1", {"amount": "1240"})
        await connectors["payments"].send("d-1:2", "payments", "d-1", {"amount": "1240"})  # a redelivery
        conn = await aio_pika.connect_robust(AMQP)
        ch = await conn.channel()
        q = await ch.declare_queue(queue, durable=True)
        first, second = await q.get(timeout=5), await q.get(timeout=5)
        await first.ack()
        await second.ack()
        await q.delete()
        await conn.close()
        await connectors["payments"].inner.close()  # type: ignore[attr-defined]
        return first, second

    first, second = asyncio.run(run())
    assert first.message_id == second.message_id == "d-1:2"  # a consumer drops the repeat by its id
    assert first.headers["x-baton-effect-id"] == "d-1:2" and json.loads(first.body)["with"] == {"amount": "1240"}
    assert first.delivery_mode == aio_pika.DeliveryMode.PERSISTENT


def test_an_unreachable_broker_opens_the_effect_circuit(tmp_path: Path) -> None:
    connectors = build_effects({"payments": {"type": "amqp", "url": "amqp://guest:guest@127.0.0.1:1/", "queue": "q",
                                             "timeout_s": 0.5, "limits": {"breaker": {"failures": 2, "reset_s": 60}}}},
                               tmp_path)

    async def run() -> None:
        for _ in range(2):
            with pytest.raises(Exception) as e:
                await connectors["payments"].send("x:1", "payments", "x", {})
            assert not isinstance(e.value, Refused)
        with pytest.raises(Refused) as e:
            await connectors["payments"].send("x:1", "payments", "x", {})
        assert e.value.kind == "circuit_open"

    asyncio.run(run())


def make_pki(tmp: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, with the openssl command."""
    import subprocess

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=Baton test CA")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        (tmp / f"{name}.ext").write_text(ext + "\n")
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj",
            f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
            f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    return {n: tmp / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


@pytest.mark.slow
def test_per_connector_tls_with_a_ca_bundle_and_client_certificate(tmp_path: Path) -> None:
    import ssl

    pki = make_pki(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki["ca.pem"]))
    server_ctx.load_cert_chain(str(pki["server.pem"]), str(pki["server.key"]))
    server_ctx.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: no client certificate, no answer

    async def policy(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        assert peer is not None  # CERT_REQUIRED: no certificate, no request
        return web.json_response({"ref": request.match_info["ref"], "client": dict(x[0] for x in peer["subject"])})

    request = CallRequest("get", "tool", {"connector": "api", "path": "/p/{ref}", "params": {"ref": "P-1"}}, "p", {},
                          0, 5.0)
    with serve_app([web.get("/p/{ref}", policy)], ssl_context=server_ctx) as base:
        mutual = build_tools({"api": {"type": "http", "base_url": base, "retries": 0,
                                      "tls": {"ca": "ca.pem", "cert": "client.pem", "key": "client.key"}}}, tmp_path)
        ca_only = build_tools({"api": {"type": "http", "base_url": base, "retries": 0, "tls": {"ca": "ca.pem"}}},
                              tmp_path)
        system = build_tools({"api": {"type": "http", "base_url": base, "retries": 0}}, tmp_path)
        ok, no_cert, untrusted = (asyncio.run(r.call(request)) for r in (mutual, ca_only, system))
    assert ok.ok and ok.answer == {"ref": "P-1", "client": {"commonName": "client"}}
    assert no_cert.failure_kind == "error" and untrusted.failure_kind == "error"  # refused handshakes
    with pytest.raises(ValueError, match=r"tools\.api\.tls\.ca: no such file"):
        build_tools({"api": {"type": "http", "base_url": "https://x", "tls": {"ca": "missing.pem"}}}, tmp_path)
    with pytest.raises(ValueError, match="needs both cert and key"):
        build_tools({"api": {"type": "http", "base_url": "https://x", "tls": {"cert": "client.pem"}}}, tmp_path)
    effects = build_effects({"hook": {"type": "http", "url": "https://x/hook", "tls": {"ca": "ca.pem"}},
                             "bus": {"type": "nats", "subject": "s", "tls": {"ca": "ca.pem"}},
                             "mq": {"type": "amqp", "queue": "q", "tls": {"ca": "ca.pem", "cert": "client.pem",
                                                                          "key": "client.key"}}}, tmp_path)
    assert all(getattr(e, "tls", None) is not None for e in effects.values())
