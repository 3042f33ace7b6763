"""Witnesses: places outside the database that keep the log's signed checkpoints (adapters/infra/checkpoints.py),
and the service's checkpointer that signs one every ``audit.checkpoint_every`` decisions or seconds.

- ``dir``: a directory, one file per checkpoint, never overwritten (mount it from another machine, or
  ship it to write-once storage);
- ``url``: an HTTP endpoint, each checkpoint POSTed as JSON with the configured ``headers`` (secret
  references allowed); a 2xx answer means kept;
- ``nats``: a NATS subject, each checkpoint published as JSON (with ``stream``: a JetStream publish,
  acknowledged by the stream, with the checkpoint's file name as its message id).

A witness that cannot be reached is logged, counted (``baton_checkpoints_total{result="failed"}``) and
skipped; the next checkpoint covers everything before it, so a missed one loses nothing but that point in
time. Checkpoints are also kept in the store (for proofs and the console); the store's copy is not evidence,
the witnesses' are."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from adapters.infra.checkpoints import (
    Checkpoint,
    Verifier,
    checkpoint_file,
    extension_problem,
    keep_in,
    load_private_key,
    read_checkpoints,
    sign,
    write_checkpoint,
)
from adapters.infra.metrics import CHECKPOINTS
from adapters.infra.secrets import SECRETS

log = logging.getLogger("baton.audit")


class Witness(Protocol):
    name: str

    async def keep(self, cp: Checkpoint) -> None: ...


class DirectoryWitness:
    def __init__(self, folder: Path) -> None:
        self.folder, self.name = folder, f"dir {folder}"

    async def keep(self, cp: Checkpoint) -> None:
        await asyncio.to_thread(write_checkpoint, self.folder, cp)


class HttpWitness:
    def __init__(self, url: str, headers: dict[str, str] | None = None, timeout_s: float = 10.0) -> None:
        self.url_template, self.header_templates, self.timeout_s = url, dict(headers or {}), timeout_s
        self.name = f"http {url}"

    async def keep(self, cp: Checkpoint) -> None:
        import httpx

        headers = {k: SECRETS.value(v) for k, v in self.header_templates.items()}  # rotated: the new value
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            answer = await client.post(SECRETS.value(self.url_template), json=cp.to_json(), headers=headers)
            answer.raise_for_status()


class NatsWitness:
    def __init__(self, url: str, subject: str, stream: str | None = None, timeout_s: float = 5.0) -> None:
        self.url_template, self.subject, self.stream, self.timeout_s = url, subject, stream, timeout_s
        self.name = f"nats {subject}"

    async def keep(self, cp: Checkpoint) -> None:
        import nats

        nc = await nats.connect(SECRETS.value(self.url_template), connect_timeout=self.timeout_s,
                                max_reconnect_attempts=1, allow_reconnect=False)
        try:
            body = json.dumps(cp.to_json(), sort_keys=True).encode()
            if self.stream:
                js = nc.jetstream(timeout=self.timeout_s)
                await js.publish(self.subject, body, headers={"Nats-Msg-Id": checkpoint_file(Path(), cp).name})
            else:
                await nc.publish(self.subject, body)
                await nc.flush(timeout=max(1, int(self.timeout_s)))
        finally:
            await nc.close()


def build_witnesses(specs: Sequence[Any], base: Path) -> list[Witness]:
    """Witnesses from the config's ``audit.witnesses`` (each names one of dir, url, nats)."""
    out: list[Witness] = []
    for spec in specs:
        if spec.dir is not None:
            out.append(DirectoryWitness(spec.dir if spec.dir.is_absolute() else base / spec.dir))
        elif spec.url is not None:
            SECRETS.resolve(spec.url, "audit.witnesses.url")
            for name, value in spec.headers.items():
                SECRETS.resolve(value, f"audit.witnesses.headers.{name}")
            out.append(HttpWitness(spec.url, spec.headers))
        else:
            SECRETS.resolve(spec.nats, "audit.witnesses.nats")
            out.append(NatsWitness(spec.nats, spec.subject, spec.stream))
    return out


