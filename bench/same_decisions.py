"""Do two revisions decide alike? Every example ruleset's tests and generated decisions (tests/scale.py: a
guard-only ruleset of 20 rules and an indexed one of 300 rules with a table), run through an earlier
revision (a temporary git worktree) and through this tree; each decision record compared as bytes
(orjson, sorted keys) without its volatile fields (id, times, latencies). For speed work on the loop:
faster must not mean different. Exits 1 at the first difference, naming it.

    .venv/bin/python bench/same_decisions.py REV [--generated 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VOLATILE = {"decision_id", "latency_ms", "started_at", "finished_at"}


def clean(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if k not in VOLATILE}
    out["trace"] = [{k: v for k, v in e.items() if k != "latency_ms"} for e in record["trace"]]
    return out


async def dump(tree: Path, generated: int) -> list[bytes]:
    """Every decision of ``tree``'s code, one orjson line each (imports from ``tree``: run in a child)."""
    sys.path.insert(0, str(tree))
    import orjson

    from adapters.infra.rulesets import load_file
    from engine.clock import FixedClock, SequentialIds
    from engine.language.loader import load_ruleset
    from engine.loop import Engine, Limits
    from engine.recorded import RecordedAnswers
    from engine.testing import run_suite
    from tests import scale

    lines = []
    for path in sorted((tree / "rulesets").glob("*.yaml")):
        suite = await run_suite(load_file(path))
        for r in suite.results:
            record = clean(dict(r.record.to_dict())) if r.record else None
            lines.append(orjson.dumps([path.name, r.name, r.failures, record], option=orjson.OPT_SORT_KEYS))
    for n, rows in ((20, 0), (300, 12)):
        engine = Engine(load_ruleset(scale.ruleset_text(n, rows=rows), f"scale{n}.yaml"))
        for k, given in enumerate(scale.inputs(n, generated)):
            answers = RecordedAnswers({})
            d = await engine.decide(given, answers, answers, FixedClock(1.7e9), SequentialIds("x-"), Limits())
            lines.append(orjson.dumps([f"scale{n}", k, clean(dict(d.to_dict()))], option=orjson.OPT_SORT_KEYS))
    return lines


def side(tree: Path, generated: int, out: Path) -> None:
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--dump", str(tree), "--generated",
                           str(generated), "--out", str(out)], cwd=tree, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"{tree}: exit status {done.returncode}\n{done.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rev", nargs="?", help="the earlier revision (a commit, tag or branch)")
    parser.add_argument("--generated", type=int, default=1000, help="generated decisions per scale ruleset")
    parser.add_argument("--dump", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dump:
        Path(args.out).write_bytes(b"\n".join(asyncio.run(dump(Path(args.dump), args.generated))) + b"\n")
        return
    if not args.rev:
        parser.error("name the earlier revision")

    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--verify", f"{args.rev}^{{commit}}")
    except subprocess.CalledProcessError:
        parser.error(f"{args.rev!r} names no commit in this repository")
    with tempfile.TemporaryDirectory(prefix="baton-same-") as tmp:
        before = Path(tmp) / "before"
        git("worktree", "add", "--detach", str(before), commit)
        try:
            side(before, args.generated, Path(tmp) / "before.jsonl")
            side(ROOT, args.generated, Path(tmp) / "after.jsonl")
        finally:
            git("worktree", "remove", "--force", str(before))
        old = (Path(tmp) / "before.jsonl").read_bytes().splitlines()
        new = (Path(tmp) / "after.jsonl").read_bytes().splitlines()
    for i, (a, b) in enumerate(zip(old, new, strict=False)):
        if a != b:
            print(f"decision {i + 1} differs:\n  {args.rev[:12]}: {a[:600].decode()}\n  this tree: {b[:600].decode()}")
            sys.exit(1)
    if len(old) != len(new):
        print(f"{args.rev[:12]} made {len(old)} decisions, this tree {len(new)}")
        sys.exit(1)
    print(f"{len(new)} decisions identical to {args.rev[:12]} (records without ids, times and latencies)")


if __name__ == "__main__":
    main()
