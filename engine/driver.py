"""Sessions on the durable-rules C core (``durable_rules_engine``), without ``engine.Host``.

What this relies on (each pinned by a test in tests/engine/test_durable_rules.py):
- a ruleset name is registered once per process: heap corruption follows a second registration;
- every session has its start fact's action started before ``delete_state`` (which segfaults on a
  session in which no action ever started, even with facts matched);
- at most ``SESSIONS_PER_HANDLE`` live sessions per handle; more handles (``name@hash#k``) beyond;
- ``delete_ruleset`` frees a network with no live session, and the name may be registered again
  afterwards (how an idle version is unloaded: ``unload``, and how a process held to a network budget
  frees the networks used least recently: ``set_network_budget``);
- facts reaching the engine are unique (sequence numbers) and carry no user data (see compile.py);
- ``start_action_for_state`` / ``complete_and_start_action`` walk the agenda in priority, rule order
  and recency; a fact asserted while an action is open joins the agenda at once.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import durable_rules_engine as core
import orjson

from engine.compile import START_RULE, START_TYPE, CompiledRuleset
from engine.errors import EngineFailure, Overloaded
from engine.language.check import FactIndex

SESSIONS_PER_HANDLE = 1000
MAX_HANDLES = 16

# What a registered network holds in the core (durable-rules 2.0.28, measured by registering the shards of
# tests/scale.py's rulesets, docs/deploy.md): ~56 KB whatever it holds (its session index and 8 preallocated
# sessions), and ~12 KB a rule (its nodes are ~1.85 KB structs, a few per rule).
NETWORK_FIXED_BYTES = 56 << 10
NETWORK_RULE_BYTES = 12 << 10

_registry: dict[str, int] = {}
_registry_lock = threading.Lock()


@dataclass(slots=True)
class NetworkBudget:
    """The bound on this process's registered networks (``set_network_budget``) and what it has done."""

    max_bytes: int | None = None  # None: every network stays registered until its version is unloaded
    held_bytes: int = 0  # estimated (NETWORK_*_BYTES) bytes of the networks registered now
    networks: int = 0
    registered: int = 0  # networks registered since the process started (first use and again after eviction)
    evicted: int = 0  # networks freed to stay within max_bytes


_budget = NetworkBudget()
_resident: OrderedDict[EnginePool, None] = OrderedDict()  # pools with a network registered, least recently used first


def set_network_budget(max_mb: float | None) -> None:
    """Hold this process's durable-rules networks to about ``max_mb`` MB (None: no bound). Over it, each new
    registration frees the networks used least recently that no decision is on; a decision that needs one
    again registers it again (about 130 µs for a shard of 8 rules, more for a guard-only network of 32).
    Networks are then registered on first use, not all when an engine is built (``Engine`` asks
    ``network_budget``). What a network holds is estimated from its rule count, not read from the core."""
    with _registry_lock:
        _budget.max_bytes = None if max_mb is None else max(0, int(max_mb * (1 << 20)))
    _evict(None)


def network_budget() -> NetworkBudget:
    """A copy of the budget and its counters, for metrics and tests."""
    with _registry_lock:
        return NetworkBudget(_budget.max_bytes, _budget.held_bytes, _budget.networks, _budget.registered,
                             _budget.evicted)


def _network_bytes(rules: int) -> int:
    """What a network of ``rules`` rules (its start rule included) is estimated to hold."""
    return NETWORK_FIXED_BYTES + NETWORK_RULE_BYTES * rules


def _register(name: str, definition: bytes, pool: EnginePool) -> int:
    with _registry_lock:
        handle = _registry.get(name)
        if handle is None:
            handle = core.create_ruleset(name, zlib.decompress(definition).decode())
            _registry[name] = handle
            _budget.held_bytes += pool.bytes
            _budget.networks += 1
            _budget.registered += 1
            _resident[pool] = None
            _resident.move_to_end(pool)
        return handle


def _evict(keep: EnginePool | None) -> None:
    """Free the least recently used networks no decision is on until the estimate is within the budget
    (never ``keep``, the pool that just registered one). Called with no pool's lock held: ``retire`` takes the
    pool's lock and then the registry's, in that order, as everything here does."""
    with _registry_lock:
        if _budget.max_bytes is None or _budget.held_bytes <= _budget.max_bytes:
            return
        oldest = [p for p in list(_resident) if p is not keep]
    for pool in oldest:
        if _budget.held_bytes <= (_budget.max_bytes or 0):
            return
        freed = len(pool.handles)
        if pool.retire() and freed:
            with _registry_lock:
                _budget.evicted += freed


