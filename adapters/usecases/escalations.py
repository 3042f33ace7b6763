"""Human in the loop: resolving an escalation resumes its decision; an SLA that passes asserts `timeout`.

A resumption re-runs the escalated decision from its stored record - the same inputs, the recorded model
and tool answers, the reviewers' earlier answers - up to the point where it escalated, asserts the new
answer and runs on (new calls are made live). It is stored as a new decision naming the one it resumes,
in the same transaction that closes the escalation, and only if the escalation was still open: any
replica can resume any decision, and never twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from adapters.infra.store.writer import GroupWriter
from adapters.ports import Resolution, Store
from adapters.usecases.decisions import DecisionPath
from adapters.usecases.registry import RulesetRegistry
from engine.audit import canonical
from engine.errors import BatonError, InvalidInput, Where
from engine.language.types import FactType, FieldSpec, check_field
from engine.loop import Engine, HumanInput
from engine.ports import Clock, IdFactory, ModelGateway, ToolConnector
from engine.record import DecisionRecord
from engine.recorded import ReplayAnswers
from engine.replay import facts_of, human_inputs, stored_limits

log = logging.getLogger("baton.escalations")


class NotOpen(BatonError):
    """The escalation was already resolved or expired."""


class AnswerProblems(InvalidInput):
    """An answer wrong in one or more fields: every field's problem (``problems``), so that a form shows them
    all at once; the code and place are the first one's."""

    def __init__(self, errors: list[InvalidInput]) -> None:
        first = errors[0]
        message = first.message if len(errors) == 1 else \
            f"{len(errors)} problems in the answer: " + "; ".join(e.message for e in errors)
        super().__init__(first.code, message, first.where)
        self.problems = [e.message for e in errors]


@dataclass(frozen=True, slots=True)
class AnswerForm:
    """What an open escalation asks of its reviewer: the expected fact type's fields, the one that records the
    reviewer (filled with whoever signs in), and those the escalation already knows (fixed)."""

    fields: dict[str, FieldSpec]
    identity: str
    fixed: dict[str, object]


