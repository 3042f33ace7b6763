"""Pins on durable-rules 2.0.28 behaviour that Baton's driver relies on (see shared/DURABLE_RULES.md).

An upgrade that changes any of these fails here first.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from itertools import count

import durable_rules_engine as core

_names = count()


def fresh(rules: dict[str, object]) -> int:
    definition = {"start": {"pri": 0, "all": [{"m": {"bt": "__start"}}]}, **rules}
    return int(core.create_ruleset(f"pin{next(_names)}@test", json.dumps(definition)))


def run(handle: int, sid: str, facts: list[dict[str, object]],
        during: dict[int, dict[str, object]] | None = None) -> list[tuple[str, list[int]]]:
    """Assert facts, walk the agenda, return (rule, [bn of each pattern]) in firing order."""
    batch = [{"sid": sid, "bt": "__start", "bn": 0}, *({"sid": sid, **f} for f in facts)]
    code, state = core.assert_facts(handle, json.dumps(batch))
    assert code in (0, 1)
    fired: list[tuple[str, list[int]]] = []
    result = core.start_action_for_state(handle, state)
    message = result[1] if result else None
    while message:
        name, matched = next(iter(json.loads(message).items()))
        if name != "start":
            fired.append((name, [f["bn"] for f in matched.values()]))
        if during and len(fired) in during and name != "start":
            core.assert_fact(handle, json.dumps({"sid": sid, **during.pop(len(fired))}))
        message = core.complete_and_start_action(handle, state)
    core.delete_state(handle, sid)
    return fired


def test_version_is_pinned() -> None:
    assert version("durable-rules") == "2.0.28"


def test_lower_pri_fires_first_and_ties_follow_definition_order() -> None:
    h = fresh({"b": {"pri": 5, "all": [{"m": {"bt": "x"}}]}, "a": {"pri": 5, "all": [{"m": {"bt": "x"}}]},
               "first": {"pri": 1, "all": [{"m": {"bt": "x"}}]}})
    assert [n for n, _ in run(h, "s", [{"bt": "x", "bn": 1}])] == ["first", "b", "a"]


def test_several_matches_fire_newest_fact_first_and_one_fact_never_fills_two_patterns() -> None:
    h = fresh({"one": {"pri": 1, "all": [{"p0": {"bt": "x"}}]},
               "two": {"pri": 2, "all": [{"p0": {"bt": "x"}}, {"p1": {"bt": "x"}}]}})
    fired = run(h, "s", [{"bt": "x", "bn": 1}, {"bt": "x", "bn": 2}])
    assert fired[:2] == [("one", [2]), ("one", [1])]
    assert sorted(tuple(b) for n, b in fired if n == "two") == [(1, 2), (2, 1)]


def test_a_fact_asserted_during_an_action_joins_the_agenda_by_priority() -> None:
    h = fresh({"seed": {"pri": 10, "all": [{"m": {"bt": "x"}}]}, "later": {"pri": 30, "all": [{"m": {"bt": "x"}}]},
               "derived": {"pri": 20, "all": [{"m": {"bt": "y"}}]}})
    fired = run(h, "s", [{"bt": "x", "bn": 1}], during={1: {"bt": "y", "bn": 2}})
    assert [n for n, _ in fired] == ["seed", "derived", "later"]


def test_equality_tests_on_strings_and_booleans() -> None:
    h = fresh({"r": {"pri": 1, "all": [{"m": {"$and": [{"bt": "x"}, {"f0": "gold"}, {"f1": False}]}}]}})
    facts = [{"bt": "x", "bn": 1, "f0": "gold", "f1": False}, {"bt": "x", "bn": 2, "f0": "~", "f1": False},
             {"bt": "x", "bn": 3, "f0": "gold", "f1": True}, {"bt": "x", "bn": 4}]
    assert run(h, "s", facts) == [("r", [1])]


def test_result_codes_for_unhandled_facts() -> None:
    # Not tested, because it kills the process: asserting a fact identical to one already in the
    # session outside an action segfaults (measured here as well as in one batch). The driver's facts
    # are unique by their sequence number, so this path is unreachable.
    h = fresh({"r": {"pri": 1, "all": [{"m": {"bt": "x"}}]}})
    code, state = core.assert_facts(h, json.dumps([{"sid": "c", "bt": "__start", "bn": 0},
                                                    {"sid": "c", "bt": "nobody", "bn": 1}]))
    assert code == 1  # some fact in the batch matched no rule; the session exists all the same
    assert core.assert_fact(h, json.dumps({"sid": "c", "bt": "nobody", "bn": 2}))[0] == 1
    assert core.assert_fact(h, json.dumps({"sid": "c", "bt": "x", "bn": 3}))[0] == 0
    # delete_state before any action started segfaults (measured); start one and abandon it first.
    assert core.start_action_for_state(h, state)
    core.abandon_action(h, state)
    core.delete_state(h, "c")


def test_later_batches_fire_only_new_combinations() -> None:
    h = fresh({"pair": {"pri": 1, "all": [{"p0": {"bt": "x"}}, {"p1": {"bt": "y"}}]}})
    _, state = core.assert_facts(h, json.dumps([{"sid": "r", "bt": "__start", "bn": 0},
                                                 {"sid": "r", "bt": "x", "bn": 1},
                                                 {"sid": "r", "bt": "y", "bn": 2}]))
    seen = []
    for batch in ([], [{"sid": "r", "bt": "y", "bn": 3}]):
        if batch:
            core.assert_facts(h, json.dumps(batch))
        result = core.start_action_for_state(h, state)
        message = result[1] if result else None
        while message:
            name, matched = next(iter(json.loads(message).items()))
            if name == "pair":
                seen.append([f["bn"] for f in matched.values()])
            message = core.complete_and_start_action(h, state)
    assert seen == [[1, 2], [1, 3]]
    core.delete_state(h, "r")
