"""DecisionService: Decide, DecideBatch and DecideStream as commands of the Decide use case and their answers
(a batch's or stream's results each with its own decision or status); reading decisions; replay, what-if and
why-rule."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from adapters.doors.grpc import convert
from adapters.doors.grpc.auth import Identity
from adapters.doors.grpc.gen.baton.v1 import decision_pb2
from adapters.doors.grpc.status import (
    Abort,
    BadMessage,
    Ctx,
    credential,
    duration_s,
    handler,
    map_error,
    metadata_value,
    not_found,
    timestamp_s,
    to_status,
    to_status_message,
)
from adapters.usecases.commands import Answer, DecideCommand, RawDocument, Refused, late
from adapters.usecases.decide import BatchResult, Call
from engine.codes import Code
from engine.explain import why
from engine.record import DecisionRecord
from engine.replay import WhatIf as WhatIfResult

if TYPE_CHECKING:
    from adapters.doors.grpc.service import Services


def _decision(into: decision_pb2.Decision, answer: Answer) -> None:
    """A Decide's answer, built in ``into``; a decision that ran out of its deadline (stored) is
    DEADLINE_EXCEEDED."""
    record = answer.record
    if answer.out_of_time and not answer.replayed:
        raise Refused(Code.DEADLINE_EXCEEDED, f"decision {record['decision_id']} failed: {record['reason']} "
                      "(it is stored)", stored=record)
    convert.fill_decision(into, record, idempotent_replay=answer.replayed)


def _result(index: int, key: str, outcome: BatchResult) -> decision_pb2.DecideResult:
    """A batch or stream request's result: its decision, or its status (``None``: never started)."""
    if outcome is None:
        outcome = late()
    if not isinstance(outcome, BaseException):
        result = decision_pb2.DecideResult(index=index, idempotency_key=key)
        try:
            _decision(result.decision, outcome)
            return result
        except Refused as e:
            outcome = e
    return _failed(index, key, outcome)


def _failed(index: int, key: str, error: BaseException) -> decision_pb2.DecideResult:
    """A batch request's result for an error: its status, as a unary Decide would answer it (and the decision,
    when one was stored before the error)."""
    abort = map_error(error)
    result = decision_pb2.DecideResult(index=index, idempotency_key=key, error=to_status_message(abort))
    if abort.stored is not None:
        convert.fill_decision(result.decision, abort.stored)
    return result


