"""`baton serve`: the gRPC server (grpc.aio) with health checking, reflection, auth, graceful shutdown,
and N worker processes sharing the port (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import fcntl
import gc
import ipaddress
import json
import logging
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from adapters import metrics
from adapters.config import Settings, effect_connectors, model_gateway, tool_connectors
from adapters.decisions import DecisionPath
from adapters.effects import OutboxWorker
from adapters.escalations import Escalations
from adapters.fakes import Unconfigured
from adapters.grpc.auth import Auth, load_tokens
from adapters.grpc.gen.baton.v1 import audit_pb2, decision_pb2, escalation_pb2, ruleset_pb2
from adapters.grpc.service import Services, generic_handlers
from adapters.intake import Consumer, Decider, consumers_from, run_consumers
from adapters.logs import flush_decision_log, setup_logging
from adapters.metrics import serve_metrics
from adapters.registry import RulesetRegistry
from adapters.retrieval import WithRetrieval, index_if_changed
from adapters.secrets import SECRETS
from adapters.shadow import Shadows
from adapters.store.sql import SqlStore
from adapters.store.writer import GroupWriter
from adapters.system import SystemClock, TimeOrderedIds, tune_allocator
from adapters.tools.connectors import resolve_secrets
from adapters.tracing import TracedPorts, setup_tracing
from engine.loop import Limits
from engine.ports import ModelGateway, ToolConnector
from engine.recorded import CannedAnswers

log = logging.getLogger("baton.serve")
GRACE_S = 30.0  # how long SIGTERM waits for in-flight decisions
SERVICE_NAMES = [s.full_name for m in (decision_pb2, ruleset_pb2, audit_pb2, escalation_pb2)
                 for s in m.DESCRIPTOR.services_by_name.values()]


def say(message: str) -> None:
    """One line on stdout in one write: worker processes share the stream, and print() writes the text and
    the newline separately when stdout is unbuffered, which interleaved two workers' lines."""
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def index_corpora(store: SqlStore, directory: Path) -> list[str]:
    """Each folder under ``directory`` is a corpus, (re)indexed at start when its files changed. With several
    workers, the first to start indexes; the others find it done (a file lock orders them)."""
    names = []
    lock = Path(tempfile.gettempdir()) / f"baton-index-{abs(hash(store.url))}.lock"
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        for folder in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
            version, fresh = index_if_changed(store, folder, folder.name)
            if fresh:
                say(f"indexed corpus {folder.name} v{version} from {folder}")
            names.append(folder.name)
    return names


def _ports(cfg: Settings, base: Path) -> tuple[ModelGateway, ToolConnector, str]:
    if cfg.answers is not None:
        canned = CannedAnswers(json.loads(cfg.answers.read_text()))
        return canned, canned, f"canned answers from {cfg.answers}"
    models = model_gateway(cfg) or Unconfigured("model gateway")
    tools = tool_connectors(cfg, base) or Unconfigured("tool connector")
    configured = [name for name, on in (("models", cfg.models), ("tools", cfg.tools)) if on]
    return models, tools, f"configured: {', '.join(configured) or 'no model gateway or tools'}"


async def _start_console(cfg: Settings, store: SqlStore, registry: RulesetRegistry, auth: Auth,
                         escalations: Escalations) -> tuple[Any, asyncio.Task[None]]:
    """The console (HTTP) beside gRPC, in this process, on the same store; TLS when the service has it."""
    import uvicorn

    from adapters.console.app import Console, create_app
    from adapters.console.security import Sessions

    assert cfg.console is not None
    host, _, port = cfg.console.rpartition(":")
    tls = bool(cfg.tls.cert and cfg.tls.key)
    key = SECRETS.resolve(cfg.console_secret, "console_secret").encode() if cfg.console_secret else None
    app = create_app(Console(store, registry, Sessions(auth, key, secure=tls), escalations, tuple(cfg.pii_roles)))
    config = uvicorn.Config(app, host=host or "127.0.0.1", port=int(port), log_level="warning", lifespan="off",
                            access_log=False, ssl_certfile=str(cfg.tls.cert) if tls else None,
                            ssl_keyfile=str(cfg.tls.key) if tls else None)
    server = uvicorn.Server(config)
    # uvicorn would take SIGTERM/SIGINT over; this process's own handlers stop gRPC and the console together
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if task.done():
        task.result()
    bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
    say(f"baton console on {'https' if tls else 'http'}://{host or '127.0.0.1'}:{bound}/ (pid {os.getpid()})")
    return server, task


