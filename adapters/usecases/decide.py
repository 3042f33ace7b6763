"""Decide: a request's whole path, whatever door it came in by (gRPC Decide, DecideBatch and DecideStream,
broker intake, `baton decide --db`). A door translates its request into a :class:`DecideCommand`, calls
:meth:`Decide.one` (or :meth:`Decide.stream_item`, :meth:`Decide.batch`) and translates the
:class:`Answer` or the :class:`~engine.errors.BatonError` back; it checks nothing this file checks.

In order, for one request:

1. the request's own checks, which need no store (``_prepare``): a ruleset named, each fact typed, at most
   ``MAX_DOCUMENTS`` documents, an idempotency key of at most 200 printable characters, a positive deadline;
   the engine of the ruleset's version in effect, or of the version asked for (``registry.engine``);
2. a decision already stored under the caller's idempotency key is the answer (an idempotent replay) -
   once the request is found to be the same one (``_same_request``: the same key with other facts,
   documents or version is refused, as payment APIs do);
3. the facts validated against the ruleset's declared types (a bad fact: no document is read, nothing is
   stored);
4. admission: at most ``max_inflight`` decisions in flight; a request whose caller's deadline has (almost)
   passed is refused before anything runs;
5. the documents read; the engine's limits (``Limits``) built once, here, from the configured ones and the
   request's deadline;
6. the one decision path (adapters/usecases/decisions.py ``DecisionPath``): the engine run in a span, the
   record stored, counted, logged and offered to shadows;
7. a lost race - a concurrent retry with the same key stored first - answered with the stored decision.

A batch takes the same steps for each of its requests, with the per-request costs paid once
(:meth:`Decide.batch`)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.infra import metrics
from adapters.infra.documents import MAX_DOCUMENTS, Incoming, read_document
from adapters.ports import DecisionLog
from adapters.usecases.commands import Answer, DecideCommand, DecideLimits, RawDocument, Refused, late
from adapters.usecases.decisions import DecisionPath, Job, decide_many
from adapters.usecases.registry import RulesetRegistry
from engine.codes import Code
from engine.errors import InvalidInput, Overloaded
from engine.loop import Decision, Engine
from engine.ports import Clock, IdFactory, ModelGateway, ToolConnector
from engine.record import DecisionRecord

# what a unary Decide keeps back from its caller's deadline: time to store the decision and answer
DEADLINE_MARGIN_S = 0.05
# what a batch or a stream keeps back from its call's deadline: time to store its last decisions and send every result
BULK_MARGIN_S = 0.25
MAX_KEY = 200  # characters of an idempotency key
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode's control characters (category Cc), all of them

TimeLeft = Callable[[], float | None]  # seconds left of the caller's deadline (None: no deadline)
Validated = list[tuple[str, dict[str, Any]]]


def no_deadline() -> float | None:
    return None


@dataclass(slots=True)
class _Prepared:
    """A request past the checks that need no store."""

    cmd: DecideCommand
    engine: Engine
    facts: Any  # by type
    key: str | None
    deadline: float | None  # its own, or the configured default


@dataclass(slots=True)
class Call:
    """A batch call's state shared with the task deciding it: cancelled once the call has ended."""

    cancelled: bool = False


# a batch request's result: its answer, its error, or None (never started: the call's time ran out)
BatchResult = Answer | BaseException | None


