"""Load one ruleset file: YAML -> checked, compiled-ready :class:`engine.model.Ruleset`.

Every problem is collected with ``file:line:column``, a stable code and a hint; the loader goes on
after an error where it safely can, so an analyst sees all of them at once.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from typing import Any

import jinja2
from jinja2 import meta

from engine.compile import compile_ruleset
from engine.documents import Document
from engine.errors import BatonError, CompileErrors, Where
from engine.language.analysis import analyse_ruleset
from engine.language.check import (
    DECISION,
    Checker,
    Condition,
    Ty,
    analyse,
    check_value,
    compile_expr,
    every_error,
    normalise,
    suggest,
)
from engine.language.dates import DateError, parse_date, parse_datetime
from engine.language.expr import ExprError, Lit, Ref, parse, vocabulary
from engine.language.gaps import gap_text
from engine.language.names import BROKEN, Vocabulary, definition_values, load_vocabulary
from engine.language.prompts import BoundedSandbox, Prompt
from engine.language.shape import (
    BUDGET,
    EFFECT,
    ESCALATE,
    EXPECT,
    FIELD,
    MODEL,
    RULE,
    RULE_NAME,
    RULESET,
    RULESET_NAME,
    SETTINGS,
    TABLE,
    TABLE_NAME,
    TEST,
    TOOL,
    Section,
)
from engine.language.source import (
    DEFAULT_LIMITS,
    Positions,
    SourceLimits,
    collector_paused,
    content_hash,
    parse_yaml,
    plain,
)
from engine.language.tables import (
    HIT_POLICIES,
    PROPOSALS,
    TABLE_ERRORS,
    Column,
    Row,
    Table,
    add_row_fields,
    aggregate_rule,
    analyse_table,
    column_ref,
    configure,
    parse_cell,
    parse_output,
    route_inputs,
)
from engine.language.testdata import TestData, clock_reader
from engine.language.types import (
    BUILTIN_TYPES,
    MAX_FIELDS,
    SCALARS,
    FactType,
    FieldSpec,
    all_optional,
    document_type,
    failure_type,
    passage_type,
    timeout_type,
)
from engine.model import DEFAULT_STEP_LIMIT, ModelAction, Rule, Ruleset, Step, TestCase, ToolAction

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_QUOTED = re.compile(r"'([A-Za-z_][A-Za-z0-9_]*)'")  # the first name quoted in a message
NAME_TABLE = re.compile(TABLE_NAME + r"\Z")
RULE_NAME_RE = re.compile(RULE_NAME + r"\Z")
RESERVED_TYPES = {"failure", "timeout", "document", "passage", "chunk",
                  "facts", "exists", "not", "and", "or", "as", "in", "contains", "matches",
                  "true", "false", "where", DECISION}
_TYPE_CODES = {"unknown_fact_type", "unknown_field", "type_mismatch", "unknown_value", "unknown_function",
               "bad_regex", "bad_date", "ambiguous_fact",
               "unknown_name"}  # errors of one part: the other parts are checked too
FIELD_PATH = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)\s*\Z")
_TOKEN_AT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|\S")
_DEFAULT = object()  # take(): on a wrong value, the key's default
JINJA = BoundedSandbox(undefined=jinja2.StrictUndefined, autoescape=False)


class Loader:
    def __init__(self, text: str, file: str, limits: SourceLimits = DEFAULT_LIMITS) -> None:
        self.text = text
        self.file = file
        self.limits = limits
        self.pos = Positions(file, text)
        self.errors: list[BatonError] = []
        self.warnings: list[BatonError] = []
        self.declared: set[str] = set()  # every rule name written, with errors or not
        self.vocab = Vocabulary()  # values: and define:, in force while the file's expressions are parsed
        self.current = ""  # the rule whose expressions are being checked ("rule 'x'"), named by definition errors
        self.def_errors: dict[tuple[str, int, int, str], tuple[BatonError, list[str]]] = {}
        self.raw_rows: dict[tuple[str, int], Any] = {}  # (table, row number) -> the row's cells as written

    def error(self, code: str, message: str, where: Where, hint: str = "") -> None:
        self.errors.append(BatonError(code, message, where, hint))

    def check_keys(self, node: Any, section: Section, what: str = "", also: set[str] | frozenset[str] = frozenset()
                   ) -> None:
        """Each key of ``node`` the section does not take, at the key (``what`` names the mapping when the
        section's own name will not do; ``also``: keys taken here besides the section's)."""
        for key, code, message, hint in section.unknown(node, also):
            if code == "unknown_key" and what:
                message = f"unknown key '{key}' in {what}"
            self.error(code, message, self.pos.key(node, key),
                       hint or suggest(str(key), sorted(section.names | also)))

    def take(self, node: Any, section: Section, key: str, invalid: Any = _DEFAULT, hint: str = "") -> Any:
        """The value of ``key`` in ``node`` as its section describes it (a duration in seconds; the key's
        default when it is left out); when it is of the wrong type or out of range, an error at the value
        and ``invalid`` (by default: the default)."""
        spec = section.keys[key]
        default = spec.value(spec.default) if spec.default is not None else None
        if key not in node:
            return default
        if spec.accepts(node[key]):
            return spec.value(node[key])
        self.error("bad_value", spec.complaint(key), self.pos.value(node, key), hint)
        return default if invalid is _DEFAULT else invalid

    def mapping(self, parent: Any, key: str | int, what: str) -> dict[Any, Any] | None:
        value = parent[key]
        if not isinstance(value, dict):
            self.error("bad_shape", f"{what} must be a mapping (key: value lines)", self.pos.value(parent, key))
            return None
        return value

    def expr_error(self, e: ExprError, start: Where, text: str, shift: int = 0, prefix: str = "") -> None:
        """An expression's error at its place in ``text`` (which starts at ``start``) - or, for a part written
        in a definition, at the definition's own line and column, naming the rules that used it."""
        if e.code == BROKEN:
            return  # the definition's own error is reported at it
        found = self.vocab.locate(e.offset)
        if found is None:
            self.errors.append(BatonError(e.code, prefix + e.message, start.shifted(text, e.offset + shift), e.hint))
            return
        d, offset = found
        where = d.where.shifted(d.text, offset)
        key = (e.code, where.line, where.column, e.message)
        error, users = self.def_errors.get(key) or (BatonError(e.code, "", where, e.hint), [])
        if key not in self.def_errors:
            self.def_errors[key] = (error, users)
            self.errors.append(error)
        if self.current and self.current not in users:
            users.append(self.current)
        error.message = f"{e.message} (in definition '{d.name}'" + (
            f", used by {' and '.join(users)})" if users else ")")

    def check_unused_definitions(self, types: dict[str, FactType]) -> None:
        """A definition no rule or table uses is still checked (on its own), so its mistakes are seen."""
        self.current = ""
        for d in self.vocab.definitions.values():
            if d.broken or d.body is not None:
                continue
            try:
                node = self.vocab.resolve(d.name, 0)
                if node is not None:
                    Checker(types).type_of(normalise(node))
            except ExprError as e:
                self.expr_error(e, d.where, d.text)

    # -- the file ----------------------------------------------------------------------------------
    def load(self) -> Ruleset:
        with vocabulary(self.vocab.resolve, self.vocab.names):
            return self._load()

    def _load(self) -> Ruleset:
        try:
            doc = parse_yaml(self.text, self.file, self.limits)
        except BatonError as e:
            raise CompileErrors([e]) from None
        if not isinstance(doc, dict):
            raise CompileErrors([BatonError("bad_shape", "a ruleset file is a YAML mapping starting with "
                                            "'ruleset: NAME'", Where(self.file, 1, 1))])
        self.check_size(doc)
        self.check_keys(doc, RULESET)
        name = doc.get("ruleset")
        if not isinstance(name, str) or not re.fullmatch(RULESET_NAME, name):
            self.error("bad_name", "the ruleset needs 'ruleset: NAME' (lowercase letters, digits, - _ .)",
                       self.pos.key(doc, "ruleset") if "ruleset" in doc else Where(self.file, 1, 1))
            name = "invalid"
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
        version, description = content_hash(doc), str(doc.get("description") or "")
        # the YAML tree is read no further: freed here, its memory is reused by the compile below rather than
        # left as holes in the allocator's arenas beside the objects the version keeps (bench/rules_scale.py)
        del doc
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
        settings = doc.get("settings") or {}
        if not isinstance(settings, dict):
            return DEFAULT_STEP_LIMIT, None, None, None
        self.check_keys(settings, SETTINGS)
        budget = settings.get("budget") or {}
        if not isinstance(budget, dict):
            self.error("bad_shape", "budget takes {max_calls: N, max_cost_usd: X}", self.pos.value(settings, "budget"))
            budget = {}
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

    # -- facts -------------------------------------------------------------------------------------
    def load_facts(self, doc: Any) -> dict[str, FactType]:
        types: dict[str, FactType] = {"failure": failure_type(), "timeout": timeout_type(),
                                      "document": document_type(), "passage": passage_type()}
        facts = doc.get("facts")
        if facts is None:
            self.error("missing_key", "a ruleset declares its fact types under 'facts:'", Where(self.file, 1, 1))
            return types
        if self.mapping(doc, "facts", "facts") is None:
            return types
        for tname, fields in facts.items():
            where = self.pos.key(facts, tname)
            tname = str(tname)
            if not NAME.match(tname) or tname in RESERVED_TYPES:
                self.error("bad_name", f"'{tname}' cannot name a fact type", where,
                           "letters, digits and _; not a keyword or 'failure'")
                continue
            if not isinstance(fields, dict) or not fields:
                self.error("bad_shape", f"fact type '{tname}' needs its fields (name: type)", where)
                continue
            if len(fields) > MAX_FIELDS:  # still declared below: what names it is not reported again
                self.error("too_many_fields", f"{tname} has {len(fields)} fields; at most {MAX_FIELDS}", where,
                           "split it into several fact types")
            specs: dict[str, FieldSpec] = {}
            for fname, decl in fields.items():
                spec = self.field_spec(fields, str(fname), decl)
                if spec is not None:
                    specs[spec.name] = spec
            types[tname] = FactType(tname, specs, where)
        return types

    def field_spec(self, parent: Any, fname: str, decl: Any, item: bool = False) -> FieldSpec | None:
        where = self.pos.key(parent, fname) if not item else self.pos.value(parent, fname)
        if not item and (not NAME.match(fname)):
            self.error("bad_name", f"'{fname}' cannot name a field", where, "letters, digits and _")
            return None
        if isinstance(decl, str):
            decl = {"type": decl}
        if not isinstance(decl, dict):
            self.error("bad_type", f"field '{fname}': write a type (str, number, int, bool, list) or a mapping",
                       where)
            return None
        self.check_keys(decl, FIELD, f"field '{fname}'")
        spec = FieldSpec(fname, "str", where=where)
        if "enum" in decl:
            values = decl["enum"]
            if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
                self.error("bad_type", f"field '{fname}': enum needs a list of strings", where)
                return None
            spec.kind, spec.enum = "enum", tuple(str(v) for v in values)
        else:
            tname = decl.get("type")
            if tname == "list":
                if item:
                    self.error("bad_type", "lists of lists are not supported", where)
                    return None
                spec.kind = "list"
                items = decl.get("items", "str")
                spec.items = self.field_spec(decl, "items", items, item=True) if "items" in decl else FieldSpec(
                    "items", "str", where=where)
                if spec.items is None:
                    return None
            elif isinstance(tname, str) and tname in SCALARS:
                spec.kind = SCALARS[tname]
            else:
                self.error("bad_type", f"field '{fname}': unknown type {tname!r}", where,
                           suggest(str(tname), [*SCALARS, "list", "enum"]))
                return None
        for key in ("min", "max"):
            if key in decl:
                v = decl[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or spec.kind not in ("number", "int"):
                    self.error("bad_value", f"field '{fname}': {key} must be a number, on a number field", where)
                else:
                    setattr(spec, "minimum" if key == "min" else "maximum", float(v) if isinstance(v, float) else v)
        for key in ("min_length", "max_length"):
            if key in decl:
                v = decl[key]
                if isinstance(v, bool) or not isinstance(v, int) or v < 0 or spec.kind not in ("str", "list"):
                    self.error("bad_value", f"field '{fname}': {key} must be a whole number, on a str or list", where)
                else:
                    setattr(spec, key, v)
        spec.optional = decl.get("optional") is True
        spec.pii = decl.get("pii") is True
        return spec

    def type_ref(self, parent: Any, key: str, types: dict[str, FactType], what: str) -> str:
        value = parent.get(key)
        if not isinstance(value, str) or value not in types:
            self.error("unknown_fact_type", f"{what}: unknown fact type {value!r}",
                       self.pos.value(parent, key) if key in parent else self.pos.of(parent),
                       suggest(str(value), [t for t in types if t not in BUILTIN_TYPES]))
            return ""
        return value

    def load_inputs(self, doc: Any, types: dict[str, FactType]) -> list[str]:
        inputs = doc.get("input")
        if inputs is None:
            return [t for t in types if t not in BUILTIN_TYPES]
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list):
            self.error("bad_shape", "input must list fact types, e.g. input: [claim]", self.pos.value(doc, "input"))
            return []
        out = []
        for i, t in enumerate(inputs):
            if t not in types or t in BUILTIN_TYPES:
                self.error("unknown_fact_type", f"input: unknown fact type {t!r}", self.pos.value(inputs, i),
                           suggest(str(t), list(types)))
            else:
                out.append(str(t))
        return out

    # -- actions -----------------------------------------------------------------------------------
    def load_models(self, doc: Any, types: dict[str, FactType]) -> dict[str, ModelAction]:
        out: dict[str, ModelAction] = {}
        models = doc.get("models") or {}
        if not isinstance(models, dict):
            self.error("bad_shape", "models must be a mapping of action names", self.pos.value(doc, "models"))
            return out
        for aname, spec in models.items():
            where = self.pos.key(models, aname)
            aname = str(aname)
            if not self.action_name_ok(aname, where, doc) or self.mapping(models, aname, f"model '{aname}'") is None:
                continue
            self.check_keys(spec, MODEL, f"model '{aname}'")
            produces = self.type_ref(spec, "produces", types, f"model '{aname}'")
            group = spec.get("group")
            if not isinstance(group, str) or not group:
                self.error("missing_key", f"model '{aname}' needs 'group:' (a model group such as fast)", where)
            from_document = self.take(spec, MODEL, "from_document")
            chunk_chars = self.take(spec, MODEL, "chunk_chars")
            prompt, template = self.model_prompt(aname, spec, where, types, from_document)
            retries = self.take(spec, MODEL, "retries")
            timeout = self.take(spec, MODEL, "timeout")
            out[aname] = ModelAction(aname, str(group or ""), produces, prompt, template, retries, timeout,
                                     where, from_document, chunk_chars)
        return out

    def model_prompt(self, aname: str, spec: Any, where: Where, types: dict[str, FactType],
                     from_document: bool) -> tuple[str, Prompt | None]:
        """A model's prompt: its text and, when it compiles and names only fact types, its template."""
        prompt = spec.get("prompt")
        template = None
        if not isinstance(prompt, str) or not prompt.strip():
            self.error("missing_key", f"model '{aname}' needs a 'prompt:'", where)
            return "", None
        if self.check_template(prompt, spec, "prompt", types, {"chunk"} if from_document else set()):
            template = Prompt(JINJA, prompt)
        if from_document and template is not None and not re.search(r"chunk\s*(\.\s*text\b|\[\s*['\"]text)",
                                                                    prompt):
            self.error("missing_key", f"model '{aname}' reads a document: its prompt must include "
                       "{{ chunk.text }}", self.pos.text_start(spec, "prompt"))
        return prompt, template

    def action_name_ok(self, aname: str, where: Where, doc: Any) -> bool:
        if not NAME.match(aname):
            self.error("bad_name", f"'{aname}' cannot name an action", where, "letters, digits and _")
            return False
        if aname in {"decide", "escalate", "assert"}:
            self.error("bad_name", f"'{aname}' is a built-in action", where)
            return False
        return True

    def check_template(self, template: str, parent: Any, key: str, types: dict[str, FactType],
                       extra: set[str] | None = None) -> bool:
        try:
            names = meta.find_undeclared_variables(JINJA.parse(template))
        except RecursionError:
            self.error("too_deep", "prompt template nested too deeply to compile", self.pos.text_start(parent, key),
                       "a template needs far fewer levels of blocks and brackets")
            return False
        except jinja2.TemplateSyntaxError as e:
            start = self.pos.text_start(parent, key)  # the error's line of the template, where it stands in the file
            self.error("bad_template", f"prompt template: {e.message}", start.shifted(template, sum(
                len(line) + 1 for line in template.split("\n")[:(e.lineno or 1) - 1])))
            return False
        unknown = sorted(names - set(types) - {"facts"} - (extra or set()))
        for n in unknown:
            self.error("unknown_fact_type", f"prompt uses '{n}', which is not a fact type",
                       self.pos.text_start(parent, key), suggest(n, list(types)))
        return not unknown

    def load_tools(self, doc: Any, types: dict[str, FactType]) -> dict[str, ToolAction]:
        out: dict[str, ToolAction] = {}
        tools = doc.get("tools") or {}
        if not isinstance(tools, dict):
            self.error("bad_shape", "tools must be a mapping of action names", self.pos.value(doc, "tools"))
            return out
        models = doc.get("models") or {}
        for aname, spec in tools.items():
            where = self.pos.key(tools, aname)
            aname = str(aname)
            if not self.action_name_ok(aname, where, doc) or self.mapping(tools, aname, f"tool '{aname}'") is None:
                continue
            if isinstance(models, dict) and aname in models:
                self.error("duplicate_action", f"'{aname}' is both a model and a tool action", where)
                continue
            connector = spec.get("connector")
            if not isinstance(connector, str) or not connector:
                self.error("missing_key", f"tool '{aname}' needs 'connector:' (sql, http, lookup, ...)", where)
            produces = self.type_ref(spec, "produces", types, f"tool '{aname}'")
            params: dict[str, Callable[..., object]] = {}
            texts: dict[str, str] = {}
            raw_params = spec.get("params") or {}
            if not isinstance(raw_params, dict):
                self.error("bad_shape", "params must be a mapping", self.pos.value(spec, "params"))
                raw_params = {}
            for pname, ptext in raw_params.items():
                ev = self.param_expr(raw_params, str(pname), ptext, types)
                if ev is not None:
                    params[str(pname)], texts[str(pname)] = ev, str(ptext)
            config = {str(k): plain(v) for k, v in spec.items() if str(k) not in TOOL.keys}
            retries = self.take(spec, TOOL, "retries")
            timeout = self.take(spec, TOOL, "timeout")
            out[aname] = ToolAction(aname, str(connector or ""), produces, config, params, texts, retries,
                                    timeout, where)
        return out

    def param_expr(self, parent: Any, key: str, text: Any, types: dict[str, FactType]) -> Any:
        start = self.pos.text_start(parent, key)
        if isinstance(text, (int, float, bool)):
            value = text
            return lambda env, wm: value
        if not isinstance(text, str):
            self.error("bad_value", f"param '{key}' must be a field reference like claim.policy_ref or a value",
                       start)
            return None
        if text.startswith("="):
            self.current = f"tool param '{key}'"
            try:
                return check_value(parse(text[1:]), types, {}, None)[1]
            except ExprError as e:
                self.expr_error(e, start, text, 1, f"param '{key}': ")
                return None
        try:
            node = parse(text)
            if not isinstance(node, (Ref, Lit)):
                raise ExprError("bad_value", "a param is a field reference (claim.policy_ref) or a literal", 0)
            if isinstance(node, Ref):
                ft = types.get(node.binding)
                if ft is None:
                    raise ExprError("unknown_fact_type", f"unknown fact type '{node.binding}'", node.pos,
                                    suggest(node.binding, list(types)))
                if node.field not in ft.fields:
                    raise ExprError("unknown_field", f"{ft.name} has no field '{node.field}'",
                                    node.pos + len(node.binding) + 1, suggest(node.field, list(ft.fields)))
            return compile_expr(node, {})
        except ExprError as e:
            self.errors.append(BatonError(e.code, e.message, start.shifted(text, e.offset), e.hint))
            return None

    # -- rules -------------------------------------------------------------------------------------
    def load_rules(self, doc: Any, types: dict[str, FactType], models: dict[str, ModelAction],
                   tools: dict[str, ToolAction]) -> list[Rule]:
        rules_node = doc.get("rules")
        if rules_node is None and "tables" in doc:
            return []
        if not isinstance(rules_node, list) or not rules_node:
            self.error("missing_key", "a ruleset needs a non-empty 'rules:' list",
                       self.pos.key(doc, "rules") if "rules" in doc else Where(self.file, 1, 1))
            return []
        rules: list[Rule] = []
        seen: dict[str, Where] = {}
        for i, node in enumerate(rules_node):
            where = self.pos.value(rules_node, i)
            if not isinstance(node, dict):
                self.error("bad_shape", "each rule is a mapping with name, when and then", where)
                continue
            self.check_keys(node, RULE)
            name = node.get("name")
            if not isinstance(name, str) or not RULE_NAME_RE.match(name):
                self.error("bad_name", "each rule needs a 'name:' (letters, digits, spaces, - _ . : #)", where)
                continue
            # a rule with one error is still checked to its end: an analyst gets every error in one run
            duplicate = name in seen
            if duplicate:
                self.error("duplicate_rule", f"rule '{name}' is defined twice (first at line {seen[name].line})",
                           self.pos.value(node, "name"), "rule names must be unique in a ruleset")
            else:
                seen[name] = self.pos.value(node, "name")
            self.declared.add(name)
            priority = self.take(node, RULE, "priority")
            condition = self.rule_condition(node, name, where, types)
            if "then" not in node:
                self.error("missing_key", f"rule '{name}' needs a 'then:' action", where)
                continue
            steps = self.load_steps(node, "then", types, models, tools, condition)
            final = self.take(node, RULE, "final")
            if final and not any(s.kind in ("decide", "escalate") for s in steps):
                self.error("bad_final", f"rule '{name}' is final but neither decides nor escalates: final: true "
                           "stops the decision with the rule's proposal", self.pos.key(node, "final"),
                           "add a decide: or escalate: to its then:, or remove final")
            if condition is None or duplicate:
                continue
            self.check_document_reads(node, name, steps, models, condition)
            rules.append(Rule(name, i, priority, str(node["when"]), condition, steps, where))
            rules[-1].final = final is True
        return rules

    def rule_condition(self, node: Any, name: str, where: Where, types: dict[str, FactType]) -> Condition | None:
        """A rule's when:, parsed and checked (None: it has errors, reported)."""
        when = node.get("when")
        if not RULE.keys["when"].accepts(when):
            self.error("missing_key", f"rule '{name}' needs a 'when:' condition", where)
            return None
        start = self.pos.text_start(node, "when")
        self.current = f"rule '{name}'"
        self.vocab.uses.clear()
        try:
            tree = parse(str(when))
        except ExprError as e:
            self.expr_error(e, start, str(when))
            return None
        try:
            condition = analyse(tree, types)
        except ExprError as e:
            more = every_error(tree, types) if e.code in _TYPE_CODES else []
            for x in more if any(x.offset == e.offset for x in more) else [e]:
                self.expr_error(x, start, str(when))
            return None
        condition.definitions = definition_values(self.vocab, self.vocab.uses, types, condition)
        return condition

    def check_document_reads(self, node: Any, name: str, steps: list[Step], models: dict[str, ModelAction],
                             condition: Condition) -> None:
        """A rule that calls a model reading a document must match a document in every branch."""
        for step in steps:
            action = models.get(step.action) if step.kind == "call" else None
            if action is not None and action.from_document and not all(
                    "document" in b.bindings.values() for b in condition.branches):
                self.error("needs_document", f"rule '{name}' calls '{step.action}', which reads a document, but "
                           "its condition matches no document", self.pos.value(node, "then"),
                           "add 'exists document' (or a condition on document.*) to its when:")

    def load_steps(self, parent: Any, key: str | int, types: dict[str, FactType], models: dict[str, ModelAction],
                   tools: dict[str, ToolAction], condition: Condition | None = None) -> list[Step]:
        node = parent[key]
        where = self.pos.value(parent, key)
        if isinstance(node, list):
            return [s for i in range(len(node)) for s in self.load_steps(node, i, types, models, tools, condition)]
        if isinstance(node, str):
            if node in models or node in tools:
                return [Step("call", action=node)]
            self.error("unknown_action", f"unknown action '{node}'", where,
                       suggest(node, [*models, *tools, "decide", "escalate", "assert"]) or
                       "declare it under models: or tools:")
            return []
        if not isinstance(node, dict) or len(node) != 1:
            self.error("bad_shape", "an action is a model/tool action name, or one of decide:, escalate:, assert:",
                       where, "several actions go in a list")
            return []
        verb, body = next(iter(node.items()))
        verb = str(verb)
        vwhere = self.pos.value(node, verb)
        if verb in ("decide", "escalate"):
            return self.proposal_step(verb, body, vwhere, types, condition)
        if verb == "effect":
            return self.effect_step(body, vwhere, types, condition)
        if verb == "assert":
            return self.assert_steps(body, vwhere, types, condition)
        self.error("unknown_action", f"unknown action '{verb}'", self.pos.key(node, verb),
                   suggest(verb, ["decide", "escalate", "assert", "effect"]))
        return []

    def proposal_step(self, verb: str, body: Any, vwhere: Where, types: dict[str, FactType],
                      condition: Condition | None) -> list[Step]:
        """decide: or escalate: {key: value, ...}."""
        if not isinstance(body, dict):
            self.error("bad_shape", f"{verb} takes a mapping, e.g. {{route: standard-queue}}", vwhere)
            return []
        payload = plain(body)
        computed = self.computed_values(body, (), types, condition, verb,
                                        skip=("expects", "sla", "identity") if verb == "escalate" else ())
        reason = payload.pop("reason", "")
        step = Step(verb, payload=payload, reason=str(reason), computed=computed)
        if verb == "escalate":
            self.escalation(step, body, payload, vwhere, types)
        return [step]

    def escalation(self, step: Step, body: Any, payload: dict[str, Any], vwhere: Where,
                   types: dict[str, FactType]) -> None:
        """An escalate step's queue, expected answer, SLA and reviewer identity (taken out of its payload)."""
        if not isinstance(payload.get("queue"), str):
            self.error("missing_key", "escalate needs a 'queue:'", vwhere)
        expects = payload.pop("expects", "")
        if expects and (expects not in types or expects in BUILTIN_TYPES):
            self.error("unknown_fact_type", f"escalate: expects unknown fact type {expects!r}",
                       self.pos.value(body, "expects"), suggest(str(expects), [t for t in types
                                                                            if t not in BUILTIN_TYPES]))
        sla = payload.pop("sla", None)
        sla_s = self.take(body, ESCALATE, "sla") if sla is not None else None
        identity = payload.pop("identity", "")
        if identity:
            ft = types.get(str(expects)) if expects else None
            spec = ft.fields.get(str(identity)) if ft is not None else None
            if spec is None or spec.kind != "str":
                self.error("unknown_field", f"escalate: identity names the field of the expected answer that "
                           f"holds the reviewer's name; {str(expects) or 'the answer'} has no str field "
                           f"{identity!r}", self.pos.value(body, "identity"),
                           "write expects: approval and identity: approver")
        step.expects, step.sla_s, step.identity = str(expects or ""), sla_s, str(identity or "")
        if not expects and sla_s is not None:  # it waits for an answer that cannot be given
            self.warnings.append(BatonError(
                "unanswerable_escalation", f"escalate to {payload.get('queue')!r} waits {sla} for a "
                "reviewer's answer but has no expects:, so no answer can resume the decision: it can "
                "only time out", vwhere, "name the fact type of the reviewer's answer (expects: "
                "review), or leave out sla: to hand the case over for good"))

    def effect_step(self, body: Any, vwhere: Where, types: dict[str, FactType],
                    condition: Condition | None) -> list[Step]:
        """effect: {name: EFFECT, with: {...}}."""
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"]:
            self.error("bad_shape", "effect takes {name: EFFECT, with: {...}}", vwhere,
                       "EFFECT is a name from the service config's effects: section")
            return []
        self.check_keys(body, EFFECT)
        payload = plain(body.get("with") or {})
        if not isinstance(payload, dict):
            self.error("bad_shape", "effect: with: takes a mapping", self.pos.value(body, "with"))
            return []
        templates: dict[str, jinja2.Template] = {}
        computed = self.computed_values(body["with"], (), types, condition, "effect.with") if isinstance(
            body.get("with"), dict) else []
        for key, value in payload.items():
            name = str(key)
            if isinstance(value, str) and "{{" in value and not value.startswith("=") and self.check_template(
                    value, body["with"], name, types):
                templates[name] = JINJA.from_string(value)
        return [Step("effect", payload=payload, action=str(body["name"]), templates=templates,
                     computed=computed)]

    def assert_steps(self, body: Any, vwhere: Where, types: dict[str, FactType],
                     condition: Condition | None) -> list[Step]:
        """assert: {fact_type: {field: value}, ...}: one step per fact."""
        if not isinstance(body, dict) or not body:
            self.error("bad_shape", "assert takes {fact_type: {field: value}}", vwhere)
            return []
        steps = []
        for tname, fields in body.items():
            fwhere = self.pos.key(body, tname)
            ft = types.get(str(tname))
            if ft is None or ft.builtin:
                self.error("unknown_fact_type", f"assert: unknown fact type {str(tname)!r}", fwhere,
                           suggest(str(tname), [t for t in types if t not in BUILTIN_TYPES]))
                continue
            computed = self.computed_values(fields, (), types, condition, f"assert.{tname}", ft) \
                if isinstance(fields, dict) else []
            try:
                value = fact_with_computed(ft, plain(fields), str(tname))
            except BatonError as e:
                self.error(e.code, f"assert: {e.message}", fwhere)
                continue
            steps.append(Step("assert", payload=value, fact_type=str(tname), computed=computed))
        return steps

    def computed_values(self, body: Any, path: tuple[str, ...], types: dict[str, FactType],
                        condition: Condition | None, what: str, fact: FactType | None = None,
                        skip: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str, Any]]:
        """The ``=expr`` values of a payload, checked over the facts the rule matched; a plain string that
        spells one of those facts' fields is ``ambiguous_value`` (it would be sent as that text)."""
        out: list[tuple[tuple[str, ...], str, Any]] = []
        if not isinstance(body, dict):
            return out
        for key, value in body.items():
            name = str(key)
            if name in skip:
                continue
            here = (*path, name)
            if isinstance(value, dict) and fact is None:
                out.extend(self.computed_values(value, here, types, condition, what))
                continue
            if isinstance(value, list) and any(isinstance(v, str) and v.startswith("=") for v in value):
                self.error("bad_value", f"{what}.{'.'.join(here)}: a computed value (=...) cannot stand inside a "
                           "list", self.pos.value(body, key), "compute each value in a field of its own")
                continue
            if not isinstance(value, str):
                continue
            start = self.pos.text_start(body, key)
            if condition is None:
                continue  # the condition has errors of its own: its values cannot be checked
            if value.startswith("="):
                try:
                    ev = computed_value(value, name, types, condition, fact)
                except ExprError as e:
                    self.expr_error(e, start, value, 1, f"{what}.{'.'.join(here)}: ")
                    continue
                out.append((here, value, ev))
            elif spells_a_field(value, types, condition):
                self.error("ambiguous_value", f"{what}.{'.'.join(here)}: '{value.strip()}' spells the field "
                           f"{value.strip()}, but it is written as text and would be sent as that text", start,
                           f"write ={value.strip()} for the field's value, or quote the text as an expression: "
                           f"='{value.strip()}'")
        return out

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
        raw = node.get("documents") or []
        if not isinstance(raw, list):
            self.error("bad_shape", "documents must be a list", self.pos.value(node, "documents"),
                       _test_documents_doc())
            return []
        out = []
        for j, item in enumerate(raw):
            item = plain(item)
            pages = item.get("pages") if isinstance(item, dict) else None
            text = item.get("text") if isinstance(item, dict) else None
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or (
                    not isinstance(text, str) and not (isinstance(pages, list) and pages and
                                                       all(isinstance(p, str) for p in pages))):
                self.error("bad_shape", "a test document has a name and a text (or pages)",
                           self.pos.value(raw, j), _test_documents_doc())
                continue
            if isinstance(text, str):
                out.append(Document.from_text(item["name"], text, str(item.get("media_type") or "text/plain")))
            else:
                page_list = [str(p) for p in (pages or [])]
                doc = Document.from_text(item["name"], "\f".join(page_list), str(item.get("media_type") or
                                                                                   "application/pdf"))
                out.append(Document(doc.id, doc.name, doc.media_type, tuple(page_list)))
        return out

    # -- decision tables ---------------------------------------------------------------------------
    def load_tables(self, doc: Any, types: dict[str, FactType], rules: list[Rule]) -> list[Table]:
        """Each table row becomes an ordinary rule ``TABLE#N`` appended to ``rules``."""
        node = doc.get("tables")
        if node is None:
            return []
        if not isinstance(node, list):
            self.error("bad_shape", "tables must be a list of decision tables", self.pos.value(doc, "tables"))
            return []
        names = {r.name for r in rules}
        out: list[Table] = []
        for i in range(len(node)):
            table = self.load_table(node, i, types, names)
            if table is None:
                continue
            out.append(table)
            routing = route_inputs(table, types, len(rules))  # expression inputs computed once per fact
            if routing is not None:
                rules.append(routing)
                names.add(routing.name)
            for row, when in table.rules_text():
                rule = self.table_rule(table, row, when, types, len(rules))
                if rule is not None:
                    rules.append(rule)
                    names.add(rule.name)
            if table.aggregate:  # collect + aggregate: one fact after the matched rows
                rules.append(aggregate_rule(table, types, len(rules)))
                names.add(rules[-1].name)
        return out

    def load_table(self, parent: Any, i: int, types: dict[str, FactType], names: set[str]) -> Table | None:
        where = self.pos.value(parent, i)
        tnode = parent[i]
        if not isinstance(tnode, dict):
            self.error("bad_shape", "a decision table is a mapping with name, inputs, outputs and rows", where)
            return None
        self.check_keys(tnode, TABLE)
        name = tnode.get("name")
        if not isinstance(name, str) or not NAME_TABLE.match(name):
            self.error("bad_name", "each table needs a 'name:' (letters, digits, - _ .)", where)
            return None
        if any(n == name or n.startswith(f"{name}#") for n in names):
            self.error("duplicate_rule", f"'{name}' is already the name of a rule or table", self.pos.value(tnode,
                                                                                                          "name"))
            return None
        hit = self.take(tnode, TABLE, "hit", invalid=None, hint=suggest(str(tnode.get("hit")), list(HIT_POLICIES)))
        if hit is None:
            return None
        priority = self.take(tnode, TABLE, "priority")
        when = tnode.get("when", "")
        if not isinstance(when, str):
            self.error("bad_value", "when must be a condition", self.pos.value(tnode, "when"))
            return None
        if when:
            self.current = f"table '{name}'"
            try:
                analyse(parse(when), types)
            except ExprError as e:
                self.expr_error(e, self.pos.text_start(tnode, "when"), when)
                return None
        columns = self.table_columns(tnode, name, hit, where, types)
        if columns is None:
            return None
        inputs, outputs = columns
        rows = self.table_rows(tnode, name, inputs, outputs, where, types)
        if rows is None:
            return None
        ranking = self.table_ranking(tnode, name, hit, outputs, rows, where)
        if ranking is None or len(rows) != len(tnode["rows"]):
            return None
        return self.checked_table(Table(str(name), str(hit), priority, when, inputs, outputs, rows, ranking, where,
                                        str(tnode.get("description") or "")), tnode)

    def table_columns(self, tnode: Any, name: str, hit: str, where: Where, types: dict[str, FactType]
                      ) -> tuple[list[Column], list[Column]] | None:
        """A table's inputs and outputs (None: an error, reported)."""
        inputs: list[Column] = []
        outputs: list[Column] = []
        for key, heads, sink in (("inputs", (), inputs), ("outputs", (*PROPOSALS,), outputs)):
            cols = tnode.get(key)
            if not isinstance(cols, list) or (key == "outputs" and not cols):
                self.error("missing_key", f"table '{name}' needs '{key}:' (a list of TYPE.field columns)", where)
                return None
            for k, text in enumerate(cols):
                try:
                    col = column_ref(text, types, heads)
                except ValueError as e:
                    self.error("unknown_field" if "has no field" in str(e) else "unknown_fact_type"
                               if "unknown fact type" in str(e) else "bad_value", str(e), self.pos.value(cols, k))
                    return None
                if key == "inputs" and col.spec is not None and col.spec.kind == "list":
                    self.error("type_mismatch", f"{col.ref} is a list; a table column tests single values",
                               self.pos.value(cols, k))
                    return None
                sink.append(col)
        return (inputs, outputs) if self.table_head_ok(tnode, name, hit, outputs) else None

    def table_head_ok(self, tnode: Any, name: str, hit: str, outputs: list[Column]) -> bool:
        """The outputs are fields of one fact type (not a built-in one), or all decide.KEY / escalate.KEY."""
        if len({c.head for c in outputs}) != 1:
            self.error("bad_value", f"table '{name}': outputs must all be fields of one fact type, or all "
                       "decide.KEY / escalate.KEY", self.pos.value(tnode, "outputs"))
            return False
        head = outputs[0].head
        if head not in PROPOSALS and (head in BUILTIN_TYPES):
            self.error("bad_value", f"table '{name}' cannot assert the built-in '{head}'",
                       self.pos.value(tnode, "outputs"))
            return False
        if hit == "collect" and head in PROPOSALS:
            self.error("bad_value", f"table '{name}': hit: collect gathers facts; it cannot {head}",
                       self.pos.value(tnode, "hit"), "assert a fact per row, or use hit: first / priority")
            return False
        if head == "escalate" and not any(c.field == "queue" for c in outputs):
            self.error("missing_key", f"table '{name}': escalate outputs need an escalate.queue column",
                       self.pos.value(tnode, "outputs"))
            return False
        return True

    def table_rows(self, tnode: Any, name: str, inputs: list[Column], outputs: list[Column], where: Where,
                   types: dict[str, FactType]) -> list[Row] | None:
        """The rows whose cells parse (None: no rows: at all); a row with an error is reported and left out."""
        rows_node = tnode.get("rows")
        if not isinstance(rows_node, list) or not rows_node:
            self.error("missing_key", f"table '{name}' needs 'rows:' (a list of rows of cells)", where)
            return None
        head = outputs[0].head
        rows: list[Row] = []
        width = len(inputs) + len(outputs)
        for j, raw in enumerate(rows_node):
            rwhere = self.pos.value(rows_node, j)
            if not isinstance(raw, list) or len(raw) != width:
                self.error("bad_shape", f"table '{name}' row {j + 1}: {width} cells expected ({len(inputs)} inputs, "
                           f"{len(outputs)} outputs), found {len(raw) if isinstance(raw, list) else 'no list'}",
                           rwhere)
                continue
            cells = self.row_cells(name, j, raw, inputs)
            values = [parse_output(plain(raw[len(inputs) + k]), col) for k, col in enumerate(outputs)]
            if cells is None:
                continue
            row = Row(j + 1, cells, values, rwhere)
            self.raw_rows[(str(name), j + 1)] = raw
            if head not in PROPOSALS:
                try:  # =expr cells are checked with the row's condition (table_rule); the rest as a fact now
                    fact_with_computed(types[head], plain(self.payload(outputs, values)), f"{name}#{j + 1}")
                except BatonError as e:
                    self.error(e.code, f"table '{name}' row {j + 1}: {e.message}", rwhere)
                    continue
            rows.append(row)
        return rows

    def row_cells(self, name: str, j: int, raw: list[Any], inputs: list[Column]) -> list[Any] | None:
        """A row's input cells, parsed (None: one or more did not parse, each reported)."""
        ok = True
        cells = []
        for k, col in enumerate(inputs):
            assert col.spec is not None
            try:
                cells.append(parse_cell(plain(raw[k]), col.spec, col.ref, col.known))
            except ValueError as e:
                self.error("bad_cell", f"table '{name}' row {j + 1}: {e}", self.pos.value(raw, k),
                           "cells: -, a value, > 5000, [1000..5000), < 18, >= 60, gold, silver, not(gold), "
                           "> applicant.min_income")
                ok = False
        return cells if ok else None

    def table_ranking(self, tnode: Any, name: str, hit: str, outputs: list[Column], rows: list[Row],
                      where: Where) -> list[object] | None:
        """hit: priority's ranking of the first output's values, highest first (None: an error, reported)."""
        if hit != "priority":
            return []
        first = outputs[0]
        raw_rank = tnode.get("ranking")
        if isinstance(raw_rank, list) and raw_rank:
            ranking = list(plain(raw_rank))
        elif first.spec is not None and first.spec.enum:
            ranking = list(first.spec.enum)
        else:
            self.error("missing_key", f"table '{name}': hit: priority needs 'ranking:' (the values of "
                       f"{first.ref}, highest first)", where, "or make the first output an enum field")
            return None
        unranked = sorted({str(r.outputs[0]) for r in rows if r.outputs[0] not in ranking})
        if unranked:
            self.error("bad_value", f"table '{name}': ranking does not list {', '.join(unranked)}", where)
            return None
        return ranking

    def checked_table(self, table: Table, tnode: Any) -> Table | None:
        """The table's aggregate set, and its gaps, overlaps and other problems found (None: an error)."""
        settings = configure(table, tnode.get("aggregate"))
        if settings:
            self.errors.extend(settings)
            return None
        for problem in analyse_table(table):
            if problem.code == "table_gap":  # the gaps merged into intervals and lists, as cells write them
                merged = gap_text(table)
                problem.message = f"table '{table.name}': no row covers {merged}" if merged else problem.message
            (self.errors if problem.code in TABLE_ERRORS else self.warnings).append(problem)
        return table

    @staticmethod
    def payload(outputs: list[Column], values: list[object]) -> dict[str, object]:
        return {col.field: v for col, v in zip(outputs, values, strict=True) if v is not None}

    def table_rule(self, table: Table, row: Row, when: str, types: dict[str, FactType], index: int) -> Rule | None:
        try:
            condition = analyse(parse(when), types)
        except ExprError as e:
            if e.code == BROKEN or self.vocab.locate(e.offset) is not None:  # a definition a cell uses
                self.current = f"table '{table.name}' row {row.number}"
                self.expr_error(e, row.where, when)
                return None
            self.error(e.code, f"table '{table.name}' row {row.number}: {e.message} in: {when}",
                       self.cell_where(table, row, when, e.offset), e.hint)
            return None
        payload = dict(table.payload(row))
        fact = types.get(table.head) if table.head not in PROPOSALS else None
        computed = self.table_values(table, row, payload, types, condition, fact)
        if computed is None:
            return None
        if table.head in PROPOSALS:
            reason = payload.pop("reason", "")
            step = Step(table.head, payload=payload, reason=str(reason or ""), computed=computed)
        else:
            step = Step("assert", payload=fact_with_computed(types[table.head], payload, table.rule_name(row)),
                        fact_type=table.head, computed=computed)
        return Rule(table.rule_name(row), index, table.priority, when, condition, [] if table.aggregate else [step],
                    row.where, table.precedence(row))

    def cell_where(self, table: Table, row: Row, when: str, offset: int) -> Where:
        """Where, in the input cell that wrote it, the token at ``offset`` of a row's condition stands (the row's
        place when no cell holds it once)."""
        raw = self.raw_rows.get((table.name, row.number))
        m = _TOKEN_AT.match(when, max(offset, 0))
        if not isinstance(raw, list) or m is None:
            return row.where
        word = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(m.group())}(?![A-Za-z0-9_])")
        found = [(k, hit.start()) for k in range(min(len(table.inputs), len(raw))) if isinstance(raw[k], str)
                 for hit in word.finditer(raw[k])]
        if len(found) != 1:
            return row.where
        k, at = found[0]
        return self.pos.text_start(raw, k).shifted(raw[k], at)

    def table_values(self, table: Table, row: Row, payload: dict[str, object], types: dict[str, FactType],
                     condition: Condition, fact: FactType | None) -> list[tuple[tuple[str, ...], str, Any]] | None:
        """A row's ``=expr`` output cells, checked over the facts its condition matches (None: an error)."""
        out: list[tuple[tuple[str, ...], str, Any]] = []
        ok = True
        for key, value in payload.items():
            if not isinstance(value, str):
                continue
            where = f"table '{table.name}' row {row.number}, output {table.head}.{key}"
            if value.startswith("="):
                try:
                    out.append(((key,), value, computed_value(value, key, types, condition, fact)))
                except ExprError as e:
                    if e.code == BROKEN or self.vocab.locate(e.offset) is not None:  # a definition it uses
                        self.current = f"table '{table.name}' row {row.number}"
                        self.expr_error(e, row.where, value)
                        ok = False
                        continue
                    raw = self.raw_rows.get((table.name, row.number))
                    k = len(table.inputs) + next(i for i, c in enumerate(table.outputs) if c.field == key)
                    at = self.pos.text_start(raw, k).shifted(value, max(e.offset, 0) + 1) if isinstance(
                        raw, list) and k < len(raw) and raw[k] == value else row.where
                    self.error(e.code, f"{where}: {e.message} (in {value})", at, e.hint)
                    ok = False
            elif spells_a_field(value, types, condition):
                self.error("ambiguous_value", f"{where}: '{value.strip()}' spells the field {value.strip()}, but "
                           "it is written as text and would be sent as that text", row.where,
                           f"write ={value.strip()} for the field's value")
                ok = False
        return out if ok else None

    # -- tests -------------------------------------------------------------------------------------
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
        tests_node = doc.get("tests") or []
        if not isinstance(tests_node, list):
            self.error("bad_shape", "tests must be a list", self.pos.value(doc, "tests"))
            return []
        names = {r.name for r in rules} | self.declared  # a rule with an error of its own is still declared
        data = TestData(self.pos, types or {}, inputs or [], models, tools,
                        {s.expects for r in rules for s in r.steps if s.expects} |  # and the SLA's timeout
                        {"timeout" for r in rules for s in r.steps if s.sla_s is not None}, self.errors.append)
        out = []
        for i, node in enumerate(tests_node):
            where = self.pos.value(tests_node, i)
            if not isinstance(node, dict):
                self.error("bad_shape", "each test is a mapping with name, given, answers, expect", where)
                continue
            self.check_keys(node, TEST, also={str(k) for k in node if str(k) not in TEST.keys
                                              and data.misplaced(node, k, "a test")})
            name = str(node.get("name") or f"test {i + 1}")
            expect = node.get("expect") or {}
            if not isinstance(expect, dict):
                self.error("bad_shape", "expect must be a mapping", self.pos.value(node, "expect"))
                continue
            self.check_keys(expect, EXPECT, also={str(k) for k in expect if str(k) not in EXPECT.keys
                                                  and data.misplaced(expect, k, "expect")})
            if types is not None:
                data.check(node)
            self.test_expect(expect, names)
            answers = self.test_answers(node, models, tools)
            human = node.get("human") or {}
            if not isinstance(human, dict):
                self.error("bad_shape", "human maps a fact type to a reviewer's answer",
                           self.pos.value(node, "human"))
                human = {}
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
            listed = expect.get(key)
            if listed is None:
                continue
            if not isinstance(listed, list):
                self.error("bad_shape", f"expect.{key} must be a list of rule names", self.pos.value(expect, key))
                continue
            for j, rname in enumerate(listed):
                if rname not in names:
                    self.error("unknown_rule", f"expect.{key}: no rule named {rname!r}",
                               self.pos.value(listed, j), suggest(str(rname), sorted(names)))

    def test_answers(self, node: Any, models: dict[str, ModelAction], tools: dict[str, ToolAction]
                     ) -> dict[Any, Any]:
        """A test's answers, by the model or tool action they stand in for."""
        answers = node.get("answers") or {}
        if not isinstance(answers, dict):
            self.error("bad_shape", "answers must map action names to answers", self.pos.value(node, "answers"))
            return {}
        for aname in answers:
            if aname not in models and aname not in tools:
                self.error("unknown_action", f"answers: no model or tool action named '{aname}'",
                           self.pos.key(answers, aname), suggest(str(aname), [*models, *tools]))
        return answers