class _Handle:
    __slots__ = ("handle", "live", "name")

    def __init__(self, name: str, handle: int) -> None:
        self.name, self.handle, self.live = name, handle, 0


class EnginePool:
    """All engine handles of one network (one shard of one ruleset version) in this process."""

    def __init__(self, name: str, definition: bytes, ref: str, rules: int, max_handles: int = MAX_HANDLES) -> None:
        """``definition``: the network's JSON, zlib-compressed (``Shard.packed``), decompressed only to register
        it; ``rules``: how many rules it has, its start rule included."""
        self.base_name, self.definition, self.ref = name, definition, ref
        self.bytes = _network_bytes(rules)  # what one of its handles is thought to hold
        self.first_name = name
        self.max_handles = max_handles
        self.handles: list[_Handle] = []
        self.counter = 0
        self.generation = 0
        self.lock = threading.Lock()

    @property
    def live_sessions(self) -> int:
        return sum(h.live for h in self.handles)

    def acquire(self) -> tuple[_Handle, str]:
        bounded = _budget.max_bytes is not None
        with self.lock:
            self.counter += 1
            sid = f"s{self.counter}"
            for h in self.handles:
                if h.live < SESSIONS_PER_HANDLE:
                    h.live += 1
                    if bounded:  # the most recently used: the last to be evicted
                        with _registry_lock:
                            if self in _resident:
                                _resident.move_to_end(self)
                    return h, sid
            if len(self.handles) >= self.max_handles:
                raise Overloaded("overloaded", f"more than {self.max_handles * SESSIONS_PER_HANDLE} decisions in "
                                 f"flight on {self.ref}", hint="retry with backoff")
            k = len(self.handles)
            name = self.base_name if k == 0 else f"{self.base_name}#{k}"
            h = _Handle(name, _register(name, self.definition, self))
            h.live = 1
            self.handles.append(h)
        if bounded:
            _evict(self)
        return h, sid

    def warm(self) -> None:
        """Register this network's first handle now rather than on the first decision that needs it."""
        with self.lock:
            if not self.handles:
                self.handles.append(_Handle(self.base_name, _register(self.base_name, self.definition, self)))
        _evict(self)

    def release(self, h: _Handle) -> None:
        with self.lock:
            h.live -= 1

    def retire(self) -> bool:
        """Free this network's handles in the core if no session is live on any (False: left as they are).
        A later decision on this pool registers its network again, under names of a new generation."""
        with self.lock:
            if any(h.live for h in self.handles):
                return False
            with _registry_lock:
                for h in self.handles:
                    core.delete_ruleset(h.handle)
                    if _registry.pop(h.name, None) is not None and self in _resident:
                        _budget.held_bytes -= self.bytes
                        _budget.networks -= 1
                _resident.pop(self, None)
            if self.handles:
                self.handles = []
                self.generation += 1
                self.base_name = f"{self.first_name}%{self.generation}"
            return True


class Pools:
    """The pools of every shard of one ruleset version; a shard's network is registered on first use."""

    def __init__(self, compiled: CompiledRuleset, max_handles: int = MAX_HANDLES) -> None:
        self.compiled = compiled
        rs = compiled.ruleset
        base = f"{rs.name}@{rs.version}{compiled.layout}"
        self.shards = [EnginePool(base if s.number == 0 else f"{base}/{s.number}", s.packed, rs.ref,
                                  len(s.rules) + 1, max_handles) for s in compiled.shards]
        # one network that facts reach by type alone (a guard-only ruleset): no routing, one session
        self.solo = not compiled.indexed and len(self.shards) == 1
        self.solo_types = frozenset(compiled.type_shards)

    @property
    def live_sessions(self) -> int:
        return sum(p.live_sessions for p in self.shards)

    def warm(self) -> None:
        for pool in self.shards:
            pool.warm()

    def retire(self) -> bool:
        """Free every shard's network (see ``EnginePool.retire``); False if a decision is still on one."""
        return all([pool.retire() for pool in self.shards])

    @property
    def handles(self) -> list[_Handle]:
        return self.shards[0].handles

    @property
    def counter(self) -> int:
        return self.shards[0].counter

    def open(self, initial: Iterable[tuple[int, str, dict[str, object]]], wm: FactIndex) -> Agenda | SoloAgenda:
        """An agenda over the shards, with ``initial`` facts (seq, type, values) routed and asserted."""
        agenda = SoloAgenda(self) if self.solo else Agenda(self, wm)
        try:
            agenda.assert_batch(initial)
        except BaseException:
            agenda.close()
            raise
        return agenda


