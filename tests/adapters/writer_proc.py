"""A writer process for the crash and concurrency tests: decides and stores claims-triage decisions
through group commit, printing each decision id once its write is acknowledged."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from adapters.infra.rulesets import load_file  # noqa: E402
from adapters.infra.store.sql import SqlStore  # noqa: E402
from adapters.infra.store.writer import GroupWriter  # noqa: E402
from adapters.infra.system import SystemClock, TimeOrderedIds  # noqa: E402
from engine.loop import Engine  # noqa: E402
from engine.recorded import RecordedAnswers  # noqa: E402


async def main(url: str, count: int, concurrency: int) -> None:
    rs = load_file(ROOT / "rulesets/claims-triage.yaml")
    store = SqlStore(url)
    store.save_ruleset(rs)
    writer = GroupWriter(store)
    engine = Engine(rs)
    clock, ids = SystemClock(), TimeOrderedIds()
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            test = rs.tests[i % len(rs.tests)]
            answers = RecordedAnswers(test.answers)
            d = await engine.decide(test.given, answers, answers, clock, ids)
            saved = await writer.save(d.to_dict())
            print(saved.decision_id, flush=True)

    await asyncio.gather(*(one(i) for i in range(count)))
    writer.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
