"""Indexing and retrieval on a 1,000-document corpus, on SQLite and PostgreSQL.

Runs `baton index` itself (with its progress bar) on generated policy documents, then times the
`retrieve` connector's search for a set of claim descriptions. Run:
  .venv/bin/python bench/retrieval.py [--docs 1000] [--queries 300]
                                      [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.infra.retrieval import search  # noqa: E402
from adapters.infra.store.sql import SqlStore  # noqa: E402

PERILS = ["theft", "fire", "smoke", "escape of water", "storm", "flood", "subsidence", "accidental damage",
          "malicious damage", "impact", "frozen pipes", "lightning", "riot", "earthquake", "falling trees"]
ITEMS = ["bicycles", "jewellery", "laptops", "mobile phones", "carpets", "furniture", "garden tools", "freezer food",
         "musical instruments", "artwork", "watches", "cameras", "clothing", "documents", "cash"]
PLACES = ["the home", "a locked shed", "a garage", "an outbuilding", "a vehicle", "a hotel room", "the garden",
          "a storage unit", "a boat", "a caravan"]
QUERIES = ["my bicycle was stolen from the locked shed", "water leaked from the washing machine onto the carpet",
           "a storm blew a tree onto the conservatory", "the laptop screen cracked when it fell",
           "jewellery taken during a burglary", "smoke damage from a kitchen fire", "frozen pipes burst in winter",
           "flood water in the ground floor", "malicious damage to cameras in a vehicle",
           "lightning struck and damaged the television"]


def make_corpus(folder: Path, n: int) -> None:
    rng = random.Random(7)
    for i in range(n):
        peril, item, place = rng.choice(PERILS), rng.choice(ITEMS), rng.choice(PLACES)
        limit = rng.choice([500, 1000, 2000, 2500, 5000, 10000])
        sections = []
        for k in range(1, rng.randint(3, 6)):
            p2, i2 = rng.choice(PERILS), rng.choice(ITEMS)
            sections.append(
                f"## {k}. {p2.title()} of {i2}\n"
                f"We cover loss or damage to {i2} caused by {p2} while in {rng.choice(PLACES)}, up to {limit} GBP. "
                f"We do not cover {p2} where the loss happened gradually, or {i2} left unattended in the open. "
                f"Claims for {i2} over {limit // 2} GBP need receipts or a valuation.\n")
        (folder / f"policy-{i:04d}.md").write_text(
            f"# Policy wording {i}: {peril} cover for {item} in {place}\n\n" + "\n".join(sections))


def run(url: str, label: str, docs: int, queries: int, folder: Path) -> None:
    corpus = f"bench-{uuid.uuid4().hex[:6]}"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "adapters.doors.cli.main", "index", str(folder), "--corpus", corpus,
                    "--db", url], cwd=ROOT, check=True)
    indexing = time.perf_counter() - started
    store = SqlStore(url)
    latencies = []
    for q in range(queries):
        t = time.perf_counter()
        found = search(store, corpus, QUERIES[q % len(QUERIES)], 5)
        latencies.append((time.perf_counter() - t) * 1000)
        assert found, QUERIES[q % len(QUERIES)]
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"{label:10s} index {docs} documents: {indexing:6.2f} s ({docs / indexing:6.0f} docs/s)   "
          f"retrieve top-5: p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  ({queries} queries)")
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "corpus"
        folder.mkdir()
        make_corpus(folder, args.docs)
        run(str(Path(tmp) / "bench.db"), "SQLite", args.docs, args.queries, folder)
        if args.pg:
            try:
                run(args.pg, "PostgreSQL", args.docs, args.queries, folder)
            except Exception as e:  # no PostgreSQL here: SQLite's numbers stand alone
                print(f"PostgreSQL skipped: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
