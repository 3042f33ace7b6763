"""The service config: one YAML file (`baton.yaml`; `baton.example.yaml` documents every key), every
key overridable by an environment variable `BATON_<KEY>` (`__` for nesting: BATON_LIMITS__MAX_INFLIGHT).
An invalid config fails at start with the key path and why (`baton config check` does only that).

Secrets appear only as references: model keys as `os.environ/NAME`, anything else as `${env:NAME}`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from adapters.infra.candidates import CompileLimits
from engine.language.source import SourceLimits
from engine.ports import ModelGateway, ToolConnector

ENV_PREFIX = "BATON_"
NOT_SETTINGS = {"BATON_TOKENS", "BATON_TEST_PG"}  # read elsewhere, not config keys


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


BUILTIN_ROLES = ("caller", "editor", "approver", "auditor", "reviewer", "admin")


class TokenEntry(_Strict):
    token: str = Field(min_length=8)
    name: str = Field(min_length=1)
    roles: list[str] = Field(min_length=1)  # the built-in roles (BUILTIN_ROLES) and any the config's pii_roles names


class Tls(_Strict):
    cert: Path | None = None
    key: Path | None = None
    client_ca: Path | None = None


class LimitSettings(_Strict):
    max_inflight: int = Field(default=512, ge=1, le=1_000_000)
    step_limit: int | None = Field(default=None, ge=1, le=100_000)
    deadline_s: float | None = Field(default=None, gt=0)
    max_calls: int | None = Field(default=None, ge=0)
    max_cost_usd: float | None = Field(default=None, ge=0)
    # combinations of facts one rule's join may have to consider in a decision (each costs the engine about
    # 350 bytes before any condition runs): over it the decision fails, naming the rule's fact types
    max_combinations: int = Field(default=1_000_000, ge=1, le=1_000_000_000)
    # under load (4 or more decisions in flight in a worker) decisions start their engine runs in groups,
    # waiting at most this long: more throughput for a few ms of latency (adapters/usecases/decisions.py StartGate);
    # 0: each starts at once. At most 20: well inside the 50 ms Decide keeps back from a caller's deadline
    batch_window_ms: float = Field(default=4.0, ge=0, le=20)
    max_batch: int = Field(default=1000, ge=1, le=100_000)  # requests in one DecideBatch; more: INVALID_ARGUMENT
    batch_parallel: int = Field(default=32, ge=1, le=10_000)  # of one DecideBatch or DecideStream, decided at once
    # a ruleset sent to the service (validate, publish, what-if, impact, shadow, the console editor) is
    # refused by name over these sizes, and compiled in a child process held to the compile_* bounds
    # (adapters/infra/candidates.py); over one of those the caller gets RESOURCE_EXHAUSTED naming it
    ruleset_max_chars: int = Field(default=2_000_000, ge=1_000, le=100_000_000)
    ruleset_max_rules: int = Field(default=20_000, ge=1, le=1_000_000)
    ruleset_max_table_rows: int = Field(default=20_000, ge=1, le=1_000_000)
    compile_cpu_s: int = Field(default=60, ge=1, le=3600)
    compile_memory_mb: int = Field(default=2048, ge=256, le=65536)
    compile_wall_s: float = Field(default=90.0, gt=0, le=3600)

    def compile_limits(self) -> CompileLimits:
        return CompileLimits(self.compile_cpu_s, self.compile_memory_mb, self.compile_wall_s,
                             SourceLimits(self.ruleset_max_chars, self.ruleset_max_rules, self.ruleset_max_table_rows))


class TransportSettings(_Strict):
    """What one gRPC connection and one request may cost the server before anything is validated."""

    # one request: a Decide with a document of max_document_bytes fits with room for its facts
    max_receive_mib: int = Field(default=16, ge=1, le=256)
    max_send_mib: int = Field(default=16, ge=1, le=256)
    idle_timeout_s: float = Field(default=300.0, gt=0)  # a connection with no call for this long is closed
    keepalive_s: float = Field(default=60.0, gt=0)  # the server pings a connection this often...
    keepalive_timeout_s: float = Field(default=20.0, gt=0)  # ...and closes it when no answer comes in time
    max_connection_age_s: float | None = Field(default=None, gt=0)  # then GOAWAY (spreads clients over replicas)
    max_concurrent_streams: int = Field(default=256, ge=1, le=100_000)  # calls at once on one connection

    def grpc_options(self) -> list[tuple[str, int]]:
        options = [
            ("grpc.max_receive_message_length", self.max_receive_mib << 20),
            ("grpc.max_send_message_length", self.max_send_mib << 20),
            ("grpc.max_connection_idle_ms", int(self.idle_timeout_s * 1000)),
            ("grpc.keepalive_time_ms", int(self.keepalive_s * 1000)),
            ("grpc.keepalive_timeout_ms", int(self.keepalive_timeout_s * 1000)),
            ("grpc.http2.max_pings_without_data", 0),  # keep pinging an idle-but-open connection
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.max_concurrent_streams", self.max_concurrent_streams),
        ]
        if self.max_connection_age_s is not None:
            options.append(("grpc.max_connection_age_ms", int(self.max_connection_age_s * 1000)))
            options.append(("grpc.max_connection_age_grace_ms", 30_000))
        return options


class DeliverySettings(_Strict):
    """How effects are retried: exponential backoff from ``first_retry_s``, doubling up to ``max_retry_s``
    between attempts; an effect still failing ``give_up_after_s`` after its decision is a dead letter (listed,
    inspectable and retryable in the console and with `baton effects`). An effect whose connector is not
    configured is not attempted at all: it waits in the outbox."""

    first_retry_s: float = Field(default=1.0, gt=0)
    max_retry_s: float = Field(default=3600.0, gt=0)
    give_up_after_s: float = Field(default=86400.0, gt=0)


class ConsoleSessionSettings(_Strict):
    """How long a console sign-in lasts: ended after ``idle_s`` without a request, and ``absolute_s`` after
    signing in whatever the activity (signing out, or the token removed or rotated, ends it at once)."""

    idle_s: float = Field(default=1800.0, gt=0)
    absolute_s: float = Field(default=28800.0, gt=0)


class TracingSettings(_Strict):
    exporter: Literal["otlp", "console"] = "otlp"
    endpoint: str | None = None  # OTLP/HTTP traces URL; default http://localhost:4318/v1/traces
    service_name: str = "baton"


class MemorySettings(_Strict):
    """How a worker keeps its memory in bounds: every ``trim_every_s`` the free pages inside its malloc
    arenas (left by large requests and documents) go back to the system (null: never); SQLite holds at most
    about ``sqlite_mb``."""

    trim_every_s: float | None = Field(default=60.0, gt=0)
    # what SQLite may hold in a worker (page caches of all its connections, statements) before it frees
    # cached pages instead of growing; 0: no limit
    sqlite_mb: int = Field(default=16, ge=0, le=65536)
    # a worker whose resident memory goes above this is replaced: the supervisor starts its successor, then
    # the old one stops taking calls and finishes those in flight (logged, baton_worker_recycles_total);
    # null: never. Set, it runs the supervisor even for one worker (so the port needs a fixed number)
    max_mb: int | None = Field(default=None, ge=64, le=1_048_576)
    check_every_s: float = Field(default=5.0, gt=0, le=3600)  # how often the supervisor reads each worker's memory



class VersionSettings(_Strict):
    """Ruleset versions a worker holds: one not used for ``idle_unload_s`` is unloaded (engine and networks
    freed) and compiled again from the store when next asked for; the version in effect for each ruleset
    always stays loaded. null: never unload. ``networks_max_mb`` holds the durable-rules networks of every
    version a worker holds to about that many MB: networks are registered when a decision first needs them
    and the least recently used are freed (registered again when needed: about 130 µs a shard; null: all
    stay registered, each version's registered as it loads, docs/deploy.md)."""

    idle_unload_s: float | None = Field(default=600.0, gt=0)
    networks_max_mb: float | None = Field(default=None, gt=0)


class WitnessSettings(_Strict):
    """One place outside the database that keeps the signed checkpoints (adapters/infra/witnesses.py): a ``dir``, an
    HTTP ``url`` (POST), or a ``nats`` server URL with its ``subject`` (and ``stream`` for JetStream)."""

    dir: Path | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)  # with url: e.g. Authorization: "Bearer ${file:..}"
    nats: str | None = None
    subject: str = "baton.checkpoints"
    stream: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> WitnessSettings:
        if sum(x is not None for x in (self.dir, self.url, self.nats)) != 1:
            raise ValueError("a witness names exactly one of dir, url, nats")
        return self


