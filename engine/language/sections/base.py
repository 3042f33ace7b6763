"""What every section of the loader shares: the file, its positions, the errors and warnings found so
far, the definitions in force, and the helpers that check a key against the shape (engine/language/
shape.py) or report an expression's error at its place in the file."""

from __future__ import annotations

from typing import Any

import jinja2
from jinja2 import meta

from engine.errors import BatonError, Where
from engine.language.check import Checker, normalise, suggest
from engine.language.expr import ExprError
from engine.language.names import BROKEN, Vocabulary
from engine.language.prompts import BoundedSandbox
from engine.language.shape import Key, Section
from engine.language.source import DEFAULT_LIMITS, Positions, SourceLimits
from engine.language.types import BUILTIN_TYPES, FactType

_DEFAULT = object()  # take(): on a wrong value, the key's default
JINJA = BoundedSandbox(undefined=jinja2.StrictUndefined, autoescape=False)


class LoaderBase:
    """The loader's state and shared helpers; each section of the ruleset file adds its own."""

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
        self.shared: dict[object, Any] = {}  # one copy of what many rules hold alike (see RulesLoader.rule_condition)

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
        self.error("bad_value", spec.complaint(key), self.pos.value(node, key), hint or spec.hint)
        return default if invalid is _DEFAULT else invalid

    def container(self, parent: Any, key: str, spec: Key, name: str = "") -> Any:
        """The list or mapping under ``key`` as ``spec`` describes it; left out or null, an empty one; of
        another shape, None and ``bad_shape`` at the value, with the shape's words for ``name`` (the key's)."""
        if parent.get(key) is None:
            return spec.empty()
        return self.entry(parent, key, spec, name)

    def entry(self, parent: Any, key: Any, spec: Key, name: str = "", where: Where | None = None) -> Any:
        """``parent[key]`` - a list's item, a mapping's value (a rule, a model) - when it has the shape ``spec``
        describes; else None and ``bad_shape`` at the value (or ``where``), with the shape's words."""
        value = parent[key]
        if spec.accepts(value):
            return value
        self.error("bad_shape", spec.complaint(name or str(key)), where or self.pos.value(parent, key), spec.hint)
        return None

    def named_entry(self, parent: Any, i: int, entry: Key, section: Section) -> tuple[Any, Where, str] | None:
        """Item ``i`` of a list of named mappings (rules, tables): the mapping, where it stands and its name, once
        its shape (``entry``), its keys and its name are checked (None: one of them is wrong, reported)."""
        node = self.entry(parent, i, entry)
        if node is None:
            return None
        where = self.pos.value(parent, i)
        self.check_keys(node, section)
        if not self.require(node, section, "", where, "name"):
            return None
        return node, where, str(node["name"])

    def require(self, node: Any, section: Section, name: str, where: Where, *keys: str) -> bool:
        """Are ``keys`` of the section given in their shape? Each left out (:meth:`Key.left_out`) is reported
        at ``where`` with its missing words about ``name`` (what holds them: "model 'x'"); False if any is."""
        given = True
        for key in keys:
            spec = section.keys[key]
            if spec.left_out(node.get(key)):
                self.error(spec.missing_code, spec.missing_message(name), where, spec.hint)
                given = False
        return given

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

    def type_ref(self, parent: Any, key: str, types: dict[str, FactType], what: str) -> str:
        value = parent.get(key)
        if not isinstance(value, str) or value not in types:
            self.error("unknown_fact_type", f"{what}: unknown fact type {value!r}",
                       self.pos.value(parent, key) if key in parent else self.pos.of(parent),
                       suggest(str(value), [t for t in types if t not in BUILTIN_TYPES]))
            return ""
        return value

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
