"""Ports for a service with no model gateway or tool connectors configured, and canned answers for the
offline quick start and benchmarks. A call to an unconfigured port becomes a ``failure`` fact (kind
``not_configured``) that rules can route, never a crash."""

from __future__ import annotations

from engine.ports import CallRequest, CallResult


class Unconfigured:
    def __init__(self, what: str) -> None:
        self.what = what

    def answer_now(self, call: CallRequest) -> CallResult:
        return CallResult(failure_kind="not_configured", error=f"no {self.what} is configured for {call.action}")

    async def complete(self, call: CallRequest) -> CallResult:
        return self.answer_now(call)

    async def call(self, call: CallRequest) -> CallResult:
        return self.answer_now(call)
