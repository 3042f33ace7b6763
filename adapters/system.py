"""The real Clock and IdFactory (the engine gets these through its ports)."""

from __future__ import annotations

import base64
import random
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
    """ULID-like ids: 48-bit milliseconds then 80 random bits, in Crockford base32 (sortable by time).

    The random part comes from the ``random`` module (seeded from the OS, re-seeded in a forked child):
    ids must be unique, not secret, and an ``os.urandom`` call per decision showed in the server's profile."""

    ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    _FROM_RFC4648 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ALPHABET)

    def new_id(self) -> str:
        return self.encode((int(time.time() * 1000) << 80) | random.getrandbits(80))

    @classmethod
    def encode(cls, value: int) -> str:
        """128 bits as 26 base32 digits, most significant first (the first digit holds the top 3 bits)."""
        # shifted so that the 26 digits' 130 bits line up with the start of 17 bytes' RFC 4648 encoding
        return base64.b32encode((value << 6).to_bytes(17, "big"))[:26].decode("ascii").translate(cls._FROM_RFC4648)
