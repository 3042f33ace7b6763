"""The process-level helpers a worker keeps its memory in bounds with (adapters/infra/system.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from adapters.infra.system import LoopLag
from tests.e2e.server import ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")


def test_heap_stats_see_freed_memory_and_trim_gives_its_pages_back() -> None:
    """In a fresh interpreter: 200 MB in 4-6 KB blocks (inside malloc's arenas, below the mmap threshold),
    most of it freed. The allocator keeps the freed pages (RSS stays up, "free" is high, "in use" fell);
    trim_heap gives them back (RSS falls) without touching what is still in use."""
    code = textwrap.dedent("""
        import json
        from adapters.infra.system import heap_stats, trim_heap, tune_allocator

        def rss():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) * 1024

        tune_allocator()
        blocks = [bytearray(4096 + i % 2048) for i in range(40_000)]
        in_use_full = heap_stats()[0]
        kept = blocks[::50]  # one block in fifty stays, pinning nothing but its own pages
        del blocks
        in_use, free = heap_stats()
        before = rss()
        trimmed = trim_heap()
        after = rss()
        import threading  # blocks allocated on another thread live in another arena, and are counted too
        elsewhere = []
        worker = threading.Thread(target=lambda: elsewhere.extend(bytearray(3000) for _ in range(20_000)))
        worker.start()
        worker.join()
        threaded = heap_stats()[0] - in_use
        print(json.dumps({"threaded": threaded, "full": in_use_full, "in_use": in_use, "free": free, "before": before,
                          "after": after, "trimmed": trimmed, "kept": sum(map(len, kept))}))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=True)
    r = __import__("json").loads(out.stdout)
    assert r["full"] > 200e6 and r["in_use"] < 50e6  # the allocator saw the frees
    assert r["free"] > 150e6  # ...and holds them
    assert r["trimmed"] and r["before"] - r["after"] > 100e6  # the trim gave the pages back
    assert r["after"] > r["kept"]  # what is kept is still there
    assert r["threaded"] > 50e6  # 60 MB allocated on a second thread (a second arena) is seen


@pytest.mark.slow
def test_sqlite_memory_stays_near_the_soft_limit_however_many_connections_read(tmp_path: Path) -> None:
    """Eight connections each read a 24 MB table through caches of 16 MB apiece: SQLite's memory climbs past
    60 MB without a limit, and stays near the limit (8 MB) with one."""
    code = textwrap.dedent("""
        import json, os, sqlite3, sys
        from adapters.infra.store.base import limit_sqlite_memory, sqlite_memory_used

        path = os.path.join(sys.argv[2], "t.db")
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        db.executemany("INSERT INTO t (body) VALUES (?)", (("x" * 1000,) for _ in range(24_000)))
        db.commit()
        db.close()
        limited = sys.argv[1] == "limited"
        if limited:
            assert limit_sqlite_memory(8 << 20)
        connections = [sqlite3.connect(path) for _ in range(8)]
        peak = 0
        for c in connections:
            c.execute("PRAGMA cache_size=-16000")
            c.execute("SELECT count(*), sum(length(body)) FROM t").fetchone()
            peak = max(peak, sqlite_memory_used())
        print(json.dumps({"peak": peak}))
    """)
    peaks = {}
    for mode in ("unlimited", "limited"):
        (tmp_path / mode).mkdir()
        out = subprocess.run([sys.executable, "-c", code, mode, str(tmp_path / mode)], cwd=ROOT,
                             capture_output=True, text=True, timeout=120, check=True)
        peaks[mode] = json.loads(out.stdout)["peak"]
    assert peaks["unlimited"] > 60e6, peaks
    assert peaks["limited"] < 12e6, peaks


@pytest.mark.serial  # timed against the loop's lateness: alone, not beside the parallel run
def test_a_stall_is_still_charged_after_the_loop_is_on_time_again_and_then_forgotten() -> None:
    """A call that queued behind a long decision may reach its handler several on-time ticks after the stall
    (through gRPC's poller thread): it is charged the stall for ``hold`` seconds, then not."""

    async def run() -> tuple[float, float, float, float]:
        lag = LoopLag(every=0.01, hold=0.3)
        lag.start()
        await asyncio.sleep(0.05)
        quiet = lag.current()
        time.sleep(0.4)  # one long decision holds the loop
        await asyncio.sleep(0.08)  # the loop runs on time again for several ticks
        after = lag.current()
        await asyncio.sleep(0.4)
        later = lag.current()
        time.sleep(0.06)  # late, but no stall: only the last tick's lateness counts, as under steady load
        await asyncio.sleep(0.05)
        short = lag.current()
        lag.stop()
        return quiet, after, later, short

    quiet, after, later, short = asyncio.run(run())
    assert quiet < 0.1 and later < 0.1, (quiet, later)
    assert after >= 0.35, after
    assert short < 0.04, short
