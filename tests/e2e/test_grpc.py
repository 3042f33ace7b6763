"""End to end over gRPC: every method, every error status, every role, idempotency, buf curl, Node.js."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from adapters.doors.grpc.gen.baton.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    decision_pb2,
    decision_pb2_grpc,
    ruleset_pb2,
    ruleset_pb2_grpc,
)
from adapters.infra.store.sql import SqlStore
from tests.e2e.server import ROOT, TOKENS, Server, details_of, fact, metadata, start
from tests.helpers import not_none

pytestmark = pytest.mark.slow  # a real server, browser or broker per module

CLAIM = {"claim_ref": "C-1", "amount": 80000, "policy_ref": "P-1", "description": "whiplash",
         "customer_tier": "standard"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start(tmp_path_factory.mktemp("grpc"))
    yield srv
    assert srv.stop() == 0, "\n".join(srv.log)


@dataclass(frozen=True)
class Stubs:
    d: decision_pb2_grpc.DecisionServiceStub
    r: ruleset_pb2_grpc.RulesetServiceStub
    a: audit_pb2_grpc.AuditServiceStub
    h: health_pb2_grpc.HealthStub


@pytest.fixture(scope="module")
def stubs(server: Server) -> Iterator[Stubs]:
    channel = server.channel()
    yield Stubs(decision_pb2_grpc.DecisionServiceStub(channel), ruleset_pb2_grpc.RulesetServiceStub(channel),
                audit_pb2_grpc.AuditServiceStub(channel), health_pb2_grpc.HealthStub(channel))
    channel.close()


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


def test_decide_then_read_it_back_with_every_read_method(stubs: Stubs) -> None:
    d, a = stubs.d, stubs.a
    resp = d.Decide(decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", CLAIM)]),
                    metadata=metadata("caller"))
    dec = resp.decision
    assert dec.outcome == decision_pb2.OUTCOME_DECIDED and dict(dec.decision) == {"route": "senior-assessor"}
    assert list(dec.fired) == ["fetch-policy", "classify-claim", "high-risk", "default-route",
                               "senior-for-high-risk-injury"]
    got = d.GetDecision(decision_pb2.GetDecisionRequest(decision_id=dec.decision_id), metadata=metadata("caller"))
    assert got.decision.decision_id == dec.decision_id and len(got.record["trace"]) > 5
    page = d.ListDecisions(decision_pb2.ListDecisionsRequest(ruleset="claims-triage", page_size=1),
                           metadata=metadata("auditor"))
    assert page.decisions[0].decision_id == dec.decision_id
    replay = d.ReplayDecision(decision_pb2.ReplayDecisionRequest(decision_id=dec.decision_id),
                              metadata=metadata("auditor"))
    assert replay.identical
    source = (ROOT / "rulesets/claims-triage.yaml").read_text().replace("claim.amount > 50000", "claim.amount > 90000")
    w = d.WhatIf(decision_pb2.WhatIfRequest(decision_id=dec.decision_id, source=source), metadata=metadata("auditor"))
    assert w.changed and dict(w.after.decision) == {"route": "standard-queue"}
    assert list(w.fired_only_before) == ["high-risk", "senior-for-high-risk-injury"]
    why = d.WhyRule(decision_pb2.WhyRuleRequest(decision_id=dec.decision_id, rule="inactive-policy"),
                    metadata=metadata("auditor"))
    assert not why.fired and "'not policy.active' is false" in "\n".join(why.explanation)
    verify = a.VerifyLog(audit_pb2.VerifyLogRequest(), metadata=metadata("auditor"))
    assert verify.intact and verify.checked >= 1


def test_list_pages_with_tokens(stubs: Stubs) -> None:
    d = stubs.d
    for i in range(5):
        d.Decide(decision_pb2.DecideRequest(ruleset="payment-approval", facts=[fact("payment", {
            "payment_ref": f"P{i}", "amount": 10 + i, "currency": "EUR", "beneficiary_iban": "X",
            "initiated_by": "alice", "new_beneficiary": False})]), metadata=metadata("caller"))
    seen: list[str] = []
    token = ""
    while True:
        page = d.ListDecisions(decision_pb2.ListDecisionsRequest(ruleset="payment-approval", page_size=2,
                                                                 page_token=token), metadata=metadata("auditor"))
        seen.extend(x.decision_id for x in page.decisions)
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 5


def test_idempotent_retry_returns_the_same_decision_and_stores_one_row(server: Server, stubs: Stubs
                                                                       ) -> None:
    d = stubs.d
    req = decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", CLAIM)], idempotency_key="claim-77")
    first = d.Decide(req, metadata=metadata("caller")).decision
    second = d.Decide(req, metadata=metadata("caller")).decision
    assert second.decision_id == first.decision_id and second.idempotent_replay and not first.idempotent_replay
    other = d.Decide(req, metadata=metadata("caller2")).decision
    assert other.decision_id != first.decision_id  # keys are scoped to the caller
    store = SqlStore(server.db, migrate=False)
    assert sum(1 for r in store.list_decisions(limit=1000) if r["caller"] == "caller"
               and not_none(store.get(r["id"]))["idempotency_key"] == "claim-77") == 1


def test_an_idempotency_key_names_one_request(server: Server, stubs: Stubs) -> None:
    d = stubs.d
    req = decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", {**CLAIM, "amount": 100})],
                                     idempotency_key="pay-1")
    first = d.Decide(req, metadata=metadata("caller")).decision
    again = d.Decide(req, metadata=metadata("caller")).decision  # a retry: the stored decision
    assert again.decision_id == first.decision_id and again.idempotent_replay
    other = decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", {**CLAIM, "amount": 999_999})],
                                       idempotency_key="pay-1")
    with pytest.raises(grpc.RpcError) as info:
        d.Decide(other, metadata=metadata("caller"))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "'pay-1' was used for a different request" in details_of(info.value)
    assert first.decision_id in details_of(info.value)
    store = SqlStore(server.db, migrate=False)
    assert sum(1 for r in store.list_decisions(limit=1000) if r["caller"] == "caller"
               and not_none(store.get(r["id"]))["idempotency_key"] == "pay-1") == 1


def test_a_deadline_that_is_zero_or_negative_stores_nothing(server: Server, stubs: Stubs) -> None:
    d = stubs.d
    store = SqlStore(server.db, migrate=False)
    before = len(store.list_decisions(limit=10_000))
    for seconds, nanos in ((0, 0), (-5, 0), (0, -1)):
        req = decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", CLAIM)],
                                         deadline=duration_pb2.Duration(seconds=seconds, nanos=nanos))
        with pytest.raises(grpc.RpcError) as info:
            d.Decide(req, metadata=metadata("caller"))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "deadline" in details_of(info.value)
    assert len(store.list_decisions(limit=10_000)) == before


def test_error_statuses(stubs: Stubs) -> None:
    d, r = stubs.d, stubs.r
    bad = decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", {**CLAIM, "amount": "lots"})])
    with pytest.raises(grpc.RpcError) as info:
        d.Decide(bad, metadata=metadata("caller"))
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "facts.claim[0].amount" in details_of(info.value)
    assert isinstance(err, grpc.Call)  # a failed unary call's error is also the call
    status = rpc_status.from_call(err)
    assert status is not None
    detail = error_details_pb2.BadRequest()
    status.details[0].Unpack(detail)
    assert detail.field_violations[0].field == "facts.claim[0].amount"
    assert code_of(lambda: d.Decide(decision_pb2.DecideRequest(ruleset="nope", facts=[fact("claim", CLAIM)]),
                                    metadata=metadata("caller"))) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: d.GetDecision(decision_pb2.GetDecisionRequest(decision_id="nope"),
                                         metadata=metadata("auditor"))) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: d.Decide(decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", CLAIM)]))
                   ) == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(lambda: d.Decide(decision_pb2.DecideRequest(ruleset="claims-triage"),
                                    metadata=[("authorization", "Bearer wrong")])) == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(lambda: r.PublishRuleset(ruleset_pb2.PublishRulesetRequest(source="x"),
                                            metadata=metadata("caller"))) == grpc.StatusCode.PERMISSION_DENIED
    assert code_of(lambda: r.PublishRuleset(ruleset_pb2.PublishRulesetRequest(source="ruleset: x\n"),
                                            metadata=metadata("editor"))) == grpc.StatusCode.INVALID_ARGUMENT
    slow = decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", CLAIM)],
                                      deadline=duration_pb2.Duration(nanos=1))
    assert code_of(lambda: d.Decide(slow, metadata=metadata("caller"))) == grpc.StatusCode.DEADLINE_EXCEEDED


def test_ambiguous_credentials_and_huge_names_get_clear_statuses(stubs: Stubs) -> None:
    d = stubs.d
    req = decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", CLAIM)])
    for pair in ((metadata("caller")[0], metadata("auditor")[0]),  # two valid tokens: which caller is it?
                 (metadata("caller")[0], ("authorization", "Bearer wrong")),
                 (("authorization", "Bearer wrong"), metadata("caller")[0])):
        with pytest.raises(grpc.RpcError) as info:
            d.Decide(req, metadata=list(pair))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "2 authorization headers" in details_of(info.value)
    huge = decision_pb2.DecideRequest(ruleset="x" * 100_000, facts=[fact("claim", CLAIM)])
    with pytest.raises(grpc.RpcError) as info:
        d.Decide(huge, metadata=metadata("caller"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND  # not RESOURCE_EXHAUSTED from an oversized status
    assert 100 < len(details_of(info.value)) <= 1100
    with pytest.raises(grpc.RpcError) as info:
        d.GetDecision(decision_pb2.GetDecisionRequest(decision_id="d" * 100_000), metadata=metadata("auditor"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND and len(details_of(info.value)) <= 1100


ROLE_CALLS = {
    "Decide": ("d", "Decide", decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", CLAIM)])),
    "ListDecisions": ("d", "ListDecisions", decision_pb2.ListDecisionsRequest()),
    "VerifyLog": ("a", "VerifyLog", audit_pb2.VerifyLogRequest()),
    "ListRulesets": ("r", "ListRulesets", ruleset_pb2.ListRulesetsRequest()),
    "ValidateRuleset": ("r", "ValidateRuleset", ruleset_pb2.ValidateRulesetRequest(source="ruleset: x\n")),
    "ListPublications": ("r", "ListPublications", ruleset_pb2.ListPublicationsRequest()),
}
ALLOWED = {
    "caller": {"Decide"}, "editor": {"ListRulesets", "ValidateRuleset", "ListPublications"},
    "auditor": {"ListDecisions", "VerifyLog", "ListRulesets", "ListPublications"}, "reviewer": set(),
    "approver": {"ListRulesets", "ListPublications"}, "admin": set(ROLE_CALLS),
}


@pytest.mark.parametrize("role", list(ALLOWED))
def test_every_role_is_enforced(stubs: Stubs, role: str) -> None:
    for method, (stub, name, request) in ROLE_CALLS.items():
        call = getattr(getattr(stubs, stub), name)
        if method in ALLOWED[role]:
            call(request, metadata=metadata(role))
        else:
            assert code_of(partial(call, request, metadata=metadata(role))) == \
                grpc.StatusCode.PERMISSION_DENIED, (role, method)


def test_rulesets_validate_publish_get_and_impact(stubs: Stubs) -> None:
    d, r = stubs.d, stubs.r
    source = (ROOT / "rulesets/claims-triage.yaml").read_text()
    bad = r.ValidateRuleset(ruleset_pb2.ValidateRulesetRequest(source=source.replace("claim.amount > 50000",
                                                                                    "claim.amout > 50000")),
                            metadata=metadata("editor"))
    assert not bad.valid and bad.errors[0].code == "unknown_field" and bad.errors[0].line > 1
    assert bad.errors[0].column == 17
    for _ in range(3):
        d.Decide(decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", CLAIM)]),
                 metadata=metadata("caller"))
    candidate = source.replace("claim.amount > 50000", "claim.amount > 90000")
    events = list(r.Impact(ruleset_pb2.ImpactRequest(source=candidate, last=3), metadata=metadata("editor")))
    summary = events[-1].summary
    assert summary.decisions == 3 and summary.changed == 3 and events[0].HasField("progress")
    assert summary.changes[0].from_outcome == "decided" and summary.changes[0].to_outcome == "decided"
    published = r.PublishRuleset(ruleset_pb2.PublishRulesetRequest(source=candidate, note="raise the high-risk bar"),
                                 metadata=metadata("editor"))
    pub = published.publication
    assert (pub.status, pub.submitted_by, pub.note) == ("pending", "editor", "raise the high-risk bar")
    assert not published.ruleset.active  # pending: Decide still uses the approved version
    before = d.Decide(decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", CLAIM)]),
                      metadata=metadata("caller")).decision
    assert before.version != published.ruleset.version
    assert code_of(lambda: r.ApproveRuleset(ruleset_pb2.ApproveRulesetRequest(publication_id=pub.id),
                                            metadata=metadata("editor"))) == grpc.StatusCode.PERMISSION_DENIED
    approved = r.ApproveRuleset(ruleset_pb2.ApproveRulesetRequest(publication_id=pub.id, note="ok"),
                                metadata=metadata("approver")).publication
    assert (approved.status, approved.decided_by, approved.decision_note) == ("published", "approver", "ok")
    assert approved.effective_from.ToNanoseconds() >= approved.decided_at.ToNanoseconds()
    assert code_of(lambda: r.ApproveRuleset(ruleset_pb2.ApproveRulesetRequest(publication_id=pub.id),
                                            metadata=metadata("admin"))) == grpc.StatusCode.FAILED_PRECONDITION
    assert code_of(lambda: r.ApproveRuleset(ruleset_pb2.ApproveRulesetRequest(publication_id="pub-nope"),
                                            metadata=metadata("approver"))) == grpc.StatusCode.NOT_FOUND
    got = r.GetRuleset(ruleset_pb2.GetRulesetRequest(name="claims-triage"), metadata=metadata("auditor"))
    assert got.ruleset.version == published.ruleset.version and "90000" in got.source
    assert got.ruleset.active and got.ruleset.approved_by == "approver" and got.ruleset.published_by == "editor"
    after = d.Decide(decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", CLAIM)]),
                     metadata=metadata("caller")).decision
    assert after.version == published.ruleset.version and dict(after.decision) == {"route": "standard-queue"}
    old = r.GetRuleset(ruleset_pb2.GetRulesetRequest(name="claims-triage", version=source and
                                                     _version_of(r, "claims-triage", published.ruleset.version)),
                       metadata=metadata("auditor"))
    assert not old.ruleset.active
    pinned = d.Decide(decision_pb2.DecideRequest(ruleset="claims-triage", version=old.ruleset.version[:12],
                                                 facts=[fact("claim", CLAIM)]), metadata=metadata("caller")).decision
    assert dict(pinned.decision) == {"route": "senior-assessor"}
    listed = r.ListRulesets(ruleset_pb2.ListRulesetsRequest(), metadata=metadata("auditor"))
    assert sum(1 for x in listed.rulesets if x.name == "claims-triage") == 2
    # the old version's decisions still replay on their own version
    first = d.ListDecisions(decision_pb2.ListDecisionsRequest(ruleset="claims-triage", page_size=500),
                            metadata=metadata("auditor")).decisions[-1]
    assert d.ReplayDecision(decision_pb2.ReplayDecisionRequest(decision_id=first.decision_id),
                            metadata=metadata("auditor")).identical


def test_listing_reads_stored_summaries_and_survives_a_version_that_no_longer_compiles(
        server: Server, stubs: Stubs) -> None:
    """Versions stored before their summaries were (revision 0007) are summarised once when listed; one
    stored by an older Baton whose source no longer compiles is listed too, and does not fail the call."""
    legacy = (ROOT / "rulesets/claims-triage.yaml").read_text().replace("ruleset: claims-triage",
                                                                         "ruleset: legacy-triage")
    store = SqlStore(server.db, migrate=False)
    with store.writer.begin() as conn:
        for version, source in (("a" * 64, legacy), ("b" * 64, "ruleset: legacy-triage\nrules: 7\n")):
            conn.execute(sa.text("INSERT INTO ruleset_versions (version, name, source, loaded_at) "
                                 "VALUES (:v, 'legacy-triage', :s, 1)"), {"v": version, "s": source})
    listed = stubs.r.ListRulesets(ruleset_pb2.ListRulesetsRequest(), metadata=metadata("auditor")).rulesets
    old = {x.version: x for x in listed if x.name == "legacy-triage"}
    assert (old["a" * 64].description, old["a" * 64].rules, old["a" * 64].tests) == \
        ("Route incoming insurance claims to the right queue.", 8, 7)
    assert old["b" * 64].rules == 0 and "no longer compiles" in old["b" * 64].description
    with store.engine.connect() as conn:  # the one that compiles keeps its summary; the other is retried
        assert conn.execute(sa.text("SELECT version, rules FROM ruleset_versions WHERE name = 'legacy-triage' "
                                    "ORDER BY version")).all() == [("a" * 64, 8), ("b" * 64, None)]
    assert all(x.rules == 8 and x.tests and x.description for x in listed if x.name == "claims-triage")


def _version_of(r: ruleset_pb2_grpc.RulesetServiceStub, name: str, not_this: str) -> str:
    listed: ruleset_pb2.ListRulesetsResponse = r.ListRulesets(ruleset_pb2.ListRulesetsRequest(),
                                                               metadata=metadata("admin"))
    return next(x.version for x in listed.rulesets if x.name == name and x.version != not_this)


def test_health_and_reflection(server: Server, stubs: Stubs) -> None:
    h = stubs.h
    assert h.Check(health_pb2.HealthCheckRequest(service="baton.v1.DecisionService")).status == \
        health_pb2.HealthCheckResponse.SERVING


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js not installed")
def test_buf_curl_through_reflection(server: Server) -> None:
    buf = shutil.which("buf") or str(Path(__file__).resolve().parents[2] / ".venv/bin/buf")
    body = json.dumps({"ruleset": "customer-onboarding", "facts": [{"type": "applicant", "values": {
        "applicant_ref": "A-1", "full_name": "Ana Lima", "country": "PT", "document_type": "passport",
        "document_text": "P<PRT", "pep_declared": False}}]})
    out = subprocess.run([buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge", "-H",
                          f"Authorization: Bearer {TOKENS['caller']}", "-d", body,
                          f"http://{server.address}/baton.v1.DecisionService/Decide"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    decision = json.loads(out.stdout)["decision"]
    assert decision["outcome"] == "OUTCOME_DECIDED" and decision["decision"] == {"route": "approve"}


def node_client(server: Server, script: str) -> subprocess.CompletedProcess[str]:
    """Run tests/e2e/node/SCRIPT (@grpc/grpc-js, installed from the npm registry on first use) against the
    server, as the caller."""
    folder = ROOT / "tests/e2e/node"
    if not (folder / "node_modules/@grpc/grpc-js").exists():
        subprocess.run(["npm", "install", "--no-package-lock", "--no-audit", "--no-fund", "--silent"], cwd=folder,
                       check=True, timeout=300)
    return subprocess.run(["node", script, server.address, TOKENS["caller"], str(ROOT / "proto")], cwd=folder,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None, reason="Node.js not installed")
def test_a_node_grpc_js_client_decides_and_reads_back(server: Server) -> None:
    out = node_client(server, "client.js")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["outcome"] == "OUTCOME_DECIDED" and result["action"] == "release"
    assert result["fired"] == ["fetch-limit", "small-payment", "hold-by-default"]


@pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None, reason="Node.js not installed")
def test_a_node_grpc_js_client_decides_in_bulk(server: Server) -> None:
    """DecideBatch and the bidirectional DecideStream from another gRPC implementation: each request answered
    in order with its own decision or its own google.rpc.Status, and a whole batch retried under its key
    answered with the same decisions."""
    out = node_client(server, "bulk.js")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    bad_request = "type.googleapis.com/google.rpc.BadRequest"
    for results, key in ((got["batch"], "node-batch-1/{}"), (got["stream"], None)):
        assert [r["index"] for r in results] == [0, 1, 2]
        first, bad, last = results
        assert first["outcome"] == last["outcome"] == "OUTCOME_DECIDED" and not first["error"] and not last["error"]
        assert bad["decision_id"] == "" and bad["error"]["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "amount" in bad["error"]["message"] and bad_request in bad["error"]["details"]
        if key is not None:
            assert [r["idempotency_key"] for r in results] == [key.format(i) for i in range(3)]
    assert got["stream"][0]["idempotency_key"] == "node-stream-1" and got["stream"][2]["idempotency_key"] == ""
    retried = got["retried"]
    assert [r["decision_id"] for r in retried] == [r["decision_id"] for r in got["batch"]]
    assert [r["replayed"] for r in retried] == [True, False, True]  # the bad one is refused again, not stored
    assert retried[1]["error"]["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
