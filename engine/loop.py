"""The decision loop: rounds of firing, intents collected, calls awaited concurrently, answers asserted.

Engine actions never do I/O. A rule that names a model or tool action records an intent; at the end
of the round the loop issues every intent at once through the ports, waits for all of them (or the
deadline), validates each answer against its ``produces`` type, asserts the facts in issue order, and
runs the next round. Quiescence is a round that fires nothing and issues no call.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from engine.compile import START_RULE, CompiledRuleset, EngineRule, compile_ruleset
from engine.documents import Chunk, Document, chunks, merge
from engine.driver import Agenda, Pools, SoloAgenda, pool_for
from engine.errors import BatonError, InvalidInput, Where
from engine.language.check import EPOCH, MISSING, FactIndex, Guard, TooLarge, Undefined, always
from engine.language.dates import from_timestamp
from engine.language.tables import ROW_FIELD, TableConflict
from engine.language.types import all_optional
from engine.model import ModelAction, Rule, Ruleset, Step, ToolAction
from engine.ports import CallRequest, CallResult, Clock, IdFactory, ModelGateway, ToolConnector
from engine.record import DecisionRecord, DocumentRef, InputFact, TraceEvent

Values = dict[str, object]
Event = TraceEvent
MAX_INPUT_FACTS = 1000


class WorkingMemory(FactIndex):
    """Every fact of one decision, by sequence number (1-based). Facts only grow; identical ones are one."""

    __slots__ = ("by_type", "facts", "keys", "last", "listy", "now", "started_at", "store")

    def __init__(self, now: tuple[str, str] | None = None, started_at: float = 0.0,
                 listy: frozenset[str] | None = None) -> None:
        self.facts: list[tuple[str, Values]] = []
        self.keys: set[tuple[str, tuple[tuple[str, object], ...]]] = set()
        self.by_type: dict[str, list[int]] = {}
        self.last: dict[str, Values] = {}  # type -> its latest fact (aggregate markers left out)
        self.listy = listy  # the types whose facts may hold lists (None: not known, find out per fact)
        self.now = now  # None: the date and time of ``started_at``, worked out when a rule first asks
        self.started_at = started_at
        self.store: dict[object, object] = {}

    def memo(self) -> dict[object, object]:
        return self.store

    def moment(self) -> tuple[str, str]:
        now = self.now
        if now is None:
            try:
                now = from_timestamp(self.started_at)
            except (OverflowError, OSError, ValueError):
                now = from_timestamp(0.0)
            self.now = now
        return now

    def add(self, type_name: str, values: Values) -> int:
        """The new fact's sequence number, or 0 when an identical fact is already known."""
        # validated values come in declaration order with lists only of scalars: a cheap exact key
        # (the items as they are when no value is a list, else lists as tuples)
        listy = self.listy
        if listy is not None and type_name in listy:
            key: tuple[str, tuple[tuple[str, object], ...]] = \
                (type_name, tuple((k, tuple(v) if type(v) is list else v) for k, v in values.items()))
            known = key in self.keys
        else:
            key = (type_name, tuple(values.items()))
            try:
                known = key in self.keys
            except TypeError:  # a list among the values (hashing says so)
                key = (type_name, tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in values.items()))
                known = key in self.keys
        if known:
            return 0
        self.keys.add(key)
        facts = self.facts
        facts.append((type_name, values))
        seq = len(facts)
        seqs = self.by_type.get(type_name)
        if seqs is None:
            self.by_type[type_name] = [seq]
        else:
            seqs.append(seq)
        self.last[type_name] = values
        return seq

    def add_marker(self, type_name: str, values: Values) -> int:
        """An aggregate's marker fact (see ``_Run.epoch_facts``): added as ``add`` does, but it is no
        fact a template or a call reads, so it is never the latest of its type."""
        seq = self.add(type_name, values)
        if seq:
            del self.last[type_name]
        return seq

    def has_type(self, type_name: str) -> bool:
        return type_name in self.by_type

    def get(self, seq: int) -> tuple[str, Values]:
        return self.facts[seq - 1]

    def of_type(self, type_name: str) -> list[int]:
        return self.by_type.get(type_name, [])

    def values(self, seq: int) -> Values:
        return self.facts[seq - 1][1]

    def type_of(self, seq: int) -> str:
        return self.facts[seq - 1][0]

    def latest(self) -> dict[str, Values]:
        return dict(self.last)


MAX_COMBINATIONS = 1_000_000


