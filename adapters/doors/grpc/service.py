"""The baton.v1 services on grpc.aio: what their handlers are given (``Services``) and the method handlers
the server registers. The handlers themselves: decision_service.py (deciding, reading and auditing decisions)
and governance_service.py (rulesets, publications, shadows, impact, the log's audit, escalations); every error
becomes a status in status.py, once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import grpc

from adapters.doors.grpc.auth import Auth, Identity
from adapters.doors.grpc.decision_service import DecisionService
from adapters.doors.grpc.gen.baton.v1 import audit_pb2, decision_pb2, escalation_pb2, ruleset_pb2
from adapters.doors.grpc.governance_service import AuditService, EscalationService, RulesetService
from adapters.doors.grpc.status import safe
from adapters.infra.candidates import CandidateCompiler
from adapters.infra.store.sql import SqlStore
from adapters.usecases.audits import Audits
from adapters.usecases.decide import Decide
from adapters.usecases.escalations import Escalations
from adapters.usecases.registry import RulesetRegistry
from adapters.usecases.shadow import Shadows
from engine.pii import mask_record
from engine.record import DecisionRecord


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

    async def readable(self, record: DecisionRecord, ident: Identity) -> DecisionRecord:
        """Someone else's decision as this identity may read it: pii fields masked unless a configured role
        (or admin) allows them."""
        if "admin" in ident.roles or set(self.pii_roles) & set(ident.roles):
            return record
        private = await asyncio.to_thread(self.registry.private_fields, str(record.get("version", "")))
        return mask_record(record, private or {}) if private else record




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
                handlers[method.name] = make(fn, request_deserializer=safe(req.FromString),
                                             response_serializer=resp.SerializeToString)
            out.append(grpc.method_handlers_generic_handler(service.full_name, handlers))
    return out

