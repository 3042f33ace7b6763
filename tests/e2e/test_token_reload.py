"""Tokens re-read while the service runs (SIGHUP, or every secrets_ttl_s): a token removed or rotated in the
token file is refused at once by gRPC and ends the console sessions made with it; a file that would leave
no token at all, or no longer reads, keeps the tokens in force."""

from __future__ import annotations

import signal
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2

from adapters.doors.grpc.gen.baton.v1 import decision_pb2, decision_pb2_grpc
from tests.e2e.server import TOKENS, free_port, metadata, start, write_tokens
from tests.e2e.test_console import login
from tests.e2e.test_console_sessions import console_up
from tests.helpers import wait_until

pytestmark = pytest.mark.slow


def listed(stub: decision_pb2_grpc.DecisionServiceStub, role: str) -> grpc.StatusCode:
    try:
        stub.ListDecisions(decision_pb2.ListDecisionsRequest(), metadata=metadata(role), timeout=10)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def test_a_token_removed_from_the_file_is_refused_at_once(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    tokens = write_tokens(tmp_path / "live-tokens.yaml")
    server = start(tmp_path, "--console", f"127.0.0.1:{port}", "--tokens", str(tokens), auth=False)
    console_up(url)
    stub = decision_pb2_grpc.DecisionServiceStub(grpc.insecure_channel(server.address))
    auditor, editor = httpx.Client(follow_redirects=False), httpx.Client(follow_redirects=False)
    try:
        assert login(auditor, url, "auditor").status_code == 303 and login(editor, url, "editor").status_code == 303
        assert listed(stub, "auditor") == grpc.StatusCode.OK

        # an empty file would open the service: refused, the tokens in force stay
        tokens.write_text("tokens: []\n")
        server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "tokens not re-read: none would be left" in server.log_file.read_text(), 20,
                   "the worker to refuse the empty token file")
        assert listed(stub, "auditor") == grpc.StatusCode.OK

        # the auditor's token rotated: refused by gRPC and the console at once, the new one works
        rotated = write_tokens(tmp_path / "x.yaml").read_text().replace(TOKENS["auditor"], "tok-auditor-2027")
        tokens.write_text(rotated)
        server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: listed(stub, "auditor") == grpc.StatusCode.UNAUTHENTICATED, 20,
                   "the rotated token to be refused")
        new = decision_pb2.ListDecisionsRequest()
        assert stub.ListDecisions(new, metadata=[("authorization", "Bearer tok-auditor-2027")], timeout=10) \
            is not None
        refused = auditor.get(f"{url}/decisions")
        assert refused.status_code == 303 and refused.headers["location"].endswith("why=token")
        assert editor.get(f"{url}/rulesets").status_code == 200
        values = struct_pb2.Struct()
        values.update({"claim_ref": "C-1", "amount": 10, "policy_ref": "P-1", "description": "x",
                       "customer_tier": "standard"})
        request = decision_pb2.DecideRequest(ruleset="claims-triage", facts=[decision_pb2.Fact(type="claim",
                                                                                               values=values)])
        assert stub.Decide(request, metadata=metadata("caller"), timeout=10).decision.decision_id
    finally:
        auditor.close()
        editor.close()
        assert server.stop() == 0
    assert any("tokens re-read" in line for line in server.log)
