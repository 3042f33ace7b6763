"""The baton.v1 services on grpc.aio. Errors are mapped to gRPC status codes here, once."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2, timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from adapters.doors.grpc import convert
from adapters.doors.grpc.auth import Auth, AuthError, Identity
from adapters.doors.grpc.gen.baton.v1 import audit_pb2, decision_pb2, escalation_pb2, ruleset_pb2
from adapters.infra.candidates import CandidateCompiler, CompileLimitExceeded, Progress
from adapters.infra.store.governance import Publication, VersionInfo
from adapters.infra.store.sql import Conflict, SqlStore
from adapters.infra.store.sql import unavailable as store_unavailable
from adapters.usecases.audits import Audits
from adapters.usecases.commands import Answer, DecideCommand, RawDocument, Refused, late
from adapters.usecases.decide import BatchResult, Call, Decide
from adapters.usecases.escalations import Escalations, NotOpen
from adapters.usecases.registry import GovernanceError, RulesetRegistry
from adapters.usecases.shadow import Shadows
from engine import codes
from engine.codes import Category, Code, Status
from engine.errors import BatonError, CompileErrors, InvalidInput, Overloaded
from engine.explain import why
from engine.language.diff import diff_sources
from engine.pii import mask_record
from engine.record import DecisionRecord
from engine.replay import WhatIf as WhatIfResult

log = logging.getLogger("baton.grpc")
Ctx = grpc.aio.ServicerContext[Any, Any]
MAX_MESSAGE = 1000  # characters of a status message
NOT_FOUND_CODES = codes.with_status(Status.NOT_FOUND)
# codes only a request's content raises (none the compiler shares, so an escaped compile error stays INTERNAL):
# INVALID_ARGUMENT with the field path, whatever exception carries them
REQUEST_CODES = codes.in_category(Category.REQUEST) - codes.in_category(Category.COMPILE)


def _grpc_status(code: str, default: grpc.StatusCode) -> grpc.StatusCode:
    """The status engine/codes.py gives ``code`` (``default`` for a code it does not list, or lists none for)."""
    status = codes.status_of(code)
    return getattr(grpc.StatusCode, status.value) if status is not None else default


@dataclass(slots=True, kw_only=True)
class Services:
    """What the handlers need, taken from the composition root (adapters/usecases/runtime.py) by
    adapters/doors/grpc/server.py."""

    auth: Auth
    decide: Decide  # Decide, DecideBatch, DecideStream
    store: SqlStore  # reads and audits
    registry: RulesetRegistry
    escalations: Escalations
    shadows: Shadows
    audits: Audits  # replay, what-if, impact
    candidates: CandidateCompiler = field(default_factory=CandidateCompiler)  # rulesets callers send
    pii_roles: tuple[str, ...] = ()  # who reads fields marked pii in others' decisions; everyone else: masked


async def readable(s: Services, record: DecisionRecord, ident: Identity) -> DecisionRecord:
    """Someone else's decision as this identity may read it: pii fields masked unless a configured role
    (or admin) allows them."""
    if "admin" in ident.roles or set(s.pii_roles) & set(ident.roles):
        return record
    private = await asyncio.to_thread(s.registry.private_fields, str(record.get("version", "")))
    return mask_record(record, private or {}) if private else record


class Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str, bad_request: list[tuple[str, str]] | None = None,
                 stored: DecisionRecord | None = None):
        super().__init__(message)
        self.code, self.message, self.bad_request = code, message, bad_request or []
        self.stored = stored  # a decision stored before the error (one that ran out of time): batches report it


class _BadMessage:
    """A request that did not parse as protobuf (e.g. invalid UTF-8 in a string field)."""

    def __init__(self, error: str) -> None:
        self.error = error


def _safe(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as e:  # DecodeError and friends: answered as INVALID_ARGUMENT by the handler
            return _BadMessage(f"the request is not a valid protobuf message: {e}")

    return deserialize


def _status(abort: Abort) -> grpc.Status:
    return rpc_status.to_status(_status_message(abort))


def _status_message(abort: Abort) -> status_pb2.Status:
    details = []
    if abort.bad_request:
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f[:MAX_MESSAGE], description=d[:MAX_MESSAGE])
            for f, d in abort.bad_request]))
        details.append(detail)
    code = getattr(code_pb2, abort.code.name)
    # a message echoes what the caller sent (a name, an id): bounded, so a huge one cannot push the status
    # past the transport's metadata limit (the client would see RESOURCE_EXHAUSTED instead of this status)
    message = abort.message if len(abort.message) <= MAX_MESSAGE else abort.message[:MAX_MESSAGE] + "..."
    return status_pb2.Status(code=code, message=message, details=details)


def _map_error(e: BaseException) -> Abort:
    if isinstance(e, Abort):
        return e
    if isinstance(e, Refused):
        return Abort(_grpc_status(e.code, grpc.StatusCode.INTERNAL), e.message,
                     [(e.where.path, e.problem)] if e.where.path else None, stored=e.stored)
    if isinstance(e, AuthError):
        return Abort(_grpc_status(e.code, grpc.StatusCode.PERMISSION_DENIED), e.message)
    if isinstance(e, InvalidInput):
        return Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{e.code}: {e.message}", [(e.where.path, e.message)])
    if isinstance(e, CompileErrors):
        return Abort(grpc.StatusCode.INVALID_ARGUMENT, str(e),
                     [(f"source:{x.where.line}:{x.where.column}", f"{x.code}: {x.message}") for x in e.errors])
    if isinstance(e, Overloaded):
        return Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, e.message)
    if isinstance(e, GovernanceError):
        return Abort(_grpc_status(e.code, grpc.StatusCode.FAILED_PRECONDITION), e.message)
    if isinstance(e, (NotOpen, Conflict)):
        return Abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
    if store_unavailable(e):
        log.warning("store unavailable: %s", type(e).__name__)
        return Abort(grpc.StatusCode.UNAVAILABLE, "the decision store is unavailable; retry with the same "
                     "idempotency_key (a decision stored just before the failure is then returned, not made twice)")
    if isinstance(e, CompileLimitExceeded):
        return Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, e.message, [(e.where.path, e.message)])
    if isinstance(e, BatonError) and e.code in NOT_FOUND_CODES:
        return Abort(grpc.StatusCode.NOT_FOUND, e.message)
    if isinstance(e, BatonError) and e.code in REQUEST_CODES:
        return Abort(grpc.StatusCode.INVALID_ARGUMENT, e.message, [(e.where.path, e.message)])
    incident = uuid.uuid4().hex[:12]
    log.exception("internal error %s", incident)
    return Abort(grpc.StatusCode.INTERNAL, f"internal error (incident {incident})")


def handler(method: str) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Authenticate and authorise, then map every error to a status once."""

    def wrap(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def run(self: Any, request: Any, context: Ctx) -> Any:
            try:
                ident = self.s.auth.check(_credential(context), method)
                if isinstance(request, _BadMessage):
                    raise Abort(grpc.StatusCode.INVALID_ARGUMENT, request.error, [("request", request.error)])
                return await fn(self, request, context, ident)
            except Exception as e:
                status = _status(_map_error(e))
                await context.abort(status.code, status.details, status.trailing_metadata)

        run.__name__ = fn.__name__
        return run

    return wrap


def _decision(answer: Answer) -> decision_pb2.Decision:
    """A Decide's answer; a decision that ran out of its deadline (stored) is DEADLINE_EXCEEDED."""
    record = answer.record
    if answer.out_of_time and not answer.replayed:
        raise Refused(Code.DEADLINE_EXCEEDED, f"decision {record['decision_id']} failed: {record['reason']} "
                      "(it is stored)", stored=record)
    return convert.decision(record, idempotent_replay=answer.replayed)


def _result(index: int, key: str, outcome: BatchResult) -> decision_pb2.DecideResult:
    """A batch or stream request's result: its decision, or its status (``None``: never started)."""
    if outcome is None:
        outcome = late()
    if not isinstance(outcome, BaseException):
        try:
            return decision_pb2.DecideResult(index=index, idempotency_key=key, decision=_decision(outcome))
        except Refused as e:
            outcome = e
    return _failed(index, key, outcome)


def _failed(index: int, key: str, error: BaseException) -> decision_pb2.DecideResult:
    """A batch request's result for an error: its status, as a unary Decide would answer it (and the decision,
    when one was stored before the error)."""
    abort = _map_error(error)
    result = decision_pb2.DecideResult(index=index, idempotency_key=key, error=_status_message(abort))
    if abort.stored is not None:
        result.decision.CopyFrom(convert.decision(abort.stored))
    return result


MAX_DURATION_S = 315_576_000_000  # google.protobuf.Duration: about 10,000 years either way


def duration_s(d: duration_pb2.Duration, field_name: str) -> float:
    """A Duration's seconds, refused as INVALID_ARGUMENT when it is not a valid Duration (nanos beyond a second,
    or of another sign than seconds, or seconds beyond the type's range): seconds and nanos as sent, since a
    timedelta would round 1 ns down to zero."""
    if not (-999_999_999 <= d.nanos <= 999_999_999 and abs(d.seconds) <= MAX_DURATION_S
            and (d.seconds == 0 or d.nanos == 0 or (d.seconds > 0) == (d.nanos > 0))):
        raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{field_name} is not a valid Duration (seconds "
                    f"{d.seconds}, nanos {d.nanos})", [(field_name, "nanos from -999999999 to 999999999, with the "
                                                        "sign of seconds")])
    return d.seconds + d.nanos / 1e9


def timestamp_s(t: timestamp_pb2.Timestamp, field_name: str) -> float:
    """A Timestamp's seconds since the epoch, refused as INVALID_ARGUMENT when it is not a valid Timestamp
    (nanos from 0 to 999,999,999; years 1 to 9999)."""
    if not (0 <= t.nanos <= 999_999_999 and -62_135_596_800 <= t.seconds <= 253_402_300_799):
        raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{field_name} is not a valid Timestamp (seconds {t.seconds}, "
                    f"nanos {t.nanos})", [(field_name, "nanos from 0 to 999999999, years 1 to 9999")])
    return t.seconds + t.nanos / 1e9


def _credential(context: Ctx) -> str | None:
    """The one ``authorization`` value; two or more are ambiguous (which one names the caller?) and refused."""
    values = [v for k, v in context.invocation_metadata() or () if k == "authorization"]
    if len(values) > 1:
        raise AuthError("unauthenticated", f"{len(values)} authorization headers: send exactly one")
    if not values:
        return None
    v = values[0]
    return v if isinstance(v, str) else v.decode("utf-8", "replace")


def _metadata(context: Ctx, key: str) -> str | None:
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return v if isinstance(v, str) else v.decode("utf-8", "replace")
    return None


def _compile_error(x: BatonError) -> ruleset_pb2.CompileError:
    return ruleset_pb2.CompileError(code=x.code, message=x.message, line=x.where.line if x.where else 0,
                                    column=x.where.column if x.where else 0, hint=x.hint)


def _not_found(what: str) -> Abort:
    return Abort(grpc.StatusCode.NOT_FOUND, what)


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
            request_id = _metadata(context, "x-request-id") or ""
        return DecideCommand(caller=ident.name, ruleset=request.ruleset, version=request.version,
                             typed_facts=[(f.type, convert.plain(f.values)) for f in request.facts],
                             key=(request.idempotency_key if key is None else key) or None,
                             documents=[RawDocument(d.name, bytes(d.content), d.media_type) for d in request.documents],
                             deadline_s=deadline, request_id=request_id)

    @handler("Decide")
    async def Decide(self, request: decision_pb2.DecideRequest, context: Ctx,
                     ident: Identity) -> decision_pb2.DecideResponse:
        answer = await self.s.decide.one(self._command(request, ident, context), context.time_remaining)
        return decision_pb2.DecideResponse(decision=_decision(answer))

    @handler("DecideBatch")
    async def DecideBatch(self, request: decision_pb2.DecideBatchRequest, context: Ctx,
                          ident: Identity) -> decision_pb2.DecideBatchResponse:
        self.s.decide.check_batch(len(request.requests), request.idempotency_key)
        keys = [item.idempotency_key or (f"{request.idempotency_key}/{i}" if request.idempotency_key else "")
                for i, item in enumerate(request.requests)]
        commands: list[DecideCommand | BaseException] = []
        request_id = _metadata(context, "x-request-id") or ""
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
            ident = self.s.auth.check(_credential(context), "DecideStream")
        except Exception as e:
            status = _status(_map_error(e))
            await context.abort(status.code, status.details, status.trailing_metadata)
            return
        keys: list[str] = []  # each request's idempotency key, in the order read
        request_id = _metadata(context, "x-request-id") or ""

        async def commands() -> AsyncIterator[DecideCommand | BaseException]:
            async for message in requests:
                if isinstance(message, _BadMessage):
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
            raise _not_found(f"no decision {request.decision_id!r}")  # callers see only their own
        if record.get("caller") != ident.name:
            record = await readable(self.s, record, ident)
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
            raise _not_found(f"ruleset {record['ruleset']} has no rule {request.rule!r}") from None
        return decision_pb2.WhyRuleResponse(fired=request.rule in record["fired"], explanation=lines)


class RulesetService:
    def __init__(self, services: Services) -> None:
        self.s = services

    def _info(self, name: str, version: str) -> ruleset_pb2.RulesetInfo:
        info = self.s.registry.info(name, version)
        if info is None:
            raise _not_found(f"no ruleset version {version[:12]}")
        published = self.s.registry.publications(version=version, status="published")
        return self._version(info, published[0] if published else None,
                             self.s.registry.active_version(info.name) == version)

    @staticmethod
    def _version(info: VersionInfo, latest: Publication | None, active: bool) -> ruleset_pb2.RulesetInfo:
        out = ruleset_pb2.RulesetInfo(name=info.name, version=info.version, description=info.description,
                                      rules=info.rules, tests=info.tests, active=active,
                                      published_by=info.published_by or "")
        out.loaded_at.CopyFrom(convert.timestamp(info.loaded_at))
        if info.published_at is not None:
            out.published_at.CopyFrom(convert.timestamp(info.published_at))
        if latest is not None:
            if latest.effective_from is not None:
                out.effective_from.CopyFrom(convert.timestamp(latest.effective_from))
            out.approved_by = latest.decided_by or ""
        return out

    @staticmethod
    def _publication(p: Publication) -> ruleset_pb2.Publication:
        out = ruleset_pb2.Publication(id=p.id, ruleset=p.ruleset, version=p.version, status=p.status,
                                      submitted_by=p.submitted_by, note=p.note, decided_by=p.decided_by or "",
                                      decision_note=p.decision_note)
        out.submitted_at.CopyFrom(convert.timestamp(p.submitted_at))
        for name in ("requested_from", "effective_from", "decided_at"):
            value = getattr(p, name)
            if value is not None:
                getattr(out, name).CopyFrom(convert.timestamp(value))
        return out

    @handler("ListRulesets")
    async def ListRulesets(self, request: ruleset_pb2.ListRulesetsRequest, context: Ctx,
                           ident: Identity) -> ruleset_pb2.ListRulesetsResponse:
        def build() -> list[ruleset_pb2.RulesetInfo]:
            registry = self.s.registry
            registry.refresh(force=True)
            latest, active = registry.latest_publications(), registry.active
            return [self._version(v, latest.get(v.version), active.get(v.name) == v.version)
                    for v in registry.versions()]

        return ruleset_pb2.ListRulesetsResponse(rulesets=await asyncio.to_thread(build))

    @handler("GetRuleset")
    async def GetRuleset(self, request: ruleset_pb2.GetRulesetRequest, context: Ctx,
                         ident: Identity) -> ruleset_pb2.GetRulesetResponse:
        def build() -> ruleset_pb2.GetRulesetResponse:  # read as stored: a version is not compiled to be read
            version, source = self.s.registry.source(request.name, request.version)
            return ruleset_pb2.GetRulesetResponse(ruleset=self._info(request.name, version), source=source)

        return await asyncio.to_thread(build)

    @handler("ValidateRuleset")
    async def ValidateRuleset(self, request: ruleset_pb2.ValidateRulesetRequest, context: Ctx,
                              ident: Identity) -> ruleset_pb2.ValidateRulesetResponse:
        try:
            rs = await self.s.candidates.acheck(request.source, request.file_name or "ruleset.yaml")
        except CompileErrors as e:
            return ruleset_pb2.ValidateRulesetResponse(valid=False, errors=[_compile_error(x) for x in e.errors])
        return ruleset_pb2.ValidateRulesetResponse(valid=True, name=rs.name, version=rs.version,
                                                   warnings=[_compile_error(x) for x in rs.warnings])

    @handler("PublishRuleset")
    async def PublishRuleset(self, request: ruleset_pb2.PublishRulesetRequest, context: Ctx,
                             ident: Identity) -> ruleset_pb2.PublishRulesetResponse:
        effective = timestamp_s(request.effective_from, "effective_from") \
            if request.HasField("effective_from") else None
        checked = await self.s.candidates.acheck(request.source, request.file_name or "ruleset.yaml")
        rs = checked.stored(request.source)  # stored as the child compiled it; compiled here once approved

        def submit() -> ruleset_pb2.PublishRulesetResponse:
            pub = self.s.registry.submit(rs, by=ident.name, note=request.note, effective_from=effective)
            return ruleset_pb2.PublishRulesetResponse(ruleset=self._info(rs.name, rs.version),
                                                      publication=self._publication(pub))

        return await asyncio.to_thread(submit)

    async def _review(self, request: Any, ident: Identity, approve: bool) -> ruleset_pb2.Publication:
        if not request.publication_id:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "publication_id is required",
                        [("publication_id", "required")])
        pub = await asyncio.to_thread(self.s.registry.decide, request.publication_id, ident.name, approve,
                                      request.note)
        log.info("publication %s of %s@%s %s by %s", pub.id, pub.ruleset, pub.version[:12], pub.status, ident.name)
        return self._publication(pub)

    @handler("ApproveRuleset")
    async def ApproveRuleset(self, request: ruleset_pb2.ApproveRulesetRequest, context: Ctx,
                             ident: Identity) -> ruleset_pb2.ApproveRulesetResponse:
        return ruleset_pb2.ApproveRulesetResponse(publication=await self._review(request, ident, True))

    @handler("RejectRuleset")
    async def RejectRuleset(self, request: ruleset_pb2.RejectRulesetRequest, context: Ctx,
                            ident: Identity) -> ruleset_pb2.RejectRulesetResponse:
        return ruleset_pb2.RejectRulesetResponse(publication=await self._review(request, ident, False))

    @handler("ListPublications")
    async def ListPublications(self, request: ruleset_pb2.ListPublicationsRequest, context: Ctx,
                               ident: Identity) -> ruleset_pb2.ListPublicationsResponse:
        pubs = await asyncio.to_thread(self.s.registry.publications, request.ruleset, request.status)
        return ruleset_pb2.ListPublicationsResponse(publications=[self._publication(p) for p in pubs])

    @handler("DiffRulesets")
    async def DiffRulesets(self, request: ruleset_pb2.DiffRulesetsRequest, context: Ctx,
                           ident: Identity) -> ruleset_pb2.DiffRulesetsResponse:
        if not request.from_version or not (request.to_version or request.to_source):
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "from_version and to_version or to_source are required",
                        [("from_version", "required")])
        if request.to_source:
            await self.s.candidates.acheck(request.to_source, "candidate.yaml")

        def build() -> ruleset_pb2.DiffRulesetsResponse:
            old = self.s.registry.source("", request.from_version)[1]
            new = request.to_source or self.s.registry.source("", request.to_version)[1]
            return ruleset_pb2.DiffRulesetsResponse(changes=[
                ruleset_pb2.RulesetChange(kind=c.kind, what=c.what, name=c.name, details=c.details)
                for c in diff_sources(old, new)])

        return await (self.s.candidates.arun(build) if request.to_source else asyncio.to_thread(build))


    @handler("AttachShadow")
    async def AttachShadow(self, request: ruleset_pb2.AttachShadowRequest, context: Ctx,
                           ident: Identity) -> ruleset_pb2.AttachShadowResponse:
        info = await self.s.shadows.attach_named(ident.name, version=request.version, source=request.source)
        out = ruleset_pb2.Shadow(id=info.id, ruleset=info.ruleset, version=info.version, attached_by=info.attached_by)
        out.attached_at.CopyFrom(convert.timestamp(info.attached_at))
        return ruleset_pb2.AttachShadowResponse(shadow=out)

    @handler("DetachShadow")
    async def DetachShadow(self, request: ruleset_pb2.DetachShadowRequest, context: Ctx,
                           ident: Identity) -> ruleset_pb2.DetachShadowResponse:
        shadows = self.s.shadows
        version = await asyncio.to_thread(self.s.registry.resolve, request.version)
        return ruleset_pb2.DetachShadowResponse(detached=await asyncio.to_thread(shadows.detach, version))

    @handler("ShadowReport")
    async def ShadowReport(self, request: ruleset_pb2.ShadowReportRequest, context: Ctx,
                           ident: Identity) -> ruleset_pb2.ShadowReportResponse:
        shadows = self.s.shadows
        version = await asyncio.to_thread(self.s.registry.resolve, request.version)
        since = timestamp_s(request.since, "since") if request.HasField("since") else None
        r = await asyncio.to_thread(shadows.report, version, since)
        return ruleset_pb2.ShadowReportResponse(
            ruleset=r.ruleset, version=r.version, decisions=r.decisions, changed=r.changed, unanswered=r.unanswered,
            changes=[ruleset_pb2.ImpactChange(from_outcome=a, to_outcome=b, count=n, example_decision_ids=ex)
                     for a, b, n, ex in r.changes])

    async def Impact(self, request: ruleset_pb2.ImpactRequest,
                     context: Ctx) -> AsyncIterator[ruleset_pb2.ImpactResponse]:
        try:
            if isinstance(request, _BadMessage):
                raise Abort(grpc.StatusCode.INVALID_ARGUMENT, request.error)
            self.s.auth.check(_credential(context), "Impact")
            since = timestamp_s(request.since, "since") if request.HasField("since") else None
            async for step in self.s.audits.impact(request.source, last=request.last or None, since=since):
                if isinstance(step, Progress):
                    yield ruleset_pb2.ImpactResponse(progress=ruleset_pb2.ImpactProgress(done=step.done,
                                                                                           total=step.total))
                else:
                    impact = step.impact
                    if not impact.results:
                        yield ruleset_pb2.ImpactResponse(progress=ruleset_pb2.ImpactProgress(done=0, total=0))
        except Exception as e:
            status = _status(_map_error(e))
            await context.abort(status.code, status.details, status.trailing_metadata)
            return
        yield ruleset_pb2.ImpactResponse(summary=ruleset_pb2.ImpactSummary(
            decisions=impact.decisions, changed=len(impact.changed), unanswered=impact.unanswered,
            changes=[ruleset_pb2.ImpactChange(from_outcome=a, to_outcome=b, count=c, example_decision_ids=ex)
                     for a, b, c, ex in impact.moves()]))


