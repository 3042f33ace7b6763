"""Before and after, interleaved: run one bench script from an earlier revision's tree and from this one,
alternately, in the same minutes and with the same interpreter - on a machine whose speed moves by a fifth
from one minute to the next, the only comparison that means anything (#20 asked for it).

    .venv/bin/python bench/ab.py REV [--rounds 3] -- SCRIPT [ARGS...]
    e.g. .venv/bin/python bench/ab.py dc48018 -- grpc_load.py --duration 15

REV is checked out in a temporary git worktree (removed at the end); each round runs SCRIPT there, then
here, and prints both outputs under a header naming the side, the round and the time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def run_side(tree: Path, script: str, args: list[str]) -> tuple[int, str]:
    done = subprocess.run([sys.executable, str(tree / "bench" / script), *args], cwd=tree, capture_output=True,
                          text=True, check=False)
    return done.returncode, done.stdout + (done.stderr[-2000:] if done.returncode else "")


def main() -> None:
    parser = argparse.ArgumentParser(usage="ab.py REV [--rounds N] -- SCRIPT [ARGS...]")
    parser.add_argument("rev", help="the earlier revision (a commit, tag or branch)")
    parser.add_argument("--rounds", type=int, default=3)
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    command = argv[cut + 1:]
    if not command:
        parser.error("name the bench script to run, after --")
    script, script_args = command[0], command[1:]
    if not (ROOT / "bench" / script).is_file():
        parser.error(f"no bench/{script} here")
    try:
        commit = git("rev-parse", "--verify", f"{args.rev}^{{commit}}")
    except subprocess.CalledProcessError:
        parser.error(f"{args.rev!r} names no commit in this repository")
    with tempfile.TemporaryDirectory(prefix="baton-ab-") as tmp:
        before = Path(tmp) / "before"
        git("worktree", "add", "--detach", str(before), commit)
        try:
            if not (before / "bench" / script).is_file():
                sys.exit(f"bench/{script} does not exist at {args.rev}")
            failed = False
            for n in range(1, args.rounds + 1):
                for side, tree in (("before", before), ("after", ROOT)):
                    label = args.rev[:12] if side == "before" else "this tree"
                    print(f"=== {side} ({label}), round {n}, {time.strftime('%H:%M:%S')}", flush=True)
                    code, output = run_side(tree, script, script_args)
                    print(output.rstrip(), flush=True)
                    if code:
                        print(f"(exit status {code})", flush=True)
                        failed = True
        finally:
            git("worktree", "remove", "--force", str(before))
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
