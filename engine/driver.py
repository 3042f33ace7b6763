"""Sessions on the durable-rules C core (``durable_rules_engine``), without ``engine.Host``.

What this relies on (each pinned by a test in tests/engine/test_durable_rules.py):
- a ruleset name is registered once per process: heap corruption follows a second registration;
- every session has its start fact's action started before ``delete_state`` (which segfaults on a
  session in which no action ever started, even with facts matched);
- at most ``SESSIONS_PER_HANDLE`` live sessions per handle; more handles (``name@hash#k``) beyond;
- facts reaching the engine are unique (sequence numbers) and carry no user data (see compile.py);
- ``start_action_for_state`` / ``complete_and_start_action`` walk the agenda in priority, rule order
  and recency; a fact asserted while an action is open joins the agenda at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import durable_rules_engine as core
import orjson

from engine.compile import START_TYPE, CompiledRuleset
from engine.errors import EngineFailure, Overloaded

SESSIONS_PER_HANDLE = 1000
MAX_HANDLES = 16

_registry: dict[str, int] = {}
_registry_lock = threading.Lock()


def _register(name: str, definition: str) -> int:
    with _registry_lock:
        handle = _registry.get(name)
        if handle is None:
            handle = core.create_ruleset(name, definition)
            _registry[name] = handle
        return handle


class _Handle:
    __slots__ = ("handle", "live", "name")

    def __init__(self, name: str, handle: int) -> None:
        self.name, self.handle, self.live = name, handle, 0


class EnginePool:
    """All engine handles of one ruleset version in this process, and the sessions open on them."""

    def __init__(self, compiled: CompiledRuleset, max_handles: int = MAX_HANDLES) -> None:
        self.compiled = compiled
        self.base_name = f"{compiled.ruleset.name}@{compiled.ruleset.version}"
        self.max_handles = max_handles
        self.handles: list[_Handle] = []
        self.counter = 0
        self.lock = threading.Lock()

    @property
    def live_sessions(self) -> int:
        return sum(h.live for h in self.handles)

    def _acquire(self) -> _Handle:
        with self.lock:
            for h in self.handles:
                if h.live < SESSIONS_PER_HANDLE:
                    h.live += 1
                    return h
            if len(self.handles) >= self.max_handles:
                raise Overloaded("overloaded", f"more than {self.max_handles * SESSIONS_PER_HANDLE} decisions in "
                                 f"flight on {self.compiled.ruleset.ref}", hint="retry with backoff")
            k = len(self.handles)
            name = self.base_name if k == 0 else f"{self.base_name}#{k}"
            h = _Handle(name, _register(name, self.compiled.engine_json))
            h.live = 1
            self.handles.append(h)
            return h

    def open(self, initial: Iterable[tuple[int, str, dict[str, object]]]) -> Session:
        """A session with the start fact and ``initial`` facts (seq, type, values) asserted."""
        h = self._acquire()
        with self.lock:
            self.counter += 1
            sid = f"s{self.counter}"
        try:
            return Session(self, h, sid, initial)
        except BaseException:
            with self.lock:
                h.live -= 1
            raise


_pools: dict[str, EnginePool] = {}


def pool_for(compiled: CompiledRuleset) -> EnginePool:
    """The one pool of this ruleset version in this process (versions are registered once, by hash)."""
    key = f"{compiled.ruleset.name}@{compiled.ruleset.version}"
    with _registry_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = EnginePool(compiled)
        return pool


class Session:
    """One decision's working memory in the engine. Always ``close()`` it (the loop does, in finally)."""

    __slots__ = ("closed", "encode", "h", "open_action", "pool", "sid", "started", "state")

    def __init__(self, pool: EnginePool, h: _Handle, sid: str,
                 initial: Iterable[tuple[int, str, dict[str, object]]]) -> None:
        self.pool, self.h, self.sid = pool, h, sid
        self.encode = pool.compiled.encode
        self.open_action = False
        self.started = False  # delete_state segfaults on a session in which no action ever started
        self.closed = True  # until the start fact is handled there is nothing to delete
        # The start fact is always handled (its rule fires first, at pri 0, and does nothing), so the
        # session always exists for delete_state. Code 1 means some *other* fact matched no pattern.
        batch = [{"sid": sid, "bt": START_TYPE, "bn": 0}]
        batch.extend(self.encode(sid, seq, t, v) for seq, t, v in initial)
        try:
            code, state = core.assert_facts(h.handle, orjson.dumps(batch).decode())
        except core.error as e:
            raise EngineFailure("engine_error", f"durable-rules refused the facts: {e}") from None
        if code not in (0, 1):
            raise EngineFailure("engine_error", f"durable-rules returned code {code} for a new session")
        self.state = state
        self.closed = False

    def assert_batch(self, facts: Iterable[tuple[int, str, dict[str, object]]]) -> None:
        batch = [self.encode(self.sid, seq, t, v) for seq, t, v in facts]
        if not batch:
            return
        try:
            code, _ = core.assert_facts(self.h.handle, orjson.dumps(batch).decode())
        except core.error as e:
            raise EngineFailure("engine_error", f"durable-rules refused facts: {e}") from None
        if code not in (0, 1):  # 1: no rule matches any of them, which is normal
            raise EngineFailure("engine_error", f"durable-rules returned code {code} asserting facts")

    def assert_now(self, seq: int, type_name: str, values: dict[str, object]) -> None:
        """Assert one fact while an action is open: its activations join the current agenda."""
        try:
            fact = orjson.dumps(self.encode(self.sid, seq, type_name, values)).decode()
            code, _ = core.assert_fact(self.h.handle, fact)
        except core.error as e:
            raise EngineFailure("engine_error", f"durable-rules refused a fact: {e}") from None
        if code not in (0, 1):
            raise EngineFailure("engine_error", f"durable-rules returned code {code} asserting a fact")

    def first(self) -> str | None:
        """The first pending activation (JSON), opening an action; None when the agenda is empty."""
        try:
            result = core.start_action_for_state(self.h.handle, self.state)
        except core.error as e:
            raise EngineFailure("engine_error", f"durable-rules failed to start an action: {e}") from None
        self.started = True
        if not result:
            return None
        self.open_action = True
        return str(result[1])

    def next(self) -> str | None:
        """Complete the open action and return the next activation, or None (agenda empty)."""
        try:
            message = core.complete_and_start_action(self.h.handle, self.state)
        except core.error as e:
            self.open_action = False
            raise EngineFailure("engine_error", f"durable-rules failed to complete an action: {e}") from None
        if message is None:
            self.open_action = False
            return None
        return str(message)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if not self.started:
                self.first()  # the start fact's activation is always there to start
            if self.open_action:
                core.abandon_action(self.h.handle, self.state)
            core.delete_state(self.h.handle, self.sid)
        finally:
            with self.pool.lock:
                self.h.live -= 1
