"""NATS and RabbitMQ restarted while `baton consume` takes requests from them and delivers effects to them:
the consumer and the publishers reconnect by themselves, no request is lost or decided twice, and effects
are delivered once the broker is back."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_intake import consume, js_publish, js_read, mq_publish, stop, stored, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # a real server, browser or broker per module
# serial: it restarts the machine's NATS and RabbitMQ, which the intake tests use

RULESET = """\
ruleset: relay
facts:
  request: {ref: str, amount: {type: number, min: 0}}
input: [request]
rules:
  - name: accept
    when: exists request
    then:
      - decide: {route: accepted}
      - effect: {name: out, with: {ref: "{{ request.ref }}"}}
"""


def config(tmp: Path, kind: str) -> tuple[Path, dict[str, str]]:
    tag = uuid.uuid4().hex[:8]
    rulesets = tmp / "rulesets"
    rulesets.mkdir()
    (rulesets / "relay.yaml").write_text(RULESET)
    names = {"stream": f"RQ_{tag.upper()}", "subject": f"rq.{tag}", "durable": f"r{tag}", "queue": f"rq-{tag}",
             "fx_stream": f"FX_{tag.upper()}", "fx_subject": f"fx.{tag}", "fx_queue": f"fx-{tag}"}
    if kind == "nats":
        consumer = {"type": "jetstream", "url": "nats://127.0.0.1:4222", "stream": names["stream"],
                    "subject": names["subject"], "durable": names["durable"], "max_inflight": 4, "ack_wait_s": 5}
        effect = {"type": "nats", "url": "nats://127.0.0.1:4222", "subject": names["fx_subject"],
                  "stream": names["fx_stream"]}
    else:
        consumer = {"type": "amqp", "url": "amqp://guest:guest@127.0.0.1/", "queue": names["queue"], "max_inflight": 4}
        effect = {"type": "amqp", "url": "amqp://guest:guest@127.0.0.1/", "queue": names["fx_queue"]}
    body = {"consumers": {"in": consumer}, "effects": {"out": effect}, "rulesets": str(rulesets),
            "corpora": str(tmp / "no-corpora")}
    path = tmp / "baton.yaml"
    path.write_text(json.dumps(body))
    return path, names


def request(ref: str) -> bytes:
    return json.dumps({"ruleset": "relay", "facts": {"request": {"ref": ref, "amount": 1}}}).encode()


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def retry(fn: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fn()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)  # a poll: fn is retried until it passes or the deadline


async def mq_effects(queue: str) -> list[dict[str, Any]]:
    import aio_pika

    conn = await aio_pika.connect_robust("amqp://guest:guest@127.0.0.1/")
    out = []
    try:
        ch = await conn.channel()
        q = await ch.declare_queue(queue, durable=True)
        while (msg := await q.get(fail=False, timeout=1)) is not None:
            out.append(json.loads(msg.body))
            await msg.ack()
    finally:
        await conn.close()
    return out


def restart_nats() -> None:
    found = subprocess.run(["pgrep", "-x", "nats-server"], capture_output=True, text=True, check=False).stdout.split()
    if not found:
        pytest.skip("no nats-server process to restart")
    pid = int(found[0])
    command = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 20)
    time.sleep(2)  # kept: down for a while, so clients see it gone (the outage is the behaviour under test)
    subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: port_open(4222), 30)


def restart_rabbitmq() -> None:
    subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=120)
    time.sleep(2)  # kept: down for a while (the outage is the behaviour under test)
    subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)


@pytest.mark.parametrize("kind", ["nats", "amqp"])
def test_a_broker_restart_loses_and_repeats_nothing(tmp_path: Path, kind: str) -> None:
    if not port_open(4222 if kind == "nats" else 5672):
        pytest.skip(f"{kind} broker not running")
    path, n = config(tmp_path, kind)
    proc = consume(tmp_path, path)

    def publish(refs: list[str]) -> None:
        messages = [(ref, request(ref)) for ref in refs]
        asyncio.run(js_publish(messages, n["subject"]) if kind == "nats" else mq_publish(messages, n["queue"]))

    try:
        publish([f"a{i}" for i in range(5)])
        wait_for(lambda: len(stored(tmp_path)) == 5, 30)
        restart_nats() if kind == "nats" else restart_rabbitmq()
        retry(lambda: publish([f"b{i}" for i in range(5)]))
        wait_for(lambda: len(stored(tmp_path)) == 10, 90)  # the consumer reconnected by itself
        keys = [k for k, _ in stored(tmp_path)]
        assert sorted(keys) == sorted([f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)])  # each once
        effects: list[dict[str, Any]] = []

        def delivered() -> bool:
            if kind == "nats":  # [] until the effects' stream exists (their first delivery creates it)
                effects.extend(body for _, body in asyncio.run(js_read(n["fx_stream"], n["fx_subject"])))
            else:
                effects.extend(asyncio.run(mq_effects(n["fx_queue"])))
            return {e["with"]["ref"] for e in effects} >= set(keys)

        wait_for(delivered, 120)  # the publishers reconnected; nothing waits in the outbox for ever
        assert len({e["effect_id"] for e in effects}) == 10
    finally:
        assert stop(proc) == 0
