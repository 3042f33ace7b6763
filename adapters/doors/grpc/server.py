"""`baton serve`'s server in one process (grpc.aio): health checking, reflection, auth, graceful shutdown, and
the worker's background work (the console, consumers, SLA sweeps, heap tending, refreshes). Starting it alone,
or as N supervised workers sharing the port: adapters/doors/grpc/workers.py."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import ipaddress
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from adapters.doors.grpc.auth import Auth, Identity, load_tokens
from adapters.doors.grpc.gen.baton.v1 import audit_pb2, decision_pb2, escalation_pb2, ruleset_pb2
from adapters.doors.grpc.service import Services, generic_handlers
from adapters.doors.intake import consumers_of, run_consumers
from adapters.infra import metrics
from adapters.infra.logs import flush_decision_log, say
from adapters.infra.secrets import SECRETS
from adapters.infra.store.base import limit_sqlite_memory, sqlite_memory_used
from adapters.infra.supervision import orphaned
from adapters.infra.system import heap_stats, trim_heap, tune_allocator
from adapters.infra.tools.connectors import resolve_secrets
from adapters.infra.witnesses import Checkpointer, checkpointer
from adapters.usecases.config import Settings
from adapters.usecases.escalations import Escalations
from adapters.usecases.registry import RulesetRegistry
from adapters.usecases.runtime import Runtime
from adapters.usecases.shadow import Shadows
from engine.driver import network_budget

log = logging.getLogger("baton.serve")
GRACE_S = 30.0  # how long SIGTERM waits for in-flight decisions
SERVICE_NAMES = [s.full_name for m in (decision_pb2, ruleset_pb2, audit_pb2, escalation_pb2)
                 for s in m.DESCRIPTOR.services_by_name.values()]


def _is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _start_console(cfg: Settings, rt: Runtime, auth: Auth) -> tuple[Any, asyncio.Task[None]]:
    """The console (HTTP) beside gRPC, in this process, on the same store; TLS when the service has it."""
    import uvicorn

    from adapters.doors.console.app import Console, create_app
    from adapters.doors.console.security import Sessions

    assert cfg.console is not None
    host, _, port = cfg.console.rpartition(":")
    tls = bool(cfg.tls.cert and cfg.tls.key)
    key = SECRETS.resolve(cfg.console_secret, "console_secret").encode() if cfg.console_secret else None
    sessions = Sessions(auth, key, secure=tls, idle_s=cfg.console_sessions.idle_s,
                        absolute_s=cfg.console_sessions.absolute_s)
    app = create_app(Console(rt.store, rt.registry, sessions, rt.escalations, tuple(cfg.pii_roles), audits=rt.audits,
                             candidates=rt.candidates))
    app.state.console.effect_names = frozenset(cfg.effects or {})  # what the console says of waiting effects
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


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``stop``: True once it is set (the periodic tasks' pacing)."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def _refresh_secrets(every_s: float | None, stop: asyncio.Event,
                           auth: tuple[Auth, Settings] | None = None) -> None:
    while every_s and not await _stopped_within(stop, every_s):
        _rotate_secrets(quiet=True, auth=auth)


async def run_consumer_process(cfg: Settings, base: Path) -> None:
    """`baton consume`: the configured consumers and the effects outbox, without the gRPC server."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    _bound_memory(cfg)
    rt = Runtime.build(cfg, base)
    intake = consumers_of(rt)
    if not intake:
        raise SystemExit("no consumers configured: add a consumers: section to the config")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _rotate_secrets)
    say(f"baton consume {os.getpid()}: {', '.join(c.s.name for c in intake)} ({len(rt.loaded)} rulesets; "
        f"db {rt.store.url}; {rt.ports_note})")
    _freeze_startup_objects()
    rt.start()
    outbox = asyncio.create_task(rt.outbox().run(stop))
    secrets_ttl = asyncio.create_task(_refresh_secrets(cfg.secrets_ttl_s, stop))
    fresh = asyncio.create_task(_keep_fresh(rt.registry, rt.shadows, stop))
    heap = asyncio.create_task(_tend_heap(cfg.memory.trim_every_s, stop))
    await run_consumers(intake, stop)
    await heap
    await outbox
    await secrets_ttl
    await fresh
    await rt.stop()
    say(f"baton consume {os.getpid()}: stopped")


def _bound_memory(cfg: Settings) -> None:
    if cfg.memory.sqlite_mb:
        limit_sqlite_memory(cfg.memory.sqlite_mb << 20)


def _freeze_startup_objects() -> None:
    """Move everything built at start (rulesets, grammar tables, ORM metadata, gRPC, imported modules) out of
    the cyclic collector's sight. Without this a full collection walked every long-lived object every so
    often - a pause that stalled every decision in flight (it showed at p99)."""
    gc.collect()
    gc.freeze()


