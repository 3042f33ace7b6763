"""Effects: downstream updates a decision asks for, delivered from the store's outbox after the decision
is committed - at least once, with the effect's id (decision id ":" n) as the idempotency key, retried
with backoff, and dead-lettered after `max_attempts` for an operator to list and retry."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from adapters.infra import metrics
from adapters.infra.resilience import Guard, Limits
from adapters.infra.secrets import SECRETS, redact, resolve_secrets
from adapters.infra.tls import tls_context
from adapters.ports import Outbox

log = logging.getLogger("baton.effects")


class EffectConnector(Protocol):
    async def send(self, effect_id: str, name: str, decision_id: str, payload: dict[str, Any]) -> None:
        """Deliver or raise; delivering the same effect_id twice must be harmless at the receiver."""


class HttpWebhook:
    def __init__(self, url: str, headers: Mapping[str, str] | None = None, timeout_s: float = 10.0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.url, self.headers, self.timeout_s = url, dict(headers or {}), timeout_s  # header values: templates
        self.tls = tls

    async def send(self, effect_id: str, name: str, decision_id: str, payload: dict[str, Any]) -> None:
        headers = {k: SECRETS.value(v) for k, v in self.headers.items()}  # the current value of a rotated secret
        async with httpx.AsyncClient(headers=headers, timeout=self.timeout_s,
                                     verify=self.tls if self.tls is not None else True) as client:
            response = await client.post(self.url, json={"effect": name, "decision_id": decision_id,
                                                         "effect_id": effect_id, "with": payload},
                                         headers={"Idempotency-Key": effect_id})
        if response.status_code >= 300:
            raise RuntimeError(f"HTTP {response.status_code} from {self.url}")


class LogEffect:
    """Appends one JSON line per delivery to a file (or the log): for audit trails and development."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    async def send(self, effect_id: str, name: str, decision_id: str, payload: dict[str, Any]) -> None:
        line = json.dumps({"effect_id": effect_id, "effect": name, "decision_id": decision_id, "with": payload})
        if self.path is None:
            log.info("effect %s", line)
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")


def build_effects(section: Mapping[str, Any], base: Path, where: str = "effects") -> dict[str, EffectConnector]:
    """Connectors from the config's `effects:` section: name -> {type: http|log|nats|amqp, ..., limits: {...}}."""
    out: dict[str, EffectConnector] = {}
    for name, spec in section.items():
        w = f"{where}.{name}"
        kind = spec.get("type") if isinstance(spec, Mapping) else None
        if kind not in ("http", "log", "nats", "amqp"):
            raise ValueError(f"{w}.type: one of http, log, nats, amqp")
        connector: EffectConnector
        if kind == "http":
            url = spec.get("url")
            if not isinstance(url, str):
                raise ValueError(f"{w}.url: required")
            headers = {}
            for k, v in (spec.get("headers") or {}).items():
                resolve_secrets(str(v), f"{w}.headers.{k}")  # checked now; read again at each delivery
                headers[str(k)] = str(v)
            connector = HttpWebhook(url, headers, float(spec.get("timeout_s", 10)),
                                    tls_context(spec.get("tls"), base, f"{w}.tls"))
        elif kind == "log":
            file = spec.get("file")
            connector = LogEffect(None if file is None else (base / str(file)))
        elif kind == "nats":
            from adapters.infra.brokers import NatsEffect

            url, subject = spec.get("url", "nats://127.0.0.1:4222"), spec.get("subject")
            if not isinstance(subject, str) or not subject:
                raise ValueError(f"{w}.subject: the JetStream subject to publish to")
            resolve_secrets(str(url), f"{w}.url")
            stream = spec.get("stream")
            connector = NatsEffect(str(url), subject, str(stream) if stream else None,
                                   float(spec.get("timeout_s", 5)), tls_context(spec.get("tls"), base, f"{w}.tls"))
        else:
            from adapters.infra.brokers import AmqpEffect

            url = spec.get("url", "amqp://guest:guest@127.0.0.1/")
            routing_key = spec.get("routing_key") or spec.get("queue")
            if not isinstance(routing_key, str) or not routing_key:
                raise ValueError(f"{w}.queue: the queue (or routing_key with exchange) to publish to")
            resolve_secrets(str(url), f"{w}.url")
            connector = AmqpEffect(str(url), routing_key, str(spec.get("exchange") or ""),
                                   spec.get("queue") if isinstance(spec.get("queue"), str) else None,
                                   float(spec.get("timeout_s", 5)), tls_context(spec.get("tls"), base, f"{w}.tls"))
        limits = Limits.from_config(spec.get("limits"), f"{w}.limits")
        out[str(name)] = GuardedEffect(connector, Guard(f"effect:{name}", limits)) if limits != Limits() else connector
    return out


