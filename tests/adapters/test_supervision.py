"""The supervisor's memory bound: a worker above memory.max_mb is replaced, its successor first, and only
then drained; one that starts above the bound is left alone. Real processes, real resident memory."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.doors.grpc.workers import Supervisor
from adapters.infra.supervision import listener_on, rss_mb
from adapters.usecases.config import MemorySettings, Settings
from tests.helpers import wait_until

LIMIT_MB = 150


def _worker(ready: Any, grow: Any, drained: Any, start_mb: int) -> None:
    held = [bytearray(start_mb << 20)]
    stop = False

    def on_term(_signum: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    ready.set()
    while not stop:
        if grow.is_set() and len(held) == 1:
            held.append(bytearray(b"x" * ((LIMIT_MB + 50) << 20)))  # written, so resident
        time.sleep(0.02)  # the stand-in worker's idle loop, not a wait
    drained.set()


class FakeSupervisor(Supervisor):
    """The real recycling policy over stand-in workers that grow on request."""

    def __init__(self, cfg: Settings, start_mb: int = 10) -> None:
        super().__init__(cfg, Path("."))
        self.grow = self.ctx.Event()
        self.drained: list[Any] = []
        self.kept: list[Any] = []
        self.start_mb = start_mb

    def spawn(self, i: int, recycled: bool = False) -> Any:
        self.ready[i] = self.ctx.Event()
        drained = self.ctx.Event()
        self.drained.append(drained)
        grow = self.grow if not recycled else self.ctx.Event()  # a successor stays small
        self.kept.append(grow)  # kept referenced until the child has it
        child = self.ctx.Process(target=_worker, args=(self.ready[i], grow, drained, self.start_mb))
        child.start()
        return child


def settings() -> Settings:
    return Settings(workers=1, memory=MemorySettings(max_mb=LIMIT_MB, check_every_s=0.05))


def wait(condition: Callable[[], object], what: str, seconds: float = 60) -> None:
    wait_until(condition, seconds, what, every=0.05)


@pytest.mark.slow
def test_a_worker_above_the_bound_is_replaced_successor_first_then_drained() -> None:
    sup = FakeSupervisor(settings())
    sup.children = [sup.spawn(0)]
    first = sup.children[0]
    try:
        wait(sup.ready[0].is_set, "the worker to be ready")
        time.sleep(0.1)  # kept: past memory.check_every_s (0.05 s), so recycle() reads the memory again
        sup.recycle(time.monotonic())  # read as it starts: below the bound
        assert sup.children[0] is first and not sup.draining
        sup.grow.set()
        wait(lambda: (rss_mb(first.pid) or 0) > LIMIT_MB, "the worker to grow past the bound")
        time.sleep(0.1)  # kept: past memory.check_every_s again
        sup.recycle(time.monotonic())
        successor = sup.children[0]
        assert successor is not first
        assert [(i, old.pid) for i, old, _ in sup.draining] == [(0, first.pid)]
        assert first.is_alive()  # not stopped before its successor listens
        wait(lambda: sup.ready[0].is_set(), "the successor to be ready")

        def recycled_and_gone() -> bool:
            sup.recycle(time.monotonic())
            return not first.is_alive()

        wait(recycled_and_gone, "the old worker to be stopped")
        assert sup.drained[0].is_set()  # it stopped by SIGTERM, its own way (finishing what it had)
        sup.recycle(time.monotonic())
        assert not sup.draining and successor.is_alive()
    finally:
        sup.stopping = True
        sup.forward(signal.SIGTERM, None)
        for c in [*sup.children, first]:
            c.join(10)


@pytest.mark.slow
def test_a_worker_that_starts_above_the_bound_is_left_alone() -> None:
    sup = FakeSupervisor(settings(), start_mb=LIMIT_MB + 50)
    sup.children = [sup.spawn(0)]
    first = sup.children[0]
    try:
        wait(sup.ready[0].is_set, "the worker to be ready")
        wait(lambda: (rss_mb(first.pid) or 0) > LIMIT_MB, "the worker to be above the bound")
        for _ in range(5):
            sup.recycle(time.monotonic())
            time.sleep(0.06)  # kept: five checks, each past memory.check_every_s: none replaces it
        assert sup.children[0] is first and not sup.draining
    finally:
        sup.stopping = True
        sup.forward(signal.SIGTERM, None)
        first.join(10)


@pytest.mark.slow
def test_a_free_port_has_no_owner_and_a_taken_one_names_it() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.listen()
        taken = listener_on(f"127.0.0.1:{port}")
    assert taken is not None and taken.startswith(f"127.0.0.1:{port} is already in use by another process (pid ")
    assert listener_on(f"127.0.0.1:{port}") is None
