"""Recorded answers: the model and tool ports served from a test's ``answers`` or a stored decision.

Never a live call. An action with no recorded answer left yields the failure kind ``unanswered``,
which the test runner reports as an error and what-if replays show.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import orjson

from engine.ports import CallRequest, CallResult, ModelGateway, ToolConnector


def _result(answer: object) -> CallResult:
    # dict before the slow Mapping ABC, and no set of keys built: this runs for every recorded answer
    if isinstance(answer, (dict, Mapping)) and len(answer) == 1 and "failure" in answer \
            and isinstance(answer["failure"], Mapping):
        f = answer["failure"]
        return CallResult(failure_kind=str(f.get("kind", "error")), error=str(f.get("error", "")))
    return CallResult(answer=answer)


class RecordedAnswers:
    """Answers by action name: one answer for every call, or a list used in call order."""

    def __init__(self, answers: Mapping[str, object]) -> None:
        self.answers = dict(answers)
        self.used: dict[str, int] = {}
        self.unanswered: list[str] = []

    def _next(self, call: CallRequest) -> CallResult:
        if call.action not in self.answers:
            self.unanswered.append(call.action)
            return CallResult(failure_kind="unanswered", error=f"no recorded answer for {call.action}")
        recorded = self.answers[call.action]
        if isinstance(recorded, list):  # answers in call order (a tool's several rows: a list inside)
            n = self.used.get(call.action, 0)
            self.used[call.action] = n + 1
            if n >= len(recorded):
                self.unanswered.append(call.action)
                return CallResult(failure_kind="unanswered",
                                  error=f"{call.action} was called {n + 1} times; {len(recorded)} answers recorded")
            return _result(recorded[n])
        return _result(recorded)

    def answer_now(self, call: CallRequest) -> CallResult:
        return self._next(call)

    async def complete(self, call: CallRequest) -> CallResult:
        return self.answer_now(call)

    async def call(self, call: CallRequest) -> CallResult:
        return self.answer_now(call)


class CannedAnswers(RecordedAnswers):
    """The same answer for every call of an action, for ever (a service's offline demo or benchmark);
    a list gives one answer per call in order, cycling."""

    def _next(self, call: CallRequest) -> CallResult:
        if call.action not in self.answers:
            return CallResult(failure_kind="not_configured", error=f"no canned answer for {call.action}")
        recorded = self.answers[call.action]
        if isinstance(recorded, list) and recorded:
            n = self.used.get(call.action, 0)
            self.used[call.action] = n + 1
            return _result(recorded[n % len(recorded)])
        return _result(recorded)


class ReplayAnswers:
    """Answers from a stored decision's call events, matched by action and request. A call with no
    recorded answer is ``unanswered`` - or, for a what-if run with live ports, made live."""

    def __init__(self, trace: Sequence[Mapping[str, object]], live_models: ModelGateway | None = None,
                 live_tools: ToolConnector | None = None, carried: bool = False) -> None:
        """``carried``: the trace is an escalated decision's and these answers resume it (every answer is
        marked carried); otherwise each answer is carried only if its recorded call was."""
        self.live_models, self.live_tools = live_models, live_tools
        self.by_request: dict[str, list[CallResult]] = {}
        for event in trace:
            if event.get("kind") != "call" or event.get("status") == "cancelled":
                continue
            key = request_key(str(event["action"]), event["request"])
            failure = event.get("failure")
            if isinstance(failure, Mapping):
                result = CallResult(failure_kind=str(failure["kind"]), error=str(failure["error"]))
            else:
                result = CallResult(answer=event.get("answer"))
            meta = event.get("meta")
            if isinstance(meta, dict):
                result.meta = dict(meta)
            attempts = event.get("attempts")
            if isinstance(attempts, int):
                result.attempts = attempts
            result.carried = carried or event.get("carried") is True
            self.by_request.setdefault(key, []).append(result)
        self.unanswered: list[dict[str, object]] = []
        self.live: list[dict[str, object]] = []  # calls made live in a what-if run

    def _recorded(self, call: CallRequest) -> CallResult | None:
        queue = self.by_request.get(request_key(call.action, call.request))
        if not queue:
            return None
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def _unanswered(self, call: CallRequest) -> CallResult:
        self.unanswered.append({"action": call.action, "request": call.request})
        return CallResult(failure_kind="unanswered", error=f"no recorded answer for {call.action} with this request")

    def answer_now(self, call: CallRequest) -> CallResult | None:
        found = self._recorded(call)
        if found is not None:
            return found
        live = self.live_models if call.kind == "model" else self.live_tools
        return self._unanswered(call) if live is None else None  # None: the loop awaits the live port

    async def complete(self, call: CallRequest) -> CallResult:
        found = self._recorded(call)
        if found is not None:
            return found
        if self.live_models is None:
            return self._unanswered(call)
        self.live.append({"action": call.action, "request": call.request})
        return await self.live_models.complete(call)

    async def call(self, call: CallRequest) -> CallResult:
        found = self._recorded(call)
        if found is not None:
            return found
        if self.live_tools is None:
            return self._unanswered(call)
        self.live.append({"action": call.action, "request": call.request})
        return await self.live_tools.call(call)


def request_key(action: str, request: object) -> str:
    """What a recorded call and the call a replay makes are matched by: the action and its request's
    canonical JSON. A key only ever meets keys computed here, in this process, so its text may change between
    versions; orjson's (a fifth of json.dumps' time), or json's where orjson cannot encode the request (an
    integer beyond 64 bits, a key that is not a string) or may have written NaN or infinity as null."""
    try:
        text = orjson.dumps(request, option=orjson.OPT_SORT_KEYS).decode()
        if "null" not in text:
            return action + "\x00" + text
    except TypeError:
        pass
    return action + "\x01" + json.dumps(request, sort_keys=True, separators=(",", ":"))
