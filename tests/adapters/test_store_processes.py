"""Several writer processes on one database keep one valid chain; a writer killed with SIGKILL mid-stream
leaves a valid store holding every decision it acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters.infra.store.sql import SqlStore

HERE = Path(__file__).resolve().parent


def writer(url: str, count: int, concurrency: int = 16) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(HERE / "writer_proc.py"), url, str(count), str(concurrency)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_concurrent_writer_processes_keep_one_chain(db_url: str) -> None:
    SqlStore(db_url).close()  # migrate once up front
    procs = [writer(db_url, 60) for _ in range(4)]
    acked = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
        acked.extend(stdout.split())
    store = SqlStore(db_url)
    assert len(acked) == len(set(acked)) == 240
    assert store.verify() == (240, None)


@pytest.mark.slow
def test_a_writer_killed_mid_stream_loses_nothing_it_acknowledged(db_url: str) -> None:
    SqlStore(db_url).close()
    proc = writer(db_url, 100_000, concurrency=64)
    acked: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while len(acked) < 400 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked.append(line.strip())
    os.kill(proc.pid, signal.SIGKILL)
    rest, _ = proc.communicate(timeout=30)
    acked.extend(rest.split())  # acknowledged lines already written before the kill
    assert proc.returncode == -signal.SIGKILL and len(acked) >= 400
    store = SqlStore(db_url)
    checked, problem = store.verify()
    assert problem is None
    assert checked >= len(acked)
    missing = [i for i in acked if store.get(i) is None]
    assert missing == []
