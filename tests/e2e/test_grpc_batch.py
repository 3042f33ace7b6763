"""DecideBatch and DecideStream over real gRPC against `baton serve`: each request answered on its own (a bad one
fails alone, with the status and field path a unary Decide gives it), in request order; a whole batch retried
returns the same decisions; an over-limit batch is refused whole; a deadline that runs out mid-batch reports
what was stored and leaves the rest unstarted and unstored."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status

from adapters.doors.grpc.gen.baton.v1 import decision_pb2, decision_pb2_grpc
from adapters.infra.store.sql import SqlStore
from tests.e2e.server import Server, details_of, fact, metadata, start, start_fake_openai
from tests.helpers import wait_until

pytestmark = pytest.mark.slow  # a real server, browser or broker per module

MAX_BATCH = 6
CLAIM = {"claim_ref": "C-1", "amount": 80000, "policy_ref": "P-1", "description": "whiplash",
         "customer_tier": "standard"}


def claim(ref: str, **changes: Any) -> decision_pb2.DecideRequest:
    return decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", {**CLAIM, "claim_ref": ref,
                                                                                    **changes})])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start(tmp_path_factory.mktemp("batch"), env={"BATON_LIMITS__MAX_BATCH": str(MAX_BATCH)})
    yield srv
    assert srv.stop() == 0, "\n".join(srv.log)


@pytest.fixture(scope="module")
def stub(server: Server) -> Iterator[Any]:
    with server.channel() as channel:
        yield decision_pb2_grpc.DecisionServiceStub(channel)


def violations(status: Any) -> list[str]:
    out: list[str] = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out.extend(v.field for v in bad.field_violations)
    return out


def test_a_bad_request_in_the_middle_fails_alone_with_the_status_a_unary_decide_gives_it(server: Server,
                                                                                        stub: Any) -> None:
    bad = claim("B-2", amount="lots")
    batch = decision_pb2.DecideBatchRequest(requests=[claim("B-1"), bad, claim("B-3", amount=100)])
    results = stub.DecideBatch(batch, metadata=metadata("caller")).results
    assert [r.index for r in results] == [0, 1, 2]
    first, middle, last = results
    assert not first.HasField("error") and first.decision.outcome == decision_pb2.OUTCOME_DECIDED
    assert dict(first.decision.decision) == {"route": "senior-assessor"}
    assert not last.HasField("error") and dict(last.decision.decision) == {"route": "standard-queue"}
    assert not middle.HasField("decision")
    assert middle.error.code == code_pb2.INVALID_ARGUMENT
    assert violations(middle.error) == ["facts.claim[0].amount"]
    with pytest.raises(grpc.RpcError) as info:  # the same request alone: the same status, field for field
        stub.Decide(bad, metadata=metadata("caller"))
    assert isinstance(info.value, grpc.Call)  # a failed unary call's error is also the call
    unary = rpc_status.from_call(info.value)
    assert unary is not None and (unary.code, unary.message) == (middle.error.code, middle.error.message)
    assert violations(unary) == violations(middle.error)
    store = SqlStore(server.db, migrate=False)
    for r in (first, last):  # stored, each on its own
        record = store.get(r.decision.decision_id)
        assert record is not None and record["caller"] == "caller"
        assert record["inputs"][0]["values"]["claim_ref"] == ("B-1" if r is first else "B-3")
    assert store.verify()[1] is None


def test_a_whole_batch_retried_returns_the_same_decisions_and_stores_nothing_more(server: Server, stub: Any) -> None:
    own_key = claim("R-2")
    own_key.idempotency_key = "retry-own-2"
    batch = decision_pb2.DecideBatchRequest(requests=[claim("R-1"), own_key, claim("R-3", amount=100)],
                                            idempotency_key="retry-batch")
    first = stub.DecideBatch(batch, metadata=metadata("caller")).results
    store = SqlStore(server.db, migrate=False)
    stored = store.count()
    again = stub.DecideBatch(batch, metadata=metadata("caller")).results
    assert store.count() == stored
    assert [r.idempotency_key for r in first] == ["retry-batch/0", "retry-own-2", "retry-batch/2"]
    assert [r.idempotency_key for r in again] == [r.idempotency_key for r in first]
    assert [r.decision.decision_id for r in again] == [r.decision.decision_id for r in first]
    assert not any(r.decision.idempotent_replay for r in first) and all(r.decision.idempotent_replay for r in again)
    assert all(not r.HasField("error") for r in [*first, *again])
    # a key names one request, in a batch as alone: other facts under the same derived key are refused
    changed = decision_pb2.DecideBatchRequest(requests=[claim("R-1", amount=5)], idempotency_key="retry-batch")
    (refused,) = stub.DecideBatch(changed, metadata=metadata("caller")).results
    assert refused.error.code == code_pb2.FAILED_PRECONDITION and violations(refused.error) == ["idempotency_key"]
    # and the unary door finds a batch's decision under its key
    single = claim("R-2")
    single.idempotency_key = "retry-own-2"
    unary = stub.Decide(single, metadata=metadata("caller")).decision
    assert unary.decision_id == first[1].decision.decision_id and unary.idempotent_replay


def test_a_batch_over_the_limit_is_refused_whole(server: Server, stub: Any) -> None:
    store = SqlStore(server.db, migrate=False)
    stored = store.count()
    batch = decision_pb2.DecideBatchRequest(requests=[claim(f"L-{i}") for i in range(MAX_BATCH + 1)])
    with pytest.raises(grpc.RpcError) as info:
        stub.DecideBatch(batch, metadata=metadata("caller"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"at most {MAX_BATCH} (limits.max_batch)" in details_of(info.value)
    assert isinstance(info.value, grpc.Call)
    status = rpc_status.from_call(info.value)
    assert status is not None and violations(status) == ["requests"]
    assert store.count() == stored
    long_key = decision_pb2.DecideBatchRequest(requests=batch.requests[:2], idempotency_key="k" * 199)
    with pytest.raises(grpc.RpcError) as info:  # "k...k/1" would pass 200 characters: refused whole
        stub.DecideBatch(long_key, metadata=metadata("caller"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "idempotency_key" in details_of(info.value)
    assert store.count() == stored
    full = stub.DecideBatch(decision_pb2.DecideBatchRequest(requests=batch.requests[:MAX_BATCH]),
                            metadata=metadata("caller")).results
    assert len(full) == MAX_BATCH and all(r.decision.decision_id for r in full)


def test_a_batch_needs_the_caller_role(stub: Any) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.DecideBatch(decision_pb2.DecideBatchRequest(requests=[claim("A-1")]), metadata=metadata("auditor"))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as info:
        list(stub.DecideStream(iter([decision_pb2.DecideStreamRequest(request=claim("A-2"))]),
                               metadata=metadata("auditor")))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_stream_answers_every_request_in_the_order_sent(server: Server, stub: Any) -> None:
    def requests() -> Iterator[decision_pb2.DecideStreamRequest]:
        for i in range(40):
            request = claim(f"S-{i}", amount=100 if i % 3 else 80000)
            if i == 17:
                request = claim("S-17", amount="lots")
            if i % 2:
                request.idempotency_key = f"stream-{i}"
            yield decision_pb2.DecideStreamRequest(request=request)

    results = [r.result for r in stub.DecideStream(requests(), metadata=metadata("caller"))]
    assert [r.index for r in results] == list(range(40))
    assert [r.idempotency_key for r in results] == [f"stream-{i}" if i % 2 else "" for i in range(40)]
    assert results[17].error.code == code_pb2.INVALID_ARGUMENT and not results[17].HasField("decision")
    store = SqlStore(server.db, migrate=False)
    for i, r in enumerate(results):
        if i == 17:
            continue
        assert not r.HasField("error")
        record = store.get(r.decision.decision_id)
        assert record is not None and record["inputs"][0]["values"]["claim_ref"] == f"S-{i}"  # its own request
        assert dict(r.decision.decision) == {"route": "standard-queue" if i % 3 else "senior-assessor"}
    # the stream's keyed decisions are found again, by a batch too
    again = stub.DecideBatch(decision_pb2.DecideBatchRequest(requests=[
        decision_pb2.DecideRequest(ruleset="claims-triage", idempotency_key="stream-5",
                                   facts=[fact("claim", {**CLAIM, "claim_ref": "S-5", "amount": 100})])]),
        metadata=metadata("caller")).results
    assert again[0].decision.decision_id == results[5].decision.decision_id and again[0].decision.idempotent_replay


def test_an_undecodable_message_on_a_stream_fails_alone(server: Server) -> None:
    inner = b"\x0a\x02\xff\xfe"  # DecideRequest.ruleset: two bytes that are not UTF-8
    broken = b"\x0a" + bytes([len(inner)]) + inner
    good = decision_pb2.DecideStreamRequest(request=claim("U-2", amount=100)).SerializeToString()
    with server.channel() as channel:
        call = channel.stream_stream("/baton.v1.DecisionService/DecideStream", request_serializer=lambda b: b,
                                     response_deserializer=decision_pb2.DecideStreamResponse.FromString)
        results = [r.result for r in call(iter([good, broken, good]), metadata=metadata("caller"))]
    assert [r.index for r in results] == [0, 1, 2]
    assert results[1].error.code == code_pb2.INVALID_ARGUMENT and violations(results[1].error) == ["request"]
    assert all(not r.HasField("error") and r.decision.decision_id for r in (results[0], results[2]))


HANG = """\
ruleset: hang
facts:
  ticket: {ref: str}
  label: {kind: str}
