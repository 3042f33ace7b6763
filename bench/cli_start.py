"""CPU time of a `baton` command at a terminal, nearly all of it start-up, beside the interpreter's own start.

Each command runs in a fresh process (the installed `baton` script, or `python -m adapters.doors.cli.main`
without one), --reps times; the child's user+system CPU seconds come from the kernel's accounting of
waited-for children, so other load on the machine does not count (wall time, printed beside, does).
With --tree DIR the commands are another source tree's (`python -m adapters.doors.cli.main` run in DIR, e.g. a
`git worktree` of an earlier commit), for a before-and-after on the same interpreter.
Commands: `python -c pass`, `baton --help`, `baton check` of a small ruleset (rulesets/claims-triage.yaml)
and of a 320-row decision table (tests/scale.py's rate table), `baton test` of the small ruleset.

Aim (issue 35): `baton --help` within 0.2 s of `python -c pass`, `baton check` of a small ruleset within 0.5 s.
Run: .venv/bin/python bench/cli_start.py [--reps 7] [--smoke]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.scale import ruleset_text, table_text  # noqa: E402

SMALL = "rulesets/claims-triage.yaml"


def baton(tree: Path | None) -> list[str]:
    script = Path(sys.executable).parent / "baton"
    return [str(script)] if script.exists() and tree is None else [sys.executable, "-m", "adapters.doors.cli.main"]


def table_ruleset(folder: Path, rows: int) -> Path:
    path = folder / f"table{rows}.yaml"
    path.write_text(ruleset_text(0, 0, name=f"table{rows}").replace("rules:\n", "") + table_text(rows),
                    encoding="utf-8")
    return path


def cpu_of(command: list[str], cwd: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one run of the command; a failing command stops the bench."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-1000:]}{done.stderr[-2000:]}")
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=7, help="runs of each command (the median is shown)")
    parser.add_argument("--smoke", action="store_true", help="one run each (the test suite's smoke run)")
    parser.add_argument("--tree", type=Path, help="run this source tree's CLI (python -m adapters.doors.cli.main)")
    args = parser.parse_args()
    reps = 1 if args.smoke else args.reps
    cwd = (args.tree or ROOT).resolve()
    cli = baton(args.tree)
    with tempfile.TemporaryDirectory() as tmp:
        table = table_ruleset(Path(tmp), 320)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "baton --help": [*cli, "--help"],
            "baton check claims-triage": [*cli, "check", SMALL],
            "baton check 320-row table": [*cli, "check", str(table)],
            "baton test claims-triage": [*cli, "test", SMALL],
        }
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(reps):  # interleaved, so a burst of load elsewhere spreads over every command
            for name, command in commands.items():
                runs[name].append(cpu_of(command, cwd))
    cpu = {name: statistics.median(c for c, _ in r) for name, r in runs.items()}
    wall = {name: statistics.median(w for _, w in r) for name, r in runs.items()}
    base = cpu["python -c pass"]
    print(f"{'command':<30} {'CPU s':>7} {'- python':>9} {'wall s':>7}   (median of {reps})")
    for name in commands:
        print(f"{name:<30} {cpu[name]:7.3f} {cpu[name] - base:9.3f} {wall[name]:7.3f}")
    help_over = cpu["baton --help"] - base
    check_cpu = cpu["baton check claims-triage"]
    print(f"aim: --help within 0.2 s of python: {help_over:.3f} s ({'met' if help_over <= 0.2 else 'missed'}); "
          f"check of a small ruleset within 0.5 s: {check_cpu:.3f} s ({'met' if check_cpu <= 0.5 else 'missed'})")


if __name__ == "__main__":
    main()