class Checkpointer:
    """Signs the log's tree head every ``every_decisions`` decisions or ``every_s`` seconds (whichever comes
    first, and only when the log grew), keeps it in the store and hands it to every witness."""

    def __init__(self, store: Any, key_template: str, origin: str | None, witnesses: Sequence[Witness],
                 every_decisions: int | None, every_s: float | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.key_template, self.witnesses = store, key_template, list(witnesses)
        self.every_decisions, self.every_s, self.clock = every_decisions, every_s, clock
        self.origin = origin or f"baton/{store.log_id()}"
        load_private_key(SECRETS.resolve(key_template, "audit.signing_key"), "audit.signing_key")  # fail at start
        self.last_size: int | None = None
        self.last_at = clock()
        self.signed = 0
        self.last: Checkpoint | None = None  # the newest checkpoint this key signed for this log
        self.seeded = False
        self.refused_at: int | None = None  # the tree size last refused (logged once per size)

    def _seed(self, key: Any) -> None:
        """The newest checkpoint this key signed for this log before this start: from the directory witnesses
        and the store's copy (taken only with a good signature - anyone who can write the database can add one)."""
        verifier = Verifier([key.public_key()], self.origin)
        found: list[Checkpoint] = []
        for witness in self.witnesses:
            if isinstance(witness, DirectoryWitness) and witness.folder.is_dir():
                try:
                    found.extend(cp for _, cp in read_checkpoints(witness.folder))
                except (ValueError, RecursionError) as e:
                    log.warning("witness %s unreadable while looking for the last checkpoint: %s", witness.name, e)
        for text in self.store.latest_checkpoints():
            try:
                found.append(Checkpoint.from_json(json.loads(text), "the store's copy"))
            except (ValueError, RecursionError):
                continue
        mine = [cp for cp in found if verifier.problem(cp) is None]
        self.last = max(mine, key=lambda cp: (cp.size, cp.time)) if mine else None
        self.seeded = True

    async def tick(self, force: bool = False) -> Checkpoint | None:
        """Sign and hand out a checkpoint when one is due (``force``: whenever the log grew)."""
        size, root = await asyncio.to_thread(self.store.tree_head)
        now = self.clock()
        if self.last_size is None:  # the first one after a start: the log as it is
            due = True
        else:
            grew = size - self.last_size
            due = grew > 0 and (force or (self.every_decisions is not None and grew >= self.every_decisions) or
                                (self.every_s is not None and now - self.last_at >= self.every_s))
        if not due:
            return None
        key = load_private_key(SECRETS.value(self.key_template), "audit.signing_key")  # rotated: the new one
        if not self.seeded:
            await asyncio.to_thread(self._seed, key)
        last = self.last
        problem = await asyncio.to_thread(extension_problem, self.store, last, size, root) if last else None
        if problem:  # never a second, forked history under this key: the rewrite stays for verify to name
            if self.refused_at != size:
                self.refused_at = size
                log.error("checkpoint of %d decisions NOT signed: %s", size, problem)
                for witness in self.witnesses:
                    CHECKPOINTS.labels(witness.name, "refused").inc()
            return None
        cp = sign(key, self.origin, size, root, now)
        await asyncio.to_thread(keep_in, self.store, cp)
        for witness in self.witnesses:
            try:
                await witness.keep(cp)
            except Exception as e:
                CHECKPOINTS.labels(witness.name, "failed").inc()
                log.warning("witness %s did not take the checkpoint of %d decisions: %s: %s", witness.name,
                            cp.size, type(e).__name__, e)
            else:
                CHECKPOINTS.labels(witness.name, "kept").inc()
        self.last_size, self.last_at, self.last = size, now, cp
        self.signed += 1
        return cp

    async def run(self, stop: asyncio.Event, poll_s: float = 1.0) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("checkpoint not signed")
            try:
                await asyncio.wait_for(stop.wait(), poll_s)
            except TimeoutError:
                pass
        try:
            await self.tick(force=True)  # the log as it is at shutdown
        except Exception:
            log.exception("checkpoint not signed at shutdown")


def check_audit(cfg: Any, base: Path) -> list[str]:
    """`baton config check`: the signing key can be read and is an Ed25519 private key, and every witness's
    secret references resolve; the witnesses' names. ValueError names the key path."""
    load_private_key(SECRETS.resolve(cfg.audit.signing_key, "audit.signing_key"), "audit.signing_key")
    return [w.name for w in build_witnesses(cfg.audit.witnesses, base)]


def checkpointer(cfg: Any, base: Path, store: Any) -> Checkpointer:
    """The service's checkpointer from its config's ``audit:`` section (ValueError: a bad key or witness)."""
    audit = cfg.audit
    return Checkpointer(store, audit.signing_key, audit.origin, build_witnesses(audit.witnesses, base),
                        audit.checkpoint_every.decisions, audit.checkpoint_every.seconds)