class CheckpointEvery(_Strict):
    decisions: int | None = Field(default=1000, ge=1)
    seconds: float | None = Field(default=60.0, gt=0)


class AuditSettings(_Strict):
    """Signed checkpoints of the decision log (docs/audit.md): the service signs the log's Merkle tree head
    every ``checkpoint_every`` decisions or seconds and hands it to each witness."""

    signing_key: str = Field(min_length=1)  # a secret reference to the Ed25519 private key (${file:...})
    origin: str | None = None  # the log's name in its checkpoints (default: baton/<the store's log id>)
    checkpoint_every: CheckpointEvery = Field(default_factory=lambda: CheckpointEvery())
    witnesses: list[WitnessSettings] = Field(min_length=1)


class Settings(_Strict):
    listen: str = "127.0.0.1:50051"
    db: str | None = None
    rulesets: Path = Path("rulesets")
    workers: int = Field(default=1, ge=1, le=64)
    metrics: str | None = None  # host:port for the Prometheus endpoint
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"
    tokens: list[TokenEntry] = Field(default_factory=list)
    # a YAML/JSON file of tokens (`--tokens`), read at start and again on SIGHUP and every secrets_ttl_s: a
    # token removed or rotated there is refused from then on, and the console's sessions made with it end
    tokens_file: Path | None = None
    tls: Tls = Field(default_factory=lambda: Tls())
    limits: LimitSettings = Field(default_factory=lambda: LimitSettings())
    transport: TransportSettings = Field(default_factory=lambda: TransportSettings())
    delivery: DeliverySettings = Field(default_factory=lambda: DeliverySettings())
    memory: MemorySettings = Field(default_factory=lambda: MemorySettings())
    versions: VersionSettings = Field(default_factory=lambda: VersionSettings())
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"  # a worker's event loop: libuv's, or asyncio's own
    sla_check_s: float = Field(default=5.0, gt=0)
    answers: Path | None = None  # canned model/tool answers: the offline demo
    insecure_no_auth: bool = False
    tracing: TracingSettings | None = None
    models: dict[str, Any] | None = None
    tools: dict[str, Any] | None = None
    effects: dict[str, Any] | None = None
    max_document_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    corpora: Path | None = None  # folders of policy documents indexed at start (default: RULESETS/corpora)
    secrets_ttl_s: float | None = Field(default=300.0, gt=0)  # re-read ${env:}/${file:} secrets this often
    consumers: dict[str, Any] | None = None  # decision requests from JetStream or RabbitMQ (baton consume)
    console: str | None = None  # host:port of the browser console (served by the first worker)
    console_secret: str | None = None  # signs console sessions (e.g. ${file:console.key}); random per start if unset
    console_sessions: ConsoleSessionSettings = Field(default_factory=lambda: ConsoleSessionSettings())
    pii_roles: list[str] = Field(default_factory=list)  # console roles that see fields marked pii; others: masked
    audit: AuditSettings | None = None  # signed checkpoints of the log, kept by witnesses outside the database


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_SETTINGS:
            continue
        path = name[len(ENV_PREFIX):].lower().split("__")
        try:
            value = YAML(typ="safe").load(raw) if raw.strip() else None
        except YAMLError:
            value = raw
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{name}: {'.'.join(path)} cannot be both a value and a section")
        node[path[-1]] = value
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings from a file (optional) and the environment; ValueError lists each bad key's path."""
    data: Any = {}
    source = str(path) if path else "config"
    if path is not None:
        try:
            data = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
        except (OSError, YAMLError) as e:
            raise ValueError(f"{path}: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the config is a YAML mapping of keys")
    data = _merge(data, _env_overrides(os.environ if environ is None else environ))
    try:
        settings = Settings.model_validate(data)
    except ValidationError as e:
        lines = [f"{source}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise ValueError("\n".join(lines)) from None
    known = {*BUILTIN_ROLES, *settings.pii_roles}
    for i, entry in enumerate(settings.tokens):
        for role in entry.roles:
            if role not in known:
                raise ValueError(f"{source}: tokens.{i} ({entry.name}): unknown role {role!r}; roles are "
                                 f"{', '.join(sorted(known))} (pii_roles may name more)")
    if path is not None:  # relative paths in the file are relative to the file
        base = path.parent
        from adapters.infra.secrets import SECRETS

        SECRETS.configure(base, SECRETS.ttl_s)  # ${file:...} references too
        settings.rulesets = settings.rulesets if settings.rulesets.is_absolute() or not (
            base / settings.rulesets).exists() else base / settings.rulesets
    return settings


def model_gateway(settings: Settings, where: str = "config") -> ModelGateway | None:
    if settings.models is None:
        return None
    from adapters.infra.llm.gateway import LiteLLMGateway, ModelsConfig

    return LiteLLMGateway(ModelsConfig.from_dict(settings.models, f"{where}: models"))


def tool_connectors(settings: Settings, base: Path, where: str = "config") -> ToolConnector | None:
    if settings.tools is None:
        return None
    from adapters.infra.tools.connectors import build_tools

    return build_tools(settings.tools, base, f"{where}: tools")


def effect_connectors(settings: Settings, base: Path, where: str = "config") -> dict[str, Any]:
    if settings.effects is None:
        return {}
    from adapters.infra.effects import build_effects

    return build_effects(settings.effects, base, f"{where}: effects")