def _rotate_secrets(quiet: bool = False, auth: tuple[Auth, Settings] | None = None) -> None:
    changed = SECRETS.refresh()
    if changed:
        metrics.SECRET_ROTATIONS.inc(len(changed))
    if changed or not quiet:
        say(f"baton {os.getpid()}: secrets re-read ({len(changed)} changed)")
    if auth is not None:
        _reload_tokens(*auth, quiet=quiet)


def _tokens(cfg: Settings) -> dict[str, Identity]:
    """The bearer tokens as configured now: the config's entries (secret references resolved again) and the
    token file, read again."""
    return load_tokens(cfg.tokens_file, [(resolve_secrets(t.token, f"tokens[{i}].token"), t.name, list(t.roles))
                                         for i, t in enumerate(cfg.tokens)], extra_roles=cfg.pii_roles)


def _reload_tokens(auth: Auth, cfg: Settings, quiet: bool = False) -> None:
    """Tokens re-read on SIGHUP and every ``secrets_ttl_s``: one removed or rotated is refused from then on,
    by gRPC and by the console, whose sessions are checked against these on every request. A file that no
    longer reads, or that would leave no token at all (an open service), keeps the tokens in force."""
    try:
        tokens = _tokens(cfg)
    except (OSError, ValueError) as e:
        log.error("tokens not re-read, the ones in force stay: %s", e)
        return
    if auth.enabled and not tokens:
        log.error("tokens not re-read: none would be left, and a service without tokens is open; the ones in "
                  "force stay")
        return
    if auth.replace(tokens) or not quiet:
        say(f"baton {os.getpid()}: tokens re-read ({len(tokens)} in force)")


