"""The real Clock and IdFactory (the engine gets these through its ports)."""

from __future__ import annotations

import ctypes
import os
import sys
import time
from datetime import UTC, datetime


def utc_text(ts: float | None) -> str:
    """A timestamp as operators read it: ``2026-11-24 22:18:31`` (UTC), or ``-`` for none."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class TimeOrderedIds:
    """ULID-like ids: 48-bit milliseconds then 80 random bits, in Crockford base32 (sortable by time)."""

    ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

    def new_id(self) -> str:
        value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
        chars = []
        for _ in range(26):
            chars.append(self.ALPHABET[value & 31])
            value >>= 5
        return "".join(reversed(chars))


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
    never returned, and a worker's memory only grows (measured: 108 -> 586 MB over 240 such requests,
    never back). Fixed thresholds (blocks of 1 MiB and more are mapped and unmapped, the heap is trimmed
    past 4 MiB free) and two arenas keep it bounded (the same load: 200-430 MB, back to ~200 between).
    The fixed trim threshold also keeps glibc from returning, and then faulting back in, the ~100 KB each
    durable-rules session allocates: with default settings a session on a network of 8-20 rules cost
    45-85 us instead of 7-9 us (bench/rules_scale.py, 100 rules: 148 -> 58 us per decision)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
        return bool(libc.mallopt(m_mmap_threshold, 1 << 20) and libc.mallopt(m_trim_threshold, 4 << 20)
                    and libc.mallopt(m_arena_max, 2))
    except (OSError, AttributeError):
        return False
