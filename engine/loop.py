"""The decision loop: rounds of firing, intents collected, calls awaited concurrently, answers asserted.

Engine actions never do I/O. A rule that names a model or tool action records an intent; at the end
of the round the loop issues every intent at once through the ports, waits for all of them (or the
deadline), validates each answer against its ``produces`` type, asserts the facts in issue order, and
runs the next round. Quiescence is a round that fires nothing and issues no call.

A run's state is declared in engine/runstate.py; firing activations is engine/firing.py, making calls
engine/calls.py, both halves of ``_Run`` here. A decision's record and limits are engine/decision.py, its
working memory engine/memory.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.calls import Calls, answer_checker
from engine.compile import START_RULE, CompiledRuleset, compile_ruleset
from engine.decision import DEFAULT_LIMITS, MAX_COMBINATIONS, Decision, Event, HumanInput, Limits, StopDecision, Values
from engine.documents import Document
from engine.driver import Pools, network_budget, pool_for
from engine.errors import InvalidInput, Where
from engine.firing import Firing, Plan
from engine.language.check import EPOCH, always
from engine.language.tables import TableConflict
from engine.language.types import all_optional
from engine.memory import WorkingMemory
from engine.model import Rule, Ruleset, Step
from engine.ports import CallRequest, CallResult, Clock, IdFactory, ModelGateway, ToolConnector
from engine.record import DocumentRef

__all__ = ["MAX_COMBINATIONS", "MAX_INPUT_FACTS", "Decision", "Engine", "HumanInput", "Limits", "WorkingMemory"]

MAX_INPUT_FACTS = 1000


def _tighter(a: float | None, b: float | None) -> float | None:
    """The stricter of a service limit and a ruleset's own (None: no limit from that side)."""
    return b if a is None else a if b is None else min(a, b)


