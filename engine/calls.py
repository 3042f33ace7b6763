"""Calls: a rule's model or tool action becomes an intent (the request, its prompt rendered and PII
masked); at the end of a round every intent is issued at once through the ports, answered from memory
where the ports can, awaited together within the deadline, recorded, and its answer validated into facts.
A mixin of the loop's ``_Run`` (engine/loop.py), which holds the state these methods share."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from engine.decision import Event, StopDecision, Values
from engine.documents import Chunk, Document, chunks, merge
from engine.errors import BatonError, InvalidInput
from engine.language.check import MISSING
from engine.model import ModelAction, ToolAction
from engine.ports import CallRequest, CallResult
from engine.runstate import RunState


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


def answer_checker(validate: Callable[[object, str], Values]) -> Callable[[object], str]:
    def check(answer: object) -> str:
        try:
            validate(answer, "answer")
        except InvalidInput as e:
            return e.message
        return ""

    return check


@dataclass(slots=True)
class Extraction:
    """A document read by one model action: one call per chunk, one fact from their answers."""

    action: str
    produces: str
    doc: Document
    chunks: list[Chunk]
    keys: list[str]
    results: dict[str, CallResult] = field(default_factory=dict)


class Calls(RunState):
    """The calling half of a decision's run (see engine/loop.py ``_Run``)."""

    __slots__ = ()

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
        extraction = Extraction(m.name, m.produces, doc, pieces, keys)
        for call, key in zip(calls, keys, strict=True):
            self.called[key] = len(self.called) + 1
            self.extractions[key] = extraction
            self.intents.append((call, key))

    def extracted(self, x: Extraction) -> list[tuple[str, Values, str, dict[str, Any] | None]]:
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
                raise StopDecision("deadline exceeded while waiting for calls")
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
