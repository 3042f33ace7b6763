"""Operations: metrics, one JSON log line per decision without PII, config errors with the key path, and
two replicas on one PostgreSQL database."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from adapters.doors.grpc.gen.baton.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    decision_pb2,
    decision_pb2_grpc,
    ruleset_pb2,
    ruleset_pb2_grpc,
)
from tests.e2e.server import ROOT, fact, free_port, metadata, start
from tests.helpers import serve_app, wait_until

pytestmark = pytest.mark.slow  # a real server, browser or broker per module

APPLICANT = {"applicant_ref": "A-1", "full_name": "Zelda Quixote-Marsh", "country": "PT",
             "document_type": "passport", "document_text": "PASSPORT QUIXOTE-MARSH ZELDA", "pep_declared": False}
CLAIM = {"claim_ref": "C-1", "amount": 80000, "policy_ref": "P-1", "description": "whiplash",
         "customer_tier": "standard"}


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_metrics_and_one_json_log_line_per_decision_without_pii(tmp_path: Path) -> None:
    port = free_port()
    server = start(tmp_path, "--metrics", f"127.0.0.1:{port}", "--workers", "2", port=free_port())
    try:
        with server.channel() as channel:
            stub = decision_pb2_grpc.DecisionServiceStub(channel)
            for i in range(3):
                stub.Decide(decision_pb2.DecideRequest(ruleset="claims-triage", facts=[
                    fact("claim", {**CLAIM, "claim_ref": f"C-{i}"})]), metadata=metadata("caller"))
            stub.Decide(decision_pb2.DecideRequest(ruleset="customer-onboarding", facts=[fact("applicant", APPLICANT)]),
                        metadata=[*metadata("caller"), ("x-request-id", "req-42")])
            stub.Decide(decision_pb2.DecideRequest(ruleset="payment-approval", facts=[fact("payment", {
                "payment_ref": "P-1", "amount": 20000, "currency": "EUR", "beneficiary_iban": "X",
                "initiated_by": "alice", "new_beneficiary": False})]), metadata=metadata("caller"))
        samples = scrape(port)
        assert samples['baton_decisions_total{outcome="decided",ruleset="claims-triage"}'] == 3
        assert samples['baton_decisions_total{outcome="decided",ruleset="customer-onboarding"}'] == 1
        assert samples['baton_rule_fired_total{rule="high-risk",ruleset="claims-triage"}'] == 3
        assert samples['baton_decision_latency_seconds_count{ruleset="claims-triage"}'] == 3
        assert samples['baton_tool_calls_total{action="lookup_policy",status="ok"}'] == 3
        assert samples['baton_escalations_open{queue="treasury-approvals"}'] == 1
        assert samples["baton_store_write_seconds_count"] >= 1
        # each worker's heap, apart (a growing RSS with a flat "in use" is fragmentation, not a leak)
        heap = {k: v for k, v in samples.items() if k.startswith("baton_heap_in_use_bytes{")}
        assert len(heap) == 2 and all(v > 1e6 for v in heap.values()), heap
        blocks = {k: v for k, v in samples.items() if k.startswith("baton_python_allocated_blocks{")}
        assert len(blocks) == 2 and all(v > 10_000 for v in blocks.values()), blocks
        # each worker's durable-rules networks: the example rulesets' registered as they loaded
        networks = {k: v for k, v in samples.items() if k.startswith("baton_engine_networks{")}
        assert len(networks) == 2 and all(v >= 5 for v in networks.values()), networks
        held = {k: v for k, v in samples.items() if k.startswith("baton_engine_network_bytes{")}
        assert len(held) == 2 and all(v >= 5 * 56 * 1024 for v in held.values()), held
    finally:
        assert server.stop() == 0
    lines = [json.loads(line) for line in server.log_file.read_text().splitlines() if line.startswith("{")]
    decisions = [line for line in lines if line.get("logger") == "baton.decision"]
    assert len(decisions) == 5
    assert {d["ruleset"] for d in decisions} == {"claims-triage", "customer-onboarding", "payment-approval"}
    assert any(d["request_id"] == "req-42" for d in decisions)
    assert all({"decision_id", "outcome", "latency_ms", "cost_usd", "version"} <= set(d) for d in decisions)
    assert "Quixote" not in server.log_file.read_text()


def test_bad_config_fails_at_start_with_the_key_path(tmp_path: Path) -> None:
    config = tmp_path / "baton.yaml"
    config.write_text("listen: 127.0.0.1:0\nlimits:\n  max_inflight: lots\nworkers: 0\ntypo_key: 1\n")
    for args in (["config", "check", str(config)], ["serve", "--config", str(config), "--db", str(tmp_path / "x.db")]):
        out = subprocess.run([sys.executable, "-m", "adapters.doors.cli.main", *args], cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
        text = out.stdout + out.stderr
        assert out.returncode != 0
        assert "limits.max_inflight" in text and "workers" in text and "typo_key" in text
    env_bad = subprocess.run([sys.executable, "-m", "adapters.doors.cli.main", "config", "check"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60,
                             env={"PATH": "/usr/bin:/bin", "BATON_LIMITS__MAX_INFLIGHT": "-3"})
    assert env_bad.returncode == 1 and "limits.max_inflight" in env_bad.stdout + env_bad.stderr
    good = tmp_path / "good.yaml"
    good.write_text((ROOT / "baton.example.yaml").read_text())
    ok = subprocess.run([sys.executable, "-m", "adapters.doors.cli.main", "config", "check", str(good)], cwd=ROOT,
                        capture_output=True, text=True, timeout=60,
                        env={"PATH": "/usr/bin:/bin", "POLICY_DB_URL": "sqlite://", "POLICY_API_TOKEN": "t"})
    assert "sanctions.csv" in ok.stdout + ok.stderr  # the example's lookup file is resolved and checked


def test_two_replicas_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    a = start(tmp_path, db=pg_url)
    b = start(tmp_path, db=pg_url)
    try:
        with a.channel() as ch_a, b.channel() as ch_b:
            req = decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", CLAIM)],
                                             idempotency_key="retry-me")
            first = decision_pb2_grpc.DecisionServiceStub(ch_a).Decide(req, metadata=metadata("caller")).decision
            again = decision_pb2_grpc.DecisionServiceStub(ch_b).Decide(req, metadata=metadata("caller")).decision
            assert again.decision_id == first.decision_id and again.idempotent_replay
            source = (ROOT / "rulesets/claims-triage.yaml").read_text().replace("claim.amount > 50000",
                                                                                 "claim.amount > 90000")
            rulesets_a = ruleset_pb2_grpc.RulesetServiceStub(ch_a)
            submitted = rulesets_a.PublishRuleset(ruleset_pb2.PublishRulesetRequest(source=source, note="90k"),
                                                  metadata=metadata("editor"))
            published = submitted.ruleset
            rulesets_a.ApproveRuleset(ruleset_pb2.ApproveRulesetRequest(publication_id=submitted.publication.id),
                                      metadata=metadata("approver"))
            def decided_on_b() -> Any:
                d = decision_pb2_grpc.DecisionServiceStub(ch_b).Decide(decision_pb2.DecideRequest(
                    ruleset="claims-triage", facts=[fact("claim", CLAIM)]), metadata=metadata("caller")).decision
                return d if d.version == published.version else None

            d = wait_until(decided_on_b, 10, "the other replica to decide on the approved version", every=0.2)
            assert d.version == published.version and dict(d.decision) == {"route": "standard-queue"}
            verify = audit_pb2_grpc.AuditServiceStub(ch_b).VerifyLog(audit_pb2.VerifyLogRequest(),
                                                                     metadata=metadata("auditor"))
            assert verify.intact and verify.checked >= 2
    finally:
        assert a.stop() == 0 and b.stop() == 0


def test_opentelemetry_spans_for_a_decision_and_its_calls(tmp_path: Path) -> None:
    from aiohttp import web
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    spans: list[tuple[str, dict[str, object]]] = []

    async def receive(request: web.Request) -> web.Response:
        body = ExportTraceServiceRequest.FromString(await request.read())
        for resource in body.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    attrs: dict[str, object] = {a.key: a.value.string_value or a.value.int_value or a.value.double_value
                             for a in span.attributes}
                    spans.append((span.name, attrs))
        return web.Response(status=200)

    with serve_app([web.post("/v1/traces", receive)]) as base:
        config = tmp_path / "baton.yaml"
        config.write_text(f"tracing: {{exporter: otlp, endpoint: '{base}/v1/traces'}}\n")
        server = start(tmp_path, "--config", str(config))
        try:
            with server.channel() as channel:
                decision_pb2_grpc.DecisionServiceStub(channel).Decide(decision_pb2.DecideRequest(
                    ruleset="customer-onboarding", facts=[fact("applicant", APPLICANT)]),
                    metadata=metadata("caller"))
        finally:
            assert server.stop() == 0
    names = [name for name, _ in spans]
    assert "baton.decide" in names and "baton.model verify_document" in names
    assert "baton.tool sanctions_screen" in names
    decide = dict(spans[names.index("baton.decide")][1])
    assert decide["baton.ruleset"] == "customer-onboarding" and decide["baton.outcome"] == "decided"
    assert "Quixote" not in repr(spans)
