"""Load one ruleset file: YAML -> checked, compiled-ready :class:`engine.model.Ruleset`.

Every problem is collected with ``file:line:column``, a stable code and a hint; the loader goes on
after an error where it safely can, so an analyst sees all of them at once.

Each section of the file is loaded by a module of engine/language/sections/ (facts and inputs, models and
tools, rules and their steps, tables, tests); this one joins them, reads the settings, and builds, checks
and compiles the ruleset as a whole. The names those modules define are importable from here as before.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from engine.compile import compile_ruleset
from engine.errors import BatonError, CompileErrors, Where
from engine.language.analysis import analyse_ruleset
from engine.language.expr import vocabulary
from engine.language.names import load_vocabulary
from engine.language.sections.actions import ActionsLoader
from engine.language.sections.base import JINJA, LoaderBase
from engine.language.sections.facts import NAME, RESERVED_TYPES, FactsLoader
from engine.language.sections.rules import (
    FIELD_PATH,
    RULE_NAME_RE,
    RulesLoader,
    computed_value,
    fact_with_computed,
    spells_a_field,
)
from engine.language.sections.tables import NAME_TABLE, TablesLoader
from engine.language.sections.tests import TestsLoader
from engine.language.shape import BUDGET, FILE, RULESET, SETTINGS
from engine.language.source import DEFAULT_LIMITS, SourceLimits, collector_paused, content_hash, parse_yaml
from engine.language.tables import add_row_fields
from engine.model import DEFAULT_STEP_LIMIT, Ruleset

_QUOTED = re.compile(r"'([A-Za-z_][A-Za-z0-9_]*)'")  # the first name quoted in a message


class Loader(FactsLoader, ActionsLoader, RulesLoader, TablesLoader, TestsLoader):
    """One ruleset file, section by section (engine/language/sections/), then as a whole."""

    def load(self) -> Ruleset:
        with vocabulary(self.vocab.resolve, self.vocab.names):
            return self._load()

    def _load(self) -> Ruleset:
        try:
            doc = parse_yaml(self.text, self.file, self.limits)
        except BatonError as e:
            raise CompileErrors([e]) from None
        if not FILE.accepts(doc):
            raise CompileErrors([BatonError("bad_shape", FILE.complaint(""), Where(self.file, 1, 1))])
        self.check_size(doc)
        self.check_keys(doc, RULESET)
        where = self.pos.key(doc, "ruleset") if "ruleset" in doc else Where(self.file, 1, 1)
        name = str(doc["ruleset"]) if self.require(doc, RULESET, "", where, "ruleset") else "invalid"
        version = content_hash(doc)  # the version is the source as written: hashed before loading reads it away
        types = self.load_facts(doc)
        load_vocabulary(self.vocab, doc, self.pos, types, self.errors.append)
        add_row_fields(doc, types)  # the int field `row` of facts asserted by multi-hit tables
        inputs = self.load_inputs(doc, types)
        models = self.load_models(doc, types)
        tools = self.load_tools(doc, types)
        step_limit, deadline, max_calls, max_cost = self.load_settings(doc)
        rules = self.load_rules(doc, types, models, tools)
        tables = self.load_tables(doc, types, rules)
        if not rules and not self.errors:
            self.error("missing_key", "a ruleset needs a non-empty 'rules:' list or 'tables:'", Where(self.file, 1, 1))
        tests = self.load_tests(doc, rules, models, tools, types, inputs)
        self.warn_unfixed_dates(tests, rules, tools, tables)
        self.check_unused_definitions(types)
        if self.errors:
            self.collapse_renamed_types(doc)
            raise CompileErrors(self.errors)
        description = str(doc.get("description") or "")
        # the YAML tree is read no further: freed here, its memory is reused by the compile below rather than
        # left as holes in the allocator's arenas beside the objects the version keeps (bench/rules_scale.py)
        del doc
        self.pos.forget_lines()  # likewise the source's lines, which only positions of errors read
        rs = Ruleset(
            name=name, version=version, source=self.text, file=self.file,
            description=description, types=types, inputs=inputs, models=models,
            tools=tools, rules=rules, tests=tests, step_limit=step_limit, deadline_s=deadline,
            max_calls=max_calls, max_cost_usd=max_cost,
            tables=tables, warnings=self.warnings,
        )
        try:  # the engine networks are built (and proved to fit durable-rules' limits) here, not at decide time
            compile_ruleset(rs)
        except BatonError as e:
            raise CompileErrors([BatonError(e.code, e.message, Where(self.file, 1, 1), e.hint)]) from None
        rs.warnings.extend(analyse_ruleset(rs))
        rs.warnings.sort(key=lambda w: (w.where.line if w.where else 0, w.where.column if w.where else 0))
        return rs

    def load_settings(self, doc: Any) -> tuple[int, float | None, int | None, float | None]:
        """settings: the step limit, the deadline (seconds) and the budget's calls and cost."""
        settings = self.container(doc, "settings", RULESET.keys["settings"])
        if settings is None:
            return DEFAULT_STEP_LIMIT, None, None, None
        self.check_keys(settings, SETTINGS)
        budget = self.container(settings, "budget", SETTINGS.keys["budget"]) or {}
        self.check_keys(budget, BUDGET)
        max_calls = self.take(budget, BUDGET, "max_calls")
        max_cost = self.take(budget, BUDGET, "max_cost_usd")
        step_limit = self.take(settings, SETTINGS, "step_limit")
        deadline = self.take(settings, SETTINGS, "deadline")
        return step_limit, deadline, max_calls, None if max_cost is None else float(max_cost)

    def collapse_renamed_types(self, doc: Any) -> None:
        """A fact type renamed under ``facts:`` but not where it is used would be one unknown_fact_type per use
        and nothing at the line that changed: when a name used two or more times and declared nowhere is
        close to a declared type that nothing uses, that is one error, at the declaration, listing the uses."""
        facts = doc.get("facts")
        if not isinstance(facts, dict):
            return
        uses: dict[str, list[BatonError]] = {}
        for e in self.errors:
            named = _QUOTED.search(e.message) if e.code == "unknown_fact_type" else None
            if named is not None:
                uses.setdefault(named.group(1), []).append(e)
        declared = [str(k) for k in facts]
        for name, errors in uses.items():
            close = difflib.get_close_matches(name, declared, n=1, cutoff=0.7)
            if len(errors) < 2 or not close or _code_uses(close[0], self.text) != 1:  # 1: its declaration
                continue
            lines = ", ".join(str(e.where.line) for e in errors[:12]) + (", ..." if len(errors) > 12 else "")
            merged = BatonError("unknown_fact_type", f"fact type '{close[0]}' is declared here and used nowhere, "
                                f"while '{name}' is used {len(errors)} times and declared nowhere (lines {lines}): "
                                "renamed?", self.pos.key(facts, close[0]),
                                f"name it '{name}' again, or rename its uses to '{close[0]}'")
            first = self.errors.index(errors[0])
            self.errors = [e for e in self.errors if all(e is not x for x in errors)]
            self.errors.insert(first, merged)

    def check_size(self, doc: Any) -> None:
        """Refuse by name, before anything is built, a ruleset over the configured number of rules or table
        rows: what it would cost to compile is known only by compiling it."""
        rules = doc.get("rules")
        if isinstance(rules, list) and len(rules) > self.limits.max_rules:
            raise CompileErrors([BatonError(
                "too_many_rules", f"{len(rules):,} rules, over the limit of {self.limits.max_rules:,} "
                "(limits.ruleset_max_rules)", self.pos.key(doc, "rules"),
                "split the ruleset, or raise the limit in the service's configuration")])
        tables = doc.get("tables")
        for table in tables if isinstance(tables, list) else []:
            rows = table.get("rows") if isinstance(table, dict) else None
            if isinstance(rows, list) and len(rows) > self.limits.max_table_rows:
                raise CompileErrors([BatonError(
                    "too_many_rows", f"table {table.get('name')!r} has {len(rows):,} rows, over the limit of "
                    f"{self.limits.max_table_rows:,} (limits.ruleset_max_table_rows)", self.pos.key(table, "rows"),
                    "split the table, or raise the limit in the service's configuration")])


def _code_uses(name: str, text: str) -> int:
    """How often ``name`` stands in ``text`` as code does - ``name.field``, ``name as x``, ``name:`` (a key),
    ``exists name``, ``produces: name`` - rather than as a word of prose."""
    n = re.escape(name)
    return len(re.findall(rf"(?<![\w.]){n}(?:\.\w|\s+as\s|\s*:)|(?:exists|produces:|expects:)\s+{n}(?!\w)", text))


def load_ruleset(text: str, file: str = "<ruleset>", limits: SourceLimits = DEFAULT_LIMITS) -> Ruleset:
    with collector_paused():
        try:
            return Loader(text, file, limits).load()
        except RecursionError:  # a shape nested deeper than a bound that names it (templates, expressions) allows
            raise CompileErrors([BatonError("too_deep", "the ruleset nests too deeply to compile",
                                            Where(file, 1, 1), "look for deeply nested brackets or blocks")]) from None


__all__ = ["FIELD_PATH", "JINJA", "NAME", "NAME_TABLE", "RESERVED_TYPES", "RULE_NAME_RE", "Loader",
           "LoaderBase", "computed_value", "fact_with_computed", "load_ruleset", "spells_a_field"]