def _consumers(cfg: Settings, registry: RulesetRegistry, path: DecisionPath, models: ModelGateway,
               tools: ToolConnector, clock: SystemClock, ids: TimeOrderedIds) -> list[Consumer]:
    settings = consumers_from(cfg.consumers)
    if not settings:
        return []
    decider = Decider(registry, path, models, tools, clock, ids,
                      Limits(step_limit=cfg.limits.step_limit, deadline_s=cfg.limits.deadline_s,
                             max_calls=cfg.limits.max_calls, max_cost_usd=cfg.limits.max_cost_usd),
                      cfg.max_document_bytes)
    return [Consumer(c, decider, say) for c in settings]


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``stop``: True once it is set (the periodic tasks' pacing)."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def _refresh_secrets(every_s: float | None, stop: asyncio.Event) -> None:
    while every_s and not await _stopped_within(stop, every_s):
        _rotate_secrets(quiet=True)


async def run_consumer_process(cfg: Settings, base: Path) -> None:
    """`baton consume`: the configured consumers and the effects outbox, without the gRPC server."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    SECRETS.base, SECRETS.ttl_s = base, cfg.secrets_ttl_s
    store = SqlStore(cfg.db)
    registry = RulesetRegistry(store)
    loaded = registry.load_directory(cfg.rulesets) if cfg.rulesets.is_dir() else []
    corpora_dir = cfg.corpora if cfg.corpora is not None else cfg.rulesets / "corpora"
    if corpora_dir.is_dir():
        index_corpora(store, corpora_dir)
    writer = GroupWriter(store)
    models, tools, ports_note = _ports(cfg, base)
    shadows = Shadows(store, registry)  # consumed decisions are shadowed as served ones are
    intake = _consumers(cfg, registry, DecisionPath(writer, None, shadows), models, WithRetrieval(tools, store),
                        SystemClock(), TimeOrderedIds())
    if not intake:
        raise SystemExit("no consumers configured: add a consumers: section to the config")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _rotate_secrets)
    say(f"baton consume {os.getpid()}: {', '.join(c.s.name for c in intake)} ({len(loaded)} rulesets; db {store.url}; "
        f"{ports_note})")
    _freeze_startup_objects()
    shadows.start()
    outbox = asyncio.create_task(_outbox(store, effect_connectors(cfg, base), cfg).run(stop))
    secrets_ttl = asyncio.create_task(_refresh_secrets(cfg.secrets_ttl_s, stop))
    fresh = asyncio.create_task(_keep_fresh(registry, shadows, stop))
    await run_consumers(intake, stop)
    await outbox
    await secrets_ttl
    await fresh
    await shadows.stop()
    writer.close()
    store.close()
    say(f"baton consume {os.getpid()}: stopped")


def _outbox(store: SqlStore, connectors: Mapping[str, Any], cfg: Settings) -> OutboxWorker:
    d = cfg.delivery
    return OutboxWorker(store, connectors, first_retry_s=d.first_retry_s, max_retry_s=d.max_retry_s,
                        give_up_after_s=d.give_up_after_s)


def _freeze_startup_objects() -> None:
    """Move everything built at start (rulesets, grammar tables, ORM metadata, gRPC, imported modules) out of
    the cyclic collector's sight. Without this a full collection walked ~125,000 long-lived objects every
    so often - a 90 ms pause on this machine that stalled every decision in flight (p99)."""
    gc.collect()
    gc.freeze()


def _rotate_secrets(quiet: bool = False) -> None:
    changed = SECRETS.refresh()
    if changed:
        metrics.SECRET_ROTATIONS.inc(len(changed))
    if changed or not quiet:
        say(f"baton {os.getpid()}: secrets re-read ({len(changed)} changed)")


async def run_server(cfg: Settings, base: Path, ready: Any = None, worker: int = 0) -> None:
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID` prints every thread's stack
    tune_allocator()  # large request buffers go back to the system once freed
    SECRETS.base, SECRETS.ttl_s = base, cfg.secrets_ttl_s
    store = SqlStore(cfg.db)
    registry = RulesetRegistry(store)
    loaded = registry.load_directory(cfg.rulesets) if cfg.rulesets.is_dir() else []
    auth = Auth(load_tokens(None, [(resolve_secrets(t.token, f"tokens[{i}].token"), t.name, list(t.roles))
                                   for i, t in enumerate(cfg.tokens)]))
    if not auth.enabled and not (_is_loopback(cfg.listen) or cfg.insecure_no_auth):
        raise SystemExit(f"refusing to serve {cfg.listen} without auth: configure tokens (--tokens or "
                         "BATON_TOKENS), listen on localhost, or pass --insecure-no-auth")
    writer = GroupWriter(store)
    corpora_dir = cfg.corpora if cfg.corpora is not None else cfg.rulesets / "corpora"
    indexed = index_corpora(store, corpora_dir) if corpora_dir.is_dir() else []
    models, tools, ports_note = _ports(cfg, base)
    tools = WithRetrieval(tools, store)
    tracer = provider = None
    if cfg.tracing is not None:
        tracer, provider = setup_tracing(cfg.tracing.exporter, cfg.tracing.endpoint, cfg.tracing.service_name)
        models = tools = TracedPorts(tracer, models, tools)
    clock, ids = SystemClock(), TimeOrderedIds()
    shadows = Shadows(store, registry)
    escalations = Escalations(store, writer, registry, models, tools, clock, ids,
                              DecisionPath(writer, tracer, shadows))
    services = Services(store, writer, registry, auth, models, tools, clock, ids,
                        max_inflight=cfg.limits.max_inflight, step_limit=cfg.limits.step_limit,
                        escalations=escalations, default_deadline_s=cfg.limits.deadline_s,
                        max_calls=cfg.limits.max_calls, max_cost_usd=cfg.limits.max_cost_usd, tracer=tracer,
                        shadows=shadows, max_document_bytes=cfg.max_document_bytes, pii_roles=tuple(cfg.pii_roles))
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1), *cfg.transport.grpc_options()])
    server.add_generic_rpc_handlers(generic_handlers(services))
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection([*SERVICE_NAMES, "grpc.health.v1.Health", reflection.SERVICE_NAME], server)
    if cfg.tls.cert and cfg.tls.key:
        creds = grpc.ssl_server_credentials(
            [(cfg.tls.key.read_bytes(), cfg.tls.cert.read_bytes())],
            root_certificates=cfg.tls.client_ca.read_bytes() if cfg.tls.client_ca else None,
            require_client_auth=cfg.tls.client_ca is not None)
        port = server.add_secure_port(cfg.listen, creds)
    else:
        port = server.add_insecure_port(cfg.listen)
    await server.start()
    _freeze_startup_objects()
    for name in ("", *SERVICE_NAMES):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    host = cfg.listen.rsplit(":", 1)[0]
    auth_note = "auth ON" if auth.enabled else "auth OFF (no tokens configured; localhost only)"
    say(f"baton listening on {host}:{port} (pid {os.getpid()}; {auth_note}; db {store.url}; "
          f"{len(loaded)} rulesets from {cfg.rulesets}; {len(indexed)} corpora; {ports_note})")
    if ready is not None:
        ready.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _rotate_secrets)
    shadows.start()
    console = await _start_console(cfg, store, registry, auth, escalations) if cfg.console and worker == 0 else None
    intake = _consumers(cfg, registry, services.path, models, tools, clock, ids)
    consuming = asyncio.create_task(run_consumers(intake, stop)) if intake else None
    secrets_ttl = asyncio.create_task(_refresh_secrets(cfg.secrets_ttl_s, stop))
    sweeper = asyncio.create_task(_sweep_slas(escalations, cfg.sla_check_s, stop))
    effects = effect_connectors(cfg, base)
    outbox = asyncio.create_task(_outbox(store, effects, cfg).run(stop))
    logs = asyncio.create_task(_flush_logs(stop))
    fresh = asyncio.create_task(_keep_fresh(registry, shadows, stop))
    await stop.wait()
    if console is not None:
        console[0].should_exit = True
        await console[1]
    if consuming is not None:
        await consuming
    await secrets_ttl
    await sweeper
    await outbox
    await logs
    await fresh
    say(f"baton {os.getpid()}: shutting down, finishing in-flight decisions")
    await health.enter_graceful_shutdown()
    await server.stop(GRACE_S)
    await shadows.stop()
    writer.close()
    store.close()
    flush_decision_log()
    if provider is not None:
        provider.shutdown()  # export the last spans
    say(f"baton {os.getpid()}: stopped")


async def _sweep_slas(escalations: Escalations, every_s: float, stop: asyncio.Event) -> None:
    """Every replica looks for passed SLAs; closing an escalation is compare-and-set, so one wins."""
    while not stop.is_set():
        try:
            await escalations.expire_due()
        except Exception:  # the store being briefly unreachable must not end the sweeper
            log.exception("SLA sweep failed")
        await _stopped_within(stop, every_s)


async def _keep_fresh(registry: RulesetRegistry, shadows: Shadows | None, stop: asyncio.Event) -> None:
    """Re-read the publication schedule and the attached shadows every refresh_s on a worker thread, so that
    no lookup on the event loop queries the store (see RulesetRegistry.background)."""
    targets: list[RulesetRegistry | Shadows] = [registry] if shadows is None else [registry, shadows]
    for target in targets:
        target.background = True
    while not await _stopped_within(stop, registry.refresh_s):
        for target in targets:
            try:
                await asyncio.to_thread(target.refresh, True)
            except Exception:  # the store briefly unreachable: keep the last schedule, try again
                log.exception("re-reading %s failed", type(target).__name__)


async def _flush_logs(stop: asyncio.Event) -> None:
    while not stop.is_set():
        flush_decision_log()
        await _stopped_within(stop, 0.5)


def _child(cfg: Settings, base: Path, worker: int = 0, restart: int = 0, ready: Any = None) -> None:
    setup_logging(cfg)
    if restart:
        metrics.WORKER_RESTARTS.labels(str(worker)).inc()  # counted by the worker that replaces it
    asyncio.run(run_server(cfg, base, ready=ready, worker=worker))


def serve(cfg: Settings, base: Path) -> None:
    setup_logging(cfg)
    if cfg.metrics:
        SqlStore(cfg.db).close()  # migrate first: the metrics endpoint reads the store's tables
    if cfg.workers <= 1:
        if cfg.metrics:
            serve_metrics(cfg.metrics, cfg.db)
        asyncio.run(run_server(cfg, base))
        return
    if cfg.metrics:  # workers write their samples here; this process serves the sum
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="baton-metrics-")
        serve_metrics(cfg.metrics, cfg.db)
    if cfg.listen.endswith(":0"):
        raise SystemExit("--workers needs a fixed port (the workers share it)")
    SqlStore(cfg.db).close()  # migrate once, before the workers race for it
    Supervisor(cfg, base).run()


def _death(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


class Supervisor:
    """Worker processes sharing one port: a worker that dies while the service runs is logged and replaced,
    after a pause that doubles with each death in a row (0.5 s up to 30 s, reset after a minute up). A
    signal to this process goes to every worker and ends supervision; the service then stops cleanly.
    A worker that ends before it ever listened (a bad configuration, a port in use) is not replaced: the
    service stops with its exit code, as it would with one worker. While no worker is up nothing
    listens, so callers and health checks see UNAVAILABLE."""

    BACKOFF_S = (0.5, 30.0)
    STEADY_S = 60.0

    def __init__(self, cfg: Settings, base: Path) -> None:
        self.cfg, self.base = cfg, base
        self.ctx = mp.get_context("spawn")
        self.children: list[Any] = []
        self.started: list[float] = []
        self.failures = [0] * cfg.workers
        self.restarts = [0] * cfg.workers
        self.due: dict[int, float] = {}  # worker -> when to start its replacement
        self.stopping = False
        self.ready: list[Any] = [None] * cfg.workers

    def spawn(self, i: int) -> Any:
        self.ready[i] = self.ctx.Event()
        child = self.ctx.Process(target=_child, args=(self.cfg, self.base, i, self.restarts[i], self.ready[i]),
                                 name=f"baton-worker-{i}")
        child.start()
        return child

    def forward(self, signum: int, _frame: Any) -> None:
        if signum != signal.SIGHUP:  # SIGHUP: each worker re-reads its secrets; the service goes on
            self.stopping = True
        for child in self.children:
            if child.pid is not None and child.is_alive():
                os.kill(child.pid, signum)

    def run(self) -> None:
        self.children = [self.spawn(i) for i in range(self.cfg.workers)]
        self.started = [time.monotonic()] * self.cfg.workers
        signal.signal(signal.SIGTERM, self.forward)
        signal.signal(signal.SIGINT, self.forward)
        signal.signal(signal.SIGHUP, self.forward)
        while True:
            now = time.monotonic()
            for i, child in enumerate(self.children):
                if child.is_alive() or i in self.due:
                    continue
                child.join()
                if self.stopping:
                    continue
                if not self.ready[i].is_set():  # it never served: restarting would fail the same way
                    log.error("worker %d (pid %s) ended before it listened, %s: stopping the service", i,
                              child.pid, _death(child.exitcode))
                    self.forward(signal.SIGTERM, None)
                    continue
                up = now - self.started[i]
                self.failures[i] = 1 if up >= self.STEADY_S else self.failures[i] + 1
                pause = min(self.BACKOFF_S[1], self.BACKOFF_S[0] * 2 ** (self.failures[i] - 1))
                log.error("worker %d (pid %s) died, %s, after %.1f s up; restarting it in %.1f s", i, child.pid,
                          _death(child.exitcode), up, pause)
                say(f"baton: worker {i} (pid {child.pid}) died: {_death(child.exitcode)}; restarting in {pause:.1f} s")
                self.due[i] = now + pause
            for i, when in list(self.due.items()):
                if self.stopping:
                    del self.due[i]
                elif now >= when:
                    del self.due[i]
                    self.restarts[i] += 1
                    self.children[i] = self.spawn(i)
                    self.started[i] = time.monotonic()
            if self.stopping and not any(c.is_alive() for c in self.children):
                break
            time.sleep(0.1)
        codes = [c.exitcode for c in self.children]
        if any(codes):
            raise SystemExit(f"worker exit codes: {codes}")
        say(f"baton: all {len(self.children)} workers stopped cleanly")
