"""Every error a baton.v1 handler meets, mapped to its gRPC status once (codes from engine/codes.py, the field
path of a bad request as a BadRequest detail); the wrapper that authenticates each call and does that mapping;
and the checks of request fields the generated code cannot make (Duration, Timestamp, metadata)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2, timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from adapters.doors.grpc.auth import AuthError
from adapters.doors.grpc.gen.baton.v1 import ruleset_pb2
from adapters.infra.candidates import CompileLimitExceeded
from adapters.infra.store.sql import Conflict
from adapters.infra.store.sql import unavailable as store_unavailable
from adapters.usecases.commands import Refused
from adapters.usecases.escalations import NotOpen
from adapters.usecases.registry import GovernanceError
from engine import codes
from engine.codes import Category, Status
from engine.errors import BatonError, CompileErrors, InvalidInput, Overloaded
from engine.record import DecisionRecord

log = logging.getLogger("baton.grpc")
Ctx = grpc.aio.ServicerContext[Any, Any]
MAX_MESSAGE = 1000  # characters of a status message
NOT_FOUND_CODES = codes.with_status(Status.NOT_FOUND)
# codes only a request's content raises (none the compiler shares, so an escaped compile error stays INTERNAL):
# INVALID_ARGUMENT with the field path, whatever exception carries them
REQUEST_CODES = codes.in_category(Category.REQUEST) - codes.in_category(Category.COMPILE)


def grpc_status(code: str, default: grpc.StatusCode) -> grpc.StatusCode:
    """The status engine/codes.py gives ``code`` (``default`` for a code it does not list, or lists none for)."""
    status = codes.status_of(code)
    return getattr(grpc.StatusCode, status.value) if status is not None else default


class Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str, bad_request: list[tuple[str, str]] | None = None,
                 stored: DecisionRecord | None = None):
        super().__init__(message)
        self.code, self.message, self.bad_request = code, message, bad_request or []
        self.stored = stored  # a decision stored before the error (one that ran out of time): batches report it


class BadMessage:
    """A request that did not parse as protobuf (e.g. invalid UTF-8 in a string field)."""

    def __init__(self, error: str) -> None:
        self.error = error


def safe(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as e:  # DecodeError and friends: answered as INVALID_ARGUMENT by the handler
            return BadMessage(f"the request is not a valid protobuf message: {e}")

    return deserialize


def to_status(abort: Abort) -> grpc.Status:
    return rpc_status.to_status(to_status_message(abort))


def to_status_message(abort: Abort) -> status_pb2.Status:
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


def map_error(e: BaseException) -> Abort:
    if isinstance(e, Abort):
        return e
    if isinstance(e, Refused):
        return Abort(grpc_status(e.code, grpc.StatusCode.INTERNAL), e.message,
                     [(e.where.path, e.problem)] if e.where.path else None, stored=e.stored)
    if isinstance(e, AuthError):
        return Abort(grpc_status(e.code, grpc.StatusCode.PERMISSION_DENIED), e.message)
    if isinstance(e, InvalidInput):
        return Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{e.code}: {e.message}", [(e.where.path, e.message)])
    if isinstance(e, CompileErrors):
        return Abort(grpc.StatusCode.INVALID_ARGUMENT, str(e),
                     [(f"source:{x.where.line}:{x.where.column}", f"{x.code}: {x.message}") for x in e.errors])
    if isinstance(e, Overloaded):
        return Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, e.message)
    if isinstance(e, GovernanceError):
        return Abort(grpc_status(e.code, grpc.StatusCode.FAILED_PRECONDITION), e.message)
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
                ident = self.s.auth.check(credential(context), method)
                if isinstance(request, BadMessage):
                    raise Abort(grpc.StatusCode.INVALID_ARGUMENT, request.error, [("request", request.error)])
                return await fn(self, request, context, ident)
            except Exception as e:
                status = to_status(map_error(e))
                await context.abort(status.code, status.details, status.trailing_metadata)

        run.__name__ = fn.__name__
        return run

    return wrap


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


def credential(context: Ctx) -> str | None:
    """The one ``authorization`` value; two or more are ambiguous (which one names the caller?) and refused."""
    values = [v for k, v in context.invocation_metadata() or () if k == "authorization"]
    if len(values) > 1:
        raise AuthError("unauthenticated", f"{len(values)} authorization headers: send exactly one")
    if not values:
        return None
    v = values[0]
    return v if isinstance(v, str) else v.decode("utf-8", "replace")


def metadata_value(context: Ctx, key: str) -> str | None:
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return v if isinstance(v, str) else v.decode("utf-8", "replace")
    return None


def compile_error(x: BatonError) -> ruleset_pb2.CompileError:
    return ruleset_pb2.CompileError(code=x.code, message=x.message, line=x.where.line if x.where else 0,
                                    column=x.where.column if x.where else 0, hint=x.hint)


def not_found(what: str) -> Abort:
    return Abort(grpc.StatusCode.NOT_FOUND, what)


