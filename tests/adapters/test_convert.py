"""Decision records as baton.v1 Decision messages."""

from __future__ import annotations

from typing import Any, cast

from google.protobuf import json_format

from adapters.doors.grpc import convert
from adapters.doors.grpc.gen.baton.v1 import decision_pb2 as pb
from engine.record import DecisionRecord


def record(**over: Any) -> DecisionRecord:
    base = {"decision_id": "01D", "ruleset": "r", "version": "v1", "outcome": "decided", "reason": "because",
            "rule": "r1", "fired": ["r0", "r1"], "cost_usd": 0.25, "tokens": 12, "latency_ms": 1.5,
            "started_at": 1796686078.0, "steps": 3, "calls": 1, "decision": {"route": "x", "n": [1, {"b": None}]}}
    return cast(DecisionRecord, {**base, **over})


def test_a_decision_message_carries_every_field_of_the_record() -> None:
    docs = [{"id": "doc1", "name": "a.pdf", "media_type": "application/pdf", "pages": 2, "chars": 900}]
    m = convert.decision(record(documents=docs, queued_ms=0.5), idempotent_replay=True)
    assert json_format.MessageToDict(m, preserving_proto_field_name=True) == {
        "decision_id": "01D", "ruleset": "r", "version": "v1", "outcome": "OUTCOME_DECIDED", "reason": "because",
        "rule": "r1", "fired": ["r0", "r1"], "cost_usd": 0.25, "tokens": "12", "latency_ms": 1.5,
        "decided_at": "2026-12-07T23:27:58Z", "steps": 3, "calls": 1, "idempotent_replay": True,
        "queued_ms": 0.5, "decision": {"route": "x", "n": [1.0, {"b": None}]},
        "documents": [{"id": "doc1", "name": "a.pdf", "media_type": "application/pdf", "pages": 2, "chars": 900}]}


def test_an_empty_decision_and_an_epoch_time_are_still_present() -> None:
    """A no_decision answer's decision is {} on the wire, not absent (JSON clients read "decision": {})."""
    m = convert.decision(record(outcome="no_decision", decision={}, started_at=0.0, fired=[]))
    assert m.HasField("decision") and m.HasField("decided_at")
    assert json_format.MessageToDict(m)["decision"] == {}
    built_in_place = pb.DecideResult(index=1)
    convert.fill_decision(built_in_place.decision, record(outcome="no_decision", decision={}))
    assert built_in_place.decision.HasField("decision")
