"""The real Clock and IdFactory (the engine gets these through its ports)."""

from __future__ import annotations

import asyncio
import ctypes
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any


def utc_text(ts: float | None) -> str:
    """A timestamp as operators read it: ``2026-11-24 22:18:31`` (UTC), or ``-`` for none."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


class LoopLag:
    """How late this process's event loop runs what is queued on it: a callback due every ``every`` seconds
    notes how late it ran. A request that reaches a handler has waited in the loop's queue about as long (the
    time before a handler runs is otherwise invisible: the gRPC library does not say when a call arrived), so
    doors subtract ``current()`` from the moment their handler starts.

    A stall (the loop late by ``stall`` seconds or more: one long decision holding it) is charged for ``hold``
    seconds after it ends, not only until the next tick: what queued behind it reaches its handler only as
    the loop works through the backlog, each call passing through gRPC's poller thread, which competes for
    the interpreter with the store writer and the other calls - on a busy machine often more than one tick
    later, when the loop is on time again and the wait would be lost. A request that arrived just after
    the stall is charged it too: the server cannot tell the two apart."""

    def __init__(self, every: float = 0.01, observe: Callable[[float], None] | None = None,
                 hold: float = 0.25, stall: float = 0.1) -> None:
        self.every, self.observe, self.hold, self.stall = every, observe, hold, stall
        self.due = 0.0  # monotonic time the next tick is due; 0: not running
        self.last = 0.0
        self.peak, self.peak_at = 0.0, 0.0  # the largest lateness of the ticks of the last `hold` seconds
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.due = time.monotonic() + self.every
        self._handle = asyncio.get_running_loop().call_later(self.every, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self.due = 0.0

    def _tick(self) -> None:
        now = time.monotonic()
        self.last = max(0.0, now - self.due)
        if self.last >= self.peak or now - self.peak_at > self.hold:
            self.peak, self.peak_at = self.last, now
        if self.observe is not None:
            self.observe(self.last)
        self.due = now + self.every
        self._handle = asyncio.get_running_loop().call_later(self.every, self._tick)

    def current(self) -> float:
        """Seconds: the last tick's lateness - or a stall's, if one ended in the last ``hold`` seconds - or,
        when the loop is running late now (a tick overdue), how overdue that tick is. Under steady load (no
        stall) this is the last tick's lateness, as it always was."""
        if not self.due:
            return 0.0
        now = time.monotonic()
        held = self.peak if self.peak >= self.stall and now - self.peak_at <= self.hold else self.last
        return max(held, now - self.due)


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


_CROCKFORD = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_CHUNK = 4096  # random bytes read per getrandom() call: one call per ~400 ids, not one per id


class TimeOrderedIds:
    """ULID-like ids: 48-bit milliseconds then 80 random bits, in Crockford base32 (sortable by time).

    The random bits come from the OS (``os.urandom``) in chunks: one system call per id was a tenth of a
    decision's CPU on a virtual machine. The chunk is per process (dropped in a forked child) and taken
    under a lock, so no two ids share random bits."""

    ALPHABET = _CROCKFORD.decode()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._random = b""
        self._at = 0
        self._stamp: tuple[int, str] = (-1, "")
        _ID_FACTORIES.add(self)  # a forked child drops the bytes in hand (_after_fork)

    def _after_fork(self) -> None:
        """In a forked child: never repeat the parent's random bytes; and a lock another thread of the parent
        held at the fork is held by no thread here."""
        self._lock = threading.Lock()
        self._random, self._at = b"", 0

    def _random_bits(self) -> int:
        with self._lock:
            if self._at + 10 > len(self._random):
                self._random, self._at = os.urandom(_RANDOM_CHUNK), 0
            at = self._at
            self._at = at + 10
            return int.from_bytes(self._random[at:at + 10], "big")

    def new_id(self) -> str:
        """``encode_id`` of now and fresh random bits; the first ten characters encode the time alone (the
        two leading zero bits and the 48 bits of milliseconds), so they are worked out once a millisecond."""
        millis = int(time.time() * 1000)
        stamp = self._stamp  # (millis, its characters), read and replaced as one object: threads share it
        if stamp[0] != millis:
            stamp = self._stamp = (millis, encode_id(millis, 0)[:10])
        bits = self._random_bits()
        return stamp[1] + "".join([_PAIRS[(bits >> shift) & 1023] for shift in _RANDOM_SHIFTS])


_ID_FACTORIES: weakref.WeakSet[TimeOrderedIds] = weakref.WeakSet()