class Engine:
    """A compiled ruleset ready to decide: validation, engine pool and the loop around them."""

    def __init__(self, ruleset: Ruleset, compiled: CompiledRuleset | None = None) -> None:
        self.ruleset = ruleset
        self.compiled = compiled or compile_ruleset(ruleset)
        self.pool: Pools = pool_for(self.compiled)
        if network_budget().max_bytes is None:  # every network registered up front: no decision pays for it
            self.pool.warm()  # (held to a budget, each is registered when a decision first needs it)
        # rules with aggregates: engine rule -> its branch's aggregates; aggregated type -> its marker type
        self.aggregating = {name: er.rule.condition.branches[er.branch] for name, er in self.compiled.rules.items()
                            if er.rule.condition.branches[er.branch].epochs}
        self.epochs = {t[len(EPOCH):]: t for b in self.aggregating.values() for t in b.epochs.values()}
        self.schemas = {t: ft.json_schema() for t, ft in ruleset.types.items()}
        self.pii = {t: [f for f, spec in ft.fields.items() if spec.pii] for t, ft in ruleset.types.items()
                    if any(spec.pii for spec in ft.fields.values())}
        self.checks = {t: answer_checker(ft.validate) for t, ft in ruleset.types.items()}
        # model actions whose prompt may read ``facts`` (every fact by type), built only for them
        self.reads_facts = {name: m.template is None or m.template.reads("facts") for name, m in ruleset.models.items()}
        self.multi_rows = {t.rule_name(r) for t in ruleset.tables if t.multi for r in t.rows}  # facts carry `row`
        # the rules a table with expression inputs computes them by (TABLE#inputs): the engine's own, in the
        # trace as every firing is, but not in `fired` - the rules and rows an author wrote
        self.internal = {f"{t.name}#inputs" for t in ruleset.tables if t.routed}
        # fact type -> the multi-pattern joins that read it (each a tuple of the joined types, one per pattern)
        joins = {tuple(sorted(er.rule.condition.branches[er.branch].bindings.values()))
                 for er in self.compiled.rules.values() if len(er.rule.condition.branches[er.branch].bindings) > 1}
        self.joins: dict[str, list[tuple[str, ...]]] = {}
        for join in joins:
            for t in set(join):
                self.joins.setdefault(t, []).append(join)
        self.join_width = max((len(j) for j in joins), default=0)
        # the types whose facts may hold a list (their working-memory keys turn lists into tuples)
        self.listy = frozenset(t for t, ft in ruleset.types.items()
                               if any(f.kind == "list" for f in ft.fields.values()))
        self.plans = self.fire_plans()
        self.limits_seen: dict[tuple[object, ...], tuple[int, float | None, int | None, float | None]] = {}
        # extraction reads a document in chunks: each chunk's answer may leave fields out
        partial = {m.produces for m in ruleset.models.values() if m.from_document and m.produces}
        self.partial_schemas = {t: {**self.schemas[t], "required": []} for t in partial}
        self.partial_checks = {t: answer_checker(all_optional(ruleset.types[t]).validate) for t in partial}

    def limits_of(self, limits: Limits) -> tuple[int, float | None, int | None, float | None]:
        """Step limit, deadline, model calls and cost for a decision: the stricter of the service's
        ``limits`` and the ruleset's own (worked out once per combination)."""
        key = (limits.step_limit, limits.deadline_s, limits.max_calls, limits.max_cost_usd)
        found = self.limits_seen.get(key)
        if found is None:
            rs = self.ruleset
            max_calls = _tighter(limits.max_calls, rs.max_calls)
            found = (int(_tighter(limits.step_limit, rs.step_limit) or rs.step_limit),
                     _tighter(limits.deadline_s, rs.deadline_s), int(max_calls) if max_calls is not None else None,
                     _tighter(limits.max_cost_usd, rs.max_cost_usd))
            if len(self.limits_seen) < 64:
                self.limits_seen[key] = found
        return found

    def fire_plans(self) -> dict[str, Plan | None]:
        """Engine rule name -> what firing it takes, worked out once (None: the start rule, which does nothing)."""
        plans: dict[str, Plan | None] = {START_RULE: None}
        for name, er in self.compiled.rules.items():
            rule = er.rule
            single = er.patterns[0][1] if len(er.patterns) == 1 else None
            plans[name] = Plan(er, rule, er.branch, None if er.guard is always else er.guard, single,
                                name in self.aggregating,
                                len(rule.condition.branches) > 1, bool(rule.condition.definitions),
                                rule.name not in self.internal)
        return plans

    # -- input ---------------------------------------------------------------------------------------
    def validate_input(self, facts: object, allow_empty: bool = False) -> list[tuple[str, Values]]:
        """Check a request's facts: ``{type: fact}`` or ``{type: [fact, ...]}``. Raises InvalidInput."""
        if not isinstance(facts, dict) and not isinstance(facts, Mapping):  # dict first: the ABC check is slow
            raise InvalidInput("invalid_fact", "facts must be an object of fact type -> fact",
                               Where(path="facts"))
        out: list[tuple[str, Values]] = []
        types = self.ruleset.types
        for tname, value in facts.items():
            path = f"facts.{tname}" if isinstance(tname, str) and len(tname) < 80 else "facts"
            if not isinstance(tname, str) or tname not in self.ruleset.inputs:
                known = tname in types if isinstance(tname, str) else False
                raise InvalidInput("unknown_fact_type" if not known else "not_an_input",
                                   f"{path}: {'not an input' if known else 'unknown fact type'} of "
                                   f"{self.ruleset.name} (inputs: {', '.join(self.ruleset.inputs)})",
                                   Where(path=path))
            validate = types[tname].validate
            items = value if isinstance(value, list) else [value]
            if len(out) + len(items) > MAX_INPUT_FACTS:
                raise InvalidInput("too_many_facts", f"more than {MAX_INPUT_FACTS} input facts", Where(path=path))
            for i, item in enumerate(items):
                out.append((tname, validate(item, f"{path}[{i}]" if isinstance(value, list) else path)))
        if not out and not allow_empty:
            raise InvalidInput("no_facts", "a decision needs at least one input fact or document",
                               Where(path="facts"))
        return out

    # -- the loop ------------------------------------------------------------------------------------
    async def decide(self, facts: object, models: ModelGateway, tools: ToolConnector, clock: Clock,
                     ids: IdFactory, limits: Limits | None = None, documents: Sequence[Document] = ()) -> Decision:
        validated = self.validate_input(facts, allow_empty=bool(documents))
        return await self.run(validated, models, tools, clock, ids, limits or DEFAULT_LIMITS, documents=documents)

    async def run(self, validated: list[tuple[str, Values]], models: ModelGateway, tools: ToolConnector,
                  clock: Clock, ids: IdFactory, limits: Limits, human: list[HumanInput] | None = None,
                  resumes: str = "", documents: Sequence[Document] = (),
                  document_refs: Sequence[DocumentRef] | None = None) -> Decision:
        """Decide; ``human`` holds reviewers' answers, asserted (in order) each time the decision would
        end escalated - how an escalated decision resumes, and how its resumption replays.
        ``document_refs`` (replay) are the document facts to assert when some texts may be missing."""
        rs = self.ruleset
        started = clock.monotonic()
        d = Decision(ids.new_id(), rs.name, rs.version, [{"type": t, "values": v} for t, v in validated],
                     started_at=clock.now(), resumes=resumes,
                     documents=list(document_refs) if document_refs is not None else [doc.fact() for doc in documents])
        run = _Run(self, d, models, tools, clock, limits, list(human or []), documents)
        try:
            await run.execute(validated)
        except (StopDecision, TableConflict) as stop:  # a unique/any table matched two rows at decide time
            d.outcome, d.decision, d.reason, d.rule = "failed", {}, stop.reason, ""
        finally:
            run.close()
        d.latency_ms = round((clock.monotonic() - started) * 1000, 3)
        d.finished_at = clock.now()
        return d


