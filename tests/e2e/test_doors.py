"""One decision through each of Baton's four doors - gRPC `Decide` (and a DecideBatch and a DecideStream of one
request each), broker intake, the console (an escalation resolved, its decision resumed) and the CLI
(`baton decide --db`) - and the same side records for each: a decision-log line with the same fields, the
decisions counter, a span, a shadow result, and a stored record of the same shape. The doors are the real
ones (a gRPC server, the intake's message handler, the console app, the CLI command), in this process so
that every side record can be read back."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY
from starlette.testclient import TestClient
from typer.testing import CliRunner

from adapters.doors.cli.main import app as cli
from adapters.doors.console.app import Console, create_app
from adapters.doors.console.security import Sessions
from adapters.doors.grpc.auth import Auth, Identity
from adapters.doors.grpc.gen.baton.v1 import decision_pb2, decision_pb2_grpc
from adapters.doors.grpc.service import Services, generic_handlers
from adapters.doors.intake import Decider
from adapters.infra.candidates import CandidateCompiler
from adapters.infra.rulesets import load_file
from adapters.infra.store.sql import SHADOW_RESULTS, SqlStore
from adapters.infra.store.writer import GroupWriter
from adapters.infra.system import SystemClock, TimeOrderedIds
from adapters.usecases.audits import Audits
from adapters.usecases.decide import Decide
from adapters.usecases.decisions import DecisionPath
from adapters.usecases.escalations import Escalations
from adapters.usecases.registry import RulesetRegistry
from adapters.usecases.shadow import Shadows
from engine.language.loader import load_ruleset
from engine.recorded import RecordedAnswers
from tests.e2e.server import fact, free_port
from tests.helpers import not_none

pytestmark = pytest.mark.slow  # a real server, browser or broker per module

ROOT = Path(__file__).resolve().parents[2]
ANSWERS = {"lookup_limit": {"user": "alice", "single_limit": 5000}, "anomaly_model": {"score": 0.1, "reasons": []}}
TOKENS = {"t-caller": Identity("caller", frozenset({"caller"})),
          "t-reviewer": Identity("rita", frozenset({"reviewer"}))}
EXPORTER = InMemorySpanExporter()
LOG_FIELDS = {"decision_id", "request_id", "caller", "ruleset", "version", "outcome", "rule", "latency_ms",
              "cost_usd", "tokens", "steps", "calls"}


def payment(ref: str, amount: float) -> dict[str, Any]:
    return {"payment_ref": ref, "amount": amount, "currency": "EUR", "beneficiary_iban": "DE0000000000",
            "initiated_by": "alice", "new_beneficiary": False}


def decisions_counted() -> float:
    return sum(REGISTRY.get_sample_value("baton_decisions_total", {"ruleset": "payment-approval", "outcome": o})
               or 0.0 for o in ("decided", "escalated", "failed", "no_decision"))


@pytest.fixture(scope="module", autouse=True)
def tracing() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)  # what a deployment configures; every door then traces


def test_every_door_gives_a_decision_the_same_side_records(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    caplog.set_level(logging.INFO, logger="baton.decision")
    db = str(tmp_path / "doors.db")
    store = SqlStore(db)
    registry = RulesetRegistry(store)
    live = load_file(ROOT / "rulesets/payment-approval.yaml")
    registry.publish_reviewed(live, "test")
    candidate = load_ruleset(live.source.replace("when: payment.amount < 1000 and", "when: payment.amount < 500 and"),
                             "candidate.yaml")
    Shadows(store, registry).attach(candidate, "test")  # every stored decision is also tried on this
    writer = GroupWriter(store)
    answers = RecordedAnswers(ANSWERS)
    clock, ids = SystemClock(), TimeOrderedIds()
    ids_by_door: dict[str, str] = {}
    counted = [decisions_counted()]

    # 1. gRPC Decide, on a real server
    async def over_grpc() -> tuple[str, str, str, str]:
        shadows = Shadows(store, registry)
        shadows.start()
        path = DecisionPath(writer, None, shadows)  # the process's one path, as the composition root builds it
        decide = Decide(registry=registry, log=store, path=path, models=answers, tools=answers, clock=clock, ids=ids)
        services = Services(auth=Auth(TOKENS), decide=decide, store=store, registry=registry, shadows=shadows,
                            audits=Audits(store=store, registry=registry, candidates=CandidateCompiler()),
                            escalations=Escalations(store, writer, registry, answers, answers, clock, ids, path=path))
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(generic_handlers(services))
        port = server.add_insecure_port(f"127.0.0.1:{free_port()}")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                stub = decision_pb2_grpc.DecisionServiceStub(ch)
                meta = (("authorization", "Bearer t-caller"),)
                small = await stub.Decide(decision_pb2.DecideRequest(ruleset="payment-approval", facts=[
                    fact("payment", payment("PAY-1", 250))]), metadata=meta)
                big = await stub.Decide(decision_pb2.DecideRequest(ruleset="payment-approval", facts=[
                    fact("payment", payment("PAY-4", 20000))]), metadata=meta)
                # the same door's bulk methods: a batch of one and a stream of one
                batch = await stub.DecideBatch(decision_pb2.DecideBatchRequest(requests=[decision_pb2.DecideRequest(
                    ruleset="payment-approval", facts=[fact("payment", payment("PAY-5", 260))])]), metadata=meta)
                streamed = [r async for r in stub.DecideStream(iter([decision_pb2.DecideStreamRequest(
                    request=decision_pb2.DecideRequest(ruleset="payment-approval", facts=[
                        fact("payment", payment("PAY-6", 270))]))]), metadata=meta)]
            await shadows.drain()
        finally:
            await server.stop(None)
            await shadows.stop()
        return (small.decision.decision_id, big.decision.decision_id, batch.results[0].decision.decision_id,
                streamed[0].result.decision.decision_id)

    ids_by_door["grpc"], escalated, ids_by_door["grpc batch"], ids_by_door["grpc stream"] = asyncio.run(over_grpc())
    assert store.escalation(escalated) is not None
    counted.append(decisions_counted())

    # 2. broker intake: the consumer's handler for one message
    async def over_intake() -> str:
        shadows = Shadows(store, registry)
        shadows.start()
        decider = Decider(Decide(registry=registry, log=store, path=DecisionPath(writer, None, shadows),
                                 models=answers, tools=answers, clock=clock, ids=ids))
        record, replayed = await decider.decide(json.dumps({"ruleset": "payment-approval", "facts": {
            "payment": payment("PAY-2", 300)}}).encode(), "msg-1", "intake:payments", "payment-approval", False)
        assert not replayed
        await shadows.drain()
        await shadows.stop()
        return str(record["decision_id"])

    ids_by_door["intake"] = asyncio.run(over_intake())
    counted.append(decisions_counted())

    # 3. the console: a reviewer resolves the escalation; its decision resumes
    shadows = Shadows(store, registry)
    escalations = Escalations(store, writer, registry, answers, answers, clock, ids,
                              path=DecisionPath(writer, None, shadows))
    with TestClient(create_app(Console(store, registry, Sessions(Auth(TOKENS)), escalations))) as browser:
        portal = not_none(browser.portal)  # set while the client is entered
        portal.call(shadows.start)
        page = browser.get("/login")
        nonce = re.search(r'name="nonce" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        assert browser.post("/login", data={"nonce": nonce, "token": "t-reviewer"}).status_code == 200
        page = browser.get(f"/escalations/{escalated}")
        csrf = re.search(r'name="csrf" content="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        done = browser.post(f"/escalations/{escalated}/resolve", data={"csrf": csrf}, follow_redirects=False)
        assert done.status_code == 303, done.text
        portal.call(shadows.drain)
        portal.call(shadows.stop)
    resumed = store.escalation(escalated)["resumed_decision_id"]  # type: ignore[index]
    assert resumed
    ids_by_door["console"] = resumed
    counted.append(decisions_counted())

    # 4. the CLI
    facts, answers_file = tmp_path / "facts.json", tmp_path / "answers.json"
    facts.write_text(json.dumps({"payment": payment("PAY-3", 400)}))
    answers_file.write_text(json.dumps(ANSWERS))
    result = CliRunner().invoke(cli, ["decide", str(ROOT / "rulesets/payment-approval.yaml"), "--facts", str(facts),
                                      "--answers", str(answers_file), "--db", db])
    assert result.exit_code == 0, result.output
    ids_by_door["cli"] = json.loads(result.output)["decision_id"]
    counted.append(decisions_counted())
    writer.close()

    # the gRPC door decided four times (the escalated payment, a batch and a stream too); every other door once
    assert [b - a for a, b in itertools.pairwise(counted)] == [4, 1, 1, 1]
    lines = {getattr(r, "decision_id", None): r for r in caplog.records if r.name == "baton.decision"}
    spans = {not_none(s.attributes).get("baton.decision_id"): s for s in EXPORTER.get_finished_spans()
             if s.name == "baton.decide"}
    with store.engine.connect() as conn:
        shadowed = set(conn.execute(sa.select(SHADOW_RESULTS.c.decision_id)).scalars())
    shapes = set()
    for door, decision_id in ids_by_door.items():
        line = lines.get(decision_id)
        assert line is not None, f"{door}: no decision-log line"
        assert set(line.__dict__) >= LOG_FIELDS, f"{door}: log line fields"
        assert decision_id in spans, f"{door}: no span"
        assert not_none(spans[decision_id].attributes)["baton.ruleset"] == "payment-approval"
        assert decision_id in shadowed, f"{door}: not offered to the shadow version"
        record = store.get(decision_id)
        assert record is not None, f"{door}: not stored"
        shapes.add(tuple(sorted(k for k in record if k != "documents")))
    assert len(shapes) == 1, shapes  # one record shape, whatever the door
    assert store.verify()[1] is None