def _fits(ty: Ty, kind: str, item: str) -> bool:
    """May a value of type ``ty`` fill a field of ``kind``? (Ranges, enums and whole numbers are checked when
    the value is known: a value outside them fails the decision, naming the field.)"""
    if kind in ("number", "int"):
        return ty.kind == "number"
    if kind in ("str", "enum"):
        return ty.kind == "str"
    if kind == "list":
        return ty.kind == "list" and (not ty.item or ty.item == {"int": "number", "enum": "str"}.get(item, item))
    return ty.kind == kind


def _kind_name(kind: str) -> str:
    return {"int": "whole number", "enum": "one of its values (a string)", "str": "string"}.get(kind, kind)


def computed_value(value: str, field: str, types: Mapping[str, FactType], condition: Condition,
                   fact: FactType | None) -> Any:
    """The evaluator of ``=expr`` written for ``field``: checked over the facts every branch of the rule
    matches, and - for a field of an asserted ``fact`` - against the field's type. Raises ExprError."""
    matched = set.intersection(*(set(b.bindings) for b in condition.branches)) if condition.branches else set()
    ty, ev = check_value(parse(value[1:]), types, condition.aliases, matched)
    if fact is not None:
        spec = fact.fields.get(field)
        if spec is None:
            raise ExprError("unknown_field", f"{fact.name} has no field '{field}'", -1,
                            suggest(field, list(fact.fields)))
        if not _fits(ty, spec.kind, spec.items.kind if spec.items else ""):
            raise ExprError("type_mismatch", f"{fact.name}.{field} is a {_kind_name(spec.kind)}, but this value is a "
                            f"{ty}", 0)
    return ev