_pools: dict[str, Pools] = {}


def pool_for(compiled: CompiledRuleset) -> Pools:
    """The one set of pools of this ruleset version in this process (versions are registered once, by hash)."""
    key = f"{compiled.ruleset.name}@{compiled.ruleset.version}{compiled.layout}"
    with _registry_lock:
        pools = _pools.get(key)
        if pools is None:
            pools = _pools[key] = Pools(compiled)
        return pools


def unload(compiled: CompiledRuleset) -> bool:
    """Forget this version's pools and free their networks in the core, unless a decision is on one of
    them (then nothing is freed, False). An Engine still holding the pools registers them again on use."""
    key = f"{compiled.ruleset.name}@{compiled.ruleset.version}{compiled.layout}"
    with _registry_lock:
        pools = _pools.get(key)
    if pools is None:
        return True
    if not pools.retire():
        return False
    with _registry_lock:
        if _pools.get(key) is pools:
            del _pools[key]
    return True


_UNKNOWN = "?"  # a shard session's next activation is not known: facts arrived since it was last asked


class ShardSession:
    """One decision's working memory in one shard's network."""

    __slots__ = ("closed", "h", "handle", "head", "open_action", "pool", "sid", "started", "state")

    def __init__(self, pool: EnginePool, batch: list[dict[str, object]]) -> None:
        self.pool = pool
        self.h, self.sid = pool.acquire()
        self.handle = self.h.handle
        self.open_action = False
        self.started = False  # delete_state segfaults on a session in which no action ever started
        self.closed = True  # until the start fact is handled there is nothing to delete
        self.head: str | None = _UNKNOWN
        # The start fact is always handled (its rule fires first, at pri 0, and does nothing), so the
        # session always exists for delete_state. Code 1 means some *other* fact matched no pattern.
        sid = self.sid
        for fact in batch:
            fact["sid"] = sid
        try:
            code, state = core.assert_facts(self.handle, orjson.dumps([{"sid": sid, "bt": START_TYPE, "bn": 0},
                                                                      *batch]).decode())
        except core.error as e:
            pool.release(self.h)
            raise EngineFailure("engine_error", f"durable-rules refused the facts: {e}") from None
        if code not in (0, 1):
            pool.release(self.h)
            raise EngineFailure("engine_error", f"durable-rules returned code {code} for a new session")
        self.state = state
        self.closed = False

    def add(self, batch: list[dict[str, object]], during_action: bool) -> None:
        """Assert facts. While this session's own action is open they join its agenda at once; a peeked
        activation of an idle session is put back first, since a new fact may come before it."""
        if self.open_action and not during_action:
            core.abandon_action(self.handle, self.state)
            self.open_action = False
        self.head = _UNKNOWN if not during_action else self.head
        sid = self.sid
        for fact in batch:
            fact["sid"] = sid
        try:
            if len(batch) == 1:
                code, _ = core.assert_fact(self.handle, orjson.dumps(batch[0]).decode())
            else:
                code, _ = core.assert_facts(self.handle, orjson.dumps(batch).decode())
        except core.error as e:
            raise EngineFailure("engine_error", f"durable-rules refused facts: {e}") from None
        if code not in (0, 1):  # 1: no rule matches any of them, which is normal
            raise EngineFailure("engine_error", f"durable-rules returned code {code} asserting facts")

    def peek(self) -> str | None:
        """This session's next activation (JSON), its action left open; None when its agenda is empty."""
        if self.open_action:
            core.abandon_action(self.handle, self.state)
            self.open_action = False
        try:
            result = core.start_action_for_state(self.handle, self.state)
        except core.error as e:
            raise EngineFailure("engine_error", f"durable-rules failed to start an action: {e}") from None
        self.started = True
        message: str | None = result[1] if result else None
        self.open_action = message is not None
        if message is not None and message.startswith(_START_MESSAGE):
            message = self.complete()
        self.head = message
        return message

    def complete(self) -> str | None:
        """Complete the open action; the next activation, its action open (or None)."""
        try:
            message: str | None = core.complete_and_start_action(self.handle, self.state)
        except core.error as e:
            self.open_action = False
            raise EngineFailure("engine_error", f"durable-rules failed to complete an action: {e}") from None
        self.open_action = message is not None
        self.head = message
        return message

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if not self.started:
                self.peek()  # the start fact's activation is always there to start
            if self.open_action:
                core.abandon_action(self.handle, self.state)
            core.delete_state(self.handle, self.sid)
        finally:
            self.pool.release(self.h)