class Decide:
    def __init__(self, *, registry: RulesetRegistry, log: DecisionLog, path: DecisionPath, models: ModelGateway,
                 tools: ToolConnector, clock: Clock, ids: IdFactory, limits: DecideLimits | None = None) -> None:
        self.registry, self.log, self.path = registry, log, path
        self.models, self.tools, self.clock, self.ids = models, tools, clock, ids
        self.limits = limits or DecideLimits()
        self.inflight = 0
        self._slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Future[Any]] = set()  # batches and stream requests deciding

    # one request

    async def one(self, cmd: DecideCommand, time_left: TimeLeft = no_deadline) -> Answer:
        """One request, decided and stored (or answered from the store); every failure raised."""
        received = self.path.received()
        p = self._prepare(cmd)
        existing = await asyncio.to_thread(self.log.find, cmd.caller, p.key) if p.key and not cmd.fresh else None
        if existing is not None:
            return self._replay(existing, p)
        validated = p.engine.validate_input(p.facts, allow_empty=bool(cmd.documents))
        if self.inflight >= self.limits.max_inflight:
            raise Overloaded(Code.OVERLOADED.value, f"more than {self.limits.max_inflight} decisions in flight; "
                             "retry with backoff")
        deadline = p.deadline
        remaining = time_left()
        if remaining is not None:
            if remaining <= DEADLINE_MARGIN_S:  # waited in the queue past the caller's deadline: not decided
                raise Refused(Code.DEADLINE_EXCEEDED, "the caller's deadline passed before the decision started: "
                              "nothing was decided or stored")
            remaining -= DEADLINE_MARGIN_S
            deadline = remaining if deadline is None else min(deadline, remaining)
        incoming = await asyncio.to_thread(self._read, cmd.documents) if cmd.documents else []
        self.inflight += 1
        metrics.INFLIGHT.inc()
        try:
            record, saved = await self.path.decide(
                p.engine.ruleset.name, self._run(p, validated, incoming, deadline), cmd.caller, p.key, incoming,
                cmd.request_id, received=received)
        finally:
            self.inflight -= 1
            metrics.INFLIGHT.dec()
        if saved.existing:  # a concurrent retry with the same key won the race
            stored = await asyncio.to_thread(self.log.get, saved.decision_id)
            assert stored is not None
            self._same_request(stored, p, validated)
            return Answer(stored, replayed=True)
        return Answer(record)

    def _prepare(self, cmd: DecideCommand, engines: dict[tuple[str, str], Engine] | None = None) -> _Prepared:
        """A request's checks that need no store, and its engine (resolved once per distinct ruleset and version
        of a batch, in ``engines``)."""
        if cmd.engine is None and not cmd.ruleset:
            raise Refused(Code.BAD_REQUEST, "ruleset is required", "ruleset", "required")
        engine = cmd.engine or self._engine(cmd.ruleset, cmd.version, engines)
        facts = cmd.facts
        if cmd.typed_facts is not None:
            facts = {}
            for i, (kind, values) in enumerate(cmd.typed_facts):
                if not kind:
                    raise Refused(Code.BAD_REQUEST, f"facts[{i}].type is required", f"facts[{i}].type", "required")
                facts.setdefault(kind, []).append(values)
        if len(cmd.documents) > MAX_DOCUMENTS:
            raise Refused(Code.BAD_REQUEST, f"at most {MAX_DOCUMENTS} documents per decision", "documents",
                          f"at most {MAX_DOCUMENTS}")
        key = cmd.key or None
        if key and len(key) > MAX_KEY:
            raise Refused(Code.BAD_REQUEST, f"idempotency_key longer than {MAX_KEY} characters", "idempotency_key",
                          f"at most {MAX_KEY} characters")
        if key and _CONTROL.search(key):
            raise Refused(Code.BAD_REQUEST, "idempotency_key contains a control character (a key is printed in "
                          "logs and the console, and compared as sent)", "idempotency_key",
                          "no control characters (NUL, ESC, newline, ...)")
        if cmd.deadline_s is not None and cmd.deadline_s <= 0:
            raise Refused(Code.BAD_REQUEST, "deadline must be positive (nothing was decided)", "deadline",
                          "must be positive")
        deadline = cmd.deadline_s if cmd.deadline_s is not None else self.limits.engine.deadline_s
        return _Prepared(cmd, engine, facts, key, deadline)

    def _engine(self, ruleset: str, version: str, engines: dict[tuple[str, str], Engine] | None) -> Engine:
        if engines is None:
            return self.registry.engine(ruleset, version)
        found = engines.get((ruleset, version))
        if found is None:
            found = engines[(ruleset, version)] = self.registry.engine(ruleset, version)
        return found

    def _replay(self, existing: DecisionRecord, p: _Prepared) -> Answer:
        """A decision already stored under the request's key, answered as an idempotent replay once the request
        is found to be the same one (compared as validated: 5 and 5.0 are one value; facts that no longer
        validate, as sent)."""
        if p.cmd.same_request:
            try:
                sent = p.engine.validate_input(p.facts, allow_empty=bool(p.cmd.documents))
            except InvalidInput:
                sent = [(t, v) for t, values in p.facts.items()
                        for v in (values if isinstance(values, list) else [values])]
            self._same_request(existing, p, sent)
        return Answer(existing, replayed=True)

    @staticmethod
    def _same_request(stored: DecisionRecord, p: _Prepared, validated: Validated) -> None:
        """A key names one request: the same key with other facts, documents or version is refused (as payment
        APIs do) instead of answering with the decision of a different request."""
        cmd = p.cmd
        if not cmd.same_request:
            return
        inputs = [{"type": t, "values": v} for t, v in validated]
        documents = sorted(hashlib.sha256(d.content).hexdigest() for d in cmd.documents)
        stored_documents = sorted(str(d.get("id", "")) for d in stored.get("documents") or [])
        same = (stored.get("ruleset") == p.engine.ruleset.name
                and json.loads(json.dumps(inputs)) == stored.get("inputs") and documents == stored_documents
                and (not cmd.version or str(stored.get("version", "")).startswith(cmd.version)))
        if not same:
            key = p.key or ""
            raise Refused(Code.IDEMPOTENCY_CONFLICT, f"idempotency_key {key[:80]!r} was used for a different "
                          f"request (decision {stored.get('decision_id')}): send a new key for new facts",
                          "idempotency_key", "already used for a different request")

    def _read(self, documents: Sequence[RawDocument]) -> list[Incoming]:
        return [read_document(d.name, d.content, d.media_type, f"documents[{i}]", self.limits.max_document_bytes)
                for i, d in enumerate(documents)]

    def _run(self, p: _Prepared, validated: Validated, incoming: list[Incoming],
             deadline: float | None) -> Callable[[], Awaitable[Decision]]:
        """The engine run under the configured limits and this request's deadline."""
        limits = self.limits.engine.with_deadline(deadline)
        return lambda: p.engine.run(validated, self.models, self.tools, self.clock, self.ids, limits,
                                    documents=[i.document for i in incoming])

    # streams: one request at a time, each in a place of max_inflight

    def slots(self) -> asyncio.Semaphore:
        """Places for the requests of batches and streams: as many as limits.max_inflight. A request waits for
        one (within the call's deadline) rather than being refused while a batch's other requests run."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limits.max_inflight)
        return self._slots

    async def stream_item(self, cmd: DecideCommand, time_left: TimeLeft) -> Answer | BaseException:
        """One request of a stream: its answer or its error, never raised. Once started it runs to its end
        (stored, logged, counted) even if the call is cancelled meanwhile; one not started when the call's
        deadline is too near is refused with nothing stored."""
        slots = self.slots()
        try:
            remaining = time_left()
            async with asyncio.timeout(None if remaining is None else max(0.0, remaining - BULK_MARGIN_S)):
                if remaining is not None and remaining <= BULK_MARGIN_S:
                    raise TimeoutError
                await slots.acquire()
        except TimeoutError:
            return late()
        task = asyncio.ensure_future(self._stream_one(cmd, time_left))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: slots.release())
        return await asyncio.shield(task)

    async def stream(self, commands: AsyncIterator[DecideCommand | BaseException],
                     time_left: TimeLeft) -> AsyncIterator[Answer | BaseException]:
        """A stream's requests (each a command, or the error its door met translating it), read and decided as
        they come, up to limits.batch_parallel at once, and answered in the order they were sent (a result
        waits for those before it). When the caller stops listening, what has not started never will; what
        has is stored and counted all the same."""
        window = asyncio.Semaphore(self.limits.batch_parallel)
        pending: asyncio.Queue[asyncio.Future[Answer | BaseException] | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def read() -> None:
            try:
                async for cmd in commands:
                    await window.acquire()
                    if isinstance(cmd, DecideCommand):
                        pending.put_nowait(asyncio.ensure_future(self.stream_item(cmd, time_left)))
                    else:
                        failed: asyncio.Future[Answer | BaseException] = loop.create_future()
                        failed.set_result(cmd)
                        pending.put_nowait(failed)
            finally:
                pending.put_nowait(None)

        reader = asyncio.ensure_future(read())
        try:
            while (item := await pending.get()) is not None:
                result = await item
                window.release()
                yield result
            await reader  # a broken request stream ends the call with its error
        finally:  # the call ended early (cancelled, or the client went away)
            reader.cancel()
            while not pending.empty():
                left = pending.get_nowait()
                if left is not None:
                    left.cancel()  # a request already deciding is shielded: it is stored and counted all the same

    async def _stream_one(self, cmd: DecideCommand, time_left: TimeLeft) -> Answer | BaseException:
        try:
            remaining = time_left()
            if remaining is not None and remaining > BULK_MARGIN_S:
                # the engine stops in time for the call's last decisions to be stored and every result sent
                own = cmd.deadline_s if cmd.deadline_s is not None else self.limits.engine.deadline_s
                budget = remaining - BULK_MARGIN_S
                if own is None or (0 < budget < own):
                    cmd = dataclasses.replace(cmd, deadline_s=budget)
            return await self.one(cmd, time_left)
        except Exception as e:
            return e

    # batches

    def check_batch(self, count: int, batch_key: str) -> None:
        """A batch's own checks: nothing of it is decided when one fails."""
        limit = self.limits.max_batch
        if count > limit:
            raise Refused(Code.BAD_REQUEST, f"{count} requests in one DecideBatch: at most {limit} "
                          "(limits.max_batch); nothing was decided, send smaller batches", "requests",
                          f"at most {limit} (limits.max_batch)")
        if batch_key and len(f"{batch_key}/{max(count - 1, 0)}") > MAX_KEY:
            raise Refused(Code.BAD_REQUEST, f"idempotency_key too long: with /INDEX added, a request's key would "
                          f"pass {MAX_KEY} characters; nothing was decided", "idempotency_key",
                          f"at most {MAX_KEY} characters with /INDEX")

    async def batch(self, cmds: Sequence[DecideCommand | BaseException], caller: str, time_left: TimeLeft,
                    call: Call | None = None) -> list[BatchResult]:
        """A batch's requests (each a command, or the error its door met translating it), each stored, chained,
        logged, counted and idempotent exactly as :meth:`one` decides it, each answered on its own - with the
        per-request costs paid once: one engine resolution per distinct ruleset and version, one store query
        for every idempotency key, the engine runs back to back (limits.batch_parallel at a time, in request
        order), and every decision handed to the store writer in one group (``decide_many``). When the call's
        time runs short (or ``call`` is cancelled), what has started is finished and stored, and nothing more
        starts: those requests are answered None. Runs to its end even if the caller's task is cancelled."""
        task = asyncio.ensure_future(_Batch(self, cmds, caller, time_left, call or Call()).run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(task)

    async def admit(self, want: int, time_left: TimeLeft, call: Call) -> tuple[int, float | None]:
        """How many of a batch's next ``want`` requests may start now (at most limits.batch_parallel, and the
        places free of limits.max_inflight for batches and streams, waiting within the call's deadline for
        one), and the seconds they have: the call's time left less what storing and answering need. 0 once
        the call is cancelled or its time is too short to start another."""
        remaining = time_left()
        if call.cancelled or (remaining is not None and remaining <= BULK_MARGIN_S):
            return 0, None
        slots, want = self.slots(), min(want, self.limits.batch_parallel)
        got = 0
        while got < want and not slots.locked():
            await slots.acquire()  # free: no wait
            got += 1
        if got == 0:
            try:
                async with asyncio.timeout(None if remaining is None else remaining - BULK_MARGIN_S):
                    await slots.acquire()
            except TimeoutError:
                return 0, None
            got = 1
            remaining = time_left()
            if call.cancelled or (remaining is not None and remaining <= BULK_MARGIN_S):
                slots.release()
                return 0, None
        self.inflight += got
        metrics.INFLIGHT.inc(got)
        return got, None if remaining is None else remaining - BULK_MARGIN_S

    def release(self, count: int) -> None:
        self.inflight -= count
        metrics.INFLIGHT.dec(count)
        slots = self.slots()
        for _ in range(count):
            slots.release()


class _Batch:
    """One batch being decided (:meth:`Decide.batch`)."""

    def __init__(self, decide: Decide, cmds: Sequence[DecideCommand | BaseException], caller: str,
                 time_left: TimeLeft, call: Call) -> None:
        self.d, self.cmds, self.caller, self.time_left, self.call = decide, cmds, caller, time_left, call
        self.results: list[BatchResult] = [None] * len(cmds)
        self.engines: dict[tuple[str, str], Engine] = {}
        self.validated: dict[int, tuple[_Prepared, Validated]] = {}
        self.found: dict[str, DecisionRecord] = {}
        self.position = 0

    async def run(self) -> list[BatchResult]:
        d = self.d
        received = d.path.received()
        # one query for every key of the batch (a key that will fail its checks finds nothing, harmlessly)
        wanted = [c.key for c in self.cmds if isinstance(c, DecideCommand) and c.key]
        self.found = await asyncio.to_thread(d.log.find_many, self.caller, wanted) if wanted else {}
        outcomes = await decide_many(d.path, self.next_jobs, d.release, self.caller, received=received)
        replayed = [o[1].decision_id for _, o in outcomes if isinstance(o, tuple) and o[1].existing]
        stored = dict(zip(replayed, await asyncio.to_thread(d.log.get_many, replayed), strict=True)) \
            if replayed else {}  # a concurrent retry with the same key stored first
        for job, outcome in outcomes:
            if isinstance(outcome, BaseException):
                self.results[job.index] = outcome
                continue
            record, saved = outcome
            if not saved.existing:
                self.results[job.index] = Answer(record)
                continue
            p, facts = self.validated[job.index]
            found = stored.get(saved.decision_id)
            assert found is not None
            try:
                d._same_request(found, p, facts)
                self.results[job.index] = Answer(found, replayed=True)
            except Refused as e:
                self.results[job.index] = e
        return self.results

    async def next_jobs(self) -> tuple[list[Job], float | None]:
        """The requests to start now, checked when their turn comes (a request never started costs nothing
        beyond its key's lookup): each as :meth:`Decide.one` checks it, in the same order - its own checks,
        then a decision already stored under its key (answered as a replay), then its facts, then its
        documents; one that fails or is replayed takes no place."""
        d, n = self.d, len(self.cmds)
        while self.position < n:
            count, budget = await d.admit(n - self.position, self.time_left, self.call)
            if count == 0:
                return [], None
            jobs: list[Job] = []
            while self.position < n and len(jobs) < count:
                i = self.position
                self.position += 1
                job = await self._job(i)
                if job is not None:
                    jobs.append(job)
            if len(jobs) < count:
                d.release(count - len(jobs))
            if jobs:
                return jobs, budget
        return [], None

    async def _job(self, i: int) -> Job | None:
        """Request ``i``'s job, or None with its result set (failed its checks, or answered from the store)."""
        d, cmd = self.d, self.cmds[i]
        try:
            if isinstance(cmd, BaseException):
                raise cmd
            p = d._prepare(cmd, self.engines)
            existing = self.found.get(p.key) if p.key else None
            if existing is not None:
                self.results[i] = d._replay(existing, p)
                return None
            facts = p.engine.validate_input(p.facts, allow_empty=bool(cmd.documents))
            incoming = await asyncio.to_thread(d._read, cmd.documents) if cmd.documents else []
        except Exception as e:
            self.results[i] = e
            return None
        self.validated[i] = (p, facts)
        return Job(i, p.engine.ruleset.name, self._runner(p, facts, incoming), p.key, incoming, cmd.request_id)

    def _runner(self, p: _Prepared, validated: Validated,
                incoming: list[Incoming]) -> Callable[[float | None], Awaitable[Decision]]:
        """A batch request's engine run, within its own deadline and what is left of the call's (``budget``)."""

        def run(budget: float | None) -> Awaitable[Decision]:
            deadline = p.deadline if budget is None or (p.deadline is not None and p.deadline <= budget) \
                else budget
            return self.d._run(p, validated, incoming, deadline)()

        return run
