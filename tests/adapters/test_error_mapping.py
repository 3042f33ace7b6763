"""The gRPC door and the console answer each error code with the status engine/codes.py gives it: every status
in the table (and so in docs/language.md) is the one a caller gets, raised through the exception that
carries the code in the tree."""

from __future__ import annotations

import grpc
import pytest

from adapters.doors.console.publications import REVIEW_REFUSED
from adapters.doors.grpc.auth import AuthError
from adapters.doors.grpc.status import map_error as _map_error
from adapters.infra.candidates import CompileLimitExceeded
from adapters.usecases.commands import Refused
from adapters.usecases.escalations import NotOpen
from adapters.usecases.registry import GovernanceError
from engine.codes import CODES, Category, Code, Status, status_of
from engine.errors import BatonError, EngineFailure, InvalidInput, Overloaded, Where


def _carrier(code: Code) -> BaseException:
    """The error as the tree raises it."""
    info = CODES[code]
    if code in (Code.UNAUTHENTICATED, Code.PERMISSION_DENIED):
        return AuthError(code, "m")
    if code in (Code.NOT_OPEN, Code.NO_ANSWER_EXPECTED):
        return NotOpen(code, "m")
    if code is Code.OVERLOADED:
        return Overloaded(code, "m")
    if code is Code.ENGINE_ERROR:
        return EngineFailure(code, "m")
    if code in (Code.IDEMPOTENCY_CONFLICT, Code.DEADLINE_EXCEEDED):
        return Refused(code, "m", "idempotency_key")
    if code is Code.COMPILE_LIMIT:
        return CompileLimitExceeded("compile_seconds", "m")
    if Category.GOVERNANCE in info.categories:
        return GovernanceError(code, "m")
    if Category.REQUEST in info.categories and code is not Code.BAD_REQUEST:
        return InvalidInput(code, "m", Where(path="facts.claim.amount"))
    return BatonError(code, "m", Where(path="request.x"))


@pytest.mark.parametrize("code", [c for c, info in CODES.items() if info.status is not None])
def test_the_door_gives_each_code_its_registered_status(code: Code) -> None:
    status = CODES[code].status
    assert status is not None
    assert _map_error(_carrier(code)).code is getattr(grpc.StatusCode, status.value)


def test_the_mapping_is_the_one_it_replaced() -> None:
    """The string-matching mapping engine/codes.py replaced, case by case (unregistered codes included)."""
    expected = [
        (AuthError("unauthenticated", "m"), grpc.StatusCode.UNAUTHENTICATED),
        (AuthError("permission_denied", "m"), grpc.StatusCode.PERMISSION_DENIED),
        (AuthError("something_else", "m"), grpc.StatusCode.PERMISSION_DENIED),
        (GovernanceError("four_eyes", "m"), grpc.StatusCode.PERMISSION_DENIED),
        (GovernanceError("note_required", "m"), grpc.StatusCode.INVALID_ARGUMENT),
        (GovernanceError("not_pending", "m"), grpc.StatusCode.FAILED_PRECONDITION),
        (GovernanceError("unchanged", "m"), grpc.StatusCode.FAILED_PRECONDITION),
        (GovernanceError("something_else", "m"), grpc.StatusCode.FAILED_PRECONDITION),
        *[(BatonError(c, "m"), grpc.StatusCode.NOT_FOUND) for c in ("unknown_ruleset", "unknown_version",
          "unknown_decision", "unknown_rule", "unknown_escalation", "unknown_publication")],
        (BatonError("bad_request", "m", Where(path="p")), grpc.StatusCode.INVALID_ARGUMENT),
        # a compile code on a plain error that escaped to the door is a bug: INTERNAL, with an incident logged
        (BatonError("type_mismatch", "m"), grpc.StatusCode.INTERNAL),
        (BatonError("stale_version", "m"), grpc.StatusCode.INTERNAL),
        (BatonError("no_such_code", "m"), grpc.StatusCode.INTERNAL),
    ]
    assert [(e, _map_error(e).code) for e, _ in expected] == expected
    assert _map_error(BatonError("bad_request", "m", Where(path="p"))).bad_request == [("p", "m")]


def test_the_console_answers_a_refused_review_by_the_code_status() -> None:
    """four_eyes 403, a missing note 400, anything else (already decided, unknown) 409, as before."""
    got = {c: REVIEW_REFUSED.get(status_of(c), 409)
           for c in ("four_eyes", "note_required", "not_pending", "unchanged", "unknown_publication", "made_up")}
    assert got == {"four_eyes": 403, "note_required": 400, "not_pending": 409, "unchanged": 409,
                   "unknown_publication": 409, "made_up": 409}
    assert Status.PERMISSION_DENIED in REVIEW_REFUSED
