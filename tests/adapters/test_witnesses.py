"""The service's checkpointer and its witnesses: a checkpoint every N decisions or seconds (only when the log
grew), kept in the store and handed to a directory, an HTTP endpoint and a NATS subject (real peers); a
witness that is down does not stop the others; the `audit:` config section."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from adapters.infra.checkpoints import Checkpoint, Verifier, generate_keys, read_checkpoints, read_public_keys
from adapters.infra.secrets import SECRETS
from adapters.infra.store.sql import Pending, SqlStore
from adapters.infra.witnesses import Checkpointer, DirectoryWitness, HttpWitness, NatsWitness, Witness, checkpointer
from adapters.usecases.config import load_config
from tests.adapters.test_integrations import NATS, broker_up
from tests.adapters.test_tree_store import records
from tests.helpers import serve_app


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_checkpoints_every_n_decisions_or_seconds_reach_every_witness(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    private, public = generate_keys(tmp_path / "keys")
    store = SqlStore(str(tmp_path / "baton.db"))
    posted: list[dict[str, Any]] = []

    async def take(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer witness-token":
            return web.Response(status=401)
        posted.append(await request.json())
        return web.Response(status=201)

    clock = Clock()
    with serve_app([web.post("/checkpoints", take)]) as url:
        witnesses: list[Witness] = [DirectoryWitness(tmp_path / "w"), HttpWitness("http://127.0.0.1:1/down"),
                     HttpWitness(f"{url}/checkpoints", {"Authorization": "Bearer ${env:WITNESS_TOKEN}"})]
        monkeypatch.setenv("WITNESS_TOKEN", "witness-token")
        SECRETS.resolve("Bearer ${env:WITNESS_TOKEN}", "test")
        cpr = Checkpointer(store, f"${{file:{private}}}", None, witnesses,
                           every_decisions=10, every_s=60, clock=clock)

        made = records(11)

        async def run() -> list[Checkpoint | None]:
            got = [await cpr.tick()]  # at start: the log as it is
            store.save_batch([Pending(r) for r in made[:9]])
            got.append(await cpr.tick())  # 9 < 10 decisions, 0 s: not due
            store.save_batch([Pending(made[9])])
            got.append(await cpr.tick())  # 10: due
            clock.now += 61
            got.append(await cpr.tick())  # a minute, but nothing new: not due
            store.save_batch([Pending(made[10])])
            got.append(await cpr.tick())  # a minute and one decision: due
            return got

        got = asyncio.run(run())
    assert [cp.size if cp else None for cp in got] == [0, None, 10, None, 11]
    verifier = Verifier(read_public_keys([public]), f"baton/{store.log_id()}")
    kept = [cp for _, cp in read_checkpoints(tmp_path / "w")]
    assert [cp.size for cp in kept] == [0, 10, 11] and all(verifier.problem(cp) is None for cp in kept)
    assert [p["size"] for p in posted] == [0, 10, 11]  # the witness that is down did not stop this one
    assert REGISTRY.get_sample_value("baton_checkpoints_total", {"witness": "http http://127.0.0.1:1/down",
                                                                 "result": "failed"}) == 3
    assert kept[-1].root == store.tree_head()[1]
    assert json.loads(store.latest_checkpoints()[0])["size"] == 11


def test_a_nats_witness_receives_each_checkpoint(tmp_path: Path) -> None:
    if not broker_up("127.0.0.1", 4222):
        pytest.skip("NATS not reachable")
    import nats

    private, _ = generate_keys(tmp_path / "keys")
    store = SqlStore(str(tmp_path / "baton.db"))
    subject = f"baton.checkpoints.{uuid.uuid4().hex[:8]}"
    cpr = Checkpointer(store, f"${{file:{private}}}", "example/log", [NatsWitness(NATS, subject)], 1, None)

    made = records(1)

    async def run() -> list[bytes]:
        nc = await nats.connect(NATS)
        sub = await nc.subscribe(subject)
        await nc.flush()
        await cpr.tick()
        store.save(made[0])
        await cpr.tick()
        got = [(await sub.next_msg(timeout=5)).data for _ in range(2)]
        await nc.close()
        return got

    got = [Checkpoint.from_json(json.loads(m), "nats") for m in asyncio.run(run())]
    assert [(cp.origin, cp.size) for cp in got] == [("example/log", 0), ("example/log", 1)]


def test_the_audit_config_section(tmp_path: Path) -> None:
    generate_keys(tmp_path / "keys")
    path = tmp_path / "baton.yaml"
    path.write_text("audit:\n  signing_key: ${file:keys/checkpoint.key}\n  checkpoint_every: {decisions: 500}\n"
                    "  witnesses:\n    - dir: checkpoints\n    - url: http://witness.invalid/c\n"
                    "    - {nats: 'nats://127.0.0.1:4222', subject: audit.checkpoints}\n")
    cfg = load_config(path, environ={})
    assert cfg.audit is not None and cfg.audit.checkpoint_every.decisions == 500
    assert cfg.audit.checkpoint_every.seconds == 60
    built = checkpointer(cfg, tmp_path, SqlStore(str(tmp_path / "baton.db")))
    assert [w.name for w in built.witnesses] == [f"dir {tmp_path / 'checkpoints'}", "http http://witness.invalid/c",
                                                 "nats audit.checkpoints"]
    path.write_text("audit:\n  signing_key: x\n  witnesses: [{dir: a, url: 'http://b'}]\n")
    with pytest.raises(ValueError, match=r"audit\.witnesses\.0: Value error, a witness names exactly one of"):
        load_config(path, environ={})
    path.write_text("audit:\n  signing_key: ${file:nope.key}\n  witnesses: [{dir: a}]\n")
    with pytest.raises(ValueError, match="cannot read secret file"):
        checkpointer(load_config(path, environ={}), tmp_path, SqlStore(str(tmp_path / "baton.db")))
    path.write_text("audit:\n  signing_key: ${file:keys/checkpoint.pub}\n  witnesses: [{dir: a}]\n")
    with pytest.raises(ValueError, match=r"audit\.signing_key: not an Ed25519 private key"):
        checkpointer(load_config(path, environ={}), tmp_path, SqlStore(str(tmp_path / "baton.db")))


def test_config_check_reads_the_signing_key_and_names_the_witnesses(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from adapters.doors.cli.main import app

    generate_keys(tmp_path / "keys")
    path = tmp_path / "baton.yaml"
    path.write_text("audit:\n  signing_key: ${file:keys/checkpoint.key}\n  witnesses: [{dir: w}, {url: 'http://x'}]\n")
    done = CliRunner().invoke(app, ["config", "check", str(path)])
    assert done.exit_code == 0 and f"checkpoints to: dir {tmp_path / 'w'}, http http://x" in done.output, done.output
    path.write_text("audit:\n  signing_key: ${file:keys/checkpoint.pub}\n  witnesses: [{dir: w}]\n")
    done = CliRunner().invoke(app, ["config", "check", str(path)])
    assert done.exit_code == 1 and "audit.signing_key: not an Ed25519 private key" in done.output
