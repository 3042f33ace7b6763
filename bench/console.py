"""Console server times: a decision with 200 fired rules and 20 model calls, and the decisions list over
100,000 stored decisions (first page, a deep keyset page, filtered by ruleset, outcome, and fact text).

    .venv/bin/python bench/console.py [--decisions 100000] [--db URL]

Pages are rendered in-process through Starlette's test client (server time: routing, queries, template).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from starlette.testclient import TestClient  # noqa: E402

from adapters.doors.console.app import Console, create_app  # noqa: E402
from adapters.doors.console.security import Sessions  # noqa: E402
from adapters.doors.grpc.auth import Auth, Identity  # noqa: E402
from adapters.infra.rulesets import load_file  # noqa: E402
from adapters.infra.store.sql import Pending, SqlStore  # noqa: E402
from adapters.infra.system import SystemClock, TimeOrderedIds  # noqa: E402
from adapters.usecases.registry import RulesetRegistry  # noqa: E402
from engine.language.loader import load_ruleset  # noqa: E402
from engine.loop import Engine  # noqa: E402
from engine.record import DecisionRecord  # noqa: E402
from engine.recorded import RecordedAnswers  # noqa: E402


def big_ruleset() -> str:
    models = "\n".join(f"""  ask{i}:
    group: fast
    produces: opinion
    prompt: "Opinion {i} on {{{{ claim.ref }}}}: is this claim ordinary?"
""" for i in range(20))
    rules = "\n".join(f"""  - name: check-{i}
    when: claim.amount > {i}
    then: {{assert: {{flag: {{n: {i}}}}}}}""" for i in range(180))
    asks = "\n".join(f"""  - name: ask-{i}
    when: exists claim
    then: ask{i}""" for i in range(20))
    return f"""ruleset: big
facts:
  claim: {{ref: str, amount: number}}
  flag: {{n: int}}
  opinion: {{ordinary: bool, note: str}}
models:
{models}
rules:
{rules}
{asks}
  - name: decide
    when: exists opinion
    then: {{decide: {{route: done}}}}
"""


def timed(client: TestClient, url: str, n: int = 20) -> tuple[float, float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.get(url)
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, (url, r.status_code, r.text[:300])
    return statistics.median(times), max(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--decisions", type=int, default=100_000)
    ap.add_argument("--db", default="")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    store = SqlStore(args.db or str(tmp / "console.db"))
    registry = RulesetRegistry(store)
    triage = load_file(ROOT / "rulesets/claims-triage.yaml")
    big = load_ruleset(big_ruleset(), "big.yaml")
    for rs in (triage, big):
        registry.publish_reviewed(rs, "bench")
    clock, ids = SystemClock(), TimeOrderedIds()

    engine = Engine(big)
    answers = RecordedAnswers({f"ask{i}": {"ordinary": True, "note": f"opinion {i} " * 20} for i in range(20)})
    record: DecisionRecord = asyncio.run(engine.decide({"claim": {"ref": "C-BIG", "amount": 1000}}, answers,
                                                       answers, clock, ids)).to_dict()
    store.save(record)
    fired, calls = len(record["fired"]), sum(1 for e in record["trace"] if e["kind"] == "call")

    triage_engine = Engine(triage)
    test = triage.tests[0]
    started = time.perf_counter()
    batch: list[Pending] = []
    for i in range(args.decisions):
        recorded = RecordedAnswers(test.answers)
        given = {"claim": {**test.given["claim"], "claim_ref": f"C-{i:06d}"}}  # type: ignore[index]
        d = asyncio.run(triage_engine.decide(given, recorded, recorded, clock, ids)).to_dict()
        batch.append(Pending(d, "bench"))
        if len(batch) == 2000:
            store.save_batch(batch)
            batch = []
    if batch:
        store.save_batch(batch)
    fill = time.perf_counter() - started

    tokens = {"bench-auditor-token": Identity("bench", frozenset({"auditor"}))}
    sessions = Sessions(Auth(tokens))
    client = TestClient(create_app(Console(store, registry, sessions)))
    page = client.get("/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert nonce is not None
    client.post("/login", data={"nonce": nonce.group(1), "token": "bench-auditor-token"})
    print(f"stored {store.count():,} decisions ({fill:.0f} s to fill), {store.url}")
    med, worst = timed(client, f"/decisions/{record['decision_id']}")
    print(f"  decision page, {fired} fired rules, {calls} model calls: median {med:6.1f} ms, max {worst:6.1f} ms")
    first = client.get("/decisions")
    nxt = re.search(r'href="(/decisions\?[^"]*before=[^"]+)"', first.text)
    assert nxt is not None
    deep = nxt.group(1).replace("&amp;", "&")
    for label, url in (("decisions list, first page", "/decisions"),
                       ("decisions list, next page (keyset)", deep),
                       ("filtered by ruleset + outcome", "/decisions?ruleset=claims-triage&outcome=decided"),
                       ("fact text, a recent match", f"/decisions?text=C-{args.decisions - 10:06d}"),
                       ("fact text, an old match", "/decisions?text=C-000005")):
        med, worst = timed(client, url, 10)
        print(f"  {label:38s} median {med:7.1f} ms, max {worst:7.1f} ms")


if __name__ == "__main__":
    main()
