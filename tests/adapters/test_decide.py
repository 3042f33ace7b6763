"""The Decide use case on its own, without a door: a command in, an answer or a coded error out. What every
door (gRPC unary, batch and stream, intake, `baton decide --db`) relies on is checked here once."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from adapters.infra.documents import MAX_DOCUMENTS
from adapters.infra.store.sql import SqlStore
from adapters.infra.store.writer import GroupWriter
from adapters.usecases.commands import Answer, DecideCommand, DecideLimits, RawDocument, Refused
from adapters.usecases.decide import Call, Decide
from adapters.usecases.decisions import DecisionPath
from adapters.usecases.registry import RulesetRegistry
from engine.clock import FixedClock, SequentialIds
from engine.codes import Code
from engine.errors import BatonError, InvalidInput, Overloaded
from engine.language.loader import load_ruleset
from engine.loop import Limits
from engine.recorded import RecordedAnswers

RULESET = textwrap.dedent("""
    ruleset: limits
    facts:
      order: {ref: str, amount: number}
    input: [order]
    rules:
      - name: small
        when: order.amount < 100
        then: {decide: {verdict: approve}}
      - name: large
        when: order.amount >= 100
        then: {decide: {verdict: refer}}
""")


@pytest.fixture
def use_case(tmp_path: Path) -> Iterator[Decide]:
    store = SqlStore(str(tmp_path / "decide.db"))
    registry = RulesetRegistry(store)
    registry.publish_reviewed(load_ruleset(RULESET, "limits.yaml"), "test")
    writer = GroupWriter(store)
    answers = RecordedAnswers({})
    yield Decide(registry=registry, log=store, path=DecisionPath(writer), models=answers,
                 tools=answers, clock=FixedClock(1.7e9), ids=SequentialIds("d-"),
                 limits=DecideLimits(engine=Limits(), max_inflight=2, max_batch=3))
    writer.close()
    store.close()


def order(ref: str, amount: float, key: str | None = None, **kw: object) -> DecideCommand:
    return DecideCommand(caller="alice", ruleset="limits", facts={"order": {"ref": ref, "amount": amount}}, key=key,
                         **kw)  # type: ignore[arg-type]


def test_a_command_is_decided_stored_and_replayed_by_its_key(use_case: Decide) -> None:
    first = asyncio.run(use_case.one(order("A", 50, key="k-1")))
    assert (first.record["decision"], first.replayed) == ({"verdict": "approve"}, False)
    again = asyncio.run(use_case.one(order("A", 50.0, key="k-1")))  # 50 and 50.0 are one value
    assert (again.record["decision_id"], again.replayed) == (first.record["decision_id"], True)
    other_caller = asyncio.run(use_case.one(DecideCommand(caller="bob", ruleset="limits", key="k-1",
                                                          facts={"order": {"ref": "A", "amount": 50}})))
    assert not other_caller.replayed  # a key is the caller's own


def test_a_key_reused_for_another_request_is_refused_with_its_code(use_case: Decide) -> None:
    asyncio.run(use_case.one(order("A", 50, key="k-2")))
    with pytest.raises(Refused) as refused:
        asyncio.run(use_case.one(order("A", 500, key="k-2")))
    assert refused.value.code == Code.IDEMPOTENCY_CONFLICT and refused.value.where.path == "idempotency_key"
    # ... unless the key names the message itself (broker intake): the stored decision is the answer
    answer = asyncio.run(use_case.one(order("A", 500, key="k-2", same_request=False)))
    assert answer.replayed and answer.record["decision"] == {"verdict": "approve"}


@pytest.mark.parametrize(("command", "code", "path"), [
    (DecideCommand(caller="a"), Code.BAD_REQUEST, "ruleset"),
    (DecideCommand(caller="a", ruleset="limits", typed_facts=[("order", {}), ("", {})]), Code.BAD_REQUEST,
     "facts[1].type"),
    (order("A", 1, key="x" * 201), Code.BAD_REQUEST, "idempotency_key"),
    (order("A", 1, key="a\nb"), Code.BAD_REQUEST, "idempotency_key"),
    (order("A", 1, deadline_s=0.0), Code.BAD_REQUEST, "deadline"),
    (order("A", 1, documents=[RawDocument("d", b"x")] * (MAX_DOCUMENTS + 1)), Code.BAD_REQUEST, "documents"),
    (DecideCommand(caller="a", ruleset="nope", facts={}), Code.UNKNOWN_RULESET, ""),
])
def test_requests_are_refused_before_anything_is_stored(use_case: Decide, command: DecideCommand, code: Code,
                                                        path: str) -> None:
    with pytest.raises(BatonError) as refused:
        asyncio.run(use_case.one(command))
    assert (refused.value.code, refused.value.where.path) == (code.value, path)
    assert use_case.log.find_many("a", ["x" * 201, "a\nb"]) == {}


def test_a_key_with_any_control_character_is_refused_and_other_characters_are_not(use_case: Decide) -> None:
    import sys
    import unicodedata

    controls = [chr(i) for i in range(sys.maxunicode + 1) if unicodedata.category(chr(i)) == "Cc"]
    for c in controls:
        with pytest.raises(BatonError) as refused:
            use_case._prepare(order("A", 1, key=f"k{c}k"))
        assert refused.value.where.path == "idempotency_key"
    for key in ("k-\u00a0-\u200b-\u00e9-\U0001f600", "\u2028"):  # spaces, accents, emoji: not control characters
        assert use_case._prepare(order("A", 1, key=key)).key == key


def test_bad_facts_read_no_document_and_store_nothing(use_case: Decide) -> None:
    with pytest.raises(InvalidInput) as refused:
        asyncio.run(use_case.one(DecideCommand(caller="a", ruleset="limits", key="k-3",
                                               facts={"order": {"ref": "A"}},
                                               documents=[RawDocument("empty.txt", b"")])))
    assert refused.value.where.path.startswith("facts.order")  # the facts' error, not the empty document's
    assert use_case.log.find("a", "k-3") is None


def test_a_caller_out_of_time_is_refused_and_an_overload_is_said(use_case: Decide) -> None:
    with pytest.raises(Refused) as late:
        asyncio.run(use_case.one(order("A", 1), time_left=lambda: 0.01))
    assert late.value.code == Code.DEADLINE_EXCEEDED
    use_case.inflight = use_case.limits.max_inflight
    with pytest.raises(Overloaded):
        asyncio.run(use_case.one(order("A", 1)))


def test_a_batch_answers_each_request_in_its_place(use_case: Decide) -> None:
    asyncio.run(use_case.one(order("A", 10, key="b-0")))
    results = asyncio.run(use_case.batch([order("A", 10, key="b-0"), order("B", 500, key="b-1"),
                                          DecideCommand(caller="alice", ruleset="limits", facts={"order": {}}),
                                          ValueError("not translated")], "alice", lambda: None))
    replayed, decided, invalid, untranslated = results
    assert not isinstance(replayed, BaseException) and replayed is not None and replayed.replayed
    assert not isinstance(decided, BaseException) and decided is not None
    assert decided.record["decision"] == {"verdict": "refer"} and use_case.log.find("alice", "b-1") is not None
    assert isinstance(invalid, InvalidInput) and isinstance(untranslated, ValueError)
    assert use_case.inflight == 0  # every place taken is given back
    with pytest.raises(Refused):
        use_case.check_batch(4, "")
    cancelled = Call(cancelled=True)
    assert asyncio.run(use_case.batch([order("C", 1)], "alice", lambda: None, cancelled)) == [None]


def test_a_stream_answers_in_the_order_sent(use_case: Decide) -> None:
    async def commands() -> AsyncIterator[DecideCommand | BaseException]:
        for i in range(5):
            yield ValueError("not translated") if i == 2 else order(f"S-{i}", 50 * i, key=f"s-{i}")

    async def run() -> list[Answer | BaseException]:
        return [outcome async for outcome in use_case.stream(commands(), lambda: None)]

    outcomes = asyncio.run(run())
    assert isinstance(outcomes[2], ValueError)
    refs = [o.record["inputs"][0]["values"]["ref"] for o in outcomes if isinstance(o, Answer)]
    assert refs == ["S-0", "S-1", "S-3", "S-4"]
    assert use_case.inflight == 0
