"""The baton.v1 services on grpc.aio. Errors are mapped to gRPC status codes here, once."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import unicodedata
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import InitVar, dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2, timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from adapters.doors.grpc import convert
from adapters.doors.grpc.auth import Auth, AuthError, Identity
from adapters.doors.grpc.gen.baton.v1 import audit_pb2, decision_pb2, escalation_pb2, ruleset_pb2
from adapters.infra import metrics
from adapters.infra.candidates import CandidateCompiler, Checked, CompileLimitExceeded, Progress, with_progress
from adapters.infra.documents import DEFAULT_MAX_BYTES, MAX_DOCUMENTS, Incoming, read_document
from adapters.infra.store.governance import Publication, VersionInfo, VersionSource
from adapters.infra.store.sql import Conflict, SqlStore
from adapters.infra.store.sql import unavailable as store_unavailable
from adapters.infra.store.writer import GroupWriter
from adapters.usecases.decisions import DecisionPath, Job, decide_many, replay_stored, what_if_stored
from adapters.usecases.escalations import Escalations, NotOpen
from adapters.usecases.impact import Impact
from adapters.usecases.registry import GovernanceError, RulesetRegistry
from adapters.usecases.shadow import Shadows
from engine import codes
from engine.codes import Category, Status
from engine.errors import BatonError, CompileErrors, InvalidInput, Overloaded
from engine.explain import why
from engine.language.diff import diff_sources
from engine.loop import MAX_COMBINATIONS, Decision, Engine, Limits
from engine.pii import mask_record
from engine.ports import Clock, IdFactory, ModelGateway, ToolConnector
from engine.record import DecisionRecord
from engine.replay import WhatIf as WhatIfResult

log = logging.getLogger("baton.grpc")
Ctx = grpc.aio.ServicerContext[Any, Any]
DEADLINE_MARGIN_S = 0.05
# what a DecideBatch keeps back from its caller's deadline: time to store its last decisions and send every result
BULK_MARGIN_S = 0.25
MAX_MESSAGE = 1000  # characters of a status message
NOT_FOUND_CODES = codes.with_status(Status.NOT_FOUND)
# codes only a request's content raises (none the compiler shares, so an escaped compile error stays INTERNAL):
# INVALID_ARGUMENT with the field path, whatever exception carries them
REQUEST_CODES = codes.in_category(Category.REQUEST) - codes.in_category(Category.COMPILE)


def _grpc_status(code: str, default: grpc.StatusCode) -> grpc.StatusCode:
    """The status engine/codes.py gives ``code`` (``default`` for a code it does not list, or lists none for)."""
    status = codes.status_of(code)
    return getattr(grpc.StatusCode, status.value) if status is not None else default


@dataclass(slots=True)
class Services:
    """Everything the handlers need, wired by bootstrap."""

    store: SqlStore
    writer: GroupWriter
    registry: RulesetRegistry
    auth: Auth
    models: ModelGateway
    tools: ToolConnector
    clock: Clock
    ids: IdFactory
    max_inflight: int = 512
    step_limit: int | None = None
    escalations: Escalations | None = None
    default_deadline_s: float | None = None
    max_calls: int | None = None
    max_cost_usd: float | None = None
    max_combinations: int = MAX_COMBINATIONS  # facts one rule's join may have to consider (engine Limits)
    tracer: Any = None  # an OpenTelemetry Tracer when tracing is configured
    shadows: Shadows | None = None
    max_document_bytes: int = DEFAULT_MAX_BYTES
    pii_roles: tuple[str, ...] = ()  # who reads fields marked pii in others' decisions; everyone else: masked
    max_batch: int = 1000  # requests in one DecideBatch (limits.max_batch)
    batch_parallel: int = 32  # requests of one DecideBatch or DecideStream decided at once (limits.batch_parallel)
    candidates: CandidateCompiler = field(default_factory=CandidateCompiler)  # rulesets callers send
    decision_path: InitVar[DecisionPath | None] = None  # the process's one path (adapters/usecases/runtime.py)
    path: DecisionPath = field(init=False)

    def __post_init__(self, decision_path: DecisionPath | None) -> None:
        self.path = decision_path or DecisionPath(self.writer, self.tracer, self.shadows)


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


def _failed(index: int, key: str, error: BaseException) -> decision_pb2.DecideResult:
    """A batch request's result for an error: its status, as a unary Decide would answer it (and the decision,
    when one was stored before the error)."""
    abort = _map_error(error)
    result = decision_pb2.DecideResult(index=index, idempotency_key=key, error=_status_message(abort))
    if abort.stored is not None:
        result.decision.CopyFrom(convert.decision(abort.stored))
    return result


def _same_request(stored: DecisionRecord, engine: Any, validated: list[tuple[str, dict[str, Any]]],
                  request: decision_pb2.DecideRequest, key: str) -> None:
    """A key names one request: the same key with other facts, documents or version is refused (as payment
    APIs do) instead of answering with the decision of a different request."""
    inputs = [{"type": t, "values": v} for t, v in validated]
    documents = sorted(hashlib.sha256(bytes(d.content)).hexdigest() for d in request.documents)
    stored_documents = sorted(str(d.get("id", "")) for d in stored.get("documents") or [])
    same = (stored.get("ruleset") == engine.ruleset.name and json.loads(json.dumps(inputs)) == stored.get("inputs")
            and documents == stored_documents and (not request.version or stored.get("version", "").startswith(
                request.version)))
    if not same:
        raise Abort(grpc.StatusCode.FAILED_PRECONDITION, f"idempotency_key {key[:80]!r} was used for a different "
                    f"request (decision {stored.get('decision_id')}): send a new key for new facts",
                    [("idempotency_key", "already used for a different request")])


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


@dataclass(slots=True)
class _Prepared:
    """A Decide request past the checks that need no store (DecisionService._prepare)."""

    request: decision_pb2.DecideRequest
    engine: Engine
    facts: dict[str, list[Any]]
    key: str | None
    deadline: float | None  # its own (or the configured default), seconds


@dataclass(slots=True)
class _Call:
    """A DecideBatch call's state shared with the task deciding it: cancelled once the call has ended."""

    cancelled: bool = False