@dataclass(slots=True)
class Limits:
    step_limit: int | None = None  # None: the ruleset's (default 1,000 firings)
    deadline_s: float | None = None  # None: the ruleset's, or no deadline
    max_calls: int | None = None  # model calls per decision; None: the ruleset's budget, or none
    max_cost_usd: float | None = None  # model cost per decision; None: the ruleset's budget, or none
    mask_pii: bool = True  # prompts are recorded with pii fields masked
    # replaying a decision made before multi-hit tables' facts carried `row` (equal rows were one fact then)
    merged_rows: bool = False
    # combinations of facts one multi-pattern rule may have to consider (the product of its patterns' fact
    # counts): durable-rules builds each one, about 350 bytes apiece, before any guard runs - a self-join of
    # three over 1,000 facts is 10^9 of them. Over it the decision fails, naming the rule's fact types.
    max_combinations: int = MAX_COMBINATIONS

    def with_deadline(self, deadline_s: float | None) -> Limits:
        """These limits with another deadline (what ``dataclasses.replace`` gives, made directly: a service
        makes one per decision)."""
        return Limits(self.step_limit, deadline_s, self.max_calls, self.max_cost_usd, self.mask_pii,
                      self.merged_rows, self.max_combinations)


_DEFAULT_LIMITS = Limits()  # read, never changed, by a decision given no limits


@dataclass(slots=True)
class Decision:
    """The decision record: everything needed to explain and replay one decision."""

    decision_id: str
    ruleset: str
    version: str
    inputs: list[InputFact]
    outcome: str = "no_decision"
    decision: Values = field(default_factory=dict)
    reason: str = ""
    rule: str = ""
    fired: list[str] = field(default_factory=list)
    trace: list[Event] = field(default_factory=list)
    steps: int = 0
    rounds: int = 0
    calls: int = 0
    cost_usd: float = 0.0
    tokens: int = 0
    latency_ms: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    limits: dict[str, object] = field(default_factory=dict)
    escalation: dict[str, object] = field(default_factory=dict)  # queue, reason, expects, sla_s, rule
    resumes: str = ""  # the id of the escalated decision this one resumes
    documents: list[DocumentRef] = field(default_factory=list)  # id, name, media_type, pages, chars (no text)

    def to_dict(self) -> DecisionRecord:
        out: DecisionRecord = {
            "decision_id": self.decision_id, "ruleset": self.ruleset, "version": self.version,
            "inputs": self.inputs, "outcome": self.outcome, "decision": self.decision, "reason": self.reason,
            "rule": self.rule, "fired": self.fired, "trace": self.trace, "steps": self.steps,
            "rounds": self.rounds, "calls": self.calls, "cost_usd": self.cost_usd, "tokens": self.tokens,
            "latency_ms": self.latency_ms, "started_at": self.started_at, "finished_at": self.finished_at,
            "limits": self.limits, "escalation": self.escalation, "resumes": self.resumes,
        }
        if self.documents:  # only when there are some: records without documents stay as they were
            out["documents"] = self.documents
        return out


def _copy(payload: Values) -> Values:
    return {k: _copy(v) if isinstance(v, dict) else v for k, v in payload.items()}


def _tighter(a: float | None, b: float | None) -> float | None:
    """The stricter of a service limit and a ruleset's own (None: no limit from that side)."""
    return b if a is None else a if b is None else min(a, b)


def _render(m: ModelAction, context: Mapping[str, object], every: Mapping[str, object]) -> str:
    try:
        assert m.template is not None
        return m.template.render(context, facts=every)
    except Exception as e:  # a template over hostile facts: the call goes out with the error, never a crash
        return f"<prompt could not be rendered: {type(e).__name__}: {e}>"


def _mask(values: Values, fields: tuple[str, ...] | list[str]) -> Values:
    if not fields:
        return values
    return {k: ("[redacted]" if k in fields else v) for k, v in values.items()}


def _checker(validate: Callable[[object, str], Values]) -> Callable[[object], str]:
    def check(answer: object) -> str:
        try:
            validate(answer, "answer")
        except InvalidInput as e:
            return e.message
        return ""

    return check


_BN = re.compile(r'"(p\d+)":\{[^{}]*?"bn": ?(\d+)')
_BN1 = re.compile(r'"bn": ?(\d+)')  # an activation of one pattern: the first "bn" is its fact's


def _ordered(message: str, found: list[tuple[str, str]], patterns: tuple[tuple[str, str], ...]) -> list[str]:
    """The sequence numbers of the matched facts, in the order of the rule's patterns."""
    if len(found) == 1 or all(p == f[0] for (p, _), f in zip(patterns, found, strict=True)):
        return [bn for _, bn in found]
    by_name = dict(found)
    return [by_name[p] for p, _ in patterns]


