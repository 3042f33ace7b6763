"""PostgreSQL restarted under load, two replicas, 64 calls in flight: calls fail with UNAVAILABLE while it is
down (never a hang, never INTERNAL), the service recovers by itself, and every acknowledged decision is
stored exactly once with the hash chain intact."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from adapters.doors.grpc.gen.baton.v1 import decision_pb2, decision_pb2_grpc
from adapters.infra.store.sql import SqlStore
from tests.e2e.server import fact, metadata, start
from tests.helpers import not_none, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # a real server, browser or broker per module
# serial: it restarts the machine's PostgreSQL, which every other store test uses

CLAIM = {"claim_ref": "C", "amount": 80000, "policy_ref": "P-1", "description": "whiplash",
         "customer_tier": "standard"}
ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def cluster() -> str:
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir()) if Path("/etc/postgresql").is_dir() else []
    if not versions:
        pytest.skip("no local PostgreSQL cluster to restart")
    return versions[0]


def pg_ready() -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], check=False).returncode == 0


@pytest.fixture()
def database() -> Iterator[str]:
    import sqlalchemy as sa

    if not pg_ready():
        pytest.skip("PostgreSQL is not running")
    name = f"baton_restart_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    wait_until(pg_ready, 60, "PostgreSQL to be back", every=0.5)
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


def test_postgresql_restarted_under_load(tmp_path: Path, database: str) -> None:
    version = cluster()
    for side in ("a", "b"):
        (tmp_path / side).mkdir()
    replicas = [start(tmp_path / "a", db=database), start(tmp_path / "b", db=database)]
    acknowledged: dict[str, str] = {}  # idempotency key -> decision id
    codes: Counter[str] = Counter()
    slowest = [0.0]
    stop = threading.Event()
    lock = threading.Lock()

    def client(n: int) -> None:
        channel = grpc.insecure_channel(replicas[n % 2].address)
        stub = decision_pb2_grpc.DecisionServiceStub(channel)
        i = 0
        while not stop.is_set():
            i += 1
            key = f"k{n}-{i}"
            req = decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", CLAIM)], idempotency_key=key)
            started = time.monotonic()
            try:
                got = stub.Decide(req, metadata=metadata("caller"), timeout=20)
                with lock:
                    acknowledged[key] = got.decision.decision_id
                    codes["OK"] += 1
            except grpc.RpcError as e:
                with lock:
                    codes[e.code().name] += 1
                time.sleep(0.05)  # kept: a client's back-off before it retries
            slowest[0] = max(slowest[0], time.monotonic() - started)
        channel.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(64)]
    try:
        for t in threads:
            t.start()
        wait_until(lambda: codes["OK"] >= 200, 60, "200 decisions under load before the restart")
        before_restart = codes["OK"]
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True,
                       timeout=120)
        restarted = time.monotonic()
        ok_at_restart = codes["OK"]
        wait_until(lambda: codes["OK"] - ok_at_restart >= 200, 30, "200 more decisions after the restart")
        recovered_in = time.monotonic() - restarted
        time.sleep(1)  # kept: a second more of load on the recovered service
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        if not pg_ready():
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False)
        for r in replicas:
            r.stop()
    assert before_restart > 0
    assert codes["OK"] - ok_at_restart >= 200, (codes, recovered_in)  # it recovered by itself
    assert set(codes) <= {"OK", "UNAVAILABLE"}, codes  # never INTERNAL, never a hang (DEADLINE_EXCEEDED)
    assert slowest[0] < 20
    store = SqlStore(database, migrate=False)
    try:
        rows = store.list_decisions(limit=100_000)
        keys = Counter(not_none(store.get(r["id"]))["idempotency_key"] for r in rows)
        assert all(n == 1 for n in keys.values())  # exactly once, retried or not
        assert all(store.get(d) is not None for d in acknowledged.values())  # every acknowledged one stored
        assert store.verify()[1] is None  # the chain is intact
    finally:
        store.close()
    print(f"calls: {dict(codes)}; recovered {recovered_in:.1f} s after the restart; {len(rows)} stored")