class DecisionService:
    def __init__(self, services: Services) -> None:
        self.s = services
        self.inflight = 0
        self._bulk_slots: asyncio.Semaphore | None = None
        self._bulk_tasks: set[asyncio.Future[Any]] = set()  # batches and stream requests deciding

    def _read_documents(self, documents: Any) -> list[Incoming]:
        out = []
        for i, doc in enumerate(documents):
            out.append(read_document(doc.name, bytes(doc.content), doc.media_type, f"documents[{i}]",
                                     self.s.max_document_bytes))
        return out

    @handler("Decide")
    async def Decide(self, request: decision_pb2.DecideRequest, context: Ctx,
                     ident: Identity) -> decision_pb2.DecideResponse:
        return await self._decide(request, context, ident)

    def _prepare(self, request: decision_pb2.DecideRequest, key: str | None,
                 engines: dict[tuple[str, str], Engine] | None = None) -> _Prepared:
        """A request's checks that need no store: its ruleset's engine (resolved once per distinct ruleset and
        version of a batch, in ``engines``), its facts converted, its key and deadline checked; every
        failure raised (Abort, BatonError)."""
        if not request.ruleset:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "ruleset is required", [("ruleset", "required")])
        if engines is None:
            engine = self.s.registry.engine(request.ruleset, request.version)
        else:
            found = engines.get((request.ruleset, request.version))
            engine = found if found is not None else self.s.registry.engine(request.ruleset, request.version)
            if found is None:
                engines[(request.ruleset, request.version)] = engine
        facts: dict[str, list[Any]] = {}
        for i, fact in enumerate(request.facts):
            if not fact.type:
                raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"facts[{i}].type is required",
                            [(f"facts[{i}].type", "required")])
            facts.setdefault(fact.type, []).append(convert.plain(fact.values))
        if len(request.documents) > MAX_DOCUMENTS:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_DOCUMENTS} documents per decision",
                        [("documents", f"at most {MAX_DOCUMENTS}")])
        if key and len(key) > 200:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "idempotency_key longer than 200 characters",
                        [("idempotency_key", "at most 200 characters")])
        if key and any(unicodedata.category(c) == "Cc" for c in key):
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "idempotency_key contains a control character (a key is "
                        "printed in logs and the console, and compared as sent)",
                        [("idempotency_key", "no control characters (NUL, ESC, newline, ...)")])
        has_deadline = request.HasField("deadline")
        deadline = duration_s(request.deadline, "deadline") if has_deadline else self.s.default_deadline_s
        if has_deadline and deadline is not None and deadline <= 0:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "deadline must be positive (nothing was decided)",
                        [("deadline", "must be positive")])
        return _Prepared(request, engine, facts, key or None, deadline)

    @staticmethod
    def _replay(existing: DecisionRecord, p: _Prepared) -> decision_pb2.Decision:
        """A decision already stored under the request's key, answered as an idempotent replay once the request
        is found to be the same one (compared as validated: 5 and 5.0 are one value; facts that no longer
        validate, as sent)."""
        assert p.key is not None
        try:
            sent = p.engine.validate_input(p.facts, allow_empty=bool(p.request.documents))
        except InvalidInput:
            sent = [(t, v) for t, values in p.facts.items() for v in values]
        _same_request(existing, p.engine, sent, p.request, p.key)
        return convert.decision(existing, idempotent_replay=True)

    async def _decide(self, request: decision_pb2.DecideRequest, context: Ctx,
                      ident: Identity) -> decision_pb2.DecideResponse:
        """One Decide, however it came (unary, or one request of a DecideStream): validated, decided through
        the one path, answered; every failure raised, mapped to a status by the caller."""
        s = self.s
        received = s.path.received()
        p = self._prepare(request, request.idempotency_key or None)
        engine, facts, key, deadline = p.engine, p.facts, p.key, p.deadline
        existing = await asyncio.to_thread(s.store.find, ident.name, key) if key else None
        if existing is not None and key:
            return decision_pb2.DecideResponse(decision=self._replay(existing, p))
        # facts first: a bad fact means no document is read and nothing is stored
        validated = engine.validate_input(facts, allow_empty=bool(request.documents))
        if self.inflight >= s.max_inflight:
            raise Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"more than {s.max_inflight} decisions in flight; "
                        "retry with backoff")
        remaining = context.time_remaining()
        if remaining is not None:
            if remaining <= DEADLINE_MARGIN_S:  # waited in the queue past the caller's deadline: not decided
                raise Abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the caller's deadline passed before the decision "
                            "started: nothing was decided or stored")
            remaining -= DEADLINE_MARGIN_S
            deadline = remaining if deadline is None else min(deadline, remaining)
        incoming = await asyncio.to_thread(self._read_documents, request.documents) if request.documents else []
        self.inflight += 1
        metrics.INFLIGHT.inc()
        limits = Limits(step_limit=s.step_limit, deadline_s=deadline, max_calls=s.max_calls,
                        max_cost_usd=s.max_cost_usd, max_combinations=s.max_combinations)
        try:
            record, saved = await s.path.decide(
                engine.ruleset.name, lambda: engine.run(validated, s.models, s.tools, s.clock, s.ids, limits,
                                                        documents=[i.document for i in incoming]),
                ident.name, key, incoming, _metadata(context, "x-request-id") or "", received=received)
        finally:
            self.inflight -= 1
            metrics.INFLIGHT.dec()
        if saved.existing:  # a concurrent retry with the same key won the race
            stored = await asyncio.to_thread(s.store.get, saved.decision_id)
            assert stored is not None and key is not None
            _same_request(stored, engine, validated, request, key)
            return decision_pb2.DecideResponse(decision=convert.decision(stored, idempotent_replay=True))
        if record["outcome"] == "failed" and str(record["reason"]).startswith("deadline"):
            raise Abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"decision {record['decision_id']} failed: "
                        f"{record['reason']} (it is stored)", stored=record)
        return decision_pb2.DecideResponse(decision=convert.decision(record))

    # DecideBatch and DecideStream: each request decided by _decide, exactly as one unary Decide

    def _slots(self) -> asyncio.Semaphore:
        """Places for the requests of batches and streams: as many as limits.max_inflight. A request waits for
        one (within the call's deadline) rather than being refused while a batch's other requests run."""
        if self._bulk_slots is None:
            self._bulk_slots = asyncio.Semaphore(self.s.max_inflight)
        return self._bulk_slots

    async def _bulk_item(self, index: int, request: Any, context: Ctx, ident: Identity,
                         batch_key: str = "") -> decision_pb2.DecideResult:
        """One request of a batch or a stream: its result, never an exception. Once started it runs to its end
        (stored, logged, counted) even if the call is cancelled meanwhile; one not started when the call's
        deadline is too near is answered DEADLINE_EXCEEDED with nothing stored."""
        if isinstance(request, _BadMessage):
            return decision_pb2.DecideResult(index=index, error=_status_message(Abort(
                grpc.StatusCode.INVALID_ARGUMENT, request.error, [("request", request.error)])))
        if batch_key and not request.idempotency_key:
            derived = decision_pb2.DecideRequest()
            derived.CopyFrom(request)
            derived.idempotency_key = f"{batch_key}/{index}"
            request = derived
        slots = self._slots()
        try:
            remaining = context.time_remaining()
            async with asyncio.timeout(None if remaining is None else max(0.0, remaining - BULK_MARGIN_S)):
                if remaining is not None and remaining <= BULK_MARGIN_S:
                    raise TimeoutError
                await slots.acquire()
        except TimeoutError:
            late = Abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the call's deadline passed before this request "
                         "started: nothing was decided or stored for it")
            return decision_pb2.DecideResult(index=index, idempotency_key=request.idempotency_key,
                                             error=_status_message(late))
        task = asyncio.ensure_future(self._bulk_one(index, request, context, ident))
        self._bulk_tasks.add(task)
        task.add_done_callback(self._bulk_tasks.discard)
        task.add_done_callback(lambda _: slots.release())
        return await asyncio.shield(task)

    async def _bulk_one(self, index: int, request: decision_pb2.DecideRequest, context: Ctx,
                        ident: Identity) -> decision_pb2.DecideResult:
        result = decision_pb2.DecideResult(index=index, idempotency_key=request.idempotency_key)
        try:
            remaining = context.time_remaining()
            if remaining is not None and remaining > BULK_MARGIN_S:
                # the engine stops in time for the batch's last decisions to be stored and every result sent
                own = duration_s(request.deadline, "deadline") if request.HasField("deadline") \
                    else self.s.default_deadline_s
                budget = remaining - BULK_MARGIN_S
                if own is None or (0 < budget < own):
                    request = decision_pb2.DecideRequest.FromString(request.SerializeToString())
                    request.deadline.FromNanoseconds(int(budget * 1e9))
            response = await self._decide(request, context, ident)
            result.decision.CopyFrom(response.decision)
        except Exception as e:
            abort = _map_error(e)
            result.error.CopyFrom(_status_message(abort))
            if abort.stored is not None:
                result.decision.CopyFrom(convert.decision(abort.stored))
        return result

    @handler("DecideBatch")
    async def DecideBatch(self, request: decision_pb2.DecideBatchRequest, context: Ctx,
                          ident: Identity) -> decision_pb2.DecideBatchResponse:
        n, limit = len(request.requests), self.s.max_batch
        if n > limit:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{n} requests in one DecideBatch: at most {limit} "
                        "(limits.max_batch); nothing was decided, send smaller batches",
                        [("requests", f"at most {limit} (limits.max_batch)")])
        if request.idempotency_key and len(f"{request.idempotency_key}/{max(n - 1, 0)}") > 200:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "idempotency_key too long: with /INDEX added, a request's "
                        "key would pass 200 characters; nothing was decided",
                        [("idempotency_key", "at most 200 characters with /INDEX")])
        call = _Call()
        task = asyncio.ensure_future(self._batch(request, context, ident, call))
        self._bulk_tasks.add(task)
        task.add_done_callback(self._bulk_tasks.discard)
        try:  # once started, a request runs to its end (stored, logged, counted) even if the call is cancelled
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            call.cancelled = True  # ... but no other request starts
            raise

    async def _batch(self, batch: decision_pb2.DecideBatchRequest, context: Ctx, ident: Identity,
                     call: _Call) -> decision_pb2.DecideBatchResponse:
        """A DecideBatch's requests, each stored, chained, logged, counted and idempotent exactly as a unary
        Decide, each answered with its own decision or status - with the per-request costs paid once: one
        engine resolution per distinct ruleset and version, one store query for every idempotency key, the
        engine runs back to back (limits.batch_parallel at a time, in request order), and every decision
        handed to the store writer in one group (adapters/usecases/decisions.py decide_many). When the call's time
        runs short (or the call is cancelled), what has started is finished and stored, and nothing more
        starts: those requests are answered DEADLINE_EXCEEDED with nothing stored for them."""
        s = self.s
        received = s.path.received()
        n = len(batch.requests)
        results: list[decision_pb2.DecideResult | None] = [None] * n
        keys = [item.idempotency_key or (f"{batch.idempotency_key}/{i}" if batch.idempotency_key else "")
                for i, item in enumerate(batch.requests)]
        wanted = [k for k in keys if k]
        # one query for every key of the batch (a key that will fail its checks finds nothing, harmlessly)
        found = await asyncio.to_thread(s.store.find_many, ident.name, wanted) if wanted else {}
        engines: dict[tuple[str, str], Engine] = {}
        request_id = _metadata(context, "x-request-id") or ""
        validated: dict[int, tuple[_Prepared, list[tuple[str, dict[str, Any]]]]] = {}
        position = 0

        async def next_jobs() -> tuple[list[Job], float | None]:
            """The requests to start now, checked when their turn comes (a request never started costs nothing
            beyond its key's lookup): each as a unary Decide checks it, in the same order - its own checks,
            then a decision already stored under its key (answered as a replay), then its facts, then its
            documents; one that fails or is replayed takes no place."""
            nonlocal position
            while position < n:
                count, budget = await self._admit(n - position, context, call)
                if count == 0:
                    return [], None
                jobs: list[Job] = []
                while position < n and len(jobs) < count:
                    i, key = position, keys[position] or None
                    position += 1
                    try:
                        p = self._prepare(batch.requests[i], key, engines)
                        existing = found.get(key) if key else None
                        if existing is not None:
                            results[i] = decision_pb2.DecideResult(index=i, idempotency_key=keys[i],
                                                                   decision=self._replay(existing, p))
                            continue
                        facts = p.engine.validate_input(p.facts, allow_empty=bool(p.request.documents))
                        incoming = await asyncio.to_thread(self._read_documents, p.request.documents) \
                            if p.request.documents else []
                    except Exception as e:
                        results[i] = _failed(i, keys[i], e)
                        continue
                    validated[i] = (p, facts)
                    jobs.append(Job(i, p.engine.ruleset.name, self._runner(p, facts, incoming), key, incoming,
                                    request_id))
                if len(jobs) < count:
                    self._release(count - len(jobs))
                if jobs:
                    return jobs, budget
            return [], None

        outcomes = await decide_many(s.path, next_jobs, self._release, ident.name, received=received)
        replayed = [o[1].decision_id for _, o in outcomes if isinstance(o, tuple) and o[1].existing]
        stored = dict(zip(replayed, await asyncio.to_thread(s.store.get_many, replayed), strict=True)) \
            if replayed else {}  # a concurrent retry with the same key stored first
        for job, outcome in outcomes:
            i = job.index
            result = decision_pb2.DecideResult(index=i, idempotency_key=keys[i])
            if isinstance(outcome, BaseException):
                result = _failed(i, keys[i], outcome)
            else:
                record, saved = outcome
                try:
                    if saved.existing:
                        p, facts = validated[i]
                        found_record = stored.get(saved.decision_id)
                        assert found_record is not None and p.key is not None
                        _same_request(found_record, p.engine, facts, p.request, p.key)
                        result.decision.CopyFrom(convert.decision(found_record, idempotent_replay=True))
                    elif record["outcome"] == "failed" and str(record["reason"]).startswith("deadline"):
                        raise Abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"decision {record['decision_id']} "
                                    f"failed: {record['reason']} (it is stored)", stored=record)
                    else:
                        result.decision.CopyFrom(convert.decision(record))
                except Exception as e:
                    result = _failed(i, keys[i], e)
            results[i] = result
        late = _status_message(Abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the call's deadline passed before this "
                                     "request started: nothing was decided or stored for it"))
        done = [r if r is not None else decision_pb2.DecideResult(index=i, idempotency_key=keys[i], error=late)
                for i, r in enumerate(results)]  # never started
        return decision_pb2.DecideBatchResponse(results=done)

    def _runner(self, p: _Prepared, validated: list[tuple[str, dict[str, Any]]],
                incoming: list[Incoming]) -> Callable[[float | None], Awaitable[Decision]]:
        """A batch request's engine run, within its own deadline and what is left of the call's (``budget``)."""
        s = self.s

        def run(budget: float | None) -> Awaitable[Decision]:
            deadline = p.deadline if budget is None or (p.deadline is not None and p.deadline <= budget) \
                else budget
            limits = Limits(step_limit=s.step_limit, deadline_s=deadline, max_calls=s.max_calls,
                            max_cost_usd=s.max_cost_usd, max_combinations=s.max_combinations)
            return p.engine.run(validated, s.models, s.tools, s.clock, s.ids, limits,
                                documents=[i.document for i in incoming])

        return run

    async def _admit(self, want: int, context: Ctx, call: _Call) -> tuple[int, float | None]:
        """How many of a batch's next ``want`` requests may start now (at most limits.batch_parallel, and the
        places free of limits.max_inflight for batches and streams, waiting within the call's deadline for
        one), and the seconds they have: the call's time left less what storing and answering need. 0 once
        the call is cancelled or its time is too short to start another."""
        remaining = context.time_remaining()
        if call.cancelled or (remaining is not None and remaining <= BULK_MARGIN_S):
            return 0, None
        slots, want = self._slots(), min(want, self.s.batch_parallel)
        got = 0
        while got < want and not slots.locked():
            await slots.acquire()  # free: no wait
            got += 1
        if got == 0:
            try:
                async with asyncio.timeout(None if remaining is None else remaining - BULK_MARGIN_S):
                    await slots.acquire()
            except TimeoutError:
                return 0, None
            got = 1
            remaining = context.time_remaining()
            if call.cancelled or (remaining is not None and remaining <= BULK_MARGIN_S):
                slots.release()
                return 0, None
        self.inflight += got
        metrics.INFLIGHT.inc(got)
        return got, None if remaining is None else remaining - BULK_MARGIN_S

    def _release(self, count: int) -> None:
        self.inflight -= count
        metrics.INFLIGHT.dec(count)
        slots = self._slots()
        for _ in range(count):
            slots.release()

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
        window = asyncio.Semaphore(self.s.batch_parallel)
        pending: asyncio.Queue[asyncio.Future[decision_pb2.DecideResult] | None] = asyncio.Queue()

        async def read() -> None:
            index = 0
            try:
                async for message in requests:
                    await window.acquire()
                    request = message if isinstance(message, _BadMessage) else message.request
                    pending.put_nowait(asyncio.ensure_future(self._bulk_item(index, request, context, ident)))
                    index += 1
            finally:
                pending.put_nowait(None)

        reader = asyncio.ensure_future(read())
        try:
            while (item := await pending.get()) is not None:
                result = await item
                window.release()
                yield decision_pb2.DecideStreamResponse(result=result)
            await reader  # a broken request stream ends the call with its error
        finally:  # the call ended early (cancelled, or the client went away): what has not started never will
            reader.cancel()
            while not pending.empty():
                left = pending.get_nowait()
                if left is not None:
                    left.cancel()  # a request already deciding is shielded: it is stored and counted all the same

    async def _record(self, decision_id: str) -> DecisionRecord:
        record = await asyncio.to_thread(self.s.store.get, decision_id)
        if record is None:
            raise _not_found(f"no decision {decision_id!r}")
        return record

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
        record = await self._record(request.decision_id)
        result = await replay_stored(self.s.store, self.s.registry.engine_for, record)
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
        kind = request.WhichOneof("candidate")
        if kind not in ("source", "version"):
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "give the candidate's source or version",
                        [("candidate", "required")])
        source, file = request.source, "candidate.yaml"
        if kind == "version":
            version = await asyncio.to_thread(self.s.registry.resolve, request.version)
            engine = self.s.registry.loaded(version)  # in use here already: no compile
            if engine is not None:
                w = await what_if_stored(self.s.store, engine, record)
                return self._what_if(w)
            found = await asyncio.to_thread(self.s.store.ruleset_source, version)
            if found is None:
                raise _not_found(f"no ruleset version {version[:12]}")
            source, file = found[1], f"{found[0]}@{version[:12]}"
        # a candidate, or a stored version not yet approved: compiled and run in the bounded child
        documents = await asyncio.to_thread(self.s.store.documents_of, record)
        _, results = await self.s.candidates.awhat_if(source, file, lambda _: (1, [(record, documents)]))
        return self._what_if(results[0])

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

    def _shadows(self) -> Shadows:
        if self.s.shadows is None:
            raise Abort(grpc.StatusCode.UNIMPLEMENTED, "shadow runs are not enabled on this server")
        return self.s.shadows

    @handler("AttachShadow")
    async def AttachShadow(self, request: ruleset_pb2.AttachShadowRequest, context: Ctx,
                           ident: Identity) -> ruleset_pb2.AttachShadowResponse:
        shadows = self._shadows()

        def live(name: str) -> None:
            if not self.s.registry.active_version(name):
                raise BatonError("unknown_ruleset", f"no live ruleset named {name!r} to shadow")

        checked = None
        if request.source:  # compiled by the bounded child; the shadow runs in one too (adapters/usecases/shadow.py)
            checked = (await self.s.candidates.acheck(request.source, "shadow.yaml")).stored(request.source)

        def attach() -> ruleset_pb2.AttachShadowResponse:
            if checked is not None:
                rs = checked
            elif request.version:
                version = self.s.registry.resolve(request.version)
                found = self.s.store.ruleset_source(version)
                if found is None:
                    raise _not_found(f"no ruleset version {version[:12]}")
                rs = VersionSource(found[0], version, found[1], "", 0, 0)  # stored already: only named here
            else:
                raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "version or source is required",
                            [("version", "required")])
            live(rs.name)
            info = shadows.attach(rs, ident.name)
            out = ruleset_pb2.Shadow(id=info.id, ruleset=info.ruleset, version=info.version,
                                     attached_by=info.attached_by)
            out.attached_at.CopyFrom(convert.timestamp(info.attached_at))
            return ruleset_pb2.AttachShadowResponse(shadow=out)

        return await asyncio.to_thread(attach)

    @handler("DetachShadow")
    async def DetachShadow(self, request: ruleset_pb2.DetachShadowRequest, context: Ctx,
                           ident: Identity) -> ruleset_pb2.DetachShadowResponse:
        shadows = self._shadows()
        version = await asyncio.to_thread(self.s.registry.resolve, request.version)
        return ruleset_pb2.DetachShadowResponse(detached=await asyncio.to_thread(shadows.detach, version))

    @handler("ShadowReport")
    async def ShadowReport(self, request: ruleset_pb2.ShadowReportRequest, context: Ctx,
                           ident: Identity) -> ruleset_pb2.ShadowReportResponse:
        shadows = self._shadows()
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
            store = self.s.store

            def decisions(checked: Checked) -> list[str]:  # on the run's thread
                return store.recent_ids(checked.name, request.last or (None if since else 1000), since)

            impact = Impact()  # in bounded children, side by side when there are enough decisions
            async for step in with_progress(lambda progress: self.s.candidates.aimpact(
                    request.source, "candidate.yaml", decisions, store, progress=progress)):
                if isinstance(step, Progress):
                    yield ruleset_pb2.ImpactResponse(progress=ruleset_pb2.ImpactProgress(done=step.done,
                                                                                           total=step.total))
                else:
                    impact.results = step[1]
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

    def _service(self) -> Escalations:
        assert self.s.escalations is not None
        return self.s.escalations

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
        row = await asyncio.to_thread(self._service().get, request.escalation_id)
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
        row, record = await self._service().resolve(request.escalation_id, convert.plain(request.answer),
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
