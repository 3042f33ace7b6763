"""Firing activations: each one the durable-rules agenda gives is read, its guard checked, and its rule's
steps run - facts asserted at once, intents recorded, effects held, proposals made - with the trace of
each. A mixin of the loop's ``_Run`` (engine/loop.py), which holds the state these methods share."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from engine.compile import EngineRule
from engine.decision import Event, StopDecision, Values
from engine.errors import InvalidInput
from engine.language.check import MISSING, Guard, TooLarge, Undefined
from engine.language.tables import ROW_FIELD
from engine.model import Rule, Step
from engine.runstate import RunState


def _copy(payload: Values) -> Values:
    return {k: _copy(v) if isinstance(v, dict) else v for k, v in payload.items()}


_BN = re.compile(r'"(p\d+)":\{[^{}]*?"bn": ?(\d+)')
_BN1 = re.compile(r'"bn": ?(\d+)')  # an activation of one pattern: the first "bn" is its fact's


def _ordered(message: str, found: list[tuple[str, str]], patterns: tuple[tuple[str, str], ...]) -> list[str]:
    """The sequence numbers of the matched facts, in the order of the rule's patterns."""
    if len(found) == 1 or all(p == f[0] for (p, _), f in zip(patterns, found, strict=True)):
        return [bn for _, bn in found]
    by_name = dict(found)
    return [by_name[p] for p, _ in patterns]


@dataclass(frozen=True, slots=True)
class Plan:
    """One engine rule, as firing it needs it."""

    er: EngineRule
    rule: Rule
    branch: int
    guard: Guard | None  # None: the network made every test of the branch
    single: str | None  # the binding of its one pattern; None when it has several
    aggregating: bool
    show_branch: bool  # the trace names the branch (an `or` across fact types)
    definitions: bool  # the trace shows the values of the definitions its condition names
    listed: bool  # in `fired` (the rules and rows an author wrote; not TABLE#inputs)


