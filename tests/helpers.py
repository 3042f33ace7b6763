"""Shared helpers: build rulesets from YAML text and decide with recorded answers."""

from __future__ import annotations

import asyncio
import textwrap
from typing import Any

from engine.clock import FixedClock, SequentialIds
from engine.language.loader import load_ruleset
from engine.loop import Decision, Engine, Limits
from engine.model import Ruleset
from engine.recorded import RecordedAnswers


def ruleset(text: str, file: str = "test.yaml") -> Ruleset:
    return load_ruleset(textwrap.dedent(text).lstrip("\n"), file)


def decide(rs: Ruleset | Engine, facts: Any, answers: dict[str, Any] | None = None,
           limits: Limits | None = None) -> Decision:
    engine = rs if isinstance(rs, Engine) else Engine(rs)
    recorded = RecordedAnswers(answers or {})
    return asyncio.run(engine.decide(facts, recorded, recorded, FixedClock(), SequentialIds(), limits))


def strip_timing(record: dict[str, Any]) -> dict[str, Any]:
    """The record without ids and timings: what must be identical for identical inputs."""
    out = {k: v for k, v in record.items() if k not in ("decision_id", "latency_ms", "started_at", "finished_at")}
    out["trace"] = [{k: v for k, v in e.items() if k != "latency_ms"} for e in record["trace"]]
    return out
