"""The LiteLLM gateway through its real HTTP path, against a scripted OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.infra.llm.gateway import LiteLLMGateway, ModelsConfig
from adapters.infra.system import SystemClock
from engine.clock import SequentialIds
from engine.loop import Decision, Engine
from engine.record import TraceEvent
from engine.recorded import RecordedAnswers
from tests.helpers import ruleset

ROOT = Path(__file__).resolve().parents[2]
CLAIMS = (ROOT / "rulesets/claims-triage.yaml").read_text()
CLAIM = {"claim_ref": "C-1", "amount": 80000, "policy_ref": "P-1", "description": "whiplash",
         "customer_tier": "standard"}
POLICY = {"policy_ref": "P-1", "active": True, "coverage_limit": 100000}
INJURY = {"category": "injury", "confidence": 0.93, "fraud_signals": []}


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-m", "adapters.infra.llm.fake_openai"], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    port = proc.stdout.readline().split()[-1]
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)
    proc.stdout.close()


@pytest.fixture
def server(fake: str) -> str:
    httpx.post(f"{fake}/reset")
    return fake


def script(base: str, model: str, *steps: dict[str, Any], default: dict[str, Any] | None = None) -> None:
    body: dict[str, Any] = {"model": model, "steps": list(steps)}
    if default is not None:
        body["default"] = default
    httpx.post(f"{base}/script", json=body).raise_for_status()


def ok(answer: dict[str, Any], delay_ms: int = 0) -> dict[str, Any]:
    return {"status": 200, "content": json.dumps(answer), "delay_ms": delay_ms}


def gateway(base: str, **extra: Any) -> LiteLLMGateway:
    def deployment(group: str, model: str) -> dict[str, Any]:
        return {"model_name": group, "litellm_params": {
            "model": f"openai/{model}", "api_base": f"{base}/v1", "api_key": "os.environ/FAKE_OPENAI_KEY",
            "input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002}}

    return LiteLLMGateway(ModelsConfig.from_dict({
        "model_list": [deployment("fast", "m-fast"), deployment("capable", "m-capable"), deployment("solo", "m-solo")],
        "fallbacks": [{"fast": ["capable"]}], **extra}))


def decide(gw: LiteLLMGateway, text: str, facts: dict[str, Any], tools: dict[str, Any]) -> Decision:
    engine = Engine(ruleset(text))
    recorded = RecordedAnswers(tools)
    return asyncio.run(engine.decide(facts, gw, recorded, SystemClock(), SequentialIds()))


def calls(d: Decision) -> list[TraceEvent]:
    return [e for e in d.trace if e["kind"] == "call" and e["type"] == "model"]


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-test")


def test_routes_to_the_named_group_with_a_typed_answer(server: str) -> None:
    script(server, "m-fast", ok(INJURY))
    d = decide(gateway(server), CLAIMS, {"claim": CLAIM}, {"lookup_policy": POLICY})
    assert d.decision == {"route": "senior-assessor"}
    sent = httpx.get(f"{server}/requests").json()
    assert [r["model"] for r in sent] == ["m-fast"]
    assert sent[0]["response_format"]["type"] == "json_schema"
    assert sent[0]["response_format"]["json_schema"]["schema"]["properties"]["category"]["enum"] == [
        "auto", "property", "injury", "other"]
    assert "Description: whiplash" in sent[0]["messages"][-1]["content"]
    meta = calls(d)[0]["meta"]
    assert meta["group"] == "fast" and meta["model"] == "openai/m-fast" and meta["attempts"][0]["fallbacks"] == 0


def test_falls_back_to_another_group_when_the_primary_errors(server: str) -> None:
    script(server, "m-fast", default={"status": 500})
    script(server, "m-capable", ok(INJURY))
    d = decide(gateway(server), CLAIMS.replace("retries: 2", "retries: 0"), {"claim": CLAIM}, {"lookup_policy": POLICY})
    assert d.decision == {"route": "senior-assessor"}
    meta = calls(d)[0]["meta"]
    assert meta["model"] == "openai/m-capable" and meta["attempts"][0]["fallbacks"] >= 1
    assert [r["model"] for r in httpx.get(f"{server}/requests").json()][-1] == "m-capable"


@pytest.mark.slow
def test_retries_then_succeeds(server: str) -> None:
    script(server, "m-solo", {"status": 500}, {"status": 429}, ok(INJURY))
    d = decide(gateway(server), CLAIMS.replace("group: fast", "group: solo"), {"claim": CLAIM},
               {"lookup_policy": POLICY})
    assert d.decision == {"route": "senior-assessor"}
    assert calls(d)[0]["meta"]["attempts"][0]["retries"] == 2
    assert len(httpx.get(f"{server}/requests").json()) == 3


def test_a_timeout_becomes_a_failure_fact_and_the_escalation_rule_wins(server: str) -> None:
    script(server, "m-solo", default=ok(INJURY, delay_ms=3000))
    text = CLAIMS.replace("group: fast", "group: solo").replace("timeout: 10s", "timeout: 300ms") \
        .replace("retries: 2", "retries: 0")
    d = decide(gateway(server), text, {"claim": CLAIM}, {"lookup_policy": POLICY})
    assert (d.outcome, d.reason) == ("escalated", "classifier unavailable")
    failure = next(e for e in d.trace if e["kind"] == "fact" and e["type"] == "failure")["values"]
    assert failure["action"] == "classify" and failure["kind"] == "timeout"


def test_malformed_json_is_retried_with_the_error_and_then_validates(server: str) -> None:
    script(server, "m-solo", {"status": 200, "content": "Sure! {category: injury"},
           ok({"category": "injury", "confidence": 7, "fraud_signals": []}), ok(INJURY))
    d = decide(gateway(server), CLAIMS.replace("group: fast", "group: solo"), {"claim": CLAIM},
               {"lookup_policy": POLICY})
    assert d.decision == {"route": "senior-assessor"}
    call = calls(d)[0]
    assert call["attempts"] == 3 and [a["valid"] for a in call["meta"]["attempts"]] == [False, False, True]
    sent = httpx.get(f"{server}/requests").json()
    assert "not valid JSON" in sent[1]["messages"][-1]["content"]
    assert "above the maximum 1" in sent[2]["messages"][-1]["content"]
    script(server, "m-solo", default={"status": 200, "content": "never json"})
    d = decide(gateway(server), CLAIMS.replace("group: fast", "group: solo"), {"claim": CLAIM},
               {"lookup_policy": POLICY})
    assert d.reason == "classifier unavailable"
    assert calls(d)[0]["failure"]["kind"] == "invalid_answer"


def test_a_spent_budget_is_a_failure_fact(server: str) -> None:
    text = CLAIMS.replace("tools:", """  second_opinion:
    group: solo
    produces: assessment
    prompt: "Second opinion on {{ claim.description }}"