class _Run(Firing, Calls):
    """The state of one decision while it runs (its fields: engine/runstate.py)."""

    __slots__ = ()

    def __init__(self, engine: Engine, d: Decision, models: ModelGateway, tools: ToolConnector, clock: Clock,
                 limits: Limits, human: list[HumanInput], documents: Sequence[Document] = ()) -> None:
        self.human = human
        self.documents = {doc.id: doc for doc in documents} if documents else {}
        self.held = []  # effects of rules that propose: sent only if the proposal wins
        self.extractions = {}  # call key -> the extraction it is a chunk of
        self.unreadable = []  # failures found while intending, asserted next round
        self.effects = 0
        self.engine, self.d, self.models, self.tools, self.clock = engine, d, models, tools, clock
        self.step_limit, deadline, self.max_calls, self.max_cost = engine.limits_of(limits)
        self.mask_pii = limits.mask_pii
        self.merged_rows = limits.merged_rows and bool(engine.multi_rows)
        self.model_calls = 0
        self.carried_cost = 0.0  # spent by the escalated decision this one resumes: in the budget, not in cost_usd
        self.max_combinations = limits.max_combinations
        d.limits = {"step_limit": self.step_limit, "deadline_s": deadline, "max_calls": self.max_calls,
                    "max_cost_usd": self.max_cost}
        if self.max_combinations != MAX_COMBINATIONS:
            d.limits["max_combinations"] = self.max_combinations
        # ports that answer from memory (recorded, canned): asked at once, no task made
        self.now_models = getattr(models, "answer_now", None)
        self.now_tools = getattr(tools, "answer_now", None)
        self.deadline = clock.monotonic() + deadline if deadline is not None else None
        self.wm = WorkingMemory(started_at=d.started_at, listy=engine.listy)
        self.epoch_counts = {}
        self.aggregated = set()  # (rule, branch, facts, values) that fired
        # a summary rule's latest proposal per (rule, branch, facts, step): a re-firing replaces it (item 20)
        self.summaries = {}
        self.stopped = ""  # the final rule that stopped the decision
        self.session = None
        self.round = 0
        self.proposals = []
        self.intents = []
        self.called = {}  # call key -> call number

    def close(self) -> None:
        if self.session is not None:
            self.session.close()

    def add_fact(self, type_name: str, values: Values, source: str, by: str = "",
                 provenance: dict[str, Any] | None = None) -> int:
        seq = self.wm.add(type_name, values)
        if seq:
            event: Event = {"kind": "fact", "seq": seq, "type": type_name, "values": values, "source": source,
                            "round": self.round}
            if by:
                event["by"] = by
            if provenance:
                event["provenance"] = provenance
            self.d.trace.append(event)
        return seq

    async def execute(self, validated: list[tuple[str, Values]]) -> None:
        self.round = 1
        new = self.first_facts(validated)
        if self.engine.joins:
            self.check_joins(t for _, t, _ in new)
        self.session = self.engine.pool.open(new, self.wm)
        while True:
            self.d.rounds = self.round
            fired_before = self.d.steps
            self.fire(self.session.first())
            if self.stopped:
                self.intents, self.unreadable = [], []  # a final rule fired: no call from this round on
                if not (self.human and self.escalating()):
                    break
                self.stopped = ""  # a reviewer's answer resumes a decision a final escalation stopped;
                held = self.session.first()  # what the stop cut off stays cut off: only what the answer
                while held is not None:  # enables fires
                    held = self.session.next()
            if not self.intents and self.human and self.escalating():
                self.round += 1
                given = self.human.pop(0)
                seq = self.add_fact(given.type, given.values, "human", given.by)
                if seq:
                    self.check_joins((given.type,))
                    self.session.assert_batch(self.with_epochs([(seq, given.type, given.values)]))
                continue
            if not self.intents and not self.unreadable:
                break
            if self.deadline is not None and self.clock.monotonic() > self.deadline:
                raise StopDecision("deadline exceeded")
            intents, self.intents = self.intents, []
            answers = await self.call_all(intents) if intents else []
            self.round += 1
            batch = self.answers_as_facts(intents, answers)
            if self.engine.joins:
                self.check_joins(t for _, t, _ in batch)
            self.session.assert_batch(self.with_epochs(batch))
            if not batch and self.d.steps == fired_before:
                break
        self.resolve()

    def first_facts(self, validated: list[tuple[str, Values]]) -> list[tuple[int, str, Values]]:
        """The first round's facts: the validated input, the request's documents, the aggregates' markers."""
        new = [(seq, t, v) for t, v in validated if (seq := self.add_fact(t, v, "input"))]
        for ref in self.d.documents:
            fact: Values = dict(ref)
            seq = self.add_fact("document", fact, "document")
            if seq:
                new.append((seq, "document", fact))
        if self.engine.epochs:
            new.extend(self.epoch_facts(list(self.engine.epochs)))
        return new

    def answers_as_facts(self, intents: list[tuple[CallRequest, str]], answers: list[CallResult]
                         ) -> list[tuple[int, str, Values]]:
        """The next round's facts: a failure for each unreadable extraction, and each call's answer (an
        extraction's answers once, with its last chunk)."""
        batch = []
        if self.unreadable:
            for t, v in self.unreadable:
                seq = self.add_fact(t, v, "failure", str(v.get("action", "")))
                if seq:
                    batch.append((seq, t, v))
            self.unreadable = []
        extractions = self.extractions
        for (call, key), result in zip(intents, answers, strict=True):
            extraction = extractions.get(key) if extractions else None
            if extraction is None:
                for t, v, source in self.facts_from(call, result):
                    seq = self.add_fact(t, v, source, call.action)
                    if seq:
                        batch.append((seq, t, v))
                continue
            extraction.results[key] = result
            if len(extraction.results) < len(extraction.keys):
                continue  # asserted once, with its last chunk
            for t, v, source, where in self.extracted(extraction):
                seq = self.add_fact(t, v, source, call.action, where)
                if seq:
                    batch.append((seq, t, v))
        return batch

    # -- outcome --------------------------------------------------------------------------------------
    def winner(self) -> tuple[Rule, Step, int, Event] | None:
        proposals = self.proposals
        if len(proposals) < 2:
            return proposals[0] if proposals else None
        return min(proposals, key=lambda p: (-p[0].priority, p[0].index, p[2]))

    def escalating(self) -> bool:
        best = self.winner()
        return best is not None and best[1].kind == "escalate"

    def resolve(self) -> None:
        d = self.d
        best = self.winner()
        won_step = best[2] if best is not None else -1
        for effect in self.held:
            if effect["step"] != won_step:
                effect["cancelled"] = True  # its rule's proposal lost: the outbox never sends it
        if best is None:
            d.outcome = "no_decision"
            return
        rule, step, _, event = best
        event["won"] = True
        d.outcome = "decided" if step.kind == "decide" else "escalated"
        payload = event["payload"]
        d.decision, d.reason, d.rule = dict(payload), str(event["reason"]), rule.name
        if step.kind == "escalate":
            d.escalation = {"queue": payload.get("queue", ""), "reason": d.reason, "expects": step.expects,
                            "sla_s": step.sla_s, "rule": rule.name}