def _forget_random_bytes() -> None:
    for ids in list(_ID_FACTORIES):
        ids._after_fork()


os.register_at_fork(after_in_child=_forget_random_bytes)


def encode_id(millis: int, random_bits: int) -> str:
    """The 26-character id of a 48-bit millisecond time and 80 random bits: their 130-bit number (two leading
    zero bits) in Crockford base32, most significant first, ten bits (two characters) per table lookup -
    faster than base64's encoder (pure Python on 3.11) with its alphabet swapped."""
    value = ((millis & (2**48 - 1)) << 80) | (random_bits & (2**80 - 1))
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


_PAIRS = [a + b for a in _CROCKFORD.decode() for b in _CROCKFORD.decode()]  # 10 bits -> 2 characters, in order
_SHIFTS = tuple(range(120, -1, -10))
_RANDOM_SHIFTS = tuple(range(70, -1, -10))  # the last 16 characters: the 80 random bits alone


def run_loop(kind: str, main: Coroutine[Any, Any, None]) -> None:
    """Run a process's main coroutine on the event loop named by ``event_loop:``: uvloop (libuv), which spends
    less event-loop CPU per decision than asyncio's own loop (bench/grpc_load.py; docs/deploy.md has the
    figures), or asyncio's (``asyncio``). bench/empty_grpc.py's floor uses it too."""
    if kind == "uvloop":
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)


def name_thread(name: str) -> None:
    """Give the calling thread an OS-level name (Linux: at most 15 bytes), shown by `top -H`, `ps -L` and
    /proc/PID/task/TID/comm - Python's own thread names stay inside Python. Elsewhere, nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # 15: PR_SET_NAME
    except (OSError, AttributeError):
        pass


def tune_allocator() -> bool:
    """Make glibc give large freed buffers back to the system (Linux; elsewhere nothing).

    A rejected 5 MiB request leaves its buffers in malloc's per-thread arenas: by default glibc raises its
    mmap threshold to the largest block freed so far, so later large blocks come from arenas that are
    never returned, and a worker's memory only grows, never back (bench/memory.py). Fixed thresholds
    (blocks of 1 MiB and more are mapped and unmapped, the heap is trimmed past 4 MiB free) and two arenas
    keep it bounded. The fixed trim threshold also keeps glibc from returning, and then faulting back in,
    the memory each durable-rules session allocates: with default settings a session on a small network
    cost several times more (bench/rules_scale.py)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
        return bool(libc.mallopt(m_mmap_threshold, 1 << 20) and libc.mallopt(m_trim_threshold, 4 << 20)
                    and libc.mallopt(m_arena_max, 2))
    except (OSError, AttributeError):
        return False


_MALLOC_TOTAL = re.compile(r'<(total|system) type="(fast|rest|mmap|current)"(?: count="\d+")? size="(\d+)"/>')


def heap_stats() -> tuple[int, int] | None:
    """glibc's heap over all its arenas: bytes in use by the program (blocks handed out, mapped blocks
    included) and bytes free inside the arenas, kept by malloc instead of given back. From ``malloc_info``
    (``mallinfo2`` sees the main arena only, and workers have two). A worker whose RSS grows while "in use"
    stays flat is fragmenting, not leaking; ``trim_heap`` gives free pages back. None without glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        open_memstream, malloc_info, fclose, free = libc.open_memstream, libc.malloc_info, libc.fclose, libc.free
    except (OSError, AttributeError):
        return None
    open_memstream.restype = ctypes.c_void_p
    open_memstream.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_size_t)]
    malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    fclose.argtypes = [ctypes.c_void_p]
    free.argtypes = [ctypes.c_void_p]
    buffer, size = ctypes.c_char_p(), ctypes.c_size_t()
    stream = open_memstream(ctypes.byref(buffer), ctypes.byref(size))
    if not stream:
        return None
    try:
        malloc_info(0, stream)
    finally:
        fclose(stream)
    try:
        text = ctypes.string_at(buffer, size.value).decode("ascii", "replace")
    finally:
        free(buffer)
    totals = {kind: int(n) for _, kind, n in _MALLOC_TOTAL.findall(text.rpartition("</heap>")[2])}
    if "current" not in totals:
        return None
    free_bytes = totals.get("fast", 0) + totals.get("rest", 0)
    return totals["current"] - free_bytes + totals.get("mmap", 0), free_bytes


def trim_heap() -> bool:
    """Give the free pages inside every malloc arena back to the system (glibc ``malloc_trim(0)``); the
    memory stays mapped and is faulted back in when used again. True when something was returned."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):
        return False
