"""Human in the loop over gRPC: a decision escalated by one server process is resolved through another,
resumes to a final outcome and replays identically; an SLA that passes resumes it with a timeout fact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from adapters.doors.grpc.gen.baton.v1 import decision_pb2, decision_pb2_grpc, escalation_pb2, escalation_pb2_grpc
from tests.e2e.server import ROOT, details_of, metadata, start, struct
from tests.helpers import wait_until

pytestmark = pytest.mark.slow  # a real server, browser or broker per module

PAYMENT = {"payment_ref": "PAY-77", "amount": 20000, "currency": "EUR", "beneficiary_iban": "GB29NWBK60161331926819",
           "initiated_by": "alice", "new_beneficiary": False}


def escalate(channel: grpc.Channel, ref: str) -> decision_pb2.Decision:
    stub = decision_pb2_grpc.DecisionServiceStub(channel)
    fact = decision_pb2.Fact(type="payment", values=struct({**PAYMENT, "payment_ref": ref}))
    d: decision_pb2.DecideResponse = stub.Decide(decision_pb2.DecideRequest(ruleset="payment-approval", facts=[fact]),
                                                 metadata=metadata("caller"))
    return d.decision


def test_resolved_on_another_replica_resumes_and_replays(tmp_path: Path) -> None:
    a = start(tmp_path)
    b = start(tmp_path, db=a.db)  # a second server process on the same database
    try:
        with a.channel() as ch_a, b.channel() as ch_b:
            first = escalate(ch_a, "PAY-77")
            assert first.outcome == decision_pb2.OUTCOME_ESCALATED and dict(first.decision) == {
                "queue": "treasury-approvals"}
            esc = escalation_pb2_grpc.EscalationServiceStub(ch_b)
            listed = esc.ListEscalations(escalation_pb2.ListEscalationsRequest(queue="treasury-approvals"),
                                         metadata=metadata("reviewer")).escalations
            assert [e.escalation_id for e in listed] == [first.decision_id]
            assert listed[0].expects == "approval" and listed[0].HasField("sla_at")
            assert set(listed[0].expects_schema["properties"]) == {"payment_ref", "approver"}
            got = esc.GetEscalation(escalation_pb2.GetEscalationRequest(escalation_id=first.decision_id),
                                    metadata=metadata("reviewer"))
            assert {f.type for f in got.facts} >= {"payment", "user_limit", "approval_required"}
            # who answers is who signed in (the rule's `identity: approver`), never what the answer says
            with pytest.raises(grpc.RpcError) as bad:
                esc.ResolveEscalation(escalation_pb2.ResolveEscalationRequest(
                    escalation_id=first.decision_id, answer=struct({"approver": "carol"})),
                    metadata=metadata("reviewer"))
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "answer.approver" in details_of(bad.value)
            # and what the escalation knows (the payment it escalated) is not the reviewer's to change
            with pytest.raises(grpc.RpcError) as bad:
                esc.ResolveEscalation(escalation_pb2.ResolveEscalationRequest(
                    escalation_id=first.decision_id, answer=struct({"payment_ref": "PAY-1"})),
                    metadata=metadata("reviewer"))
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "answer.payment_ref" in details_of(bad.value)
            with pytest.raises(grpc.RpcError) as denied:
                esc.ResolveEscalation(escalation_pb2.ResolveEscalationRequest(escalation_id=first.decision_id),
                                      metadata=metadata("caller"))
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
            resolved = esc.ResolveEscalation(escalation_pb2.ResolveEscalationRequest(
                escalation_id=first.decision_id, answer=struct({"payment_ref": "PAY-77"})),
                metadata=metadata("reviewer"))
            resumed = resolved.decision
            assert resumed.outcome == decision_pb2.OUTCOME_DECIDED and dict(resumed.decision) == {"action": "release"}
            assert resumed.reason == "four-eyes approved" and list(resumed.fired)[-1] == "approved-above-limit"
            assert resolved.escalation.status == "resolved" and resolved.escalation.resolved_by == "reviewer"
            assert resolved.escalation.resumed_decision_id == resumed.decision_id
            with pytest.raises(grpc.RpcError) as twice:
                esc.ResolveEscalation(escalation_pb2.ResolveEscalationRequest(
                    escalation_id=first.decision_id, answer=struct({"payment_ref": "PAY-77", "approver": "dan"})),
                    metadata=metadata("reviewer"))
            assert twice.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            decisions = decision_pb2_grpc.DecisionServiceStub(ch_a)
            record = decisions.GetDecision(decision_pb2.GetDecisionRequest(decision_id=resumed.decision_id),
                                           metadata=metadata("auditor")).record
            assert record["resumes"] == first.decision_id
            human = [e for e in record["trace"] if e["kind"] == "fact" and e["source"] == "human"]
            assert len(human) == 1 and human[0]["by"] == "reviewer" and human[0]["values"]["approver"] == "reviewer"
            replay = decisions.ReplayDecision(decision_pb2.ReplayDecisionRequest(decision_id=resumed.decision_id),
                                              metadata=metadata("auditor"))
            assert replay.identical
    finally:
        assert a.stop() == 0 and b.stop() == 0


def test_an_sla_that_passes_resumes_with_a_timeout_fact(tmp_path: Path) -> None:
    rulesets = tmp_path / "rulesets"
    rulesets.mkdir()
    text = (ROOT / "rulesets/payment-approval.yaml").read_text().replace("sla: 4h", "sla: 1s")
    (rulesets / "payment-approval.yaml").write_text(text)
    server = start(tmp_path, "--sla-check", "0.2", rulesets=rulesets)
    try:
        with server.channel() as channel:
            first = escalate(channel, "PAY-78")
            assert first.outcome == decision_pb2.OUTCOME_ESCALATED
            esc = escalation_pb2_grpc.EscalationServiceStub(channel)
            def closed() -> Any:
                row = esc.GetEscalation(escalation_pb2.GetEscalationRequest(escalation_id=first.decision_id),
                                        metadata=metadata("reviewer")).escalation
                return row if row.status != "open" else None

            row = wait_until(closed, 15, "the escalation to leave 'open' when its SLA passes")
            assert row.status == "expired" and row.resolved_by == "sla"
            resumed = decision_pb2_grpc.DecisionServiceStub(channel).GetDecision(
                decision_pb2.GetDecisionRequest(decision_id=row.resumed_decision_id), metadata=metadata("auditor"))
            assert dict(resumed.decision.decision) == {"action": "reject"}
            assert resumed.decision.reason == "no second approver within the SLA"
    finally:
        assert server.stop() == 0
