"""Between decision records (dicts) and baton.v1 messages."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from adapters.doors.grpc.gen.baton.v1 import decision_pb2 as pb
from engine.record import DecisionRecord

OUTCOMES = {"decided": pb.OUTCOME_DECIDED, "escalated": pb.OUTCOME_ESCALATED, "failed": pb.OUTCOME_FAILED,
            "no_decision": pb.OUTCOME_NO_DECISION}
OUTCOME_NAMES = {v: k for k, v in OUTCOMES.items()}


def struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


def value(v: Any) -> struct_pb2.Value:
    out = struct_pb2.Value()
    json_format.ParseDict(v, out)
    return out


def plain(message: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as plain Python. Whole numbers stay numbers (5.0); validation makes them ints where declared."""
    return {k: _plain_value(v) for k, v in message.fields.items()}


def _plain_value(v: struct_pb2.Value) -> Any:
    kind = v.WhichOneof("kind")
    if kind == "struct_value":
        return plain(v.struct_value)
    if kind == "list_value":
        return [_plain_value(x) for x in v.list_value.values]
    if kind == "number_value":
        n = v.number_value
        return int(n) if math.isfinite(n) and n.is_integer() and abs(n) < 2**53 else n
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    return None


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def decision(record: DecisionRecord, idempotent_replay: bool = False) -> pb.Decision:
    return fill_decision(pb.Decision(), record, idempotent_replay)


def fill_decision(m: pb.Decision, record: DecisionRecord, idempotent_replay: bool = False) -> pb.Decision:
    """``record`` as the Decision message ``m`` (empty; in place, so a response builds its decision where it
    stands: a Decision made first and passed to its parent's constructor is copied, with its Struct and
    Timestamp - half the cost of answering a batched request)."""
    m.decision_id, m.ruleset, m.version = record["decision_id"], record["ruleset"], record["version"]
    m.outcome, m.reason, m.rule = OUTCOMES[record["outcome"]], record["reason"], record["rule"]
    m.fired.extend(record["fired"])
    m.cost_usd, m.tokens, m.latency_ms = record["cost_usd"], record["tokens"], record["latency_ms"]
    m.steps, m.calls, m.idempotent_replay = record["steps"], record["calls"], idempotent_replay
    m.queued_ms = float(record.get("queued_ms") or 0.0)
    m.decision.SetInParent()  # present even when empty, as a constructed Struct is (no_decision: {})
    m.decision.update(record["decision"])
    m.decided_at.SetInParent()
    m.decided_at.FromNanoseconds(int(record["started_at"] * 1e9))
    documents = record.get("documents")
    if documents:
        m.documents.extend(pb.DocumentRef(id=d["id"], name=d["name"], media_type=d["media_type"], pages=d["pages"],
                                          chars=d["chars"]) for d in documents)
    return m


def summary_row(row: dict[str, Any]) -> pb.Decision:
    return pb.Decision(decision_id=row["id"], ruleset=row["ruleset"], version=row["version"],
                       outcome=OUTCOMES[row["outcome"]], rule=row["rule"], cost_usd=row["cost_usd"],
                       tokens=row["tokens"], latency_ms=row["latency_ms"], decided_at=timestamp(row["created_at"]))


def outcome_summary(summary: dict[str, Any]) -> pb.OutcomeSummary:
    if not summary:
        return pb.OutcomeSummary()
    return pb.OutcomeSummary(outcome=OUTCOMES[summary["outcome"]], decision=struct(summary["decision"]),
                             reason=summary["reason"], rule=summary["rule"])
