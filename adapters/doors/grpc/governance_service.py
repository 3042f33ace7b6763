"""The governance side of baton.v1: RulesetService (versions, validation, publication and its reviews, diffs,
shadows, impact), AuditService (the decision log's hash chain) and EscalationService (the review queue)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from adapters.doors.grpc import convert
from adapters.doors.grpc.auth import Identity
from adapters.doors.grpc.gen.baton.v1 import audit_pb2, decision_pb2, escalation_pb2, ruleset_pb2
from adapters.doors.grpc.status import (
    Abort,
    BadMessage,
    Ctx,
    compile_error,
    credential,
    handler,
    map_error,
    not_found,
    timestamp_s,
    to_status,
)
from adapters.infra.candidates import Progress
from adapters.infra.store.governance import Publication, VersionInfo
from engine.errors import CompileErrors
from engine.language.diff import diff_sources

if TYPE_CHECKING:
    from adapters.doors.grpc.service import Services

log = logging.getLogger("baton.grpc")


class RulesetService:
    def __init__(self, services: Services) -> None:
        self.s = services

    def _info(self, name: str, version: str) -> ruleset_pb2.RulesetInfo:
        info = self.s.registry.info(name, version)
        if info is None:
            raise not_found(f"no ruleset version {version[:12]}")
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
            return ruleset_pb2.ValidateRulesetResponse(valid=False, errors=[compile_error(x) for x in e.errors])
        return ruleset_pb2.ValidateRulesetResponse(valid=True, name=rs.name, version=rs.version,
                                                   warnings=[compile_error(x) for x in rs.warnings])

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
            if isinstance(request, BadMessage):
                raise Abort(grpc.StatusCode.INVALID_ARGUMENT, request.error)
            self.s.auth.check(credential(context), "Impact")
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
            status = to_status(map_error(e))
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
            record = await self.s.readable(record, ident)
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
