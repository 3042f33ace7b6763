"""A ruleset's tests' data checked when the ruleset is loaded (``baton check``), each mistake at its key.

``given`` facts against their types, ``answers`` against each action's ``produces``, ``human`` answers
against the types escalations ``expect``, and keys written in the wrong place (``answers:`` indented inside
``given:``) as ``misplaced_key``. A mistake gets the code the same mistake gets in a rule or a request
(``unknown_field``, ``bad_date``, ``type_mismatch``, ``not_in_enum``, ``missing_field``, ...), at the
offending key's line, with a did-you-mean where one fits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from engine.errors import BatonError, InvalidInput
from engine.language.check import DECISION, suggest
from engine.language.expr import ExprError, tokenize
from engine.language.source import Positions
from engine.language.types import FactType, all_optional, check_field
from engine.model import ModelAction, ToolAction

TEST_LEVEL = ("name", "given", "documents", "answers", "human", "expect", "description", "decision_date",
              "decision_time")
EXPECT_LEVEL = ("outcome", "decision", "reason", "fired", "not_fired", "fired_includes")


class TestData:
    """Checks of one ruleset's tests' data; errors go to ``error``."""

    def __init__(self, pos: Positions, types: Mapping[str, FactType], inputs: list[str],
                 models: Mapping[str, ModelAction], tools: Mapping[str, ToolAction], expected: set[str],
                 error: Callable[[BatonError], None]) -> None:
        self.pos, self.types, self.inputs = pos, types, inputs
        self.models, self.tools, self.expected = models, tools, expected
        self.error = error

    def misplaced(self, parent: Any, key: object, here: str) -> bool:
        """Is ``key`` (not allowed ``here``) one that belongs elsewhere in a test? Then it is reported."""
        k = str(key)
        if k in TEST_LEVEL and here != "a test":
            belongs = "to the test itself (beside name: and given:)"
        elif k in EXPECT_LEVEL and here != "expect":
            belongs = "under expect:"
        elif k in self.inputs and here in ("a test", "expect"):
            belongs = "under given: (it is an input fact type)"
        else:
            return False
        self.error(BatonError("misplaced_key", f"'{k}' is written in {here}, but it belongs {belongs}",
                              self.pos.key(parent, k), "check its indentation"))
        return True

    def check(self, node: Any) -> None:
        given = node.get("given")
        if isinstance(given, Mapping):
            self.check_given(given)
        answers = node.get("answers")
        if isinstance(answers, Mapping):
            for aname in answers:
                action: ModelAction | ToolAction | None = self.models.get(aname) or self.tools.get(aname)
                if action is not None:
                    self.check_answers(answers, aname, action)
        human = node.get("human")
        if isinstance(human, Mapping):
            self.check_human(human)

    def check_given(self, given: Mapping[Any, Any]) -> None:
        for key, value in given.items():
            tname = str(key)
            if tname not in self.inputs:
                if tname in self.types and tname not in TEST_LEVEL + EXPECT_LEVEL:
                    self.error(BatonError("not_an_input", f"given: {tname} is not an input fact type (inputs: "
                                          f"{', '.join(self.inputs)})", self.pos.key(given, key),
                                          "list it under input:, or give the facts it is derived from"))
                elif not self.misplaced(given, key, "given"):
                    self.error(BatonError("unknown_fact_type", f"given: unknown fact type '{tname}'",
                                          self.pos.key(given, key), suggest(tname, self.inputs)))
                continue
            ft = self.types[tname]
            if isinstance(value, list):
                for i in range(len(value)):
                    self.check_fact(ft, value, i, f"given.{tname}[{i}]")
            else:
                self.check_fact(ft, given, key, f"given.{tname}")

    def check_answers(self, answers: Mapping[Any, Any], aname: Any, action: ModelAction | ToolAction) -> None:
        ft = self.types.get(action.produces)
        if ft is None:
            return
        partial = isinstance(action, ModelAction) and action.from_document  # each chunk's answer may leave fields out
        if partial:
            ft = all_optional(ft)
        rows = isinstance(action, ToolAction)  # a tool answers with a fact or a list of rows
        value = answers[aname]
        path = f"answers.{aname}"
        if isinstance(value, list):  # one answer per call, in call order
            for i, item in enumerate(value):
                if rows and isinstance(item, list):
                    for j in range(len(item)):
                        self.check_answer(ft, item, j, f"{path}[{i}][{j}]", action)
                else:
                    self.check_answer(ft, value, i, f"{path}[{i}]", action)
        else:
            self.check_answer(ft, answers, aname, path, action)

    def check_answer(self, ft: FactType, parent: Any, key: Any, path: str, action: ModelAction | ToolAction) -> None:
        value = parent[key]
        if value is None and isinstance(action, ToolAction):
            return  # a tool that found nothing
        if isinstance(value, Mapping) and set(value) == {"failure"}:
            return  # a failed call, written {failure: {kind: timeout, error: ...}}
        self.check_fact(ft, parent, key, path, f"{action.name} produces {ft.name}: ")

    def check_human(self, human: Mapping[Any, Any]) -> None:
        for key in human:
            tname = str(key)
            if tname not in self.types or tname not in self.expected:
                known = tname in self.types
                self.error(BatonError(
                    "unknown_fact_type" if not known else "unexpected_answer",
                    f"human: {tname} is not a fact type" if not known else
                    f"human: no escalation expects a {tname}",
                    self.pos.key(human, key),
                    suggest(tname, sorted(self.expected)) if self.expected else
                    "no escalate: of the rules has expects:, so no reviewer's answer can be given"))
                continue
            self.check_fact(self.types[tname], human, key, f"human.{tname}")

    def check_fact(self, ft: FactType, parent: Any, key: Any, path: str, prefix: str = "") -> None:
        """One fact written at ``parent[key]``: each field at its key, missing fields at the fact."""
        value = parent[key]
        if not isinstance(value, Mapping):
            what = "a list" if isinstance(value, list) else "null" if value is None else f"{value!r}"
            self.error(BatonError("type_mismatch", f"{prefix}{path}: a {ft.name} fact is a mapping of its fields, "
                                  f"not {what}", self.pos.value(parent, key),
                                  f"write {ft.name}'s fields: {', '.join(ft.fields)}"))
            return
        for fkey, fvalue in value.items():
            fname = str(fkey)
            spec = ft.fields.get(fname)
            if spec is None:
                if not self.misplaced(value, fkey, f"a {ft.name} fact"):
                    self.error(BatonError("unknown_field", f"{prefix}{path}: {ft.name} has no field '{fname}'",
                                          self.pos.key(value, fkey), suggest(fname, list(ft.fields))))
                continue
            if fvalue is None:
                continue
            try:
                check_field(spec, fvalue, f"{path}.{fname}")
            except InvalidInput as e:
                self.error(BatonError(e.code, prefix + e.message, self.pos.value(value, fkey)))  # says how to write it
        missing = [n for n, spec in ft.fields.items() if not spec.optional and value.get(n) is None]
        if missing:
            self.error(BatonError("missing_field", f"{prefix}{path}: {ft.name} needs "
                                  f"{', '.join(repr(m) for m in missing)}", self.pos.value(parent, key),
                                  "give every field that is not optional"))


def _reads(text: str) -> tuple[bool, set[str]]:
    """Does an expression read decision.date or decision.time itself, and which names does it use?"""
    try:
        toks = tokenize(text.lstrip().removeprefix("="))
    except ExprError:
        return False, set()
    direct = any(t.kind == "name" and t.text == DECISION and toks[k + 1].text == "." and toks[k + 2].text in (
        "date", "time") and (k == 0 or toks[k - 1].text != ".") for k, t in enumerate(toks[:-2]))
    return direct, {t.text for t in toks if t.kind == "name"}


def clock_reader(places: Iterable[tuple[str, str]], definitions: Mapping[str, str]) -> str:
    """The first place ("rule 'late'") whose expression reads decision.date or decision.time, itself or through
    a definition; "" when none does."""
    reads = {n: _reads(t) for n, t in definitions.items()}
    clocked = {n for n, (direct, _) in reads.items() if direct}
    grown = True
    while grown:
        grown = False
        for n, (_, names) in reads.items():
            if n not in clocked and names & clocked:
                clocked.add(n)
                grown = True
    for place, text in places:
        direct, names = _reads(text)
        if direct or names & clocked:
            return place
    return ""