@dataclass(slots=True)
class Escalations:
    store: Store
    writer: GroupWriter
    registry: RulesetRegistry
    models: ModelGateway
    tools: ToolConnector
    clock: Clock
    ids: IdFactory
    # the process's one decision path (span, log line, metrics, shadows): adapters/usecases/runtime.py
    path: DecisionPath

    def get(self, escalation_id: str) -> dict[str, Any]:
        found = self.store.escalation(escalation_id)
        if found is None:
            raise BatonError("unknown_escalation", f"no escalation {escalation_id!r}")
        return found

    async def form(self, escalation_id: str) -> AnswerForm | None:
        """The answer an escalation expects (None: it expects none)."""
        esc = await asyncio.to_thread(self.get, escalation_id)
        if not esc["expects"]:
            return None
        _, form, _ = await self._answering(esc)
        return form

    async def _answering(self, esc: dict[str, Any]) -> tuple[FactType, AnswerForm, DecisionRecord | None]:
        """What answering ``esc`` takes: the expected fact type, the form, and the escalated decision's record."""
        engine = await asyncio.to_thread(self.registry.engine_for, esc["version"])
        fact_type = engine.ruleset.types[esc["expects"]]
        original = await asyncio.to_thread(self.store.get, esc["id"])
        identity, fixed = answer_form(engine, original or {})
        return fact_type, AnswerForm(dict(fact_type.fields), identity, fixed), original

    async def resolve(self, escalation_id: str, answer: object, by: str) -> tuple[dict[str, Any], DecisionRecord]:
        """Validate the reviewer's answer against `expects` (every field's problem reported at once:
        AnswerProblems), resume, store. Returns (escalation, decision)."""
        return await self.resolve_form(escalation_id, lambda _: answer, by)

    async def resolve_form(self, escalation_id: str, fill: Callable[[AnswerForm], object],
                           by: str) -> tuple[dict[str, Any], DecisionRecord]:
        """:meth:`resolve` with the answer made by ``fill`` from the escalation's form (a door typing what a
        reviewer wrote into the form's fields), the escalation and its decision read once."""
        esc = await asyncio.to_thread(self.get, escalation_id)
        if esc["status"] != "open":
            raise NotOpen("not_open", f"escalation {escalation_id} is already {esc['status']}")
        if not esc["expects"]:
            raise NotOpen("no_answer_expected", f"escalation {escalation_id} expects no answer "
                          "(its rule has no `expects:`)")
        fact_type, form, original = await self._answering(esc)
        answer = fill(form)
        if not isinstance(answer, dict):
            raise InvalidInput("invalid_fact", "answer: an object of the expected fact type", Where(path="answer"))
        answer = dict(answer)
        if form.identity:  # who answers is who signed in, never what a form or client says
            said = answer.get(form.identity)
            if said not in (None, "", by):
                raise InvalidInput("not_the_reviewer", f"answer.{form.identity}: the reviewer is the signed-in "
                                   f"{by!r}, not {str(said)[:60]!r}", Where(path=f"answer.{form.identity}"))
            answer[form.identity] = by
        for name, value in form.fixed.items():  # what the escalation already knows is not the reviewer's to change
            said = answer.get(name)
            if said not in (None, "") and said != value:
                raise InvalidInput("fixed_field", f"answer.{name}: the escalation fixes it to {value!r}",
                                   Where(path=f"answer.{name}"))
            answer[name] = value
        problems = []
        for name, spec in fact_type.fields.items():
            if answer.get(name) is None:
                if not spec.optional:
                    problems.append(InvalidInput("missing_field", f"{name}: required", Where(path=f"answer.{name}")))
                continue
            try:
                check_field(spec, answer[name], f"answer.{name}")
            except InvalidInput as e:
                problems.append(e)
        if problems:
            raise AnswerProblems(problems)
        values = fact_type.validate(answer, "answer")
        return await self._resume(esc, HumanInput(esc["expects"], values, by),
                                  Resolution(escalation_id, by, canonical(values)), original)

    async def comment(self, escalation_id: str, text: str, by: str) -> None:
        if not text.strip():
            raise InvalidInput("empty_note", "write the comment", Where(path="text"))
        await asyncio.to_thread(self.get, escalation_id)
        await asyncio.to_thread(self.store.escalation_note, escalation_id, by, "comment", text.strip(),
                                self.clock.now())

    async def assign(self, escalation_id: str, to: str, by: str) -> None:
        """Who works on it (``to`` empty: nobody); recorded as a note."""
        esc = await asyncio.to_thread(self.get, escalation_id)
        if esc["status"] != "open":
            raise NotOpen("not_open", f"escalation {escalation_id} is already {esc['status']}")
        to = to.strip()[:200]
        await asyncio.to_thread(self.store.escalation_note, escalation_id, by, "assigned",
                                f"assigned to {to}" if to else "unassigned", self.clock.now(), to)

    async def close(self, escalation_id: str, reason: str, by: str) -> dict[str, Any]:
        """End an open escalation without resuming its decision, with a reason: ``declined`` when it expected
        an answer (the reviewer will not give one: the decision stays escalated, and its SLA no longer runs),
        ``closed`` when it expected none. Who and why are kept."""
        if not reason.strip():
            raise InvalidInput("empty_note", "say why it is closed (kept in the audit record)", Where(path="reason"))
        esc = await asyncio.to_thread(self.get, escalation_id)
        if esc["status"] != "open":
            raise NotOpen("not_open", f"escalation {escalation_id} is already {esc['status']}")
        status = "declined" if esc["expects"] else "closed"
        done = await asyncio.to_thread(self.store.escalation_note, escalation_id, by, status, reason.strip(),
                                       self.clock.now(), None, status)
        if not done:
            raise NotOpen("not_open", f"escalation {escalation_id} was decided concurrently")
        return await asyncio.to_thread(self.get, escalation_id)

    async def expire_due(self) -> int:
        """Resume every open escalation whose SLA has passed, with a `timeout` fact."""
        due = await asyncio.to_thread(self.store.escalations, None, "open", 100, self.clock.now())
        expired = 0
        for esc in due:
            fact = {"queue": esc["queue"], "reason": "sla expired"}
            try:
                await self._resume(esc, HumanInput("timeout", fact, "sla"),
                                   Resolution(esc["id"], "sla", canonical(fact), status="expired"))
                expired += 1
            except Exception as e:  # another replica got there first, or a stale version: try the next one
                log.info("escalation %s not expired here: %s", esc["id"], e)
        return expired

    async def _resume(self, esc: dict[str, Any], given: HumanInput, resolution: Resolution,
                      original: DecisionRecord | None = None) -> tuple[dict[str, Any], DecisionRecord]:
        received = self.path.received()
        if original is None:  # resolve() has read it already; an expiry has not
            original = await asyncio.to_thread(self.store.get, esc["id"])
        if original is None:
            raise BatonError("unknown_decision", f"decision {esc['id']} is missing")
        engine = await asyncio.to_thread(self.registry.engine_for, original["version"])
        # the escalated decision's calls are answered from its record and marked carried: paid for there
        answers = ReplayAnswers(list(original["trace"]), live_models=self.models, live_tools=self.tools,
                                carried=True)
        documents = await asyncio.to_thread(self.store.documents_of, original)
        validated = engine.validate_input(facts_of(original), allow_empty=bool(documents))
        record, _ = await self.path.decide(
            engine.ruleset.name, lambda: engine.run(validated, answers, answers, self.clock, self.ids,
                                                    stored_limits(original), [*human_inputs(original), given],
                                                    resumes=esc["id"], documents=documents),
            given.by, resolves=resolution, received=received)
        updated = await asyncio.to_thread(self.get, esc["id"])
        return updated, record


def answer_form(engine: Engine, record: Mapping[str, Any]) -> tuple[str, dict[str, object]]:
    """The reviewer's answer as the escalation shapes it: the field that holds the reviewer's identity
    (the escalate action's ``identity:``), and the fields it already knows - those of the expected fact
    type whose name and type match a field of a fact the escalating rule matched (``payment_ref`` of the
    payment it escalated), when that fact gives one value."""
    escalation = record.get("escalation") or {}
    expects = str(escalation.get("expects") or "")
    rule = next((r for r in engine.ruleset.rules if r.name == escalation.get("rule")), None)
    fact_type = engine.ruleset.types.get(expects)
    if rule is None or fact_type is None:
        return "", {}
    identity = next((s.identity for s in rule.steps if s.kind == "escalate" and s.expects == expects), "")
    trace = record.get("trace") or []
    won = next((e for e in trace if e.get("kind") == "proposal" and e.get("won")), None)
    fired = next((e for e in trace if e.get("kind") == "fired" and won is not None
                  and e.get("step") == won.get("step")), None)
    if fired is None:
        return identity, {}
    facts = {e["seq"]: e for e in trace if e.get("kind") == "fact"}
    matched = [facts[s] for s in (fired.get("facts") or {}).values() if s in facts]
    fixed: dict[str, object] = {}
    for name, spec in fact_type.fields.items():
        if name == identity or spec.kind == "list":
            continue
        found = {json.dumps(f["values"][name]) for f in matched if name in f["values"]}
        if len(found) != 1:
            continue
        try:
            fixed[name] = check_field(spec, json.loads(found.pop()), f"answer.{name}")
        except InvalidInput:
            continue  # a value the answer's field would refuse: not known after all
    return identity, fixed
