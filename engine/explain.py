"""Why a rule did or did not fire on a stored decision: which condition part failed on which fact."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from itertools import islice, product
from typing import Any

from engine.language.check import MISSING, Eval, FactIndex, compile_expr
from engine.language.dates import from_timestamp
from engine.language.expr import Bind, Exists, Node, Ref, render
from engine.model import Ruleset

MAX_COMBINATIONS = 20


def _show(value: object) -> str:
    """A value as the ruleset language writes it (true, not Python's True; strings quoted)."""
    return json.dumps(value, ensure_ascii=False)


def _refs(node: Node) -> list[Ref]:
    if isinstance(node, Ref):
        return [node]
    out: list[Ref] = []
    for child in (getattr(node, "operand", None), getattr(node, "left", None), getattr(node, "right", None),
                  *getattr(node, "operands", ()), *getattr(node, "items", ()), *getattr(node, "args", ()),
                  getattr(node, "where", None)):
        if isinstance(child, Node):
            out.extend(_refs(child))
    return out


class _Final(FactIndex):
    """Working memory as the decision left it, read from its trace (aggregates and negations in why-not)."""

    def __init__(self, facts: list[Mapping[str, Any]], moment: tuple[str, str]) -> None:
        self.facts = {int(f["seq"]): f for f in facts}
        self.by_type: dict[str, list[int]] = {}
        for f in facts:
            self.by_type.setdefault(str(f["type"]), []).append(int(f["seq"]))
        self.now = moment

    def has_type(self, type_name: str) -> bool:
        return type_name in self.by_type

    def of_type(self, type_name: str) -> list[int]:
        return self.by_type.get(type_name, [])

    def values(self, seq: int) -> Mapping[str, object]:
        return self.facts[seq]["values"]  # type: ignore[no-any-return]

    def type_of(self, seq: int) -> str:
        return str(self.facts[seq]["type"])

    def moment(self) -> tuple[str, str]:
        return self.now


def why(ruleset: Ruleset, record: Mapping[str, Any], rule_name: str) -> list[str]:
    """Plain-English lines explaining the rule's fate in this decision."""
    rule = next((r for r in ruleset.rules if r.name == rule_name), None)
    if rule is None:
        raise KeyError(rule_name)
    facts = [e for e in record["trace"] if e.get("kind") == "fact"]
    fired = [e for e in record["trace"] if e.get("kind") == "fired" and e.get("rule") == rule_name]
    if fired:
        return [f"'{rule_name}' fired at step {e['step']} (round {e['round']}) on "
                + ", ".join(f"{b} #{s}" for b, s in e["facts"].items())
                + ("" if not e.get("aggregates") else " with " + ", ".join(
                    f"{text} = {'absent' if v is None else v}" for text, v in e["aggregates"].items()))
                + _definitions(e.get("definitions"))
                + (" - a final rule: the decision stopped here" if rule.final else "")
                for e in fired]
    lines = [f"'{rule_name}' did not fire. Its condition: {rule.when.strip()}"]
    try:
        moment = from_timestamp(float(record.get("started_at") or 0.0))
    except (OverflowError, OSError, ValueError):
        moment = from_timestamp(0.0)
    final = _Final(facts, moment)
    for b, branch in enumerate(rule.condition.branches):
        prefix = f"  branch {b + 1}: " if len(rule.condition.branches) > 1 else "  "
        pools = {}
        for binding, tname in branch.bindings.items():
            pools[binding] = [f for f in facts if f["type"] == tname]
            if not pools[binding]:
                lines.append(f"{prefix}no {tname} fact was asserted in this decision")
                break
        else:
            combos = list(islice(product(*pools.values()), MAX_COMBINATIONS))
            bindings = list(pools)
            for combo in combos:
                if len(set(id(f) for f in combo)) < len(combo):
                    continue  # one fact never fills two patterns
                env = {binding: f["values"] for binding, f in zip(bindings, combo, strict=True)}
                on = ", ".join(f"{binding} #{f['seq']}" for binding, f in zip(bindings, combo, strict=True))
                failure = _first_failure(branch.parts, env, final)
                winner = rule.precedence.winner(env) if rule.precedence is not None and failure is _ALL_HOLD else None
                if winner is not None:
                    failure = (f"its cells hold, but row {winner.number} comes before it and matches the same facts "
                               f"(hit policy {rule.precedence.table.hit if rule.precedence else ''})")
                if rule.condition.definitions:
                    failure = _named(failure, rule.condition.written) + _definitions(
                        _evaluate(rule.condition.definitions, env, final))
                lines.append(f"{prefix}on {on}: {failure}")
    if record.get("outcome") == "failed":
        lines.append(f"  (the decision stopped early: {record.get('reason')})")
    return lines


def _definitions(values: Mapping[str, Any] | None) -> str:
    """The values of a rule's definitions, as `log why` shows them."""
    if not values:
        return ""
    return "; definitions: " + ", ".join(f"{n} = {'absent' if v is None else _show(v)}" for n, v in values.items())


def _evaluate(definitions: Sequence[tuple[str, Eval]], env: dict[str, Any], wm: FactIndex) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, ev in definitions:
        try:
            value = ev(env, wm)
        except Exception:  # a definition that cannot be computed on these facts shows as absent
            value = MISSING
        out[name] = None if value is MISSING else value
    return out


def _named(text: str, written: Mapping[str, str]) -> str:
    """A condition part with each definition's expression shown by the definition's name."""
    for name, expr in sorted(written.items(), key=lambda x: -len(x[1])):
        text = text.replace(f"({expr})", name).replace(expr, name)
    return text


def _first_failure(parts: Sequence[Node], env: dict[str, Any], wm: FactIndex) -> str:
    for part in parts:
        if isinstance(part, Bind) or (isinstance(part, Exists) and not part.negated):
            continue
        try:
            value = compile_expr(part, {})(env, wm)
        except Exception:  # a part that cannot be evaluated on these facts does not hold
            value = False
        if value is not True:
            shown = []
            for ref in _refs(part):
                v = env.get(ref.binding, {}).get(ref.field, MISSING)
                shown.append(f"{ref.binding}.{ref.field} = {'absent' if v is MISSING else _show(v)}")
            if isinstance(part, Exists):
                return f"'{render(part)}' is false: a {part.type_name} fact was asserted"
            detail = f" ({'; '.join(dict.fromkeys(shown))})" if shown else ""
            return f"'{render(part)}' is false{detail}"
    return _ALL_HOLD


_ALL_HOLD = ("every part holds, yet it did not fire (a negation failed when it was about to fire, or the decision "
             "stopped first)")
