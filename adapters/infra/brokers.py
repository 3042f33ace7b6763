"""Message brokers as effect targets: NATS JetStream and RabbitMQ (AMQP 0-9-1).

Both deliver from the outbox after commit, at least once, and carry the effect's id (decision id ":"
n) so a repeat is recognised:

- ``nats``: JetStream publish with ``Nats-Msg-Id`` = the effect id. The stream drops a repeat within
  its duplicate window (two minutes by default), so a publisher killed between the publish and the
  outbox update delivers the effect once.
- ``amqp``: publish with publisher confirms (the broker has it before the outbox is updated),
  persistent, ``message_id`` = the effect id and an ``x-baton-effect-id`` header for consumers (or the
  message-deduplication plugin) to drop repeats.

Connection URLs may hold secret references (``amqp://svc:${file:rabbit.pass}@mq/``); a rotated value
makes the next delivery reconnect.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

from adapters.infra.secrets import SECRETS

DEFAULT_DUPLICATE_WINDOW_S = 120


def _body(effect_id: str, name: str, decision_id: str, payload: dict[str, Any]) -> bytes:
    return json.dumps({"effect": name, "decision_id": decision_id, "effect_id": effect_id, "with": payload},
                      separators=(",", ":")).encode()


class NatsEffect:
    def __init__(self, url: str, subject: str, stream: str | None = None, timeout_s: float = 5.0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.url_template, self.subject, self.stream, self.timeout_s = url, subject, stream, timeout_s
        self.tls = tls
        self.nc: Any = None
        self.js: Any = None
        self.version = -1
        self.lock = asyncio.Lock()

    async def _connect(self) -> Any:
        async with self.lock:
            if self.js is not None and self.version == SECRETS.version and self.nc.is_connected:
                return self.js
            import nats

            if self.nc is not None:
                await self.nc.close()
            self.version = SECRETS.version
            self.nc = await nats.connect(SECRETS.value(self.url_template), connect_timeout=self.timeout_s,
                                         max_reconnect_attempts=2, allow_reconnect=True, tls=self.tls)
            self.js = self.nc.jetstream(timeout=self.timeout_s)
            if self.stream:
                await ensure_stream(self.js, self.stream, [self.subject])
            return self.js

    async def send(self, effect_id: str, name: str, decision_id: str, payload: dict[str, Any]) -> None:
        js = await self._connect()
        await js.publish(self.subject, _body(effect_id, name, decision_id, payload),
                         headers={"Nats-Msg-Id": effect_id, "Baton-Decision-Id": decision_id})

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()


async def ensure_stream(js: Any, stream: str, subjects: list[str]) -> None:
    """Create the stream if it does not exist (with a duplicate window); an existing one is left alone."""
    from nats.js.errors import NotFoundError

    try:
        await js.stream_info(stream)
    except NotFoundError:
        await js.add_stream(name=stream, subjects=subjects, duplicate_window=DEFAULT_DUPLICATE_WINDOW_S)


class AmqpEffect:
    def __init__(self, url: str, routing_key: str, exchange: str = "", queue: str | None = None,
                 timeout_s: float = 5.0, tls: ssl.SSLContext | None = None) -> None:
        self.url_template, self.routing_key, self.exchange_name = url, routing_key, exchange
        self.queue, self.timeout_s, self.tls = queue, timeout_s, tls
        self.connection: Any = None
        self.channel: Any = None
        self.exchange: Any = None
        self.version = -1
        self.lock = asyncio.Lock()

    async def _connect(self) -> Any:
        async with self.lock:
            if self.exchange is not None and self.version == SECRETS.version and not self.channel.is_closed:
                return self.exchange
            import aio_pika

            if self.connection is not None:
                await self.connection.close()
            self.version = SECRETS.version
            self.connection = await aio_pika.connect_robust(SECRETS.value(self.url_template), timeout=self.timeout_s,
                                                            ssl_context=self.tls)
            self.channel = await self.connection.channel(publisher_confirms=True)
            if self.queue:
                await self.channel.declare_queue(self.queue, durable=True)
            self.exchange = (await self.channel.get_exchange(self.exchange_name) if self.exchange_name
                             else self.channel.default_exchange)
            return self.exchange

    async def send(self, effect_id: str, name: str, decision_id: str, payload: dict[str, Any]) -> None:
        import aio_pika

        exchange = await self._connect()
        message = aio_pika.Message(_body(effect_id, name, decision_id, payload), message_id=effect_id,
                                   content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                   headers={"x-baton-effect-id": effect_id, "x-baton-decision-id": decision_id})
        # with publisher confirms this returns once the broker has the message (or raises if it refused it)
        await asyncio.wait_for(exchange.publish(message, routing_key=self.routing_key, mandatory=True),
                               self.timeout_s)

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
