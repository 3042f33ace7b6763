"""A connector secret rotated on disk is used after SIGHUP without a restart, and no secret string
appears in any stored record, log line, error message or metric of the run."""

from __future__ import annotations

import json
import signal
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web

from adapters.doors.grpc.gen.baton.v1 import decision_pb2, decision_pb2_grpc
from adapters.infra.store.sql import SqlStore
from tests.e2e.server import fact, free_port, metadata, start
from tests.helpers import serve_app, wait_until

pytestmark = pytest.mark.slow  # a real server, browser or broker per module

RULESET = """
ruleset: guarded-lookup
facts:
  claim: {ref: str}
  policy: {ref: str, active: bool}
tools:
  fetch_policy: {connector: policy_api, path: "/policies/{ref}", params: {ref: claim.ref}, produces: policy}
rules:
  - {name: fetch, when: exists claim, then: fetch_policy}
  - name: active
    when: policy.active
    then: {decide: {route: proceed}}
  - name: api-refused
    when: failure.action == "fetch_policy"
    then: {escalate: {queue: ops, reason: "policy API refused"}}
"""
OLD, NEW = "s3cr3t-old-token-7f2a", "s3cr3t-new-token-91bc"
DB_PASSWORD = "pg-pass-never-logged-55e1"


def test_rotation_on_sighup_and_no_secret_anywhere(tmp_path: Path) -> None:
    current = {"token": OLD}
    lock = threading.Lock()

    async def policy(request: web.Request) -> web.Response:
        with lock:
            good = request.headers.get("Authorization") == f"Bearer {current['token']}"
        if not good:  # an API that echoes what it got in its error: Baton must not store it
            return web.json_response({"error": f"bad token {request.headers.get('Authorization')}"}, status=403)
        return web.json_response({"ref": request.match_info["ref"], "active": True})

    rulesets = tmp_path / "rulesets"
    rulesets.mkdir()
    (rulesets / "guarded.yaml").write_text(RULESET)
    (tmp_path / "api-token").write_text(OLD + "\n")
    metrics_port = free_port()
    with serve_app([web.get("/policies/{ref}", policy)]) as base:
        config = {"tools": {"policy_api": {"type": "http", "base_url": base, "retries": 0,
                                           "headers": {"Authorization": "Bearer ${file:api-token}"}},
                            "legacy": {"type": "sql", "url": "sqlite:///${env:LEGACY_DB}?pw=${env:DB_PW}"}},
                  "effects": {"audit": {"type": "http", "url": f"{base}/audit",
                                        "headers": {"X-Key": "${env:DB_PW}"}}},
                  "rulesets": str(rulesets), "metrics": f"127.0.0.1:{metrics_port}", "log_level": "debug"}
        (tmp_path / "baton.yaml").write_text(json.dumps(config))
        server = start(tmp_path, "--config", str(tmp_path / "baton.yaml"), canned=False,
                       env={"LEGACY_DB": str(tmp_path / "legacy.db"), "DB_PW": DB_PASSWORD}, rulesets=rulesets)
        try:
            with server.channel() as ch:
                stub = decision_pb2_grpc.DecisionServiceStub(ch)

                def decide(ref: str) -> Any:
                    return stub.Decide(decision_pb2.DecideRequest(ruleset="guarded-lookup",
                                                                  facts=[fact("claim", {"ref": ref})]),
                                       metadata=metadata("caller")).decision

                assert dict(decide("P-1").decision) == {"route": "proceed"}
                with lock:
                    current["token"] = NEW  # the API rotates first; Baton still sends the old token
                refused = decide("P-2")
                assert refused.reason == "policy API refused"
                (tmp_path / "api-token").write_text(NEW + "\n")
                server.proc.send_signal(signal.SIGHUP)
                wait_until(lambda: dict(decide("P-3").decision) == {"route": "proceed"}, 10,
                           "the re-read token to be sent", every=0.1)
                assert dict(decide("P-4").decision) == {"route": "proceed"}
            metrics_text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
            assert "baton_secret_rotations_total 1.0" in metrics_text
        finally:
            assert server.stop() == 0
    # scan everything the run wrote: the database, the logs, stdout, metrics
    outputs = [server.log_file.read_text(), "\n".join(server.log), metrics_text]
    store = SqlStore(server.db)
    with store.engine.connect() as conn:
        for table in ("decisions", "trace_events", "calls", "outbox"):
            outputs.extend(str(row) for row in conn.execute(sa.text(f"SELECT * FROM {table}")).all())
    store.close()
    everything = "\n".join(outputs)
    assert "policy API refused" in everything and "secrets re-read (1 changed)" in everything
    for secret in (OLD, NEW, DB_PASSWORD):
        assert secret not in everything, secret
    assert "policy_api: HTTP 403" in everything  # the refusal is recorded, without the token the API echoed
