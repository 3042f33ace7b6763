"""How a replay matches recorded calls to the calls it makes, and compares traces."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

from engine.loop import Engine
from engine.ports import CallRequest
from engine.recorded import ReplayAnswers, request_key
from engine.replay import first_divergence, replay
from tests.helpers import decide, ruleset

ROOT = Path(__file__).resolve().parents[2]


def test_one_request_has_one_key_whatever_its_key_order() -> None:
    assert request_key("a", {"x": 1, "y": [1, {"b": 2, "a": "é"}]}) == \
        request_key("a", {"y": [1, {"a": "é", "b": 2}], "x": 1})
    assert request_key("a", {"x": 1}) != request_key("b", {"x": 1})
    assert request_key("a", {"x": 1}) != request_key("a", {"x": 1.5})


def test_requests_orjson_cannot_tell_apart_or_encode_still_get_their_own_keys() -> None:
    # orjson writes NaN and infinity as null, and refuses integers beyond 64 bits and non-string keys
    assert request_key("a", {"x": float("nan")}) != request_key("a", {"x": None})
    assert request_key("a", {"x": float("inf")}) != request_key("a", {"x": None})
    assert request_key("a", {"x": 2**70}) != request_key("a", {"x": 2**70 + 1})
    assert request_key("a", {"x": 2**70}) == request_key("a", {"x": 2**70})
    assert request_key("a", {1: "x"}) == request_key("a", {1: "x"})
    # the slower path's keys never meet the fast path's
    assert request_key("a", {"x": None}) != request_key("a", {"x": "null"})


def test_a_recorded_call_with_a_big_integer_or_null_in_its_request_is_found_again() -> None:
    trace = [{"kind": "call", "action": "lookup", "request": {"params": {"ref": 2**70, "other": None}},
              "status": "ok", "answer": {"ok": True}}]
    answers = ReplayAnswers(trace)
    call = CallRequest("lookup", "tool", {"params": {"other": None, "ref": 2**70}}, "policy", {}, 0, 1.0)
    found = answers.answer_now(call)
    assert found is not None and found.answer == {"ok": True} and not answers.unanswered


def _decided() -> tuple[Engine, dict[str, Any]]:
    engine = Engine(ruleset((ROOT / "rulesets/claims-triage.yaml").read_text(), "claims-triage.yaml"))
    test = engine.ruleset.tests[0]
    return engine, dict(decide(engine, test.given, test.answers).to_dict())


def test_timings_and_the_winner_mark_are_not_divergences_but_any_other_field_is() -> None:
    _, record = _decided()
    other = copy.deepcopy(record)
    call = next(i for i, e in enumerate(other["trace"]) if e["kind"] == "call")
    other["trace"][call]["latency_ms"] = 812.5
    proposal = next(i for i, e in enumerate(other["trace"]) if e["kind"] == "proposal")
    other["trace"][proposal]["won"] = not other["trace"][proposal]["won"]
    assert first_divergence(record, other) is None
    other["trace"][call]["attempts"] = 3
    found = first_divergence(record, other)
    assert found is not None and found.index == call and found.what == "trace event"
    assert found.got["attempts"] == 3 and "latency_ms" not in found.got and "latency_ms" not in found.expected
    shorter = {**record, "trace": record["trace"][:-1]}
    found = first_divergence(record, shorter)
    assert found is not None and found.index == len(record["trace"]) - 1 and found.got is None


def test_a_decision_replays_identically_and_a_changed_answer_diverges() -> None:
    engine, record = _decided()
    assert asyncio.run(replay(engine, record)).identical
    changed = copy.deepcopy(record)
    for event in changed["trace"]:
        if event["kind"] == "call" and event["action"] == "lookup_policy":
            event["answer"] = {**event["answer"], "active": False}
    result = asyncio.run(replay(engine, changed))
    assert not result.identical and result.divergence is not None
    assert result.divergence.got["values"]["active"] is False
