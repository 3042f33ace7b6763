"""`baton serve`'s entry: one process serving, or (``--workers N``, ``memory.max_mb``) a supervisor and N worker
processes sharing the port (SO_REUSEPORT), each running adapters/doors/grpc/server.py's ``run_server``."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from adapters.doors.grpc.server import run_server
from adapters.infra import metrics
from adapters.infra.logs import say, setup_logging
from adapters.infra.metrics import serve_metrics
from adapters.infra.store.sql import SqlStore
from adapters.infra.supervision import die_with_parent, listener_on, rss_mb
from adapters.infra.system import run_loop
from adapters.usecases.config import Settings

log = logging.getLogger("baton.serve")


def _child(cfg: Settings, base: Path, worker: int = 0, restart: int = 0, ready: Any = None,
           supervisor: int | None = None, recycled: bool = False) -> None:
    if supervisor is not None:
        die_with_parent(supervisor)
    setup_logging(cfg.log_format, cfg.log_level)
    if recycled:
        metrics.WORKER_RECYCLES.labels(str(worker)).inc()  # counted by the worker that replaces it
    elif restart:
        metrics.WORKER_RESTARTS.labels(str(worker)).inc()
    run_loop(cfg.event_loop, run_server(cfg, base, ready=ready, worker=worker, supervisor=supervisor))


def serve(cfg: Settings, base: Path) -> None:
    setup_logging(cfg.log_format, cfg.log_level)
    taken = listener_on(cfg.listen)
    if taken is not None:
        raise SystemExit(f"refusing to serve: {taken}; stop it first, or listen elsewhere (--listen)")
    if cfg.metrics:
        SqlStore(cfg.db).close()  # migrate first: the metrics endpoint reads the store's tables
    if cfg.workers <= 1 and cfg.memory.max_mb is None:
        if cfg.metrics:
            serve_metrics(cfg.metrics, cfg.db)
        run_loop(cfg.event_loop, run_server(cfg, base))
        return
    if cfg.metrics:  # workers write their samples here; this process serves the sum
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="baton-metrics-")
        serve_metrics(cfg.metrics, cfg.db)
    if cfg.listen.endswith(":0"):
        raise SystemExit("--workers and memory.max_mb need a fixed port (the workers share it)")
    SqlStore(cfg.db).close()  # migrate once, before the workers race for it
    Supervisor(cfg, base).run()


def _death(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


class Supervisor:
    """Worker processes sharing one port: a worker that dies while the service runs is logged and replaced,
    after a pause that doubles with each death in a row (0.5 s up to 30 s, reset after a minute up). A
    signal to this process goes to every worker and ends supervision; the service then stops cleanly.
    A worker that ends before it ever listened (a bad configuration, a port in use) is not replaced: the
    service stops with its exit code, as it would with one worker. While no worker is up nothing
    listens, so callers and health checks see UNAVAILABLE. Workers end with this process, even when it is
    killed with SIGKILL (adapters/infra/supervision.py).

    With ``memory.max_mb`` set, a worker whose resident memory goes above it is recycled: its successor is
    started first, and once that one listens (or after a minute) the old one gets SIGTERM, stops taking
    calls and finishes those in flight - the port is never left without a listener."""

    BACKOFF_S = (0.5, 30.0)
    STEADY_S = 60.0
    SUCCESSOR_WAIT_S = 60.0

    def __init__(self, cfg: Settings, base: Path) -> None:
        self.cfg, self.base = cfg, base
        self.ctx = mp.get_context("spawn")
        self.children: list[Any] = []
        self.started = [time.monotonic()] * cfg.workers
        self.failures = [0] * cfg.workers
        self.restarts = [0] * cfg.workers
        self.due: dict[int, float] = {}  # worker -> when to start its replacement
        self.stopping = False
        self.ready: list[Any] = [None] * cfg.workers
        self.draining: list[tuple[int, Any, float]] = []  # (worker, old process, when its successor started)
        self.checked = 0.0
        self.first_seen: dict[int, float] = {}  # worker pid -> its resident MB when first read

    def spawn(self, i: int, recycled: bool = False) -> Any:
        self.ready[i] = self.ctx.Event()
        child = self.ctx.Process(target=_child, args=(self.cfg, self.base, i, self.restarts[i], self.ready[i],
                                                      os.getpid(), recycled), name=f"baton-worker-{i}")
        child.start()
        return child

    def forward(self, signum: int, _frame: Any) -> None:
        if signum != signal.SIGHUP:  # SIGHUP: each worker re-reads its secrets; the service goes on
            self.stopping = True
        for child in [*self.children, *(old for _, old, _ in self.draining)]:
            if child.pid is not None and child.is_alive():
                os.kill(child.pid, signum)

    def run(self) -> None:
        self.children = [self.spawn(i) for i in range(self.cfg.workers)]
        signal.signal(signal.SIGTERM, self.forward)
        signal.signal(signal.SIGINT, self.forward)
        signal.signal(signal.SIGHUP, self.forward)
        while True:
            now = time.monotonic()
            self.reap(now)
            self.restart_due(now)
            self.recycle(now)
            if self.stopping and not any(c.is_alive() for c in self.children) and not self.draining:
                break
            time.sleep(0.1)
        codes = [c.exitcode for c in self.children]
        if any(codes):
            raise SystemExit(f"worker exit codes: {codes}")
        say(f"baton: all {len(self.children)} workers stopped cleanly")

    def reap(self, now: float) -> None:
        for i, child in enumerate(self.children):
            if child.is_alive() or i in self.due:
                continue
            child.join()
            if self.stopping:
                continue
            if not self.ready[i].is_set():  # it never served: restarting would fail the same way
                log.error("worker %d (pid %s) ended before it listened, %s: stopping the service", i,
                          child.pid, _death(child.exitcode))
                self.forward(signal.SIGTERM, None)
                continue
            up = now - self.started[i]
            self.failures[i] = 1 if up >= self.STEADY_S else self.failures[i] + 1
            pause = min(self.BACKOFF_S[1], self.BACKOFF_S[0] * 2 ** (self.failures[i] - 1))
            log.error("worker %d (pid %s) died, %s, after %.1f s up; restarting it in %.1f s", i, child.pid,
                      _death(child.exitcode), up, pause)
            say(f"baton: worker {i} (pid {child.pid}) died: {_death(child.exitcode)}; restarting in {pause:.1f} s")
            self.due[i] = now + pause

    def restart_due(self, now: float) -> None:
        for i, when in list(self.due.items()):
            if self.stopping:
                del self.due[i]
            elif now >= when:
                del self.due[i]
                self.restarts[i] += 1
                self.children[i] = self.spawn(i)
                self.started[i] = time.monotonic()

    def recycle(self, now: float) -> None:
        """Replace workers above ``memory.max_mb``; stop each old one once its successor listens."""
        for entry in list(self.draining):
            i, old, since = entry
            if not old.is_alive():
                old.join()
                self.draining.remove(entry)
            elif old.pid is not None and (self.ready[i].is_set() or now - since > self.SUCCESSOR_WAIT_S):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(old.pid, signal.SIGTERM)  # repeated until it is gone: harmless, it is draining
        limit = self.cfg.memory.max_mb
        if limit is None or self.stopping or now - self.checked < self.cfg.memory.check_every_s:
            return
        self.checked = now
        for i, child in enumerate(self.children):
            if not child.is_alive() or not self.ready[i].is_set() or any(d[0] == i for d in self.draining):
                continue
            used = rss_mb(child.pid)
            if used is None:
                continue
            if child.pid not in self.first_seen:  # what a worker holds once it listens, before any call
                self.first_seen[child.pid] = used
                if used > limit:
                    log.warning("worker %d (pid %s) holds %.0f MB as it starts, above memory.max_mb %d: a "
                                "successor would too, so it is not recycled", i, child.pid, used, limit)
            if used <= limit or self.first_seen[child.pid] > limit:
                continue
            log.warning("worker %d (pid %s) holds %.0f MB, above memory.max_mb %d: replacing it", i, child.pid,
                        used, limit)
            say(f"baton: worker {i} (pid {child.pid}) at {used:.0f} MB > memory.max_mb {limit}; starting its "
                "successor, then draining it")
            self.draining.append((i, child, now))
            self.restarts[i] += 1
            self.children[i] = self.spawn(i, recycled=True)
            self.started[i] = time.monotonic()
