"""`baton serve`: the gRPC server (grpc.aio) with health checking, reflection, auth, graceful shutdown,
and N worker processes sharing the port (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import faulthandler
import ipaddress
import json
import logging
import multiprocessing as mp
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from adapters.config import effect_connectors, load_config, model_gateway, tool_connectors
from adapters.effects import OutboxWorker
from adapters.escalations import Escalations
from adapters.fakes import Unconfigured
from adapters.grpc.auth import Auth, load_tokens
from adapters.grpc.gen.baton.v1 import audit_pb2, decision_pb2, escalation_pb2, ruleset_pb2
from adapters.grpc.service import Services, generic_handlers
from adapters.registry import RulesetRegistry
from adapters.store.sql import SqlStore
from adapters.store.writer import GroupWriter
from adapters.system import SystemClock, TimeOrderedIds
from engine.ports import ModelGateway, ToolConnector
from engine.recorded import CannedAnswers

log = logging.getLogger("baton.serve")
SERVICE_NAMES = [s.full_name for m in (decision_pb2, ruleset_pb2, audit_pb2, escalation_pb2)
                 for s in m.DESCRIPTOR.services_by_name.values()]


@dataclass(slots=True)
class ServeConfig:
    listen: str = "127.0.0.1:50051"
    db: str | None = None
    rulesets: Path = Path("rulesets")
    workers: int = 1
    tokens_file: Path | None = None
    answers_file: Path | None = None  # canned model/tool answers (offline demo, benchmarks)
    config_file: Path | None = None  # models: and tools: (docs/models.md, docs/tools.md)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    max_inflight: int = 512
    grace_s: float = 30.0
    sla_check_s: float = 5.0  # how often expired escalation SLAs are looked for
    allow_no_auth: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _ports(cfg: ServeConfig) -> tuple[ModelGateway, ToolConnector, str]:
    if cfg.answers_file is not None:
        canned = CannedAnswers(json.loads(cfg.answers_file.read_text()))
        return canned, canned, f"canned answers from {cfg.answers_file}"
    if cfg.config_file is not None:
        config = load_config(cfg.config_file)
        models = model_gateway(config, cfg.config_file) or Unconfigured("model gateway")
        tools = tool_connectors(config, cfg.config_file) or Unconfigured("tool connector")
        return models, tools, f"models and tools from {cfg.config_file}"
    return Unconfigured("model gateway"), Unconfigured("tool connector"), "no model gateway or tools configured"


async def run_server(cfg: ServeConfig, ready: Any = None) -> None:
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID` prints every thread's stack
    store = SqlStore(cfg.db)
    registry = RulesetRegistry(store)
    loaded = registry.load_directory(cfg.rulesets) if cfg.rulesets.is_dir() else []
    auth = Auth(load_tokens(cfg.tokens_file))
    if not auth.enabled and not (_is_loopback(cfg.listen) or cfg.allow_no_auth):
        raise SystemExit(f"refusing to serve {cfg.listen} without auth: configure tokens (--tokens or "
                         "BATON_TOKENS), listen on localhost, or pass --insecure-no-auth")
    writer = GroupWriter(store)
    models, tools, ports_note = _ports(cfg)
    clock, ids = SystemClock(), TimeOrderedIds()
    escalations = Escalations(store, writer, registry, models, tools, clock, ids)
    services = Services(store, writer, registry, auth, models, tools, clock, ids, max_inflight=cfg.max_inflight,
                        escalations=escalations)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1), ("grpc.max_receive_message_length", 8 << 20)])
    server.add_generic_rpc_handlers(generic_handlers(services))
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection([*SERVICE_NAMES, "grpc.health.v1.Health", reflection.SERVICE_NAME], server)
    if cfg.tls_cert and cfg.tls_key:
        creds = grpc.ssl_server_credentials(
            [(cfg.tls_key.read_bytes(), cfg.tls_cert.read_bytes())],
            root_certificates=cfg.tls_client_ca.read_bytes() if cfg.tls_client_ca else None,
            require_client_auth=cfg.tls_client_ca is not None)
        port = server.add_secure_port(cfg.listen, creds)
    else:
        port = server.add_insecure_port(cfg.listen)
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    host = cfg.listen.rsplit(":", 1)[0]
    auth_note = "auth ON" if auth.enabled else "auth OFF (no tokens configured; localhost only)"
    print(f"baton listening on {host}:{port} (pid {os.getpid()}; {auth_note}; db {store.url}; "
          f"{len(loaded)} rulesets from {cfg.rulesets}; {ports_note})", flush=True)
    if ready is not None:
        ready.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sweeper = asyncio.create_task(_sweep_slas(escalations, cfg.sla_check_s, stop))
    effects = {}
    if cfg.config_file is not None:
        effects = effect_connectors(load_config(cfg.config_file), cfg.config_file)
    outbox = asyncio.create_task(OutboxWorker(store, effects).run(stop))
    await stop.wait()
    await sweeper
    await outbox
    print(f"baton {os.getpid()}: shutting down, finishing in-flight decisions", flush=True)
    await health.enter_graceful_shutdown()
    await server.stop(cfg.grace_s)
    writer.close()
    store.close()
    print(f"baton {os.getpid()}: stopped", flush=True)


async def _sweep_slas(escalations: Escalations, every_s: float, stop: asyncio.Event) -> None:
    """Every replica looks for passed SLAs; closing an escalation is compare-and-set, so one wins."""
    while not stop.is_set():
        try:
            await escalations.expire_due()
        except Exception:  # the store being briefly unreachable must not end the sweeper
            log.exception("SLA sweep failed")
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            pass


def _child(cfg: ServeConfig) -> None:
    logging.basicConfig(level=logging.INFO)
    asyncio.run(run_server(cfg))


def serve(cfg: ServeConfig) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    if cfg.workers <= 1:
        asyncio.run(run_server(cfg))
        return
    if cfg.listen.endswith(":0"):
        raise SystemExit("--workers needs a fixed port (the workers share it)")
    SqlStore(cfg.db).close()  # migrate once, before the workers race for it
    ctx = mp.get_context("spawn")
    children = [ctx.Process(target=_child, args=(cfg,), name=f"baton-worker-{i}") for i in range(cfg.workers)]
    for child in children:
        child.start()

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            if child.pid is not None and child.is_alive():
                os.kill(child.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()
    codes = [c.exitcode for c in children]
    if any(codes):
        raise SystemExit(f"worker exit codes: {codes}")
    print(f"baton: all {len(children)} workers stopped cleanly", flush=True)
