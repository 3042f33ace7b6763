"""Event intake: decision requests from a JetStream durable consumer or a RabbitMQ queue.

A message is a JSON object ``{"ruleset": NAME, "version"?: V, "facts": {type: fact | [facts]},
"documents"?: [{"name", "media_type"?, "content_base64"}]}``. For each one the consumer decides,
stores the decision, publishes the outcome to the reply subject/queue, and only then acknowledges
the message. The message's id (``Nats-Msg-Id`` header, AMQP ``message_id``; else the SHA-256 of the
body) is the decision's idempotency key for the caller ``consumer:NAME``: a redelivery after a crash
returns the stored decision instead of deciding twice, and replies carry the decision id as their own
message id (JetStream drops the repeat within its duplicate window).

A message that can never succeed (not JSON, not an object, an unknown ruleset, invalid facts or
documents) goes to the dead-letter subject/queue with the error and is acknowledged; it never blocks
the stream. A transient failure (the store is unreachable, an internal error) is negatively
acknowledged and redelivered later. In-flight work is bounded by ``max_inflight``: JetStream is pulled
in batches no larger than the free slots, RabbitMQ's prefetch is ``max_inflight``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters.infra import metrics
from adapters.infra.documents import MAX_DOCUMENTS
from adapters.infra.logs import say
from adapters.infra.secrets import SECRETS, redact, resolve_secrets
from adapters.infra.tls import tls_context
from adapters.usecases.commands import DecideCommand, RawDocument
from adapters.usecases.decide import Decide

if TYPE_CHECKING:
    from adapters.usecases.runtime import Runtime
from engine.errors import BatonError, InvalidInput
from engine.record import DecisionRecord

log = logging.getLogger("baton.intake")
PERMANENT = {"unknown_ruleset", "unknown_version", "bad_request", "stale_version"}


class Permanent(Exception):
    """The message can never be decided: dead-letter it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(slots=True)
class ConsumerSettings:
    name: str
    kind: str  # jetstream | amqp
    url: str  # a template: may hold ${env:}/${file:} references
    source: str  # JetStream subject, or AMQP queue
    stream: str = ""
    durable: str = "baton"
    reply_to: str = ""  # default reply subject/queue when the message names none
    dead_letter: str = ""
    max_inflight: int = 64
    ack_wait_s: float = 30.0
    ruleset: str = ""  # default ruleset when the message names none
    tls: Any = None  # an ssl.SSLContext for the broker connection

    @staticmethod
    def from_config(name: str, spec: Mapping[str, Any], where: str, base: Path | None = None) -> ConsumerSettings:
        if not isinstance(spec, Mapping) or spec.get("type") not in ("jetstream", "amqp"):
            raise ValueError(f"{where}.type: jetstream or amqp")
        kind = str(spec["type"])
        url = str(spec.get("url") or ("nats://127.0.0.1:4222" if kind == "jetstream" else
                                      "amqp://guest:guest@127.0.0.1/"))
        resolve_secrets(url, f"{where}.url")
        source = spec.get("subject" if kind == "jetstream" else "queue")
        if not isinstance(source, str) or not source:
            raise ValueError(f"{where}.{'subject' if kind == 'jetstream' else 'queue'}: required")
        max_inflight = spec.get("max_inflight", 64)
        if not isinstance(max_inflight, int) or not 1 <= max_inflight <= 10_000:
            raise ValueError(f"{where}.max_inflight: a whole number from 1 to 10000")
        reply = spec.get("reply_subject" if kind == "jetstream" else "reply_queue") or ""
        dead = spec.get("dead_letter_subject" if kind == "jetstream" else "dead_letter_queue") or ""
        return ConsumerSettings(name, kind, url, source, str(spec.get("stream") or ""),
                                str(spec.get("durable") or "baton"), str(reply), str(dead), max_inflight,
                                float(spec.get("ack_wait_s", 30)), str(spec.get("ruleset") or ""),
                                tls_context(spec.get("tls"), base or SECRETS.base, f"{where}.tls"))


