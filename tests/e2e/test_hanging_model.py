"""A model endpoint that accepts calls and never answers: decisions end by their deadline, with the failure
fact the rules route on, and the server's other decisions go on unaffected."""

from __future__ import annotations

import json
import os
import signal
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import duration_pb2

from adapters.doors.grpc.gen.baton.v1 import decision_pb2, decision_pb2_grpc
from adapters.infra.store.sql import SqlStore
from tests.e2e.server import Server, details_of, fact, metadata, start, start_fake_openai
from tests.helpers import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # a real server, browser or broker per module
# serial: Decide latencies bounded while a model call hangs

PROBE = """\
ruleset: hang-probe
facts:
  ticket: {ref: str}
  label: {kind: str}
input: [ticket]
models:
  classify:
    group: fast
    produces: label
    prompt: "Classify ticket {{ ticket.ref }}. Answer in JSON."
    timeout: 1s
rules:
  - name: ask
    when: exists ticket
    then: classify
  - name: labelled
    when: exists label
    then: {decide: {route: auto}}
  - name: model-down
    priority: 10
    when: failure.action == "classify" and failure.kind == "timeout"
    then: {escalate: {queue: manual, reason: classifier did not answer}}
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
    proc, base = start_fake_openai()
    httpx.post(f"{base}/script", json={"model": "m-hang", "default": {"delay_ms": 600_000}}).raise_for_status()
    tmp = tmp_path_factory.mktemp("hang")
    rulesets = tmp / "rulesets"
    rulesets.mkdir()
    (rulesets / "hang-probe.yaml").write_text(PROBE)
    (rulesets / "quick.yaml").write_text(QUICK)
    config = {"models": {"model_list": [{"model_name": "fast", "litellm_params": {
        "model": "openai/m-hang", "api_base": f"{base}/v1", "api_key": "os.environ/FAKE_OPENAI_KEY"}}],
        "num_retries": 0}}
    path = tmp / "baton.yaml"
    path.write_text(json.dumps(config))
    server = start(tmp, "--config", str(path), canned=False, rulesets=rulesets, env={"FAKE_OPENAI_KEY": "sk-fake"})
    yield server, base
    server.stop()
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(10)


def quick_latencies(stub: Any, n: int) -> list[float]:
    out = []
    for i in range(n):
        start_s = time.perf_counter()
        got = stub.Decide(decision_pb2.DecideRequest(ruleset="quick", facts=[fact("ticket", {"ref": f"Q{i}"})]),
                          metadata=metadata("caller"), timeout=10)
        out.append(time.perf_counter() - start_s)
        assert got.decision.outcome == decision_pb2.OUTCOME_DECIDED
    return out


def test_a_hanging_model_ends_in_the_failure_fact_and_other_decisions_go_on(hanging: tuple[Server, str]) -> None:
    server, model = hanging
    channel = server.channel()
    stub = decision_pb2_grpc.DecisionServiceStub(channel)
    before = quick_latencies(stub, 30)
    results: list[Any] = []

    def slow(i: int, deadline_s: int) -> None:
        req = decision_pb2.DecideRequest(ruleset="hang-probe", facts=[fact("ticket", {"ref": f"T{i}"})],
                                         deadline=duration_pb2.Duration(seconds=deadline_s))
        try:
            results.append(stub.Decide(req, metadata=metadata("caller"), timeout=30).decision)
        except grpc.RpcError as e:
            results.append(e)

    # deadlines (5 s) that outlast the call's timeout (1 s): the timeout becomes a failure fact
    threads = [threading.Thread(target=slow, args=(i, 5)) for i in range(8)]
    for t in threads:
        t.start()
    wait_until(lambda: all(f"Classify ticket T{i}." in httpx.get(f"{model}/requests").text for i in range(8)), 30,
               "the eight calls to be hanging at the model")
    during = quick_latencies(stub, 30)
    for t in threads:
        t.join(30)
    assert len(results) == 8
    for d in results:
        assert not isinstance(d, grpc.RpcError), d
        assert d.outcome == decision_pb2.OUTCOME_ESCALATED and d.rule == "model-down"
    # rules-only decisions on the same worker were never held up by the hanging calls
    assert max(during) < 1.0, during
    print(f"rules-only p50 before {statistics.median(before) * 1000:.1f} ms, "
          f"during {statistics.median(during) * 1000:.1f} ms")
    store = SqlStore(server.db, migrate=False)
    record = store.get(results[0].decision_id)
    assert record is not None
    failures = [e for e in record["trace"] if e.get("kind") == "fact" and e.get("type") == "failure"]
    assert failures and failures[0]["values"]["kind"] == "timeout"
    channel.close()


def test_a_deadline_shorter_than_the_call_fails_the_decision_at_the_deadline(hanging: tuple[Server, str]) -> None:
    server, _ = hanging
    with server.channel() as channel:
        stub = decision_pb2_grpc.DecisionServiceStub(channel)
        req = decision_pb2.DecideRequest(ruleset="hang-probe", facts=[fact("ticket", {"ref": "T-short"})],
                                         deadline=duration_pb2.Duration(nanos=300_000_000))
        started = time.perf_counter()
        with pytest.raises(grpc.RpcError) as info:
            stub.Decide(req, metadata=metadata("caller"), timeout=30)
        assert time.perf_counter() - started < 5  # ended by its deadline, not by the hanging call
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    decision_id = details_of(info.value).split()[1]
    record = SqlStore(server.db, migrate=False).get(decision_id)
    assert record is not None and record["outcome"] == "failed" and "deadline" in record["reason"]