@dataclass(frozen=True, slots=True)
class HumanInput:
    """A reviewer's answer: a validated fact, and who gave it."""

    type: str
    values: Values
    by: str


@dataclass(slots=True)
class _Extraction:
    """A document read by one model action: one call per chunk, one fact from their answers."""

    action: str
    produces: str
    doc: Document
    chunks: list[Chunk]
    keys: list[str]
    results: dict[str, CallResult] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Plan:
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


class _Stop(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


class Engine:
    """A compiled ruleset ready to decide: validation, engine pool and the loop around them."""

    def __init__(self, ruleset: Ruleset, compiled: CompiledRuleset | None = None) -> None:
        self.ruleset = ruleset
        self.compiled = compiled or compile_ruleset(ruleset)
        self.pool: Pools = pool_for(self.compiled)
        self.pool.warm()  # every network registered up front: no decision pays for it
        # rules with aggregates: engine rule -> its branch's aggregates; aggregated type -> its marker type
        self.aggregating = {name: er.rule.condition.branches[er.branch] for name, er in self.compiled.rules.items()
                            if er.rule.condition.branches[er.branch].epochs}
        self.epochs = {t[len(EPOCH):]: t for b in self.aggregating.values() for t in b.epochs.values()}
        self.schemas = {t: ft.json_schema() for t, ft in ruleset.types.items()}
        self.pii = {t: [f for f, spec in ft.fields.items() if spec.pii] for t, ft in ruleset.types.items()
                    if any(spec.pii for spec in ft.fields.values())}
        self.checks = {t: _checker(ft.validate) for t, ft in ruleset.types.items()}
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
        self.partial_checks = {t: _checker(all_optional(ruleset.types[t]).validate) for t in partial}

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

    def fire_plans(self) -> dict[str, _Plan | None]:
        """Engine rule name -> what firing it takes, worked out once (None: the start rule, which does nothing)."""
        plans: dict[str, _Plan | None] = {START_RULE: None}
        for name, er in self.compiled.rules.items():
            rule = er.rule
            single = er.patterns[0][1] if len(er.patterns) == 1 else None
            plans[name] = _Plan(er, rule, er.branch, None if er.guard is always else er.guard, single,
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
        return await self.run(validated, models, tools, clock, ids, limits or _DEFAULT_LIMITS, documents=documents)

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
        except (_Stop, TableConflict) as stop:  # a unique/any table matched two rows at decide time
            d.outcome, d.decision, d.reason, d.rule = "failed", {}, stop.reason, ""
        finally:
            run.close()
        d.latency_ms = round((clock.monotonic() - started) * 1000, 3)
        d.finished_at = clock.now()
        return d


class _Run:
    """The state of one decision while it runs."""

    __slots__ = ("aggregated", "called", "carried_cost", "clock", "d", "deadline", "documents", "effects", "engine",
                 "epoch_counts", "extractions", "held", "human", "intents", "mask_pii", "max_calls",
                 "max_combinations", "max_cost", "merged_rows", "model_calls", "models", "now_models", "now_tools",
                 "proposals", "round", "session", "step_limit", "stopped", "summaries", "tools", "unreadable", "wm")

    def __init__(self, engine: Engine, d: Decision, models: ModelGateway, tools: ToolConnector, clock: Clock,
                 limits: Limits, human: list[HumanInput], documents: Sequence[Document] = ()) -> None:
        self.human = human
        self.documents = {doc.id: doc for doc in documents} if documents else {}
        self.held: list[Event] = []  # effects of rules that propose: sent only if the proposal wins
        self.extractions: dict[str, _Extraction] = {}  # call key -> the extraction it is a chunk of
        self.unreadable: list[tuple[str, Values]] = []  # failures found while intending, asserted next round
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
        self.epoch_counts: dict[str, int] = {}
        self.aggregated: set[tuple[object, ...]] = set()  # (rule, branch, facts, values) that fired
        # a summary rule's latest proposal per (rule, branch, facts, step): a re-firing replaces it (item 20)
        self.summaries: dict[tuple[object, ...], tuple[Rule, Step, int, Event]] = {}
        self.stopped = ""  # the final rule that stopped the decision
        self.session: Agenda | SoloAgenda | None = None
        self.round = 0
        self.proposals: list[tuple[Rule, Step, int, Event]] = []
        self.intents: list[tuple[CallRequest, str]] = []
        self.called: dict[str, int] = {}  # call key -> call number

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
                    raise _Stop(f"a rule joining {' x '.join(join)} would consider {n:,} combinations of facts, "
                                f"over the limit of {self.max_combinations:,}")

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
                raise _Stop("deadline exceeded")
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

    # -- aggregates -----------------------------------------------------------------------------------
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
                    raise _Stop(f"rule '{plan.rule.name}': a number beyond 1e300 was computed on these facts") \
                        from None
                if self.stopped:
                    next_activation()  # the final rule's activation is done; the rest stay on the agenda
                    return
            message = next_activation()

    def on_fire(self, plan: _Plan, env: dict[str, Values], seqs: dict[str, int],
                aggregates: dict[str, object] | None = None) -> None:
        d = self.d
        rule = plan.rule
        d.steps += 1
        step_no = d.steps
        if step_no > self.step_limit:
            raise _Stop(f"step limit of {self.step_limit} firings exceeded")
        if self.deadline is not None and step_no % 32 == 0 and self.clock.monotonic() > self.deadline:
            raise _Stop("deadline exceeded")
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
                raise _Stop(f"rule '{rule.name}' asserts {e.message}") from None
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
                raise _Stop(f"rule '{rule.name}': {step.kind}.{'.'.join(path)} = {text} cannot be computed on "
                            "these facts (division by zero, or a value out of range)") from None
            if isinstance(value, float):
                if value != value or value in (float("inf"), float("-inf")):
                    raise _Stop(f"rule '{rule.name}': {step.kind}.{'.'.join(path)} = {text} is not a finite number")
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

    def intend(self, action: str, env: dict[str, Values], aliases: Mapping[str, str]) -> None:
        rs = self.engine.ruleset
        context: dict[str, Values] = self.wm.latest()
        context.update(env)
        m = rs.models.get(action)
        if m is not None:
            if m.from_document:
                self.intend_extraction(m, context, self.every_fact(), env, aliases)
                return
            call = self.model_call(m, context, None, aliases)
        else:
            t: ToolAction = rs.tools[action]
            params: dict[str, object] = {}
            for pname, ev in t.params.items():
                try:
                    value = ev(context, self.wm)
                except KeyError:  # the param names a fact type with no fact yet
                    value = None
                params[pname] = None if value is MISSING else value
            call = CallRequest(action, "tool", {"connector": t.connector, **t.config, "params": params},
                               t.produces, self.engine.schemas[t.produces], t.retries, t.timeout_s,
                               check=self.engine.checks[t.produces])
        key = action + "\x00" + orjson.dumps(call.request).decode()
        if key in self.called:
            return
        self.called[key] = len(self.called) + 1
        self.intents.append((call, key))

    def every_fact(self) -> dict[str, list[Values]]:
        """Every fact by type, as a prompt's ``facts`` reads them."""
        facts = self.wm.facts
        return {t: [facts[s - 1][1] for s in seqs] for t, seqs in self.wm.by_type.items()}

    def model_call(self, m: ModelAction, context: Mapping[str, object], every: Mapping[str, list[Values]] | None,
                   aliases: Mapping[str, str], chunk: tuple[Document, Chunk] | None = None) -> CallRequest:
        """The call of model action ``m``; ``every`` (every fact by type) is worked out here when None and
        the prompt reads it or PII has to be masked."""
        if chunk is not None:
            context = {**context, "chunk": chunk[1].context()}
        pii = self.engine.pii
        masking = bool(self.mask_pii and pii and any(t in pii for t in self.wm.by_type))
        if every is None:
            every = self.every_fact() if masking or self.engine.reads_facts[m.name] else {}
        prompt = _render(m, context, every)
        request: dict[str, object] = {"group": m.group, "prompt": prompt, "produces": m.produces}
        if chunk is not None:
            request.update(document=chunk[0].id, chunk=chunk[1].index + 1, chunks=chunk[1].count)
        payload: dict[str, object] = {}
        secrets: tuple[str, ...] = ()
        if masking:
            masked_ctx = {b: (_mask(f, pii.get(aliases.get(b, b), ())) if isinstance(f, dict) and b != "chunk"
                              else f) for b, f in context.items()}
            masked_all = {t: [_mask(f, pii.get(t, ())) for f in fs] for t, fs in every.items()}
            payload = dict(request)
            request = {**request, "prompt": _render(m, masked_ctx, masked_all)}
            secrets = tuple(sorted({str(f[name]) for t, fs in every.items() for f in fs
                                    for name in pii.get(t, ()) if isinstance(f.get(name), str) and f[name]}))
        e = self.engine
        schema = e.partial_schemas[m.produces] if chunk is not None else e.schemas[m.produces]
        check = e.partial_checks[m.produces] if chunk is not None else e.checks[m.produces]
        return CallRequest(m.name, "model", request, m.produces, schema, m.retries, m.timeout_s, payload, check,
                           secrets)

    def intend_extraction(self, m: ModelAction, context: Mapping[str, object], every: Mapping[str, list[Values]],
                          env: Mapping[str, Values], aliases: Mapping[str, str]) -> None:
        """One call per chunk of the document the rule matched; their answers become one fact."""
        fact = next((f for b, f in env.items() if aliases.get(b, b) == "document"), None)
        doc_id = str(fact.get("id", "")) if fact is not None else ""
        doc = self.documents.get(doc_id)
        if doc is None:
            marker = f"{m.name}\x00unreadable\x00{doc_id}"
            if marker not in self.called:
                self.called[marker] = len(self.called) + 1
                self.unreadable.append(("failure", {"action": m.name, "kind": "no_document",
                                                    "error": f"the text of document {doc_id[:12]} is not available"}))
            return
        pieces = chunks(doc, m.chunk_chars)
        calls = [self.model_call(m, context, every, aliases, (doc, c)) for c in pieces]
        keys = [m.name + "\x00" + orjson.dumps(c.request).decode() for c in calls]
        if keys[0] in self.called:
            return  # this document was read by this action already
        extraction = _Extraction(m.name, m.produces, doc, pieces, keys)
        for call, key in zip(calls, keys, strict=True):
            self.called[key] = len(self.called) + 1
            self.extractions[key] = extraction
            self.intents.append((call, key))

    def extracted(self, x: _Extraction) -> list[tuple[str, Values, str, dict[str, Any] | None]]:
        answered = [(c, x.results[k]) for c, k in zip(x.chunks, x.keys, strict=True)]
        check = self.engine.partial_checks[x.produces]
        good = [(c, r.answer) for c, r in answered if r.ok and isinstance(r.answer, dict) and not check(r.answer)]
        failed = [(c, r) for c, r in answered if not r.ok or not isinstance(r.answer, dict) or check(r.answer)]
        if not good:
            first = failed[0][1]
            kind, error = (first.failure_kind, first.error) if not first.ok else (
                "invalid_answer", check(first.answer) or "the answer is not an object")
            failure: Values = {"action": x.action, "kind": kind,
                               "error": f"every chunk of {x.doc.name} failed: {error}"[:1000]}
            return [("failure", failure, "failure", None)]
        ft = self.engine.ruleset.types[x.produces]
        merged, provenance = merge(list(ft.fields), good, x.doc)
        try:
            values = ft.validate(merged, f"{x.action}.answer")
        except InvalidInput as e:
            note = f" ({len(failed)} of {len(x.chunks)} chunks failed)" if failed else ""
            failure = {"action": x.action, "kind": "invalid_answer",
                       "error": f"the document {x.doc.name} does not give a whole {x.produces}: {e.message}{note}"
                       [:1000]}
            return [("failure", failure, "failure", None)]
        where = {"document": x.doc.id, "name": x.doc.name, "chunks": len(x.chunks), "fields": provenance}
        return [(x.produces, values, "model", where)]

    def over_budget(self, call: CallRequest) -> CallResult | None:
        if call.kind != "model":
            return None
        if self.max_calls is not None and self.model_calls >= self.max_calls:
            return CallResult(failure_kind="budget", error=f"the decision's budget of {self.max_calls} model calls "
                              "is spent")
        if self.max_cost is not None and self.d.cost_usd + self.carried_cost >= self.max_cost:
            return CallResult(failure_kind="budget", error=f"the decision's budget of ${self.max_cost} is spent "
                              f"(${self.d.cost_usd + self.carried_cost:.6f} used)")
        self.model_calls += 1
        return None

    # -- calls ----------------------------------------------------------------------------------------
    async def call_all(self, intents: list[tuple[CallRequest, str]]) -> list[CallResult]:
        refused = [self.over_budget(call) if call.kind == "model" else None for call, _ in intents]
        if any(refused):
            merged: list[CallResult | None] = list(refused)
            todo = [(i, item) for i, item in enumerate(intents) if refused[i] is None]
            answered = await self._dispatch([item for _, item in todo]) if todo else []
            for (i, _), result in zip(todo, answered, strict=True):
                merged[i] = result
            for (call, key), budget in zip(intents, refused, strict=True):
                if budget is not None:
                    self.record_call(call, key, (budget, 0.0))
            return [r for r in merged if r is not None]
        return await self._dispatch(intents)

    async def _dispatch(self, intents: list[tuple[CallRequest, str]]) -> list[CallResult]:
        """Answers from memory at once; the rest awaited together, until all are in or the deadline."""
        now_models, now_tools = self.now_models, self.now_tools
        immediate = [None if (now := now_models if call.kind == "model" else now_tools) is None else now(call)
                     for call, _ in intents]  # None: this one must be awaited
        if all(r is not None for r in immediate):  # every answer from memory (recorded, canned): nothing to await
            answered: list[CallResult] = []
            for (call, key), r in zip(intents, immediate, strict=True):
                assert r is not None
                self.record_call(call, key, (r, 0.0))
                answered.append(r)
            return answered
        results: list[tuple[CallResult, float] | None] = [None if r is None else (r, 0.0) for r in immediate]
        waiting = [i for i, r in enumerate(results) if r is None]
        if len(waiting) == 1 and self.deadline is None:  # nothing to run beside it: no task needed
            results[waiting[0]] = await self.timed(intents[waiting[0]][0])
        elif waiting:
            tasks = {i: asyncio.ensure_future(self.timed(intents[i][0])) for i in waiting}
            timeout = None
            if self.deadline is not None:
                timeout = max(0.0, self.deadline - self.clock.monotonic())
            done, pending = await asyncio.wait(tasks.values(), timeout=timeout)
            for i, task in tasks.items():
                results[i] = task.result() if task in done else None
            if pending:
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                for (call, key), timed in zip(intents, results, strict=True):
                    self.record_call(call, key, timed)
                raise _Stop("deadline exceeded while waiting for calls")
        out = []
        for (call, key), timed in zip(intents, results, strict=True):
            assert timed is not None
            self.record_call(call, key, timed)
            out.append(timed[0])
        return out

    async def timed(self, call: CallRequest) -> tuple[CallResult, float]:
        start = self.clock.monotonic()
        try:
            port = self.models.complete if call.kind == "model" else self.tools.call
            result = await port(call)
        except asyncio.CancelledError:
            raise
        except BatonError as e:
            result = CallResult(failure_kind=e.code, error=e.message)
        except Exception as e:  # an adapter bug must not take the decision down: it becomes a fact
            result = CallResult(failure_kind="error", error=f"{type(e).__name__}: {e}")
        return result, round((self.clock.monotonic() - start) * 1000, 3)

    def record_call(self, call: CallRequest, key: str, timed: tuple[CallResult, float] | None) -> None:
        d = self.d
        d.calls += 1
        event: Event = {"kind": "call", "call": self.called[key], "round": self.round, "action": call.action,
                        "type": call.kind, "request": call.request}
        if timed is None:
            event["status"] = "cancelled"
        else:
            result, latency = timed
            event["status"], event["attempts"], event["latency_ms"] = \
                "ok" if result.ok else "failed", result.attempts, latency
            if result.ok:
                event["answer"] = result.answer
            else:
                event["failure"] = {"kind": result.failure_kind, "error": result.error}
                if result.answer is not None:
                    event["answer"] = result.answer
            if result.carried:
                event["carried"] = True
            if result.meta:
                event["meta"] = result.meta
                cost = result.meta.get("cost_usd")
                if isinstance(cost, (int, float)):
                    if result.carried:
                        self.carried_cost += float(cost)
                    else:
                        d.cost_usd += float(cost)
                tokens = result.meta.get("total_tokens")
                if isinstance(tokens, int) and not result.carried:
                    d.tokens += tokens
        d.trace.append(event)

    def facts_from(self, call: CallRequest, result: CallResult) -> list[tuple[str, Values, str]]:
        if result.ok:
            answer = result.answer
            records = [] if answer is None else answer if isinstance(answer, list) and call.kind == "tool" \
                else [answer]
            validate = self.engine.ruleset.types[call.produces].validate
            try:
                return [(call.produces, validate(r, f"{call.action}.answer"), call.kind) for r in records]
            except InvalidInput as e:
                result = CallResult(failure_kind="invalid_answer", error=e.message)
        failure: Values = {"action": call.action, "kind": result.failure_kind, "error": result.error[:1000]}
        return [("failure", failure, "failure")]

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
        best = self.winner() if self.proposals else None
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
