"""Governance over gRPC: four-eyes publishing, effective dates, diffs, warnings and shadow runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

from adapters.doors.grpc.gen.baton.v1 import decision_pb2, decision_pb2_grpc, ruleset_pb2, ruleset_pb2_grpc
from engine.language.loader import load_ruleset
from tests.e2e.server import ROOT, Server, fact, metadata, start
from tests.helpers import wait_until

pytestmark = pytest.mark.slow  # a real server, browser or broker per module

CLAIM = {"claim_ref": "C-9", "amount": 80000, "policy_ref": "P-1", "description": "whiplash",
         "customer_tier": "standard"}
TRIAGE = (ROOT / "rulesets/claims-triage.yaml").read_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start(tmp_path_factory.mktemp("governance"))
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def stubs(server: Server) -> Iterator[tuple[Any, Any]]:
    with server.channel() as ch:
        yield ruleset_pb2_grpc.RulesetServiceStub(ch), decision_pb2_grpc.DecisionServiceStub(ch)


def code_of(call: Any) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as e:
        return e.code()
    raise AssertionError("the call succeeded")


def decide(d: Any) -> Any:
    return d.Decide(decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", CLAIM)]),
                    metadata=metadata("caller")).decision


def test_publish_approve_with_effective_date_and_diff(stubs: tuple[Any, Any]) -> None:
    r, d = stubs
    live = decide(d)
    candidate = TRIAGE.replace("claim.amount > 50000", "claim.amount > 95000")
    when = timestamp_pb2.Timestamp()
    when.FromNanoseconds(int((time.time() + 4) * 1e9))
    sub = r.PublishRuleset(ruleset_pb2.PublishRulesetRequest(source=candidate, note="bar to 95k", effective_from=when),
                           metadata=metadata("lead")).publication
    assert sub.status == "pending" and sub.requested_from.seconds == when.seconds
    # the submitter holds the approver role too, and still cannot approve their own change
    assert code_of(lambda: r.ApproveRuleset(ruleset_pb2.ApproveRulesetRequest(publication_id=sub.id),
                                            metadata=metadata("lead"))) == grpc.StatusCode.PERMISSION_DENIED
    pending = r.ListPublications(ruleset_pb2.ListPublicationsRequest(ruleset="claims-triage", status="pending"),
                                 metadata=metadata("approver")).publications
    assert [p.id for p in pending] == [sub.id]
    diff = r.DiffRulesets(ruleset_pb2.DiffRulesetsRequest(from_version=live.version, to_version=sub.version),
                          metadata=metadata("approver")).changes
    assert [(c.kind, c.what, c.name) for c in diff] == [("changed", "rule", "high-risk")]
    assert "50000" in diff[0].details[0] and "95000" in diff[0].details[0]
    approved = r.ApproveRuleset(ruleset_pb2.ApproveRulesetRequest(publication_id=sub.id, note="impact checked"),
                                metadata=metadata("approver")).publication
    assert approved.status == "published" and approved.effective_from.seconds == when.seconds
    assert decide(d).version == live.version  # approved, not yet in effect
    def in_effect() -> Any:
        now = decide(d)
        return now if now.version != live.version else None

    now = wait_until(in_effect, 15, "the approved version to take effect", every=0.2)
    assert now.version == sub.version and dict(now.decision) == {"route": "standard-queue"}
    history = r.ListPublications(ruleset_pb2.ListPublicationsRequest(ruleset="claims-triage"),
                                 metadata=metadata("auditor")).publications
    mine = next(p for p in history if p.id == sub.id)
    assert (mine.submitted_by, mine.decided_by, mine.note, mine.decision_note) == (
        "lead", "approver", "bar to 95k", "impact checked")
    # rejecting: by someone else; the version never takes effect
    other = r.PublishRuleset(ruleset_pb2.PublishRulesetRequest(source=TRIAGE.replace("> 50000", "> 10"),
                                                               note="bar to 10"),
                             metadata=metadata("editor")).publication
    rejected = r.RejectRuleset(ruleset_pb2.RejectRulesetRequest(publication_id=other.id, note="no"),
                               metadata=metadata("lead")).publication
    assert rejected.status == "rejected" and decide(d).version == sub.version


def test_validate_returns_static_analysis_warnings(stubs: tuple[Any, Any]) -> None:
    r, _ = stubs
    source = TRIAGE.replace("when: not policy.active", "when: not policy.active and policy.active")
    got = r.ValidateRuleset(ruleset_pb2.ValidateRulesetRequest(source=source), metadata=metadata("editor"))
    assert got.valid and [w.code for w in got.warnings] == ["never_fires"] and got.warnings[0].line > 1


def test_shadow_run_stores_differences_and_leaves_live_untouched(stubs: tuple[Any, Any], server: Server) -> None:
    r, d = stubs
    live_version = decide(d).version
    source = r.GetRuleset(ruleset_pb2.GetRulesetRequest(name="claims-triage"), metadata=metadata("auditor")).source
    candidate = source.replace("priority: 10\n", "priority: -200\n", 1)  # the senior route stops winning
    assert candidate != source
    shadow = r.AttachShadow(ruleset_pb2.AttachShadowRequest(source=candidate), metadata=metadata("editor")).shadow
    assert shadow.ruleset == "claims-triage" and shadow.attached_by == "editor"
    assert code_of(lambda: r.AttachShadow(ruleset_pb2.AttachShadowRequest(source=candidate),
                                          metadata=metadata("auditor"))) == grpc.StatusCode.PERMISSION_DENIED
    # kept: each worker re-reads the attachments every 2 s (Shadows.refresh_s) and shows nothing when it has;
    # the refresh interval passing is what makes the shadow live everywhere
    time.sleep(2.5)
    small = dict(CLAIM, amount=100)
    big = decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", dict(CLAIM, amount=990000))])
    decided = [d.Decide(big, metadata=metadata("caller")).decision for _ in range(3)]
    assert dict(decided[0].decision) == {"route": "senior-assessor"}
    decided += [d.Decide(decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", small)]),
                         metadata=metadata("caller")).decision]
    assert {x.version for x in decided} == {live_version}
    def reported() -> Any:
        report = r.ShadowReport(ruleset_pb2.ShadowReportRequest(version=shadow.version), metadata=metadata("auditor"))
        return report if report.decisions >= 4 else None

    report = wait_until(reported, 15, "the shadow report to count 4 decisions", every=0.1)
    assert report.decisions == 4 and report.ruleset == "claims-triage"
    assert report.changed >= 1 and report.changes[0].from_outcome != report.changes[0].to_outcome
    assert set(report.changes[0].example_decision_ids) <= {x.decision_id for x in decided}
    stored = d.GetDecision(decision_pb2.GetDecisionRequest(decision_id=decided[0].decision_id),
                           metadata=metadata("auditor")).decision
    assert stored.version == live_version and dict(stored.decision) == dict(decided[0].decision)
    assert r.DetachShadow(ruleset_pb2.DetachShadowRequest(version=shadow.version),
                          metadata=metadata("editor")).detached


def test_unknown_publication_and_bad_requests(stubs: tuple[Any, Any]) -> None:
    r, _ = stubs
    assert code_of(lambda: r.RejectRuleset(ruleset_pb2.RejectRulesetRequest(),
                                           metadata=metadata("approver"))) == grpc.StatusCode.INVALID_ARGUMENT
    # a change needs its note; the version in effect cannot be submitted again; a rejection says why
    assert code_of(lambda: r.PublishRuleset(ruleset_pb2.PublishRulesetRequest(source=TRIAGE.replace("> 50000",
                                                                                                     "> 11")),
                                            metadata=metadata("editor"))) == grpc.StatusCode.INVALID_ARGUMENT
    active = decide(stubs[1]).version
    in_effect = next(src for src in (TRIAGE, TRIAGE.replace("claim.amount > 50000", "claim.amount > 95000"))
                     if load_ruleset(src, "t.yaml").version == active)
    assert code_of(lambda: r.PublishRuleset(ruleset_pb2.PublishRulesetRequest(source=in_effect, note="again"),
                                            metadata=metadata("editor"))) == grpc.StatusCode.FAILED_PRECONDITION
    pending = r.PublishRuleset(ruleset_pb2.PublishRulesetRequest(source=TRIAGE.replace("> 50000", "> 12"),
                                                                 note="bar to 12"), metadata=metadata("editor"))
    assert code_of(lambda: r.RejectRuleset(ruleset_pb2.RejectRulesetRequest(
        publication_id=pending.publication.id), metadata=metadata("approver"))) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: r.DiffRulesets(ruleset_pb2.DiffRulesetsRequest(from_version="deadbeefdeadbeef",
                                                                          to_source=TRIAGE),
                                          metadata=metadata("auditor"))) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: r.AttachShadow(ruleset_pb2.AttachShadowRequest(
        source=TRIAGE.replace("ruleset: claims-triage", "ruleset: nobody-lives-here")),
        metadata=metadata("editor"))) == grpc.StatusCode.NOT_FOUND
