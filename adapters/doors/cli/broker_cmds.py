"""`baton tail`: watch what Baton publishes to a JetStream subject or a RabbitMQ queue (effects, replies,
dead letters), one JSON line per message, until Ctrl-C."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Annotated, Any

import typer

from adapters.doors.cli.common import fail

tail_app = typer.Typer(no_args_is_help=True, help="Watch messages arrive on a broker (effects, replies, dead letters).")


def _print(source: str, headers: dict[str, Any], body: bytes) -> None:
    try:
        data: Any = json.loads(body)
    except ValueError:
        data = body.decode("utf-8", "replace")
    typer.echo(json.dumps({"from": source, "headers": headers, "body": data}, ensure_ascii=False))


@tail_app.command("nats")
def tail_nats(subject: Annotated[str, typer.Argument(help="subject, e.g. claims.updates")],
              url: Annotated[str, typer.Option(help="NATS server")] = "nats://127.0.0.1:4222",
              count: Annotated[int, typer.Option(help="stop after this many (0: never)")] = 0) -> None:
    """Print each message published to a subject (JetStream or core NATS) from now on."""

    async def run() -> None:
        import nats

        nc = await nats.connect(url)
        seen = 0
        done = asyncio.Event()

        async def on(msg: Any) -> None:
            nonlocal seen
            _print(msg.subject, dict(msg.headers or {}), msg.data)
            seen += 1
            if count and seen >= count:
                done.set()

        await nc.subscribe(subject, cb=on)
        await done.wait()
        await nc.close()

    _until_interrupted(run())


@tail_app.command("amqp")
def tail_amqp(queue: Annotated[str, typer.Argument(help="queue, e.g. payments")],
              url: Annotated[str, typer.Option(help="AMQP server")] = "amqp://guest:guest@127.0.0.1/",
              count: Annotated[int, typer.Option(help="stop after this many (0: never)")] = 0) -> None:
    """Take and print each message from a queue (they are acknowledged: use a queue of your own)."""

    async def run() -> None:
        import aio_pika

        conn = await aio_pika.connect_robust(url)
        ch = await conn.channel()
        q = await ch.declare_queue(queue, durable=True)
        seen = 0
        async with q.iterator() as it:
            async for msg in it:
                async with msg.process():
                    _print(queue, {"message_id": msg.message_id, **dict(msg.headers or {})}, msg.body)
                seen += 1
                if count and seen >= count:
                    break
        await conn.close()

    _until_interrupted(run())


def _until_interrupted(main: Coroutine[Any, Any, None]) -> None:
    try:
        asyncio.run(main)
    except KeyboardInterrupt:
        pass
    except Exception as e:
        raise fail(f"{type(e).__name__}: {e}") from None
