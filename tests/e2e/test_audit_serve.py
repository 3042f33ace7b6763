"""`baton serve` with an `audit:` section: checkpoints signed as decisions come in and at shutdown land in the
witness directory, and `baton log verify --checkpoints` holds the served log against them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.doors.cli.main import app
from adapters.doors.grpc.gen.baton.v1 import decision_pb2, decision_pb2_grpc
from adapters.infra.checkpoints import generate_keys, read_checkpoints
from tests.e2e.server import fact, metadata, start
from tests.e2e.test_ops import CLAIM

pytestmark = pytest.mark.slow  # a real server, browser or broker per module


def test_serve_signs_checkpoints_into_its_witness_directory(tmp_path: Path) -> None:
    private, public = generate_keys(tmp_path / "keys")
    config = tmp_path / "baton.yaml"
    config.write_text(json.dumps({"audit": {"signing_key": f"${{file:{private}}}", "origin": "test/claims",
                                            "checkpoint_every": {"decisions": 2, "seconds": None},
                                            "witnesses": [{"dir": str(tmp_path / "witness")}]}}))
    server = start(tmp_path, "--config", str(config))
    try:
        with server.channel() as channel:
            stub = decision_pb2_grpc.DecisionServiceStub(channel)
            for i in range(3):
                req = decision_pb2.DecideRequest(ruleset="claims-triage",
                                                 facts=[fact("claim", {**CLAIM, "claim_ref": f"C-{i}"})])
                stub.Decide(req, metadata=metadata("caller"))
    finally:
        assert server.stop() == 0
    sizes = [cp.size for _, cp in read_checkpoints(tmp_path / "witness")]
    assert sizes[0] == 0 and sizes[-1] == 3  # one at start, the last at shutdown
    assert {cp.origin for _, cp in read_checkpoints(tmp_path / "witness")} == {"test/claims"}
    result = CliRunner().invoke(app, ["log", "verify", "--db", server.db, "--checkpoints", str(tmp_path / "witness"),
                                      "--public-key", str(public), "--origin", "test/claims"])
    assert result.exit_code == 0 and "agree with the stored log (3 decisions)" in result.output, result.output