class Firing(RunState):
    """The firing half of a decision's run (see engine/loop.py ``_Run``)."""

    __slots__ = ()

    if TYPE_CHECKING:  # the other halves' (engine/loop.py, engine/calls.py)
        def add_fact(self, type_name: str, values: Values, source: str, by: str = "",
                     provenance: dict[str, object] | None = None) -> int: ...

        def intend(self, action: str, env: dict[str, Values], aliases: Mapping[str, str]) -> None: ...

    def epoch_facts(self, types: Sequence[str]) -> list[tuple[int, str, Values]]:
        """A new marker fact for each aggregated type whose facts changed: every rule aggregating over it
        gets new activations, so it is considered again with the new values (Drools' accumulate)."""
        out = []
        for t in types:
            n = len(self.wm.of_type(t))
            if self.epoch_counts.get(t) == n:
                continue
            self.epoch_counts[t] = n
            marker = self.engine.epochs[t]
            values: Values = {"n": n}
            seq = self.wm.add_marker(marker, values)
            if seq:
                out.append((seq, marker, values))
        return out

    def with_epochs(self, batch: list[tuple[int, str, Values]]) -> list[tuple[int, str, Values]]:
        epochs = self.engine.epochs
        if not epochs or not batch:
            return batch
        touched = list(dict.fromkeys(t for _, t, _ in batch if t in epochs))
        return batch + self.epoch_facts(touched) if touched else batch

    def check_joins(self, types: Iterable[str]) -> None:
        """Before facts of ``types`` reach the core: no join may have to consider more than
        ``max_combinations`` combinations of facts (see Limits)."""
        joins = self.engine.joins
        if not joins or len(self.wm.facts) ** self.engine.join_width <= self.max_combinations:
            return  # no join of these few facts can reach the limit
        for t in set(types):
            for join in joins.get(t, ()):
                n = 1
                for jt in join:
                    n *= len(self.wm.of_type(jt))
                if n > self.max_combinations:
                    raise StopDecision(f"a rule joining {' x '.join(join)} would consider {n:,} combinations of "
                                       f"facts, over the limit of {self.max_combinations:,}")

    def aggregate_values(self, name: str, er_rule: Rule, branch_no: int, env: dict[str, Values],
                         seqs: dict[str, int]) -> dict[str, object] | None:
        """The aggregates' values for this firing, or None when this combination already fired with them."""
        branch = self.engine.aggregating[name]
        for b in branch.epochs:
            env.pop(b, None)
            seqs.pop(b, None)
        values: dict[str, object] = {}
        for text, ev in branch.aggregates:
            try:
                v = ev(env, self.wm)
            except (Undefined, OverflowError):
                v = MISSING
            values[text] = None if v is MISSING else v
        key = (er_rule.name, branch_no, tuple(seqs.values()), orjson.dumps(values))
        if key in self.aggregated:
            return None
        self.aggregated.add(key)
        return values

    # -- firing ---------------------------------------------------------------------------------------
    def fire(self, message: str | None) -> None:
        session = self.session
        assert session is not None
        plans = self.engine.plans
        facts = self.wm.facts
        wm = self.wm
        next_activation = session.stepper()  # called only while an activation is being fired
        findall, search = _BN.findall, _BN1.search
        while message is not None:
            # Activations carry only Baton's own names and numbers (compile.py), so a regex reads them
            # exactly, at a fraction of json.loads' cost: {"r3":{"p0":{"bt":"x","bn":4,"sid":"s1"},...}}
            plan = plans[message[2:message.index('"', 2)]]
            if plan is not None:  # None: the start rule
                binding = plan.single
                if binding is not None:  # one pattern: nothing to order
                    found = search(message)
                    assert found is not None
                    seq = int(found[1])
                    seqs = {binding: seq}
                    env = {binding: facts[seq - 1][1]}
                else:
                    env = {}
                    seqs = {}
                    patterns = plan.er.patterns
                    for (_, name), bn in zip(patterns, _ordered(message, findall(message), patterns), strict=True):
                        seq = int(bn)
                        seqs[name] = seq
                        env[name] = facts[seq - 1][1]
                guard = plan.guard
                try:
                    if guard is None or guard(env, wm):
                        if plan.aggregating:
                            shown = self.aggregate_values(plan.er.name, plan.rule, plan.branch, env, seqs)
                            if shown is not None:
                                self.on_fire(plan, env, seqs, shown)
                        else:
                            self.on_fire(plan, env, seqs)
                except TooLarge:
                    raise StopDecision(f"rule '{plan.rule.name}': a number beyond 1e300 was computed on these facts") \
                        from None
                if self.stopped:
                    next_activation()  # the final rule's activation is done; the rest stay on the agenda
                    return
            message = next_activation()

    def on_fire(self, plan: Plan, env: dict[str, Values], seqs: dict[str, int],
                aggregates: dict[str, object] | None = None) -> None:
        d = self.d
        rule = plan.rule
        d.steps += 1
        step_no = d.steps
        if step_no > self.step_limit:
            raise StopDecision(f"step limit of {self.step_limit} firings exceeded")
        if self.deadline is not None and step_no % 32 == 0 and self.clock.monotonic() > self.deadline:
            raise StopDecision("deadline exceeded")
        event: Event = {"kind": "fired", "step": step_no, "round": self.round, "rule": rule.name, "facts": seqs}
        if plan.show_branch:
            event["branch"] = plan.branch
        if aggregates:
            event["aggregates"] = aggregates
        if plan.definitions:
            event["definitions"] = self.definitions(rule, plan.branch, env)
        d.trace.append(event)
        if plan.listed:
            d.fired.append(rule.name)
        for step in rule.steps:
            payload = self.computed(rule, step, env) if step.computed else step.payload
            if self.merged_rows and step.kind == "assert" and rule.name in self.engine.multi_rows:
                payload = {k: v for k, v in payload.items() if k != ROW_FIELD}
            if step.kind == "assert":
                self.assert_step(rule, step, payload)
            elif step.kind == "call":
                self.intend(step.action, env, rule.condition.aliases)
            elif step.kind == "effect":
                self.effect_step(rule, step, payload, env, step_no)
            else:
                self.propose(rule, step, payload, step_no, plan.branch, seqs, aggregates)
        if rule.final:
            self.stopped = rule.name
            d.trace.append({"kind": "stopped", "step": step_no, "round": self.round, "stopped_by": rule.name})

    def assert_step(self, rule: Rule, step: Step, payload: Values) -> None:
        """A fact the rule asserts, into the session at once (and the markers of the aggregates over it)."""
        if step.computed:
            try:
                payload = self.engine.ruleset.types[step.fact_type].validate(payload, step.fact_type)
            except InvalidInput as e:
                raise StopDecision(f"rule '{rule.name}' asserts {e.message}") from None
        seq = self.add_fact(step.fact_type, payload, "rule", rule.name)
        if seq:
            assert self.session is not None
            self.check_joins((step.fact_type,))
            self.session.assert_now(seq, step.fact_type, payload)
            if step.fact_type in self.engine.epochs:
                for marker in self.epoch_facts([step.fact_type]):
                    self.session.assert_now(*marker)

    def effect_step(self, rule: Rule, step: Step, payload: Values, env: dict[str, Values], step_no: int) -> None:
        """An intent only: the outbox runs it after the decision is stored, never during replay."""
        values = dict(payload)
        if step.templates:
            context = {**self.wm.latest(), **env}
            for key, template in step.templates.items():
                try:
                    values[key] = template.render(context)
                except Exception as e:  # hostile facts: the effect carries the error, never a crash
                    values[key] = f"<could not render: {type(e).__name__}>"
        self.effects += 1
        effect: Event = {"kind": "effect", "n": self.effects, "step": step_no, "rule": rule.name,
                         "name": step.action, "with": values}
        if rule.proposes:  # delivered only if this firing's proposal wins (marked in resolve)
            effect["if_wins"] = True
            self.held.append(effect)
        self.d.trace.append(effect)

    def propose(self, rule: Rule, step: Step, payload: Values, step_no: int, branch: int, seqs: dict[str, int],
                aggregates: dict[str, object] | None) -> None:
        """A decide or escalate step: a proposal in the trace, a candidate for resolve."""
        reason = step.reason
        if step.computed and "reason" in payload:
            payload = dict(payload)
            reason = str(payload.pop("reason"))
        proposal: Event = {"kind": "proposal", "step": step_no, "rule": rule.name, "verb": step.kind,
                           "payload": payload, "reason": reason, "priority": rule.priority,
                           "won": False}
        self.d.trace.append(proposal)
        entry = (rule, step, step_no, proposal)
        if aggregates is not None:  # a summary rule: a re-firing on the same facts replaces its proposal
            same = (rule.name, branch, tuple(seqs.values()), rule.steps.index(step))
            earlier = self.summaries.get(same)
            if earlier is not None:
                earlier[3]["superseded"] = True
                self.proposals.remove(earlier)
            self.summaries[same] = entry
        self.proposals.append(entry)

    def definitions(self, rule: Rule, branch: int, env: dict[str, Values]) -> dict[str, object]:
        """The values of the definitions a rule's condition names, on the facts it matched (for the trace);
        those the firing implies (a conjunct of the branch, or its negation) are not evaluated again."""
        out: dict[str, object] = {}
        implied = rule.condition.implied[branch]
        for name, ev in rule.condition.definitions:
            if name in implied:
                out[name] = implied[name]
                continue
            try:
                value = ev(env, self.wm)
            except Exception:  # a part that cannot be computed on these facts shows as absent
                value = MISSING
            out[name] = None if value is MISSING else value
        return out

    def computed(self, rule: Rule, step: Step, env: dict[str, Values]) -> Values:
        """The step's payload with its computed values (``=expr``) evaluated on the facts the rule matched.
        An absent value leaves the field out (an assert then fails if the field is required); a value that
        cannot be computed (division by zero, a bad date) stops the decision as failed, naming the field."""
        out: Values = _copy(step.payload)
        if any(path == ("reason",) for path, _, _ in step.computed):
            out["reason"] = step.reason
        for path, text, ev in step.computed:
            try:
                value = ev(env, self.wm)
            except (Undefined, OverflowError, ArithmeticError, ValueError, TooLarge):
                raise StopDecision(f"rule '{rule.name}': {step.kind}.{'.'.join(path)} = {text} cannot be computed "
                                   "on these facts (division by zero, or a value out of range)") from None
            if isinstance(value, float):
                if value != value or value in (float("inf"), float("-inf")):
                    raise StopDecision(f"rule '{rule.name}': {step.kind}.{'.'.join(path)} = {text} is not a finite "
                                       "number")
                # 15 significant digits, as a decimal calculator shows it: 100 * 1.1 is 110, 0.1 + 0.2 is 0.3
                # (binary floating point's last-digit noise never reaches a decision or a fact)
                value = float(f"{value:.15g}")
                if value.is_integer() and abs(value) < 2**53:
                    value = int(value)
            target: Values = out
            for part in path[:-1]:
                target = target[part]  # type: ignore[assignment]
            if value is MISSING:
                target.pop(path[-1], None)
            else:
                target[path[-1]] = value
        return out