input: [ticket]
models:
  classify:
    group: fast
    produces: label
    prompt: "Classify ticket {{ ticket.ref }}. Answer in JSON."
    timeout: 120s
rules:
  - name: ask
    when: exists ticket
    then: classify
  - name: labelled
    when: exists label
    then: {decide: {route: auto}}
"""
QUICK = """\
ruleset: quick
facts:
  ticket: {ref: str}
input: [ticket]
rules:
  - name: route
    when: exists ticket
    then: {decide: {route: desk}}
"""


@pytest.fixture(scope="module")
def hanging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """A server whose `hang` ruleset calls a model that never answers, deciding one request of a batch at a
    time (limits.batch_parallel 1), so that a deadline runs out at a known request."""
    proc, base = start_fake_openai()
    try:
        httpx.post(f"{base}/script", json={"model": "m-hang", "default": {"delay_ms": 600_000}}).raise_for_status()
        tmp = tmp_path_factory.mktemp("batch-hang")
        rulesets = tmp / "rulesets"
        rulesets.mkdir()
        (rulesets / "hang.yaml").write_text(HANG)
        (rulesets / "quick.yaml").write_text(QUICK)
        config = Path(tmp / "baton.yaml")
        config.write_text(json.dumps({"models": {"model_list": [{"model_name": "fast", "litellm_params": {
            "model": "openai/m-hang", "api_base": f"{base}/v1", "api_key": "os.environ/FAKE_OPENAI_KEY"}}],
            "num_retries": 0}}))
        server = start(tmp, "--config", str(config), canned=False, rulesets=rulesets,
                       env={"FAKE_OPENAI_KEY": "sk-fake", "BATON_LIMITS__BATCH_PARALLEL": "1"})
        yield server, base
        server.stop()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def ticket(ruleset: str, ref: str) -> decision_pb2.DecideRequest:
    return decision_pb2.DecideRequest(ruleset=ruleset, facts=[fact("ticket", {"ref": ref})])


def test_a_deadline_running_out_mid_batch_reports_what_was_stored_and_starts_nothing_more(
        hanging: tuple[Server, str]) -> None:
    server = hanging[0]
    batch = decision_pb2.DecideBatchRequest(requests=[ticket("quick", "Q-0"), ticket("quick", "Q-1"),
                                                      ticket("hang", "H-2"), ticket("quick", "Q-3"),
                                                      ticket("quick", "Q-4")], idempotency_key="late")
    with server.channel() as channel:
        stub = decision_pb2_grpc.DecisionServiceStub(channel)
        results = stub.DecideBatch(batch, metadata=metadata("caller"), timeout=3).results
        assert [r.index for r in results] == [0, 1, 2, 3, 4]
        for r in results[:2]:  # decided before the deadline
            assert not r.HasField("error") and r.decision.outcome == decision_pb2.OUTCOME_DECIDED
        hung = results[2]  # ran out of time: stored as failed, and reported with its decision
        assert hung.error.code == code_pb2.DEADLINE_EXCEEDED and "(it is stored)" in hung.error.message
        assert hung.decision.outcome == decision_pb2.OUTCOME_FAILED and "deadline" in hung.decision.reason
        for r in results[3:]:  # never started: nothing stored
            assert r.error.code == code_pb2.DEADLINE_EXCEEDED and not r.HasField("decision")
            assert "nothing was decided or stored" in r.error.message
        store = SqlStore(server.db, migrate=False)
        assert [store.find("caller", f"late/{i}") is not None for i in range(5)] == [True, True, True, False, False]
        record = store.get(hung.decision.decision_id)
        assert record is not None and record["outcome"] == "failed"
        assert store.verify()[1] is None
        # the batch retried: what was stored comes back as it is, the rest is decided now
        again = stub.DecideBatch(batch, metadata=metadata("caller"), timeout=30).results
        assert [r.decision.decision_id for r in again[:3]] == [r.decision.decision_id for r in results[:3]]
        assert all(r.decision.idempotent_replay for r in again[:3])
        assert again[2].decision.outcome == decision_pb2.OUTCOME_FAILED and not again[2].HasField("error")
        for r in again[3:]:
            assert not r.HasField("error") and not r.decision.idempotent_replay
            assert r.decision.outcome == decision_pb2.OUTCOME_DECIDED


def test_a_cancelled_batch_finishes_the_request_it_started_and_starts_no_other(hanging: tuple[Server, str]) -> None:
    server, model = hanging
    slow = ticket("hang", "H-CANCEL")
    slow.deadline.FromSeconds(2)  # its own deadline ends it, stored as failed
    batch = decision_pb2.DecideBatchRequest(requests=[ticket("quick", "Q-C0"), slow, ticket("quick", "Q-C2")],
                                            idempotency_key="cancelled")
    store = SqlStore(server.db, migrate=False)
    with server.channel() as channel:
        stub = decision_pb2_grpc.DecisionServiceStub(channel)
        call = stub.DecideBatch.future(batch, metadata=metadata("caller"), timeout=60)
        wait_until(lambda: "H-CANCEL" in httpx.get(f"{model}/requests").text, 30,
                   "the slow request to be deciding: its model call has reached the model")
        call.cancel()
        with pytest.raises(grpc.FutureCancelledError):
            call.result()
        record = wait_until(lambda: store.find("caller", "cancelled/1"), 30,
                            "the started request to be stored, at its own deadline")
        assert record["outcome"] == "failed" and "deadline" in record["reason"]
        time.sleep(1)  # kept: time enough for a third request to have been decided, had it been started (an absence)
        assert store.find("caller", "cancelled/0") is not None and store.find("caller", "cancelled/2") is None
        assert store.verify()[1] is None
