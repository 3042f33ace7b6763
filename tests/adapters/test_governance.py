"""Publishing with four eyes and effective dates, and shadow runs, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from adapters.infra.candidates import CandidateCompiler
from adapters.infra.store.sql import DECISIONS, OUTBOX, SHADOW_RESULTS, SqlStore
from adapters.usecases.registry import GovernanceError, RulesetRegistry
from adapters.usecases.shadow import Shadows
from engine.clock import FixedClock, SequentialIds
from engine.errors import BatonError
from engine.language.loader import load_ruleset
from engine.loop import Engine
from engine.record import DecisionRecord
from engine.recorded import RecordedAnswers
from engine.replay import replay

ROOT = Path(__file__).resolve().parents[2]
TRIAGE = (ROOT / "rulesets/claims-triage.yaml").read_text()
PAYMENTS = (ROOT / "rulesets/payment-approval.yaml").read_text()


@pytest.fixture
def registry(db_url: str) -> RulesetRegistry:
    return RulesetRegistry(SqlStore(db_url))


def variant(threshold: int) -> Any:
    return load_ruleset(TRIAGE.replace("claim.amount > 50000", f"claim.amount > {threshold}"), "triage.yaml")


def test_four_eyes_and_effective_dates(registry: RulesetRegistry) -> None:
    v1 = load_ruleset(TRIAGE, "triage.yaml")
    registry.publish_reviewed(v1, by="file:claims-triage.yaml")
    assert registry.active_version("claims-triage") == v1.version
    v2, v3 = variant(90000), variant(70000)
    now = time.time()
    pub2 = registry.submit(v2, by="erin", note="raise the bar", effective_from=now + 3600)
    assert pub2.status == "pending" and registry.active_version("claims-triage") == v1.version
    assert registry.submit(v2, by="erin", note="again").id == pub2.id  # the same pending request, not a second one
    with pytest.raises(GovernanceError) as e:
        registry.decide(pub2.id, by="erin", approve=True)
    assert e.value.code == "four_eyes" and registry.publication(pub2.id).status == "pending"  # type: ignore[union-attr]
    approved = registry.decide(pub2.id, by="alex", approve=True, note="checked the impact")
    assert (approved.status, approved.decided_by, approved.submitted_by) == ("published", "alex", "erin")
    assert approved.effective_from == pytest.approx(now + 3600)
    with pytest.raises(GovernanceError):
        registry.decide(pub2.id, by="sam", approve=False, note="late")
    # v3 is approved after v2 but takes effect at once, i.e. before v2's date
    pub3 = registry.submit(v3, by="erin", note="70k", effective_from=now - 86400)  # past: takes effect at approval
    registry.decide(pub3.id, by="alex", approve=True)
    p3 = registry.publication(pub3.id)
    assert p3 is not None and p3.effective_from is not None and p3.effective_from >= now
    assert registry.active_version("claims-triage", at=now) == v1.version
    assert registry.active_version("claims-triage") == v3.version
    assert registry.active_version("claims-triage", at=now + 3599) == v3.version
    assert registry.active_version("claims-triage", at=now + 3601) == v2.version
    assert registry.engine("claims-triage", at=now + 7200).ruleset.version == v2.version
    # a rejected version never takes effect
    v4 = variant(10)
    pub4 = registry.submit(v4, by="erin", note="10")
    rejected = registry.decide(pub4.id, by="alex", approve=False, note="too low")
    assert rejected.status == "rejected" and rejected.effective_from is None
    assert registry.active_version("claims-triage", at=now + 10**6) == v2.version
    history = registry.publications("claims-triage")
    assert [p.status for p in history] == ["rejected", "published", "published", "published"]
    # another replica reading the same database sees the same schedule
    other = RulesetRegistry(registry.store)
    other.refresh(force=True)
    assert other.active_version("claims-triage", at=now + 3601) == v2.version


def test_an_old_decision_replays_on_its_version_after_a_new_one_is_published(registry: RulesetRegistry) -> None:
    v1 = load_ruleset(TRIAGE, "triage.yaml")
    registry.publish_reviewed(v1, by="file")
    test = v1.tests[0]
    answers = RecordedAnswers(test.answers)
    record = asyncio.run(registry.engine("claims-triage").decide(test.given, answers, answers, FixedClock(1.0),
                                                                  SequentialIds("old-"))).to_dict()
    registry.store.save(record)
    pub = registry.submit(variant(90000), by="erin", note="90k")
    registry.decide(pub.id, by="alex", approve=True)
    assert registry.active_version("claims-triage") != v1.version
    stored = registry.store.get(record["decision_id"])
    assert stored is not None
    result = asyncio.run(replay(registry.engine_for(stored["version"]), stored))
    assert result.identical


def old_store(url: str, revision: str) -> SqlStore:
    """A store whose schema stopped at an earlier Alembic revision."""
    from alembic import command
    from alembic.config import Config

    from adapters.infra.store.sql import MIGRATIONS

    store = SqlStore(url, migrate=False)
    with store.writer.connect() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()
    return store


def test_migrating_keeps_the_published_version_active(tmp_path: Path) -> None:
    """Versions published before publications existed become published publications (revision 0004)."""
    store = old_store(str(tmp_path / "old.db"), "0003")
    v1 = load_ruleset(TRIAGE, "triage.yaml")
    with store.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO ruleset_versions (version, name, source, loaded_at, published_at, "
                             "published_by) VALUES (:v, :n, :s, 1, 2, 'ops')"),
                     {"v": v1.version, "n": v1.name, "s": v1.source})
    store.migrate()
    registry = RulesetRegistry(store)
    registry.refresh(force=True)
    assert registry.active_version("claims-triage") == v1.version
    (pub,) = registry.publications()
    assert (pub.status, pub.decided_by, pub.effective_from) == ("published", "ops", 2.0)


def test_versions_stored_before_summaries_are_listed_with_theirs(db_url: str) -> None:
    """Revision 0007 stores what a listing shows with each version; older rows get it when first listed."""
    store = old_store(db_url, "0006")
    v1 = load_ruleset(TRIAGE, "triage.yaml")
    with store.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO ruleset_versions (version, name, source, loaded_at) VALUES (:v, :n, :s, 1)"),
                     {"v": v1.version, "n": v1.name, "s": v1.source})
    store.migrate()
    v2 = variant(90000)
    registry = RulesetRegistry(store)
    registry.publish_reviewed(v2, by="file")
    listed = {(v.version, v.description, v.rules, v.tests) for v in registry.versions()}
    assert listed == {(v.version, v.description, len(v.rules), len(v.tests)) for v in (v1, v2)}
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ruleset_versions WHERE rules IS NULL")).scalar() == 0


def live_decisions(registry: RulesetRegistry, rs: Any, prefix: str) -> list[DecisionRecord]:
    engine = Engine(rs)
    out = []
    for i, test in enumerate(rs.tests):
        answers = RecordedAnswers(test.answers)
        d = asyncio.run(engine.decide(test.given, answers, answers, FixedClock(1000.0 + i),
                                      SequentialIds(f"{prefix}{i}-")))
        record = d.to_dict()
        registry.store.save(record)
        out.append(record)
    return out


@pytest.fixture(params=["in-process", "in-a-child"])
def compiler(request: pytest.FixtureRequest) -> Iterator[CandidateCompiler | None]:
    """Shadows evaluated in this process (the CLI's) or each in a bounded child (the service's)."""
    if request.param == "in-process":
        yield None
        return
    c = CandidateCompiler()
    yield c
    c.close()


def test_shadow_differences_are_stored_and_live_outcomes_untouched(registry: RulesetRegistry,
                                                                   compiler: CandidateCompiler | None) -> None:
    live = load_ruleset(PAYMENTS, "payments.yaml")
    registry.publish_reviewed(live, by="file")
    shadows = Shadows(registry.store, registry, candidates=compiler)
    sql = registry.store
    assert isinstance(sql, SqlStore)  # the rows are read with SQL below
    # the candidate stops escalating large payments: it decides them instead
    candidate = load_ruleset(PAYMENTS.replace("payment.amount >= 1000\n", "payment.amount >= 1000000\n"),
                             "payments-candidate.yaml")
    assert candidate.version != live.version
    info = shadows.attach(candidate, by="erin")
    assert shadows.attach(candidate, by="erin").id == info.id
    records = live_decisions(registry, live, "live-")
    with sql.engine.connect() as conn:
        outbox_before = conn.execute(sa.select(sa.func.count()).select_from(OUTBOX)).scalar_one()
        decisions_before = conn.execute(sa.select(sa.func.count()).select_from(DECISIONS)).scalar_one()

    async def run() -> None:
        shadows.start()
        for record in records:
            shadows.offer(record)
        await shadows.drain()
        await shadows.stop()

    asyncio.run(run())
    # the shadow's version was compiled in its child, never in this process
    assert (registry.loaded(candidate.version) is None) == (compiler is not None)
    with sql.engine.connect() as conn:
        rows = conn.execute(sa.select(SHADOW_RESULTS)).mappings().all()
        # shadow runs store no decision and queue no effect
        assert conn.execute(sa.select(sa.func.count()).select_from(OUTBOX)).scalar_one() == outbox_before
        assert conn.execute(sa.select(sa.func.count()).select_from(DECISIONS)).scalar_one() == decisions_before
    assert len(rows) == len(records)
    changed = [r for r in rows if r["changed"]]
    assert changed, "the candidate changes some outcomes"
    for record in records:  # the stored live decisions are exactly what was decided live
        stored = registry.store.get(record["decision_id"])
        assert stored is not None and stored["outcome"] == record["outcome"] and stored["version"] == live.version
    report = shadows.report(candidate.version)
    assert (report.decisions, report.changed) == (len(records), len(changed))
    assert sum(n for _, _, n, _ in report.changes) == len(changed)
    frm, to, _, examples = report.changes[0]
    assert frm != to and examples
    # detached: new live decisions are no longer shadowed
    assert shadows.detach(candidate.version)
    assert shadows.attached() == []
    shadows.refresh(force=True)
    assert not shadows.by_ruleset.get("payment-approval")


def test_a_version_never_published_decides_nothing(registry: RulesetRegistry) -> None:
    """Submitted from the child's summary, it is stored without being compiled here; Decide refuses it by
    name until it is approved (what-if and impact run it, in the bounded child)."""
    registry.publish_reviewed(variant(50000), by="file")
    source = TRIAGE.replace("claim.amount > 50000", "claim.amount > 61000")
    compiler = CandidateCompiler()
    try:
        checked = compiler.check(source, "triage.yaml")
    finally:
        compiler.close()
    pub = registry.submit(checked.stored(source), by="erin", note="61k")
    assert registry.loaded(pub.version) is None
    info = registry.info("claims-triage", pub.version)
    assert info is not None and (info.rules, info.tests) == (checked.rules, checked.tests)
    with pytest.raises(BatonError) as e:
        registry.engine("claims-triage", pub.version[:12])
    assert e.value.code == "unpublished_version"
    registry.decide(pub.id, by="alex", approve=True)
    assert registry.engine("claims-triage", pub.version[:12]).ruleset.version == pub.version
