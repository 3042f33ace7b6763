"""Optional OpenTelemetry spans: one per decision (`baton.decide`) with a child per model or tool call,
exported over OTLP/HTTP (or printed, for a look) when the config has a `tracing:` section."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, Tracer

from engine.ports import CallRequest, CallResult, ModelGateway, ToolConnector
from engine.record import DecisionRecord


def setup_tracing(exporter: str, endpoint: str | None, service_name: str = "baton",
                  span_exporter: SpanExporter | None = None) -> tuple[Tracer, TracerProvider]:
    if span_exporter is None:
        if exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            span_exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
        else:
            span_exporter = ConsoleSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    return provider.get_tracer("baton"), provider


@contextmanager
def decision_span(tracer: Tracer | None, ruleset: str) -> Iterator[Span | None]:
    if tracer is None:
        with nullcontext():
            yield None
        return
    with tracer.start_as_current_span("baton.decide", attributes={"baton.ruleset": ruleset}) as span:
        yield span


def installed_tracer() -> Tracer | None:
    """The tracer of the provider this process installed, if it installed one (None: no tracing)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return provider.get_tracer("baton")


def annotate(span: Span | None, record: DecisionRecord) -> None:
    if span is None:
        return
    span.set_attributes({"baton.decision_id": record["decision_id"], "baton.version": record["version"],
                         "baton.outcome": record["outcome"], "baton.rule": record["rule"],
                         "baton.steps": record["steps"], "baton.calls": record["calls"],
                         "baton.cost_usd": record["cost_usd"], "baton.tokens": record["tokens"]})


class TracedPorts:
    """Model and tool ports with a span around every call (never the prompt or the answer: they may hold
    personal data; the action, group, model, status, tokens and cost)."""

    def __init__(self, tracer: Tracer, models: ModelGateway, tools: ToolConnector) -> None:
        self.tracer, self.models, self.tools = tracer, models, tools

    def _span(self, call: CallRequest) -> Any:
        return self.tracer.start_as_current_span(f"baton.{call.kind} {call.action}", attributes={
            "baton.action": call.action, "baton.kind": call.kind,
            "baton.group": str(call.request.get("group") or call.request.get("connector") or "")})

    @staticmethod
    def _finish(span: Span, result: CallResult) -> CallResult:
        span.set_attribute("baton.status", "ok" if result.ok else result.failure_kind)
        span.set_attribute("baton.attempts", result.attempts)
        for key in ("model", "total_tokens", "cost_usd"):
            value = result.meta.get(key)
            if isinstance(value, (str, int, float)):
                span.set_attribute(f"baton.{key}", value)
        return result

    def answer_now(self, call: CallRequest) -> CallResult | None:
        port = self.models if call.kind == "model" else self.tools
        now = getattr(port, "answer_now", None)
        if now is None:
            return None
        with self._span(call) as span:
            result: CallResult | None = now(call)
            if result is not None:
                self._finish(span, result)
            return result

    async def complete(self, call: CallRequest) -> CallResult:
        with self._span(call) as span:
            return self._finish(span, await self.models.complete(call))

    async def call(self, call: CallRequest) -> CallResult:
        with self._span(call) as span:
            return self._finish(span, await self.tools.call(call))