def spells_a_field(value: str, types: Mapping[str, FactType], condition: Condition) -> bool:
    """Does this literal text spell a field path the rule can see (``fee.code``, ``decision.date``)? Then it
    is ``ambiguous_value``: the analyst almost certainly meant ``=fee.code``."""
    m = FIELD_PATH.match(value)
    if not m:
        return False
    binding, fname = m.groups()
    aliases = condition.aliases
    if binding == DECISION and binding not in aliases:
        return fname in ("date", "time")
    if not any(binding in b.bindings for b in condition.branches):
        return False
    ft = types.get(aliases.get(binding, binding))
    return ft is not None and fname in ft.fields


def fact_with_computed(ft: FactType, literal: object, path: str) -> dict[str, object]:
    """An asserted fact whose ``=expr`` fields are computed when its rule fires: the literal fields are
    validated now, every required field must be given (literally or computed), and the computed ones keep
    their text until then. Raises BatonError (the validator's, or ``missing_field``)."""
    if not isinstance(literal, Mapping):
        return ft.validate(literal, path)
    names = {str(k) for k, v in literal.items() if isinstance(v, str) and v.startswith("=")}
    if not names:
        return ft.validate(literal, path)
    value = all_optional(ft).validate({k: v for k, v in literal.items() if k not in names}, path)
    missing = [n for n, spec in ft.fields.items() if not spec.optional and n not in value and n not in names]
    if missing:
        raise BatonError("missing_field", f"{ft.name}.{missing[0]}: missing field of {ft.name}")
    value.update({k: literal[k] for k in names if k in ft.fields})
    return value


def _code_uses(name: str, text: str) -> int:
    """How often ``name`` stands in ``text`` as code does - ``name.field``, ``name as x``, ``name:`` (a key),
    ``exists name``, ``produces: name`` - rather than as a word of prose."""
    n = re.escape(name)
    return len(re.findall(rf"(?<![\w.]){n}(?:\.\w|\s+as\s|\s*:)|(?:exists|produces:|expects:)\s+{n}(?!\w)", text))


def _test_documents_doc() -> str:
    return "documents: [{name: claim.txt, text: '...'}] or [{name: claim.pdf, pages: ['page 1', 'page 2']}]"


def load_ruleset(text: str, file: str = "<ruleset>", limits: SourceLimits = DEFAULT_LIMITS) -> Ruleset:
    with collector_paused():
        try:
            return Loader(text, file, limits).load()
        except RecursionError:  # a shape nested deeper than a bound that names it (templates, expressions) allows
            raise CompileErrors([BatonError("too_deep", "the ruleset nests too deeply to compile",
                                            Where(file, 1, 1), "look for deeply nested brackets or blocks")]) from None