class DecisionService:
    """Decide, DecideBatch and DecideStream translate to the Decide use case (adapters/usecases/decide.py) and
    back; the reads (GetDecision, ListDecisions) and the audits (ReplayDecision, WhatIf, WhyRule) follow."""

    def __init__(self, services: Services) -> None:
        self.s = services

    @staticmethod
    def _command(request: decision_pb2.DecideRequest, ident: Identity, context: Ctx,
                 key: str | None = None, request_id: str | None = None) -> DecideCommand:
        """``request_id``: the call's x-request-id when the caller read it already (once for a whole batch)."""
        deadline = duration_s(request.deadline, "deadline") if request.HasField("deadline") else None
        if request_id is None:
            request_id = metadata_value(context, "x-request-id") or ""
        return DecideCommand(caller=ident.name, ruleset=request.ruleset, version=request.version,
                             typed_facts=[(f.type, convert.plain(f.values)) for f in request.facts],
                             key=(request.idempotency_key if key is None else key) or None,
                             documents=[RawDocument(d.name, bytes(d.content), d.media_type) for d in request.documents],
                             deadline_s=deadline, request_id=request_id)

    @handler("Decide")
    async def Decide(self, request: decision_pb2.DecideRequest, context: Ctx,
                     ident: Identity) -> decision_pb2.DecideResponse:
        answer = await self.s.decide.one(self._command(request, ident, context), context.time_remaining)
        response = decision_pb2.DecideResponse()
        _decision(response.decision, answer)
        return response

    @handler("DecideBatch")
    async def DecideBatch(self, request: decision_pb2.DecideBatchRequest, context: Ctx,
                          ident: Identity) -> decision_pb2.DecideBatchResponse:
        self.s.decide.check_batch(len(request.requests), request.idempotency_key)
        keys = [item.idempotency_key or (f"{request.idempotency_key}/{i}" if request.idempotency_key else "")
                for i, item in enumerate(request.requests)]
        commands: list[DecideCommand | BaseException] = []
        request_id = metadata_value(context, "x-request-id") or ""
        for item, key in zip(request.requests, keys, strict=True):
            try:
                commands.append(self._command(item, ident, context, key, request_id))
            except Exception as e:  # answered in its place, as a unary Decide would answer it
                commands.append(e)
        call = Call()
        try:  # once started, a request runs to its end (stored, logged, counted) even if the call is cancelled
            results = await self.s.decide.batch(commands, ident.name, context.time_remaining, call)
        except asyncio.CancelledError:
            call.cancelled = True  # ... but no other request starts
            raise
        return decision_pb2.DecideBatchResponse(results=[_result(i, keys[i], r) for i, r in enumerate(results)])

    async def DecideStream(self, requests: AsyncIterator[Any],
                           context: Ctx) -> AsyncIterator[decision_pb2.DecideStreamResponse]:
        """Requests are read and decided as they come, up to limits.batch_parallel at once, and answered in
        the order they were sent (a result waits for those before it)."""
        try:
            ident = self.s.auth.check(credential(context), "DecideStream")
        except Exception as e:
            status = to_status(map_error(e))
            await context.abort(status.code, status.details, status.trailing_metadata)
            return
        keys: list[str] = []  # each request's idempotency key, in the order read
        request_id = metadata_value(context, "x-request-id") or ""

        async def commands() -> AsyncIterator[DecideCommand | BaseException]:
            async for message in requests:
                if isinstance(message, BadMessage):
                    keys.append("")
                    yield Abort(grpc.StatusCode.INVALID_ARGUMENT, message.error, [("request", message.error)])
                    continue
                keys.append(message.request.idempotency_key)
                try:
                    yield self._command(message.request, ident, context, None, request_id)
                except Exception as e:  # answered in its place, as a unary Decide would answer it
                    yield e

        index = 0
        async for outcome in self.s.decide.stream(commands(), context.time_remaining):
            yield decision_pb2.DecideStreamResponse(result=_result(index, keys[index], outcome))
            index += 1

    async def _record(self, decision_id: str) -> DecisionRecord:
        return await self.s.audits.record(decision_id)

    @handler("GetDecision")
    async def GetDecision(self, request: decision_pb2.GetDecisionRequest, context: Ctx,
                          ident: Identity) -> decision_pb2.GetDecisionResponse:
        record = await self._record(request.decision_id)
        if "auditor" not in ident.roles and "admin" not in ident.roles and record.get("caller") != ident.name:
            raise not_found(f"no decision {request.decision_id!r}")  # callers see only their own
        if record.get("caller") != ident.name:
            record = await self.s.readable(record, ident)
        return decision_pb2.GetDecisionResponse(decision=convert.decision(record), record=convert.struct(record))


    @handler("ListDecisions")
    async def ListDecisions(self, request: decision_pb2.ListDecisionsRequest, context: Ctx,
                            ident: Identity) -> decision_pb2.ListDecisionsResponse:
        size = min(max(request.page_size or 50, 1), 500)
        before = None
        if request.page_token:
            try:
                created, last_id = json.loads(base64.urlsafe_b64decode(request.page_token.encode()))
                before = (float(created), str(last_id))
            except Exception:
                raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "bad page_token",
                            [("page_token", "not a token from ListDecisions")]) from None
        since = timestamp_s(request.since, "since") if request.HasField("since") else None
        until = timestamp_s(request.until, "until") if request.HasField("until") else None
        outcome = convert.OUTCOME_NAMES.get(request.outcome)
        rows = await asyncio.to_thread(self.s.store.list_decisions, request.ruleset or None, outcome, since, until,
                                       size + 1, before)
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = base64.urlsafe_b64encode(json.dumps([rows[-1]["created_at"], rows[-1]["id"]]).encode()).decode()
        return decision_pb2.ListDecisionsResponse(decisions=[convert.summary_row(r) for r in rows],
                                                  next_page_token=token)

    @handler("ReplayDecision")
    async def ReplayDecision(self, request: decision_pb2.ReplayDecisionRequest, context: Ctx,
                             ident: Identity) -> decision_pb2.ReplayDecisionResponse:
        result = await self.s.audits.replay(await self._record(request.decision_id))
        div = None
        if result.divergence is not None:
            div = decision_pb2.Divergence(index=result.divergence.index, what=result.divergence.what,
                                          expected=convert.value(result.divergence.expected),
                                          got=convert.value(result.divergence.got))
        return decision_pb2.ReplayDecisionResponse(identical=result.identical, divergence=div)

    @handler("WhatIf")
    async def WhatIf(self, request: decision_pb2.WhatIfRequest, context: Ctx,
                     ident: Identity) -> decision_pb2.WhatIfResponse:
        record = await self._record(request.decision_id)
        _, result = await self.s.audits.what_if(record, version=request.version, source=request.source)
        return self._what_if(result)

    @staticmethod
    def _what_if(w: WhatIfResult) -> decision_pb2.WhatIfResponse:
        if w.error:
            raise Abort(grpc.StatusCode.FAILED_PRECONDITION, w.error)
        return decision_pb2.WhatIfResponse(
            changed=w.changed, before=convert.outcome_summary(w.old), after=convert.outcome_summary(w.new),
            fired_only_before=w.fired_only_before, fired_only_after=w.fired_only_after,
            unanswered=[decision_pb2.Unanswered(action=str(u["action"]),
                                                request=convert.struct(u["request"]))  # type: ignore[arg-type]
                        for u in w.unanswered])

    @handler("WhyRule")
    async def WhyRule(self, request: decision_pb2.WhyRuleRequest, context: Ctx,
                      ident: Identity) -> decision_pb2.WhyRuleResponse:
        record = await self._record(request.decision_id)
        engine = await asyncio.to_thread(self.s.registry.engine_for, record["version"])
        try:
            lines = why(engine.ruleset, record, request.rule)
        except KeyError:
            raise not_found(f"ruleset {record['ruleset']} has no rule {request.rule!r}") from None
        return decision_pb2.WhyRuleResponse(fired=request.rule in record["fired"], explanation=lines)