class GuardedEffect:
    def __init__(self, inner: EffectConnector, guard: Guard) -> None:
        self.inner, self.guard = inner, guard

    async def send(self, effect_id: str, name: str, decision_id: str, payload: dict[str, Any]) -> None:
        await self.guard.protect(lambda: self.inner.send(effect_id, name, decision_id, payload))


@dataclass(slots=True)
class OutboxWorker:
    """Delivers the outbox: at least once, in the order effects fell due; a failure is retried with
    exponential backoff (``first_retry_s`` doubling to ``max_retry_s``) until it has been failing for
    ``give_up_after_s`` (or ``max_attempts``), then it is dead. Effects with no connector here are not
    touched: they wait for a sender that has one."""

    store: Outbox
    connectors: Mapping[str, EffectConnector]
    lease_s: float = 30.0
    first_retry_s: float = 1.0
    max_retry_s: float = 3600.0
    give_up_after_s: float = 86400.0
    max_attempts: int | None = None

    def retry_in(self, attempts: int) -> float:
        return float(min(self.first_retry_s * 2 ** min(attempts - 1, 60), self.max_retry_s))

    async def run_once(self) -> int:
        """Deliver what is due now; returns how many were attempted."""
        claimed = await asyncio.to_thread(self.store.claim_effects, time.time(), self.lease_s, 32,
                                          list(self.connectors))
        await asyncio.gather(*(self._deliver(e) for e in claimed))
        return len(claimed)

    async def run(self, stop: asyncio.Event, every_s: float = 0.5) -> None:
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except Exception:  # a store hiccup must not end delivery
                log.exception("outbox pass failed")
                busy = 0
            if not busy:
                try:
                    await asyncio.wait_for(stop.wait(), every_s)
                except TimeoutError:
                    pass

    async def _deliver(self, effect: dict[str, Any]) -> None:
        connector = self.connectors.get(effect["name"])
        attempts = int(effect["attempts"])
        try:
            if connector is None:
                raise RuntimeError(f"no effect connector named {effect['name']!r} is configured")
            await connector.send(effect["id"], effect["name"], effect["decision_id"], json.loads(effect["payload"]))
        except Exception as e:
            error = redact(f"{type(e).__name__}: {e}")
            now = time.time()
            next_at: float | None = now + self.retry_in(attempts)
            since = effect.get("failing_since")
            out_of_time = next_at is not None and next_at - float(since if since is not None else now) > \
                self.give_up_after_s
            if out_of_time or (self.max_attempts is not None and attempts >= self.max_attempts):
                next_at = None
            await asyncio.to_thread(self.store.effect_failed, effect["id"], attempts, error, next_at, now)
            log.warning("effect %s attempt %d failed%s: %s", effect["id"], attempts,
                        " (dead letter now)" if next_at is None else "", error)
            metrics.EFFECT_ATTEMPTS.labels(effect=effect["name"], result="dead" if next_at is None else "failed").inc()
            return
        await asyncio.to_thread(self.store.effect_done, effect["id"], attempts, time.time())
        metrics.EFFECT_ATTEMPTS.labels(effect=effect["name"], result="delivered").inc()
