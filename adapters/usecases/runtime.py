"""The composition root: everything a Baton process runs on, built once from the service config - the store
and its group-commit writer, the ruleset registry, the model gateway and tool connectors (with retrieval and
tracing), the clock and ids, shadows, the one decision path, the Decide use case, escalations and the
effects outbox - and handed by keyword to the doors. `baton serve` workers and `baton consume` build a
Runtime and keep only their own start and stop logic (the broker consumers are doors:
adapters/doors/intake.py builds them from it); so every door reaches the same use cases, wired the same way."""

from __future__ import annotations

import fcntl
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.infra import metrics
from adapters.infra.candidates import CandidateCompiler
from adapters.infra.effects import OutboxWorker
from adapters.infra.fakes import Unconfigured
from adapters.infra.logs import say
from adapters.infra.retrieval import WithRetrieval, index_if_changed
from adapters.infra.secrets import SECRETS
from adapters.infra.store.sql import SqlStore
from adapters.infra.store.writer import GroupWriter
from adapters.infra.system import LoopLag, SystemClock, TimeOrderedIds
from adapters.infra.tracing import TracedPorts, setup_tracing
from adapters.usecases.audits import Audits
from adapters.usecases.commands import DecideLimits
from adapters.usecases.config import Settings, effect_connectors, model_gateway, tool_connectors
from adapters.usecases.decide import Decide
from adapters.usecases.decisions import DecisionPath, StartGate
from adapters.usecases.escalations import Escalations
from adapters.usecases.registry import RulesetRegistry
from adapters.usecases.shadow import Shadows
from engine.driver import set_network_budget
from engine.loop import Limits
from engine.ports import ModelGateway, ToolConnector
from engine.recorded import CannedAnswers


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


def ports(cfg: Settings, base: Path) -> tuple[ModelGateway, ToolConnector, str]:
    """The model gateway and tool connectors the config names (or the canned answers of ``--answers``)."""
    if cfg.answers is not None:
        canned = CannedAnswers(json.loads(cfg.answers.read_text()))
        return canned, canned, f"canned answers from {cfg.answers}"
    models = model_gateway(cfg) or Unconfigured("model gateway")
    tools = tool_connectors(cfg, base) or Unconfigured("tool connector")
    configured = [name for name, on in (("models", cfg.models), ("tools", cfg.tools)) if on]
    return models, tools, f"configured: {', '.join(configured) or 'no model gateway or tools'}"


def limits(cfg: Settings) -> DecideLimits:
    """The limits every decision runs under (the config's ``limits:``), built once."""
    engine = Limits(step_limit=cfg.limits.step_limit, deadline_s=cfg.limits.deadline_s,
                    max_calls=cfg.limits.max_calls, max_cost_usd=cfg.limits.max_cost_usd,
                    max_combinations=cfg.limits.max_combinations)
    return DecideLimits(engine=engine, max_inflight=cfg.limits.max_inflight, max_document_bytes=cfg.max_document_bytes,
                        max_batch=cfg.limits.max_batch, batch_parallel=cfg.limits.batch_parallel)