_START_MESSAGE = '{"' + START_RULE + '"'


class Agenda:
    """One decision's sessions, one per shard it touched, walked as one agenda.

    Shards follow agenda order (compile.py), so the next activation is the head of the first shard
    that has one. Facts go only to the shards where the index found a pattern they fill."""

    __slots__ = ("compiled", "current", "order", "pools", "router", "sessions")

    def __init__(self, pools: Pools, wm: FactIndex) -> None:
        self.pools = pools
        self.compiled = pools.compiled
        self.router = pools.compiled.router(wm)
        self.sessions: dict[int, ShardSession] = {}
        self.order: list[ShardSession] = []  # the open sessions, in shard order
        self.current: ShardSession | None = None

    def _add(self, by_shard: dict[int, list[dict[str, object]]]) -> None:
        for shard, batch in by_shard.items():
            session = self.sessions.get(shard)
            if session is None:
                self.sessions[shard] = ShardSession(self.pools.shards[shard], batch)
                self.order = [self.sessions[k] for k in sorted(self.sessions)]
            else:
                session.add(batch, session is self.current)

    def assert_batch(self, facts: Iterable[tuple[int, str, dict[str, object]]]) -> None:
        """Assert facts between rounds (all of a round's answers at once, in order)."""
        self._add(self.router.route(facts))

    def assert_now(self, seq: int, type_name: str, values: dict[str, object]) -> None:
        """Assert one fact while an activation is being fired: its activations join the agenda at once."""
        self._add(self.router.route(((seq, type_name, values),)))

    def _best(self) -> str | None:
        for session in self.order:
            head = session.peek() if session.head is _UNKNOWN else session.head
            if head is not None:
                self.current = session
                return head
        self.current = None
        return None

    def first(self) -> str | None:
        """The next activation to fire (JSON), or None when no shard has one."""
        return self._best()

    def next(self) -> str | None:
        """Mark the current activation fired; the next one, or None."""
        current = self.current
        if current is not None:
            head = current.complete()
            if len(self.order) == 1:  # one session: its own agenda is the whole agenda
                if head is None:
                    self.current = None
                return head
        return self._best()

    def stepper(self) -> Callable[[], str | None]:
        """What marks the activation being fired as done and gives the next one."""
        return self.next

    def close(self) -> None:
        errors: list[BaseException] = []
        for session in self.order:
            try:
                session.close()
            except BaseException as e:  # close every session whatever one of them raised
                errors.append(e)
        self.sessions, self.order = {}, []
        if errors:
            raise errors[0]


class SoloAgenda:
    """One decision's agenda on a ruleset of one network whose facts go by type alone (guard-only):
    what ``Agenda`` does for that case, without routing - the same engine facts in the same order."""

    __slots__ = ("encode", "pool", "session", "types")

    def __init__(self, pools: Pools) -> None:
        self.pool = pools.shards[0]
        self.encode = pools.compiled.encode
        self.types = pools.solo_types
        self.session: ShardSession | None = None

    def assert_batch(self, facts: Iterable[tuple[int, str, dict[str, object]]]) -> None:
        """Assert facts between rounds (all of a round's answers at once, in order)."""
        encode, types = self.encode, self.types
        batch = [encode(seq, t, v) for seq, t, v in facts if t in types]
        if not batch:
            return
        session = self.session
        if session is None:
            self.session = ShardSession(self.pool, batch)
        else:
            session.add(batch, False)

    def assert_now(self, seq: int, type_name: str, values: dict[str, object]) -> None:
        """Assert one fact while an activation is being fired: its activations join the agenda at once."""
        if type_name in self.types:
            session = self.session
            assert session is not None  # an activation is firing
            session.add([self.encode(seq, type_name, values)], True)

    def first(self) -> str | None:
        """The next activation to fire (JSON), or None when there is none."""
        session = self.session
        if session is None:
            return None
        return session.peek() if session.head is _UNKNOWN else session.head

    def next(self) -> str | None:
        """Mark the current activation fired; the next one, or None."""
        session = self.session
        if session is None or not session.open_action:  # nothing being fired: the next one, if any
            return self.first()
        return session.complete()

    def stepper(self) -> Callable[[], str | None]:
        """What marks the activation being fired as done and gives the next one (``next``, without
        this agenda in between while its one session is open)."""
        session = self.session
        return self.next if session is None else session.complete

    def close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.close()