settings: {budget: {max_calls: 1}}
tools:""").replace("then: classify\n", "then: [classify, second_opinion]\n")
    script(server, "m-fast", default=ok(INJURY))
    script(server, "m-solo", default=ok(INJURY))
    d = decide(gateway(server), text, {"claim": CLAIM}, {"lookup_policy": POLICY})
    statuses = {c["action"]: c["status"] for c in calls(d)}
    assert statuses == {"classify": "ok", "second_opinion": "failed"}
    failure = next(e for e in d.trace if e["kind"] == "fact" and e["type"] == "failure")["values"]
    assert failure["action"] == "second_opinion" and failure["kind"] == "budget"
    assert len(httpx.get(f"{server}/requests").json()) == 1


def test_pii_is_masked_in_the_stored_prompt_and_answer_but_sent_to_the_model(server: str) -> None:
    text = (ROOT / "rulesets/customer-onboarding.yaml").read_text().replace("group: capable", "group: solo")
    script(server, "m-solo", ok({"authentic": True, "name_matches": True, "confidence": 0.9}))
    applicant = {"applicant_ref": "A-1", "full_name": "Ana Lima", "country": "PT", "document_type": "passport",
                 "document_text": "PASSPORT LIMA ANA 1985", "pep_declared": False}
    d = decide(gateway(server), text, {"applicant": applicant}, {"sanctions_screen": None})
    call = calls(d)[0]
    assert "Ana Lima" not in call["request"]["prompt"] and "[redacted]" in call["request"]["prompt"]
    assert "PASSPORT LIMA ANA" not in json.dumps(call)
    sent = httpx.get(f"{server}/requests").json()
    assert "Ana Lima" in sent[0]["messages"][-1]["content"]  # the model still sees the facts it needs
    assert d.decision == {"route": "approve"}


def test_cost_and_tokens_are_recorded_per_call_and_summed(server: str) -> None:
    text = CLAIMS.replace("tools:", """  second_opinion:
    group: solo
    produces: assessment
    prompt: "Second opinion on {{ claim.description }}"
tools:""").replace("then: classify\n", "then: [classify, second_opinion]\n")
    script(server, "m-fast", default=ok(INJURY))
    script(server, "m-solo", default=ok(INJURY))
    d = decide(gateway(server), text, {"claim": CLAIM}, {"lookup_policy": POLICY})
    metas = [c["meta"] for c in calls(d)]
    assert len(metas) == 2 and all(m["total_tokens"] > 0 and m["cost_usd"] > 0 for m in metas)
    for m in metas:
        assert m["cost_usd"] == pytest.approx(m["prompt_tokens"] * 1e-6 + m["completion_tokens"] * 2e-6)
    assert d.cost_usd == pytest.approx(sum(m["cost_usd"] for m in metas))
    assert d.tokens == sum(m["total_tokens"] for m in metas)


def test_config_refuses_keys_written_in_the_file() -> None:
    with pytest.raises(ValueError, match="api_key"):
        ModelsConfig.from_dict({"model_list": [{"model_name": "fast", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_key": "sk-live-123"}}]})


def test_a_model_backed_decision_replays_from_its_record_without_calling_the_model(server: str) -> None:
    from engine.replay import replay, what_if

    script(server, "m-fast", ok(INJURY))
    engine = Engine(ruleset(CLAIMS))
    tools = RecordedAnswers({"lookup_policy": POLICY})
    gw = gateway(server)
    record = asyncio.run(engine.decide({"claim": CLAIM}, gw, tools, SystemClock(), SequentialIds())).to_dict()
    before = len(httpx.get(f"{server}/requests").json())
    result = asyncio.run(replay(engine, record))
    assert result.identical and len(httpx.get(f"{server}/requests").json()) == before
    # what-if with a prompt that was never sent: unanswered, unless live calls are allowed
    candidate = Engine(ruleset(CLAIMS.replace("Classify this insurance claim.", "Classify this claim.")))
    w = asyncio.run(what_if(candidate, record))
    assert [u["action"] for u in w.unanswered] == ["classify"] and len(httpx.get(f"{server}/requests").json()) == before
    script(server, "m-fast", ok({**INJURY, "category": "auto"}))
    w = asyncio.run(what_if(candidate, record, live_models=gw))
    assert [u["action"] for u in w.live] == ["classify"] and w.new["decision"] == {"route": "standard-queue"}
    assert len(httpx.get(f"{server}/requests").json()) == before + 1