class Decider:
    """A message translated to the Decide use case (adapters/usecases/decide.py), idempotently by its id."""

    def __init__(self, decide: Decide) -> None:
        self.use_case = decide

    @staticmethod
    def parse(body: bytes, default_ruleset: str) -> tuple[str, str, Any, list[RawDocument]]:
        try:
            request = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise Permanent("bad_message", f"the message is not JSON: {e}") from None
        if not isinstance(request, dict):
            raise Permanent("bad_message", "the message is a JSON object {ruleset, facts, documents?}")
        ruleset = request.get("ruleset") or default_ruleset
        if not isinstance(ruleset, str) or not ruleset:
            raise Permanent("bad_message", "ruleset: required")
        version = request.get("version") or ""
        raw_docs = request.get("documents") or []
        if not isinstance(raw_docs, list) or len(raw_docs) > MAX_DOCUMENTS:
            raise Permanent("bad_message", f"documents: a list of at most {MAX_DOCUMENTS}")
        docs = []
        for i, d in enumerate(raw_docs):
            if not isinstance(d, dict) or not isinstance(d.get("content_base64"), str):
                raise Permanent("bad_message", f"documents[{i}]: {{name, media_type?, content_base64}}")
            try:
                content = base64.b64decode(d["content_base64"], validate=True)
            except (binascii.Error, ValueError):
                raise Permanent("bad_message", f"documents[{i}].content_base64: not base64") from None
            docs.append(RawDocument(str(d.get("name") or f"document-{i}"), content, str(d.get("media_type") or "")))
        return ruleset, str(version), request.get("facts") or {}, docs

    async def decide(self, body: bytes, key: str, caller: str, default_ruleset: str, seen_before: bool = True
                     ) -> tuple[DecisionRecord, bool]:
        """(record, replayed): the stored decision for this message id, or a new one. ``seen_before`` False
        (a first delivery) skips the lookup; the store's own idempotency check still catches a repeat. A
        message id names its message: a redelivery is answered with what was decided, never compared."""
        ruleset, version, facts, docs = self.parse(body, default_ruleset)
        command = DecideCommand(caller=caller, ruleset=ruleset, version=version, facts=facts, key=key,
                                documents=docs, request_id=key, same_request=False, fresh=not seen_before)
        try:
            answer = await self.use_case.one(command)
        except InvalidInput as e:
            raise Permanent(e.code, e.message) from None
        except BatonError as e:
            if e.code in PERMANENT:
                raise Permanent(e.code, e.message) from None
            raise
        return answer.record, answer.replayed


def reply_body(record: Mapping[str, Any], message_id: str, replayed: bool) -> bytes:
    return json.dumps({"decision_id": record["decision_id"], "request_id": message_id, "ruleset": record["ruleset"],
                       "version": record["version"], "outcome": record["outcome"], "decision": record["decision"],
                       "reason": record["reason"], "rule": record["rule"], "idempotent_replay": replayed},
                      separators=(",", ":")).encode()


def dead_body(message_id: str, code: str, error: str, body: bytes) -> bytes:
    return json.dumps({"request_id": message_id, "code": code, "error": redact(error)[:2000],
                       "message": body[:64_000].decode("utf-8", "replace")}, separators=(",", ":")).encode()


def message_key(message_id: str | None, body: bytes) -> str:
    return (message_id or "sha256:" + hashlib.sha256(body).hexdigest())[:200]


Handler = Callable[[bytes, str, str], Awaitable[tuple[str, bytes]]]  # -> ("reply" | "dead", body)