class AuditService:
    def __init__(self, services: Services) -> None:
        self.s = services

    @handler("VerifyLog")
    async def VerifyLog(self, request: audit_pb2.VerifyLogRequest, context: Ctx,
                        ident: Identity) -> audit_pb2.VerifyLogResponse:
        checked, problem = await asyncio.to_thread(self.s.store.verify)
        if problem is None:
            return audit_pb2.VerifyLogResponse(intact=True, checked=checked)
        return audit_pb2.VerifyLogResponse(intact=False, checked=checked, decision_id=problem.decision_id,
                                           chain_seq=problem.chain_seq, problem=problem.problem)


class EscalationService:
    def __init__(self, services: Services) -> None:
        self.s = services

    def _message(self, row: dict[str, Any]) -> escalation_pb2.Escalation:
        out = escalation_pb2.Escalation(
            escalation_id=row["id"], decision_id=row["id"], ruleset=row["ruleset"], queue=row["queue"],
            reason=row["reason"], expects=row["expects"], status=row["status"],
            resolved_by=row["resolved_by"] or "", resumed_decision_id=row["resumed_decision_id"] or "")
        out.created_at.CopyFrom(convert.timestamp(row["created_at"]))
        if row["sla_at"] is not None:
            out.sla_at.CopyFrom(convert.timestamp(row["sla_at"]))
        if row["resolved_at"] is not None:
            out.resolved_at.CopyFrom(convert.timestamp(row["resolved_at"]))
        if row["expects"]:
            engine = self.s.registry.engine_for(row["version"])
            out.expects_schema.CopyFrom(convert.struct(engine.schemas[row["expects"]]))
        return out


    @handler("ListEscalations")
    async def ListEscalations(self, request: escalation_pb2.ListEscalationsRequest, context: Ctx,
                              ident: Identity) -> escalation_pb2.ListEscalationsResponse:
        status = None if request.status == "all" else (request.status or "open")
        rows = await asyncio.to_thread(self.s.store.escalations, request.queue or None, status,
                                       min(max(request.page_size or 100, 1), 1000))
        return escalation_pb2.ListEscalationsResponse(
            escalations=await asyncio.to_thread(lambda: [self._message(r) for r in rows]))

    @handler("GetEscalation")
    async def GetEscalation(self, request: escalation_pb2.GetEscalationRequest, context: Ctx,
                            ident: Identity) -> escalation_pb2.GetEscalationResponse:
        row = await asyncio.to_thread(self.s.escalations.get, request.escalation_id)
        record = await asyncio.to_thread(self.s.store.get, row["id"])
        if record is not None:
            record = await readable(self.s, record, ident)
        facts = [decision_pb2.Fact(type=e["type"], values=convert.struct(e["values"]))
                 for e in (record["trace"] if record else []) if e.get("kind") == "fact"]
        return escalation_pb2.GetEscalationResponse(escalation=await asyncio.to_thread(self._message, row),
                                                    facts=facts)

    @handler("ResolveEscalation")
    async def ResolveEscalation(self, request: escalation_pb2.ResolveEscalationRequest, context: Ctx,
                                ident: Identity) -> escalation_pb2.ResolveEscalationResponse:
        row, record = await self.s.escalations.resolve(request.escalation_id, convert.plain(request.answer),
                                                    ident.name)
        return escalation_pb2.ResolveEscalationResponse(escalation=await asyncio.to_thread(self._message, row),
                                                        decision=convert.decision(record))


def generic_handlers(services: Services) -> list[Any]:
    """Method handlers built here (not by the generated helpers) so that undecodable requests reach our
    handlers and get INVALID_ARGUMENT rather than a framework error."""
    out = []
    for proto_module, servicer in ((decision_pb2, DecisionService(services)), (ruleset_pb2, RulesetService(services)),
                                   (audit_pb2, AuditService(services)),
                                   (escalation_pb2, EscalationService(services))):
        for service in proto_module.DESCRIPTOR.services_by_name.values():
            handlers = {}
            for method in service.methods:
                req = getattr(proto_module, method.input_type.name)
                resp = getattr(proto_module, method.output_type.name)
                fn = getattr(servicer, method.name)
                make = grpc.unary_stream_rpc_method_handler if method.server_streaming else \
                    grpc.unary_unary_rpc_method_handler
                if method.client_streaming:
                    make = grpc.stream_stream_rpc_method_handler
                handlers[method.name] = make(fn, request_deserializer=_safe(req.FromString),
                                             response_serializer=resp.SerializeToString)
            out.append(grpc.method_handlers_generic_handler(service.full_name, handlers))
    return out
