"""Write a decision store with whichever Baton is on the path (run from an earlier checkout), so the suite
can open it with every later version - migrate it, read it, verify its chain, replay it, and chain new
decisions after it: ``PYTHONPATH=<old checkout> python tests/histories/record_store.py OUT.db HISTORY.jsonl``.

The decisions are those of a recorded history (record.py): every example ruleset's tests, with their
documents, escalations and effects, stored as that Baton stored them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import cast

from adapters.infra.documents import Incoming
from adapters.infra.store.sql import Pending, SqlStore
from engine.documents import Document
from engine.language.loader import load_ruleset
from engine.record import DecisionRecord


def main(out: Path, history: Path) -> None:
    store = SqlStore(f"sqlite:///{out}")
    pending: list[Pending] = []
    for line in history.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if "source" in entry:
            store.save_ruleset(load_ruleset(entry["source"], entry["file"]))
            continue
        # ids restart with each ruleset in the history: made unique, as a service's are
        record = cast(DecisionRecord, {**entry["record"],
                                       "decision_id": f"{len(pending) + 1:03d}-{entry['record']['decision_id']}"})
        incoming = []
        for ref, doc in zip(record.get("documents") or (), entry["documents"], strict=True):
            text = "\f".join(doc["pages"])
            incoming.append(Incoming(Document(ref["id"], doc["name"], doc["media_type"], tuple(doc["pages"])),
                                     text.encode("utf-8")))
        pending.append(Pending(record, "recorder", None, documents=incoming))
    for start in range(0, len(pending), 16):  # several group-commit batches
        store.save_batch(pending[start:start + 16])
    store.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