async def run_server(cfg: Settings, base: Path, ready: Any = None, worker: int = 0,
                     supervisor: int | None = None) -> None:
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID` prints every thread's stack
    tune_allocator()  # large request buffers go back to the system once freed
    _bound_memory(cfg)
    auth = Auth(_tokens(cfg))
    if not auth.enabled and not (_is_loopback(cfg.listen) or cfg.insecure_no_auth):
        raise SystemExit(f"refusing to serve {cfg.listen} without auth: configure tokens (--tokens or "
                         "BATON_TOKENS), listen on localhost, or pass --insecure-no-auth")
    rt = Runtime.build(cfg, base)
    signer = checkpointer(cfg, base, rt.store) if cfg.audit is not None and worker == 0 else None
    if signer is not None:  # the first checkpoint, the log as it is at start, signed before any call is taken
        try:
            await signer.tick()
        except Exception:  # a witness unreachable, say: logged, and tried again as the service runs
            log.exception("checkpoint not signed")
    server, health, port = _grpc_server(cfg, rt, auth)
    await server.start()
    _freeze_startup_objects()
    for name in ("", *SERVICE_NAMES):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    host = cfg.listen.rsplit(":", 1)[0]
    auth_note = "auth ON" if auth.enabled else "auth OFF (no tokens configured; localhost only)"
    say(f"baton listening on {host}:{port} (pid {os.getpid()}; {auth_note}; db {rt.store.url}; "
        f"{len(rt.loaded)} rulesets from {cfg.rulesets}; {len(rt.corpora)} corpora; {rt.ports_note})")
    if ready is not None:
        ready.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: _rotate_secrets(auth=(auth, cfg)))
    await _run_until_stopped(cfg, rt, auth, worker, supervisor, stop, signer)
    say(f"baton {os.getpid()}: shutting down, finishing in-flight decisions")
    await health.enter_graceful_shutdown()
    await server.stop(GRACE_S)
    await rt.stop()
    rt.candidates.close()
    flush_decision_log()
    say(f"baton {os.getpid()}: stopped")


def _grpc_server(cfg: Settings, rt: Runtime, auth: Auth) -> tuple[grpc.aio.Server, HealthServicer, int]:
    """The gRPC server with Baton's services, health checking and reflection, bound to ``cfg.listen`` (TLS
    when the service has a certificate, client certificates required when it has a client CA), not started;
    with the port it bound (``listen`` may ask for any free one)."""
    services = Services(auth=auth, decide=rt.decide, store=rt.store, registry=rt.registry,
                        escalations=rt.escalations, shadows=rt.shadows, audits=rt.audits, candidates=rt.candidates,
                        pii_roles=tuple(cfg.pii_roles))
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
    return server, health, port


async def _run_until_stopped(cfg: Settings, rt: Runtime, auth: Auth, worker: int, supervisor: int | None,
                             stop: asyncio.Event, signer: Checkpointer | None) -> None:
    """The runtime's and this worker's background work (worker 0 alone signs checkpoints and serves the
    console) until ``stop`` is set; then each piece is waited for, in this order, before gRPC stops."""
    rt.start()
    # signed tree heads to witnesses (docs/audit.md), by worker 0
    checkpoints = asyncio.create_task(signer.run(stop)) if signer is not None else None
    console = await _start_console(cfg, rt, auth) \
        if cfg.console and worker == 0 else None
    intake = consumers_of(rt)
    consuming = asyncio.create_task(run_consumers(intake, stop)) if intake else None
    secrets_ttl = asyncio.create_task(_refresh_secrets(cfg.secrets_ttl_s, stop, (auth, cfg)))
    sweeper = asyncio.create_task(_sweep_slas(rt.escalations, cfg.sla_check_s, stop))
    outbox = asyncio.create_task(rt.outbox().run(stop))
    logs = asyncio.create_task(_flush_logs(stop))
    heap = asyncio.create_task(_tend_heap(cfg.memory.trim_every_s, stop))
    fresh = asyncio.create_task(_keep_fresh(rt.registry, rt.shadows, stop))
    watch = asyncio.create_task(_watch_supervisor(supervisor, stop)) if supervisor is not None else None
    await stop.wait()
    if watch is not None:
        await watch
    if console is not None:
        console[0].should_exit = True
        await console[1]
    if consuming is not None:
        await consuming
    await secrets_ttl
    await sweeper
    await outbox
    await logs
    await heap
    await fresh
    if checkpoints is not None:
        await checkpoints


async def _watch_supervisor(supervisor: int, stop: asyncio.Event) -> None:
    """Belt and braces beside the parent-death signal (adapters/infra/supervision.py): a worker whose supervisor is
    gone stops taking calls, finishes those in flight and exits, instead of serving on as an orphan."""
    while not await _stopped_within(stop, 1.0):
        if orphaned(supervisor):
            log.error("supervisor (pid %d) is gone: stopping this worker", supervisor)
            say(f"baton {os.getpid()}: supervisor {supervisor} is gone; stopping")
            stop.set()


async def _sweep_slas(escalations: Escalations, every_s: float, stop: asyncio.Event) -> None:
    """Every replica looks for passed SLAs; closing an escalation is compare-and-set, so one wins."""
    while not stop.is_set():
        try:
            await escalations.expire_due()
        except Exception:  # the store being briefly unreachable must not end the sweeper
            log.exception("SLA sweep failed")
        await _stopped_within(stop, every_s)


HEAP_SAMPLE_S = 5.0


async def _tend_heap(trim_every_s: float | None, stop: asyncio.Event) -> None:
    """Sample the worker's heap (in use, free inside its arenas) and Python's small-object blocks (kept in
    arenas of its own, not in the malloc heap) every few seconds, and every ``trim_every_s``
    give the arenas' free pages back to the system, on a thread: the trim walks the whole heap, which the
    event loop must not wait for."""
    last_trim = time.monotonic()
    counted = network_budget()
    while not stop.is_set():
        stats = heap_stats()
        if stats is not None:
            metrics.HEAP_IN_USE.set(stats[0])
            metrics.HEAP_FREE.set(stats[1])
        metrics.PYTHON_BLOCKS.set(sys.getallocatedblocks())
        networks = network_budget()
        metrics.ENGINE_NETWORKS.set(networks.networks)
        metrics.ENGINE_NETWORK_BYTES.set(networks.held_bytes)
        metrics.ENGINE_NETWORK_REGISTRATIONS.inc(networks.registered - counted.registered)
        metrics.ENGINE_NETWORK_EVICTIONS.inc(networks.evicted - counted.evicted)
        counted = networks
        if trim_every_s is not None and time.monotonic() - last_trim >= trim_every_s:
            last_trim = time.monotonic()
            if await asyncio.to_thread(trim_heap):
                metrics.HEAP_TRIMS.inc()
        await _stopped_within(stop, min(HEAP_SAMPLE_S, trim_every_s or HEAP_SAMPLE_S))


async def _keep_fresh(registry: RulesetRegistry, shadows: Shadows | None, stop: asyncio.Event) -> None:
    """Re-read the publication schedule and the attached shadows every refresh_s on a worker thread, so that
    no lookup on the event loop queries the store (the runtime built them with ``background``: see
    RulesetRegistry.background)."""
    targets: list[RulesetRegistry | Shadows] = [registry] if shadows is None else [registry, shadows]
    while not await _stopped_within(stop, registry.refresh_s):
        for target in targets:
            try:
                await asyncio.to_thread(target.refresh, True)
            except Exception:  # the store briefly unreachable: keep the last schedule, try again
                log.exception("re-reading %s failed", type(target).__name__)
        await asyncio.to_thread(registry.unload_idle)  # versions unused for versions.idle_unload_s


async def _flush_logs(stop: asyncio.Event) -> None:
    """Write out the decision log every half second, and sample what SQLite holds in memory."""
    while not stop.is_set():
        flush_decision_log()
        used = sqlite_memory_used()
        if used is not None:
            metrics.SQLITE_MEMORY.set(used)
        await _stopped_within(stop, 0.5)
