"""What an expression's evaluator sees when a decision runs: the matched facts, the working memory
(:class:`FactIndex`), the marker of an absent field, and the two ways an evaluation stops."""

from __future__ import annotations

from collections.abc import Callable, Mapping

DECISION = "decision"  # decision.date / decision.time: the decision's own, recorded date and time
MAX_MAGNITUDE = 1e300  # a computed number beyond this fails the decision, naming the rule (input beyond it is refused)
EPOCH = "$agg:"  # engine/loop.py: the marker fact re-asserted when facts of an aggregated type are added


class _Missing:
    """An absent optional field: every comparison on it is false."""

    def __repr__(self) -> str:
        return "<absent>"


MISSING = _Missing()


class Undefined(Exception):
    """Division by zero: the whole condition is false."""


class TooLarge(Exception):
    """A computed number whose magnitude exceeds 1e300: the decision fails, naming the rule (never a
    condition quietly false, nor an infinity reaching a decision)."""


Facts = Mapping[str, Mapping[str, object]]


class FactIndex:
    """What a guard may ask of working memory beyond the matched facts."""

    def has_type(self, type_name: str) -> bool:
        raise NotImplementedError

    def of_type(self, type_name: str) -> list[int]:
        """Sequence numbers of the facts of this type, oldest first."""
        raise NotImplementedError

    def values(self, seq: int) -> Mapping[str, object]:
        raise NotImplementedError

    def type_of(self, seq: int) -> str:
        raise NotImplementedError

    def memo(self) -> dict[object, object]:
        """Where aggregates keep values computed in this decision (keyed by what they depend on)."""
        return {}

    def moment(self) -> tuple[str, str]:
        """decision.date and decision.time: the decision's own, from its record."""
        return "1970-01-01", "1970-01-01T00:00:00Z"


Eval = Callable[[Facts, FactIndex], object]
Guard = Callable[[Facts, FactIndex], bool]
