"""Rule-level differences between two ruleset versions: what a reviewer approves.

The comparison is over the parsed YAML (not the text), so reformatting or reordering keys is no change;
rules, tables, fact types, named values, definitions, actions and tests are matched by name, table rows by
content (an inserted row is one added row, a row with new outputs on the same input cells one changed row).
A changed value or definition names the rules and tables that use it (directly or through definitions):
their behaviour changes although their own text did not.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

from engine.language.names import uses_of
from engine.language.source import parse_yaml, plain

SECTIONS = (("facts", "fact type"), ("values", "value"), ("define", "definition"), ("models", "model"),
            ("tools", "tool"))
LIST_SECTIONS = (("rules", "rule"), ("tables", "table"), ("tests", "test"))


@dataclass(slots=True)
class Change:
    kind: str  # added | removed | changed
    what: str  # rule | table | fact type | model | tool | test | setting | input | description
    name: str
    details: list[str] = field(default_factory=list)  # "key: old -> new" lines for a change

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "what": self.what, "name": self.name, "details": self.details}

    def __str__(self) -> str:
        sign = {"added": "+", "removed": "-", "changed": "~"}[self.kind]
        lines = [f"{sign} {self.what} {self.name}"]
        lines.extend(f"    {d}" for d in self.details)
        return "\n".join(lines)


def _show(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))


def _by_name(items: object) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(items, list):
        for i, item in enumerate(items):
            if isinstance(item, dict):
                out[str(item.get("name", f"#{i + 1}"))] = item
    return out


def _details(old: Any, new: Any) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for key in [*old, *(k for k in new if k not in old)]:
            if key == "rows" and isinstance(old.get(key), list) and isinstance(new.get(key), list):
                columns = old.get("inputs") if old.get("inputs") == new.get("inputs") else None
                lines.extend(_row_details(old[key], new[key], len(columns) if isinstance(columns, list) else -1))
            elif key not in new:
                lines.append(f"{key}: {_show(old[key])} -> (removed)")
            elif key not in old:
                lines.append(f"{key}: (none) -> {_show(new[key])}")
            elif old[key] != new[key]:
                lines.append(f"{key}: {_show(old[key])} -> {_show(new[key])}")
        return lines
    return [f"{_show(old)} -> {_show(new)}"]


def _row_details(old: list[Any], new: list[Any], inputs: int = -1) -> list[str]:
    """Table rows matched by content, not position: rows equal in both are unchanged wherever they moved
    in between, one inserted row reads as one added row, and a row whose input cells are unchanged but whose
    outputs differ reads as one changed row. Row numbers are each version's own (old for removed rows)."""
    def key(row: Any) -> str:
        return _show(row)

    def head(row: Any) -> str:
        return _show(row[:inputs]) if isinstance(row, list) and inputs >= 0 else key(row)

    lines: list[str] = []
    matcher = difflib.SequenceMatcher(a=[key(r) for r in old], b=[key(r) for r in new], autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        gone = list(range(i1, i2))
        came = list(range(j1, j2))
        for j in list(came):  # same input cells, other outputs: one changed row
            match = next((i for i in gone if head(old[i]) == head(new[j])), None)
            if match is not None and inputs >= 0:
                gone.remove(match)
                came.remove(j)
                where = f"row {j + 1}" if match == j else f"row {match + 1} (now {j + 1})"
                lines.append(f"{where}: {_show(old[match])} -> {_show(new[j])}")
        lines.extend(f"row {i + 1}: removed {_show(old[i])}" for i in gone)
        lines.extend(f"row {j + 1}: added {_show(new[j])}" for j in came)
    return lines


def diff_sources(old_text: str, new_text: str) -> list[Change]:
    """Changes from ``old_text`` to ``new_text`` (both ruleset sources that parse as YAML)."""
    old, new = plain(parse_yaml(old_text, "a")), plain(parse_yaml(new_text, "b"))
    if not isinstance(old, dict) or not isinstance(new, dict):
        return []
    changes: list[Change] = []
    for key, what in (("ruleset", "name"), ("description", "description"), ("input", "input"),
                      ("settings", "settings")):
        if old.get(key) != new.get(key):
            changes.append(Change("changed", what, key, _details(old.get(key), new.get(key))))
    for key, what in SECTIONS:
        a, b = old.get(key) or {}, new.get(key) or {}
        if isinstance(a, dict) and isinstance(b, dict):
            changes.extend(_compare(a, b, what))
    for key, what in LIST_SECTIONS:
        changes.extend(_compare(_by_name(old.get(key)), _by_name(new.get(key)), what))
    users = uses_of(new)
    for change in changes:  # a changed value or definition: the rules and tables whose meaning it changes
        if change.what in ("value", "definition") and change.kind == "changed" and users.get(change.name):
            change.details.append("used by " + ", ".join(users[change.name]))
    return changes


def _compare(a: dict[str, Any], b: dict[str, Any], what: str) -> list[Change]:
    out = []
    for name, value in a.items():
        if name not in b:
            out.append(Change("removed", what, str(name)))
        elif b[name] != value:
            out.append(Change("changed", what, str(name), _details(value, b[name])))
    out.extend(Change("added", what, str(name)) for name in b if name not in a)
    return out
