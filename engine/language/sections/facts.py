"""facts: and inputs: - the fact types, their fields, and which types a request may carry."""

from __future__ import annotations

import re
from typing import Any

from engine.errors import Where
from engine.language.check import DECISION, suggest
from engine.language.sections.base import LoaderBase
from engine.language.shape import FACT_TYPE, FIELD, RULESET
from engine.language.types import (
    BUILTIN_TYPES,
    MAX_FIELDS,
    SCALARS,
    FactType,
    FieldSpec,
    document_type,
    failure_type,
    passage_type,
    timeout_type,
)

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
RESERVED_TYPES = {"failure", "timeout", "document", "passage", "chunk",
                  "facts", "exists", "not", "and", "or", "as", "in", "contains", "matches",
                  "true", "false", "where", DECISION}


class FactsLoader(LoaderBase):
    """facts: and inputs:."""

    def load_facts(self, doc: Any) -> dict[str, FactType]:
        types: dict[str, FactType] = {"failure": failure_type(), "timeout": timeout_type(),
                                      "document": document_type(), "passage": passage_type()}
        if not self.require(doc, RULESET, "", Where(self.file, 1, 1), "facts"):
            return types
        facts = self.container(doc, "facts", RULESET.keys["facts"])
        if facts is None:
            return types
        for key in facts:
            where = self.pos.key(facts, key)
            tname = str(key)
            if not NAME.match(tname) or tname in RESERVED_TYPES:
                self.error("bad_name", f"'{tname}' cannot name a fact type", where,
                           "letters, digits and _; not a keyword or 'failure'")
                continue
            fields = self.entry(facts, key, FACT_TYPE, f"fact type '{tname}'", where)
            if fields is None:
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

    def load_inputs(self, doc: Any, types: dict[str, FactType]) -> list[str]:
        if doc.get("input") is None:
            return [t for t in types if t not in BUILTIN_TYPES]
        inputs = self.container(doc, "input", RULESET.keys["input"])
        if inputs is None:
            return []
        if isinstance(inputs, str):
            inputs = [inputs]
        out = []
        for i, t in enumerate(inputs):
            if t not in types or t in BUILTIN_TYPES:
                self.error("unknown_fact_type", f"input: unknown fact type {t!r}", self.pos.value(inputs, i),
                           suggest(str(t), list(types)))
            else:
                out.append(str(t))
        return out
