"""A fact type's validator (a fast path written out per type, engine/language/types.py) answers exactly as the
field-by-field checker does: the same normalised fact, or the same error at the same path."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidInput
from engine.language.types import MAX_INT, FactType, FieldSpec, _checked_validator

TYPE = FactType("claim", {
    "ref": FieldSpec("ref", "str", min_length=1, max_length=8),
    "amount": FieldSpec("amount", "number", minimum=0, maximum=1e6),
    "count": FieldSpec("count", "int", minimum=-3, optional=True),
    "tier": FieldSpec("tier", "enum", enum=("standard", "gold")),
    "active": FieldSpec("active", "bool", optional=True),
    "tags": FieldSpec("tags", "list", items=FieldSpec("tags", "str"), optional=True),
    "on": FieldSpec("on", "date", optional=True),
    "note": FieldSpec("note", "str", optional=True),
})

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2 * MAX_INT, max_value=2 * MAX_INT),
    st.sampled_from([0, 5, 1e6, 1e6 + 1, -1, 2.0, 2.5, -0.0, 1e300, 1e301, math.nan, math.inf, 2.0**60, 0.1]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=10),
    st.sampled_from(["standard", "gold", "Gold", "", "é", "\ud800", "2024-02-29", "2024-02-30", "x" * 9]),
    st.lists(st.text(max_size=3), max_size=3), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
FACTS = st.dictionaries(st.sampled_from([*TYPE.fields, "other"]), VALUES, max_size=9)


def outcome(validate: object, value: object) -> str:
    """The answer as text: repr tells 5 from 5.0, which == does not."""
    assert callable(validate)
    try:
        return repr(("ok", validate(value, "facts.claim")))
    except InvalidInput as e:
        return repr(("error", e.code, e.message, e.where))


@settings(max_examples=400, deadline=None)
@given(FACTS)
def test_the_fast_path_answers_as_the_checker_does(fact: dict[str, object]) -> None:
    assert outcome(TYPE.validate, fact) == outcome(_checked_validator(TYPE), fact)


@settings(max_examples=100, deadline=None)
@given(st.fixed_dictionaries({"ref": st.text(min_size=1, max_size=8), "amount": st.floats(0, 1e6),
                              "tier": st.sampled_from(["standard", "gold"])}))
def test_valid_facts_come_out_normalised_either_way(fact: dict[str, object]) -> None:
    assert outcome(TYPE.validate, fact) == outcome(_checked_validator(TYPE), fact)


def test_a_whole_float_and_a_non_dict_take_the_checked_path() -> None:
    assert TYPE.validate({"ref": "a", "amount": 5.0, "tier": "gold"}, "f") == {"ref": "a", "amount": 5, "tier": "gold"}
    assert type(TYPE.validate({"ref": "a", "amount": 5.0, "tier": "gold"}, "f")["amount"]) is int
    assert outcome(TYPE.validate, [1]) == outcome(_checked_validator(TYPE), [1])