class Consumer:
    """One configured consumer; ``run`` until ``stop`` is set."""

    def __init__(self, settings: ConsumerSettings, decider: Decider,
                 on_ready: Callable[[str], None] | None = None) -> None:
        self.s = settings
        self.on_ready = on_ready
        self.decider = decider
        self.caller = f"consumer:{settings.name}"
        self.slots = asyncio.Semaphore(settings.max_inflight)
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, body: bytes, message_id: str | None, redelivered: bool = True) -> tuple[str, bytes, str]:
        """("reply", body, decision id) or ("dead", body, "") for a message; raises on a transient failure."""
        key = message_key(message_id, body)
        try:
            record, replayed = await self.decider.decide(body, key, self.caller, self.s.ruleset,
                                                         redelivered or message_id is None)
        except Permanent as e:
            metrics.INTAKE.labels(consumer=self.s.name, result="dead_letter").inc()
            log.warning("consumer %s: message %s dead-lettered: %s", self.s.name, key, e.message)
            return "dead", dead_body(key, e.code, e.message, body), ""
        metrics.INTAKE.labels(consumer=self.s.name, result="replayed" if replayed else "decided").inc()
        return "reply", reply_body(record, key, replayed), str(record["decision_id"])

    async def run(self, stop: asyncio.Event) -> None:
        if self.s.kind == "jetstream":
            await self._run_jetstream(stop)
        else:
            await self._run_amqp(stop)

    def _ready(self, what: str) -> None:
        log.info("consumer %s ready: %s", self.s.name, what)
        if self.on_ready is not None:
            self.on_ready(f"consumer {self.s.name} ready: {what}")

    async def drain(self) -> None:
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    # -- JetStream ---------------------------------------------------------------------------------
    async def _run_jetstream(self, stop: asyncio.Event) -> None:
        import nats
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.api import AckPolicy, ConsumerConfig

        from adapters.infra.brokers import ensure_stream

        nc = await nats.connect(SECRETS.value(self.s.url), max_reconnect_attempts=-1, tls=self.s.tls)
        js = nc.jetstream()
        stream = self.s.stream or "BATON_REQUESTS"
        await ensure_stream(js, stream, [self.s.source])
        for subject in (self.s.reply_to, self.s.dead_letter):
            if subject:
                await ensure_stream(js, f"{stream}_{_token(subject)}", [subject])
        sub = await js.pull_subscribe(self.s.source, durable=self.s.durable, stream=stream,
                                      config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=self.s.ack_wait_s,
                                                            max_ack_pending=self.s.max_inflight))
        self._ready(f"JetStream stream {stream}, subject {self.s.source}, durable {self.s.durable}")
        try:
            while not stop.is_set():
                free = self.slots._value  # the free slots: never fetch more than we can work on
                if free == 0:
                    await asyncio.sleep(0.01)
                    continue
                try:
                    msgs = await sub.fetch(min(free, 256), timeout=0.5)
                except (NatsTimeout, TimeoutError):
                    continue
                for msg in msgs:
                    await self.slots.acquire()
                    task = asyncio.create_task(self._one_jetstream(js, msg))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
        finally:
            await self.drain()  # finish what is in flight on this connection before closing it
            try:
                await asyncio.wait_for(nc.close(), 5)
            except TimeoutError:
                log.warning("consumer %s: the NATS connection did not close in 5s", self.s.name)

    async def _keep_alive(self, msg: Any) -> None:
        """Tell JetStream we are still working, so a long decision is not redelivered meanwhile."""
        while True:
            await asyncio.sleep(max(0.2, self.s.ack_wait_s / 2))
            try:
                await msg.in_progress()
            except Exception:  # the connection went away: redelivery will sort it out
                return

    async def _one_jetstream(self, js: Any, msg: Any) -> None:
        alive = asyncio.create_task(self._keep_alive(msg))
        try:
            headers = msg.headers or {}
            message_id = headers.get("Nats-Msg-Id") or f"{msg.metadata.stream}:{msg.metadata.sequence.stream}"
            try:
                verdict, body, decision_id = await self.handle(msg.data, message_id, msg.metadata.num_delivered > 1)
            except Exception:
                log.exception("consumer %s: message %s failed; it will be redelivered", self.s.name, message_id)
                await msg.nak(delay=1.0)
                return
            if verdict == "reply":
                target = headers.get("Baton-Reply-To") or self.s.reply_to
                if target:
                    await js.publish(target, body, headers={"Nats-Msg-Id": f"reply:{decision_id}",
                                                            "Baton-Request-Id": message_id})
            elif self.s.dead_letter:
                await js.publish(self.s.dead_letter, body, headers={"Nats-Msg-Id": f"dead:{message_id}"})
            await msg.ack()  # only now: the decision is stored and the reply published (a lost ack: redelivered,
            # and the redelivery returns the stored decision)
        finally:
            alive.cancel()
            self.slots.release()

    # -- RabbitMQ ----------------------------------------------------------------------------------
    async def _run_amqp(self, stop: asyncio.Event) -> None:
        import aio_pika

        connection = await aio_pika.connect_robust(SECRETS.value(self.s.url), ssl_context=self.s.tls)
        try:
            channel = await connection.channel(publisher_confirms=True)
            await channel.set_qos(prefetch_count=self.s.max_inflight)  # never more unacknowledged than slots
            queue = await channel.declare_queue(self.s.source, durable=True)
            for name in (self.s.reply_to, self.s.dead_letter):
                if name:
                    await channel.declare_queue(name, durable=True)
            tag = await queue.consume(lambda m: self._spawn_amqp(channel, m))
            self._ready(f"RabbitMQ queue {self.s.source}, prefetch {self.s.max_inflight}")
            await stop.wait()
            await queue.cancel(tag)
        finally:
            await self.drain()
            await connection.close()

    async def _spawn_amqp(self, channel: Any, message: Any) -> None:
        await self.slots.acquire()
        task = asyncio.create_task(self._one_amqp(channel, message))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _one_amqp(self, channel: Any, message: Any) -> None:
        import aio_pika

        try:
            message_id = message.message_id
            try:
                verdict, body, decision_id = await self.handle(message.body, message_id, bool(message.redelivered))
            except Exception:
                log.exception("consumer %s: message %s failed; it will be redelivered", self.s.name, message_id)
                await message.nack(requeue=True)
                return
            target = (message.reply_to or self.s.reply_to) if verdict == "reply" else self.s.dead_letter
            if target:
                out_id = f"reply:{decision_id}" if verdict == "reply" else f"dead:{message_id}"
                out = aio_pika.Message(body, content_type="application/json", message_id=out_id,
                                       correlation_id=message.correlation_id or message_id,
                                       delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
                await channel.default_exchange.publish(out, routing_key=target)
            await message.ack()
        finally:
            self.slots.release()


def _token(subject: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in subject).upper()[:40]


def consumers_from(section: Mapping[str, Any] | None, where: str = "consumers") -> list[ConsumerSettings]:
    if not section:
        return []
    return [ConsumerSettings.from_config(str(name), spec, f"{where}.{name}") for name, spec in section.items()]


async def run_consumers(consumers: list[Consumer], stop: asyncio.Event) -> None:
    """Run every consumer; one that fails (broker unreachable) is restarted with backoff."""

    async def keep(c: Consumer) -> None:
        delay = 0.5
        while not stop.is_set():
            started = time.monotonic()
            try:
                await c.run(stop)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.error("consumer %s stopped: %s: %s; restarting in %.1fs", c.s.name, type(e).__name__,
                          redact(str(e)), delay)
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
                delay = 0.5 if time.monotonic() - started > 30 else min(delay * 2, 30.0)

    await asyncio.gather(*(keep(c) for c in consumers))


def consumers_of(rt: Runtime) -> list[Consumer]:
    """The broker consumers the config names, deciding through the runtime's Decide use case."""
    settings = consumers_from(rt.cfg.consumers)
    if not settings:
        return []
    decider = Decider(rt.decide)
    return [Consumer(c, decider, say) for c in settings]
