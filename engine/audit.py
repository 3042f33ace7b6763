"""Canonical records and the hash chain: each stored decision's hash covers its record and the hash of
the decision before it, so editing, inserting or deleting any stored record breaks the chain."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

GENESIS = "0" * 64


def canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def chain_hash(prev_hash: str, seq: int, record: Mapping[str, object]) -> str:
    body = canonical({"prev": prev_hash, "seq": seq, "record": record})
    return hashlib.sha256(body.encode("utf-8")).hexdigest()