@dataclass(kw_only=True)
class Runtime:
    """The composition root: every part of a running Baton, built once by :meth:`build` and handed by keyword
    to the doors (gRPC, console, broker consumers, CLI commands) that need them."""

    cfg: Settings
    base: Path
    store: SqlStore
    registry: RulesetRegistry
    writer: GroupWriter
    models: ModelGateway
    tools: ToolConnector
    path: DecisionPath
    decide: Decide
    audits: Audits
    escalations: Escalations
    shadows: Shadows
    clock: SystemClock = field(default_factory=SystemClock)
    ids: TimeOrderedIds = field(default_factory=TimeOrderedIds)
    lag: LoopLag = field(default_factory=lambda: LoopLag(observe=metrics.LOOP_LAG.observe))
    loaded: list[Any] = field(default_factory=list)
    corpora: list[str] = field(default_factory=list)
    ports_note: str = ""
    provider: Any = None  # the OpenTelemetry provider, flushed at stop
    candidates: CandidateCompiler = field(default_factory=CandidateCompiler)  # rulesets sent by callers

    @classmethod
    def build(cls, cfg: Settings, base: Path, serving: bool = True,
              given_ports: tuple[ModelGateway, ToolConnector] | None = None) -> Runtime:
        """``serving``: a service starting (`serve`, `consume`) publishes the rulesets directory's versions
        never published and indexes its corpora; a command acting on the store (`baton escalations
        resolve`, `baton decide --db`) does neither. ``given_ports``: the model gateway and tools a command
        built itself (`baton decide --answers`), used instead of the config's; retrieval and tracing are
        added to them as to the config's."""
        SECRETS.configure(base, cfg.secrets_ttl_s)
        set_network_budget(cfg.versions.networks_max_mb)  # before any version is loaded: none registers them all
        store = SqlStore(cfg.db)
        # a service re-reads the publication schedule and the shadows from a background task (serve, consume)
        registry = RulesetRegistry(store, idle_unload_s=cfg.versions.idle_unload_s, background=serving)
        loaded = registry.load_directory(cfg.rulesets) if serving and cfg.rulesets.is_dir() else []
        corpora_dir = cfg.corpora if cfg.corpora is not None else cfg.rulesets / "corpora"
        corpora = index_corpora(store, corpora_dir) if serving and corpora_dir.is_dir() else []
        writer = GroupWriter(store, private=registry.private_fields,  # pii fields never searchable
                             timed=metrics.STORE_WRITE.observe)
        models, raw_tools, note = ports(cfg, base) if given_ports is None else (*given_ports, "given by the command")
        tools: ToolConnector = WithRetrieval(raw_tools, store)
        tracer = provider = None
        if cfg.tracing is not None:
            tracer, provider = setup_tracing(cfg.tracing.exporter, cfg.tracing.endpoint, cfg.tracing.service_name)
            models = tools = TracedPorts(tracer, models, tools)
        clock, ids = SystemClock(), TimeOrderedIds()
        lag = LoopLag(observe=metrics.LOOP_LAG.observe)
        candidates = CandidateCompiler(cfg.limits.compile_limits())
        shadows = Shadows(store, registry, candidates=candidates, background=serving)  # each in a bounded child
        if serving:  # read once now; the background task reads them again every refresh_s
            registry.refresh(force=True)
            shadows.refresh(force=True)
        path = DecisionPath(writer, tracer, shadows, lag=lag, gate=StartGate(cfg.limits.batch_window_ms / 1000))
        decide = Decide(registry=registry, log=store, path=path, models=models, tools=tools, clock=clock, ids=ids,
                        limits=limits(cfg))
        escalations = Escalations(store, writer, registry, models, tools, clock, ids, path=path)
        audits = Audits(store=store, registry=registry, candidates=candidates)
        return cls(cfg=cfg, base=base, store=store, registry=registry, writer=writer, models=models, tools=tools,
                   path=path, decide=decide, audits=audits, escalations=escalations, shadows=shadows, clock=clock,
                   ids=ids, lag=lag, loaded=loaded, corpora=corpora, ports_note=note, provider=provider,
                   candidates=candidates)

    def outbox(self) -> OutboxWorker:
        d = self.cfg.delivery
        return OutboxWorker(self.store, effect_connectors(self.cfg, self.base), first_retry_s=d.first_retry_s,
                            max_retry_s=d.max_retry_s, give_up_after_s=d.give_up_after_s)

    def start(self) -> None:
        """Inside the running event loop: background parts begin."""
        self.lag.start()
        self.shadows.start()

    async def stop(self) -> None:
        """Finish what was accepted (shadow evaluations, queued writes), then close the store."""
        self.lag.stop()
        await self.shadows.stop()
        self.writer.close()
        self.store.close()
        if self.provider is not None:
            self.provider.shutdown()  # export the last spans
