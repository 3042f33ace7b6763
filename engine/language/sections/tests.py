"""tests: - the tests a ruleset carries: given facts, recorded answers, documents, the decision's date,
and the expected outcome."""

from __future__ import annotations

from typing import Any

from engine.documents import Document
from engine.errors import BatonError
from engine.language.check import suggest
from engine.language.dates import DateError, parse_date, parse_datetime
from engine.language.sections.base import LoaderBase
from engine.language.shape import DOCUMENT, EXPECT, RULESET, TEST, TEST_ENTRY
from engine.language.source import plain
from engine.language.tables import Table
from engine.language.testdata import TestData, clock_reader
from engine.language.types import FactType
from engine.model import ModelAction, Rule, TestCase, ToolAction


class TestsLoader(LoaderBase):
    """tests:."""

    def warn_unfixed_dates(self, tests: list[TestCase], rules: list[Rule], tools: dict[str, ToolAction],
                           tables: list[Table]) -> None:
        """``test_date_unfixed``: the rules read decision.date or decision.time and a test fixes neither."""
        unfixed = [t for t in tests if t.at is None]
        if not unfixed:
            return
        places = [(f"rule '{r.name}'", text) for r in rules for text in (r.when, *(c[1] for s in r.steps
                                                                                  for c in s.computed))]
        places += [(f"tool '{t.name}'", text) for t in tools.values() for text in t.param_text.values()]
        places += [(f"table '{t.name}'", c.expr) for t in tables for c in t.inputs if c.expr]
        reader = clock_reader(places, {n: d.text for n, d in self.vocab.definitions.items()})
        for test in unfixed if reader else []:
            self.warnings.append(BatonError(
                "test_date_unfixed", f"test '{test.name}' fixes neither decision_date nor decision_time, but "
                f"{reader} reads decision.date or decision.time: its result depends on the day the tests run",
                test.where, "add decision_date: YYYY-MM-DD (or decision_time:) to the test"))

    def load_tests(self, doc: Any, rules: list[Rule], models: dict[str, ModelAction],
                   tools: dict[str, ToolAction], types: dict[str, FactType] | None = None,
                   inputs: list[str] | None = None) -> list[TestCase]:
        tests_node = self.container(doc, "tests", RULESET.keys["tests"])
        if tests_node is None:
            return []
        names = {r.name for r in rules} | self.declared  # a rule with an error of its own is still declared
        data = TestData(self.pos, types or {}, inputs or [], models, tools,
                        {s.expects for r in rules for s in r.steps if s.expects} |  # and the SLA's timeout
                        {"timeout" for r in rules for s in r.steps if s.sla_s is not None}, self.errors.append)
        out = []
        for i in range(len(tests_node)):
            node = self.entry(tests_node, i, TEST_ENTRY)
            if node is None:
                continue
            where = self.pos.value(tests_node, i)
            self.check_keys(node, TEST, also={str(k) for k in node if str(k) not in TEST.keys
                                              and data.misplaced(node, k, "a test")})
            name = str(node.get("name") or f"test {i + 1}")
            expect = self.container(node, "expect", TEST.keys["expect"])
            if expect is None:
                continue
            self.check_keys(expect, EXPECT, also={str(k) for k in expect if str(k) not in EXPECT.keys
                                                  and data.misplaced(expect, k, "expect")})
            if types is not None:
                data.check(node)
            self.test_expect(expect, names)
            answers = self.test_answers(node, models, tools)
            human = self.container(node, "human", TEST.keys["human"]) or {}
            documents = self.test_documents(node)
            at = self.test_moment(node)
            out.append(TestCase(name, plain(node.get("given") or {}), plain(answers), plain(expect), where,
                                plain(human), documents, at))
        return out

    def test_expect(self, expect: dict[Any, Any], names: set[str]) -> None:
        """A test's expected outcome, and the rules it lists as fired or not, named in the ruleset."""
        if "outcome" in expect:
            self.take(expect, EXPECT, "outcome")
        for key in ("fired", "not_fired", "fired_includes"):
            listed = self.container(expect, key, EXPECT.keys[key])
            for j, rname in enumerate(listed or []):
                if rname not in names:
                    self.error("unknown_rule", f"expect.{key}: no rule named {rname!r}",
                               self.pos.value(listed, j), suggest(str(rname), sorted(names)))

    def test_answers(self, node: Any, models: dict[str, ModelAction], tools: dict[str, ToolAction]
                     ) -> dict[Any, Any]:
        """A test's answers, by the model or tool action they stand in for."""
        answers: dict[Any, Any] | None = self.container(node, "answers", TEST.keys["answers"])
        if answers is None:
            return {}
        for aname in answers:
            if aname not in models and aname not in tools:
                self.error("unknown_action", f"answers: no model or tool action named '{aname}'",
                           self.pos.key(answers, aname), suggest(str(aname), [*models, *tools]))
        return answers

    def test_moment(self, node: Any) -> float | None:
        """A test's decision.date / decision.time (``decision_date: 2026-03-01`` or ``decision_time:
        2026-03-01T10:00:00Z``), as the decision's start time; None: the time the tests run."""
        for key in ("decision_time", "decision_date"):
            if key not in node:
                continue
            text = str(node[key])
            try:
                return parse_datetime(text) / 1e6 if key == "decision_time" else parse_date(text) * 86400.0
            except DateError as e:
                self.error("bad_date", f"{key}: {e}", self.pos.value(node, key))
                return None
        return None

    def test_documents(self, node: Any) -> list[Document]:
        raw = self.container(node, "documents", TEST.keys["documents"])
        if raw is None:
            return []
        out = []
        for j, item in enumerate(raw):
            item = plain(item)
            pages = item.get("pages") if isinstance(item, dict) else None
            text = item.get("text") if isinstance(item, dict) else None
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or (
                    not isinstance(text, str) and not (isinstance(pages, list) and pages and
                                                       all(isinstance(p, str) for p in pages))):
                self.error("bad_shape", DOCUMENT.complaint(""), self.pos.value(raw, j), DOCUMENT.hint)
                continue
            if isinstance(text, str):
                out.append(Document.from_text(item["name"], text, str(item.get("media_type") or "text/plain")))
            else:
                page_list = [str(p) for p in (pages or [])]
                doc = Document.from_text(item["name"], "\f".join(page_list), str(item.get("media_type") or
                                                                                   "application/pdf"))
                out.append(Document(doc.id, doc.name, doc.media_type, tuple(page_list)))
        return out
