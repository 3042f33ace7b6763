"""Every benchmark script runs, in a small configuration, so none can rot unnoticed (bench/store.py had)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RUNS = {
    "engine_speed.py": (["--n", "300"], "Baton / raw"),
    "loop_phases.py": (["--n", "100", "--rounds", "1"], "setup + glue"),
    "engine_in_server.py": (["--n", "64", "--rounds", "1"], "in groups of 16"),
    "same_decisions.py": (["HEAD", "--generated", "20"], "decisions identical to"),  # exits 1 on a difference
    "store.py": (["--n", "60", "--backlog", "500"], "the SQLite store's CPU spends storing one"),  # the last line
    "rules_scale.py": (["--smoke"], "table rows N=100"),
    "memory.py": (["--rounds", "1", "--mib", "1"], "statuses: ['INVALID_ARGUMENT']"),
    "soak.py": (["--smoke"], "errors: none"),
    "models.py": (["--n", "20", "--delay-ms", "5", "--rounds", "1"], ""),
    "retrieval.py": (["--docs", "20", "--queries", "10"], ""),
    "console.py": (["--decisions", "200"], ""),
    "intake.py": (["--n", "40", "--inflight", "8"], ""),
    "grpc_load.py": (["--duration", "2", "--inflight", "8", "--no-floor"], ""),
    # exits 1 if the store does not hold every decision the load saw answered
    "grpc_batch.py": (["--duration", "1", "--inflight", "8", "--batch", "10", "--no-floor"], "batches / unary"),
    "grpc_parts.py": (["--duration", "1", "--inflight", "8", "--workers", "1", "--no-floor"], "+ start gate (Baton)"),
    "aggregates.py": (["--smoke"], "aggregates: ok"),
    "backtest.py": (["--n", "300"], "worker processes"),  # exits non-zero if the processes' results differ from one's
    "cli_start.py": (["--smoke"], "aim: --help within 0.2 s of python"),
    # this tree against itself: a worktree of HEAD made, each side run, the worktree removed
    "ab.py": (["HEAD", "--rounds", "1", "--", "engine_speed.py", "--n", "50"], "=== after (this tree), round 1"),
}


def test_every_bench_script_is_covered() -> None:
    scripts = {p.name for p in (ROOT / "bench").glob("*.py")} - {"empty_grpc.py"}  # run by grpc_load.py
    assert scripts == set(RUNS)


@pytest.mark.parametrize("script", sorted(RUNS))
@pytest.mark.slow
def test_bench_script_runs(script: str) -> None:
    if script in ("grpc_load.py", "grpc_parts.py", "grpc_batch.py") and shutil.which("h2load") is None:
        pytest.skip("h2load (nghttp2-client) is not installed")
    args, expect = RUNS[script]
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    assert expect in done.stdout, done.stdout[-2000:]
