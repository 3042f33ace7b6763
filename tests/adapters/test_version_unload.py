"""Idle versions are unloaded (engine and durable-rules networks freed) and reloaded on demand."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from adapters.infra.store.sql import SqlStore
from adapters.usecases.registry import RulesetRegistry
from engine import driver
from engine.clock import FixedClock, SequentialIds
from engine.language.check import FactIndex
from engine.language.loader import load_ruleset
from engine.loop import Decision, Engine
from engine.recorded import RecordedAnswers

ROOT = Path(__file__).resolve().parents[2]
TRIAGE = (ROOT / "rulesets/claims-triage.yaml").read_text()


def counted(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def decide(engine: Engine) -> Decision:
    test = engine.ruleset.tests[0]
    answers = RecordedAnswers(test.answers)
    return asyncio.run(engine.decide(test.given, answers, answers, FixedClock(), SequentialIds()))


def key(engine: Engine) -> str:
    return f"{engine.ruleset.name}@{engine.ruleset.version}{engine.compiled.layout}"


def test_an_idle_version_is_unloaded_and_reloaded_on_demand_but_never_the_one_in_effect(db_url: str) -> None:
    registry = RulesetRegistry(SqlStore(db_url), idle_unload_s=600)
    live = load_ruleset(TRIAGE, "triage.yaml")
    registry.publish_reviewed(live, by="file:claims-triage.yaml")
    other = load_ruleset(TRIAGE.replace("claim.amount > 50000", "claim.amount > 70000"), "triage.yaml")
    registry.submit(other, by="erin", note="raise the bar")  # pending: loaded, not in effect
    before = decide(registry.engine_for(other.version))
    old = registry.engine_for(other.version)
    assert key(old) in driver._pools

    assert registry.unload_idle(time.monotonic() + 599) == []  # not idle long enough
    unloads, reloads = counted("baton_version_unloads_total"), counted("baton_version_reloads_total")
    assert registry.unload_idle(time.monotonic() + 601) == [other.version]  # the version in effect stays
    assert set(registry.engines) == {live.version}
    assert key(old) not in driver._pools and not any(p.handles for p in old.pool.shards)
    assert counted("baton_version_unloads_total") == unloads + 1

    again = registry.engine_for(other.version)  # compiled again from the store
    assert again is not old and counted("baton_version_reloads_total") == reloads + 1
    after = decide(again)
    assert (after.outcome, after.decision, after.fired) == (before.outcome, before.decision, before.fired)
    stale = decide(old)  # an engine still held elsewhere registers its networks again, under new names
    assert (stale.outcome, stale.decision, stale.fired) == (before.outcome, before.decision, before.fired)


def test_networks_with_a_decision_on_them_are_not_freed() -> None:
    engine = Engine(load_ruleset(TRIAGE.replace("claim.amount > 50000", "claim.amount > 60000"), "triage.yaml"))
    expected = decide(engine)
    claim = engine.ruleset.tests[0].given["claim"]  # type: ignore[index]
    agenda = engine.pool.open([(1, "claim", claim)], FactIndex())
    try:
        assert driver.unload(engine.compiled) is False
        assert key(engine) in driver._pools and engine.pool.live_sessions == 1
    finally:
        agenda.close()
    assert driver.unload(engine.compiled) is True
    assert key(engine) not in driver._pools
    again = decide(Engine(engine.ruleset, engine.compiled))
    assert (again.outcome, again.decision, again.fired) == (expected.outcome, expected.decision, expected.fired)


def test_the_network_budget_comes_from_the_config(tmp_path: Path) -> None:
    from adapters.usecases.config import load_config
    from adapters.usecases.runtime import Runtime

    with pytest.raises(ValueError, match=r"versions\.networks_max_mb"):
        load_config(None, {"BATON_VERSIONS__NETWORKS_MAX_MB": "0"})
    cfg = load_config(None, {"BATON_VERSIONS__NETWORKS_MAX_MB": "8", "BATON_DB": str(tmp_path / "rt.db")})
    rt = Runtime.build(cfg, tmp_path, serving=False)
    try:
        assert driver.network_budget().max_bytes == 8 << 20
    finally:
        rt.writer.close()
        rt.store.close()
        driver.set_network_budget(None)
    assert driver.network_budget().max_bytes is None
