"""Candidate rulesets - sent by editors, analysts and tools - compiled and run in a bounded child process.

A ruleset is untrusted input: its cost is known only by compiling it, and a compile runs pure Python that
no deadline can interrupt. So a candidate is compiled by a child process that caps its own address space
and CPU seconds before it reads the source, and that the caller kills once the wall time is up. The
worker's event loop and memory see only the child's verdict: the errors and warnings, or the name,
version and counts. Whatever runs the candidate - its tests, a what-if of a stored decision, an impact
over many - runs in that child too, after the compile, still inside its address-space bound: the worker
sends it stored decisions one line at a time and reads back one result per line. A version is compiled
in a worker only once it is published (approved by a second person, or deployed from the rulesets
directory) or it decided something.

One spare child is kept started (imports done, limits not yet set, waiting for its request) so that a
validation does not wait for the interpreter to start; each child serves one request and exits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Protocol, TypeVar

from engine.documents import Document
from engine.errors import BatonError, CompileErrors, Where
from engine.language.loader import load_ruleset
from engine.language.source import SourceLimits
from engine.model import Ruleset
from engine.record import DecisionRecord
from engine.replay import WhatIf

if TYPE_CHECKING:
    from adapters.infra.store.governance import VersionSource

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CompileLimits:
    """Bounds on compiling one candidate: the child's CPU seconds, address space and wall time, and the
    sizes the loader refuses by name before building anything."""

    cpu_s: int = 60
    memory_mb: int = 2048
    wall_s: float = 90.0
    source: SourceLimits = field(default_factory=SourceLimits)
    at_once: int = 2  # compiles per worker at a time (and as many runs); more calls wait their turn


class CompileLimitExceeded(BatonError):
    """Compiling a candidate went over one of its bounds (mapped to RESOURCE_EXHAUSTED at the doors)."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__("compile_limit", message, Where(path=limit),
                         "simplify or split the ruleset, or raise the limit in the service's configuration")
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Checked:
    """What the child found: a ruleset that compiles, with its warnings."""

    name: str
    version: str
    rules: int
    tests: int
    warnings: list[BatonError]
    description: str = ""

    def stored(self, source: str) -> VersionSource:
        """The version as the store keeps it (its source and what a listing shows), without compiling it here."""
        from adapters.infra.store.governance import VersionSource

        return VersionSource(self.name, self.version, source, self.description, self.rules, self.tests)


@dataclass(frozen=True, slots=True)
class TestOutcome:
    """One embedded test run by the child: what the console's editor shows of it."""

    name: str
    line: int
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True, slots=True)
class SuiteOutcome:
    """A candidate's embedded tests, run by the child (the console's "run tests")."""

    results: list[TestOutcome]
    rules: int
    uncovered: list[str]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)


PER_JOB = 500  # stored decisions worth a child of their own in an impact (each compiles the candidate again)
Item = tuple[DecisionRecord, Sequence[Document]]  # a stored decision and its documents, for a what-if


def _error(d: dict[str, Any]) -> BatonError:
    return BatonError(str(d["code"]), str(d["message"]),
                      Where(str(d.get("file", "")), int(d.get("line", 0)), int(d.get("column", 0)),
                            str(d.get("path", ""))), str(d.get("hint", "")))


def _what_if(d: dict[str, Any]) -> WhatIf:
    return WhatIf(**d)


class _Cancelled(Exception):
    pass


class _Run:
    """One child serving one request: the verdict first, then what the job writes, a line each."""

    def __init__(self, compiler: CandidateCompiler) -> None:
        self.compiler = compiler
        self.child: subprocess.Popen[bytes] | None = None
        self.timed_out = False
        self.cancelled = False
        self.failure: BaseException | None = None  # why feeding the child stopped early (a store read failed)
        self.lock = threading.Lock()

    def kill(self) -> None:
        with self.lock:
            self.cancelled = True
            if self.child is not None and self.child.poll() is None:
                self.child.kill()

    def start(self, job: str, source: str, file: str, now: float = 0.0) -> Checked:
        limits = self.compiler.limits
        request = json.dumps({"job": job, "source": source, "file": file, "now": now, "cpu_s": limits.cpu_s,
                              "memory_mb": limits.memory_mb, "max_chars": limits.source.max_chars,
                              "max_rules": limits.source.max_rules,
                              "max_table_rows": limits.source.max_table_rows}).encode() + b"\n"
        with self.lock:
            if self.cancelled:
                raise _Cancelled
            self.child = child = self.compiler._take()
        stdin, stdout = self._pipes()
        stdout.readline()  # "ready": its imports done, so the wall time counts the compile alone
        timer = threading.Timer(limits.wall_s, self._wall)
        timer.start()
        try:
            with contextlib.suppress(BrokenPipeError):
                stdin.write(request)
                stdin.flush()
                if job == "check":
                    stdin.close()
            line = stdout.readline()
        finally:
            timer.cancel()
        if self.cancelled:
            raise _Cancelled
        if self.timed_out:
            child.wait()
            raise CompileLimitExceeded("limits.compile_wall_s", f"compiling the ruleset took longer than "
                                       f"{limits.wall_s:g} s (limits.compile_wall_s)")
        verdict = self._parse(line)
        if not verdict.get("ok"):
            with contextlib.suppress(BrokenPipeError, OSError):
                stdin.close()
            rest = stdout.read()
            code = child.wait()
            verdict = verdict or self._parse(rest)
            self.compiler._refuse(code, verdict)
        return Checked(verdict["name"], verdict["version"], verdict["rules"], verdict["tests"],
                       [_error(w) for w in verdict["warnings"]], verdict.get("description", ""))

    def _pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        assert self.child is not None and self.child.stdin is not None and self.child.stdout is not None
        return self.child.stdin, self.child.stdout

    def _wall(self) -> None:
        with self.lock:
            self.timed_out = True
            if self.child is not None:
                self.child.kill()

    @staticmethod
    def _parse(line: bytes) -> dict[str, Any]:
        try:
            out = json.loads(line) if line.strip() else {}
        except ValueError:
            out = {}
        return out if isinstance(out, dict) else {}

    def feed(self, items: Iterable[Item], keep: bool) -> threading.Thread:
        """Write the stored decisions to the child on a thread of their own (the child answers as it reads:
        writing everything first could fill both pipes), then close its input."""
        stdin, _ = self._pipes()

        def write() -> None:
            try:
                for record, documents in items:
                    if self.cancelled:
                        break
                    stdin.write(json.dumps({"record": record, "keep": keep, "documents": [
                        {"id": d.id, "name": d.name, "media_type": d.media_type, "pages": list(d.pages)}
                        for d in documents]}).encode() + b"\n")
                    stdin.flush()  # the child answers each as it comes (a shadow's next may be far off)
            except BrokenPipeError:
                pass
            except Exception as e:  # a store read failed: the run ends with it
                self.failure = e
                self.kill()
            finally:
                with contextlib.suppress(BrokenPipeError, OSError):
                    stdin.close()

        thread = threading.Thread(target=write, name="candidate-feed", daemon=True)
        thread.start()
        return thread

    def results(self) -> Iterable[dict[str, Any]]:
        """The child's lines after its verdict, until it ends; a child that ended early raises why."""
        _, stdout = self._pipes()
        last: dict[str, Any] = {}
        for line in stdout:
            last = self._parse(line)
            yield last
        assert self.child is not None
        code = self.child.wait()
        if self.failure is not None:
            raise self.failure
        if self.cancelled:
            raise _Cancelled
        if code != 0 or last.get("ok") is False:
            self.compiler._refuse(code, last, running=True)


class StoredDecisions(Protocol):
    """What a run reads of the store: decisions by id, and their documents."""

    def get_many(self, ids: Sequence[str]) -> list[DecisionRecord | None]: ...

    def documents(self, ids: list[str]) -> list[Document]: ...


def stored(store: StoredDecisions, ids: Sequence[str], fetch: int = 100) -> Iterator[Item]:
    """The stored decisions ``ids`` (those there are) with their documents, read ``fetch`` at a time."""
    for start in range(0, len(ids), fetch):
        records = store.get_many(ids[start:start + fetch])
        refs = [str(ref["id"]) for r in records if r is not None for ref in r.get("documents") or ()]
        documents = {d.id: d for d in store.documents(list(dict.fromkeys(refs)))}
        for record in records:
            if record is not None:
                yield record, [documents[str(ref["id"])] for ref in record.get("documents") or ()
                               if str(ref["id"]) in documents]


@dataclass(frozen=True, slots=True)
class Progress:
    done: int
    total: int


async def with_progress(run: Callable[[Callable[[int, int], None]], Awaitable[T]], every: int = 25
                        ) -> AsyncIterator[Progress | T]:
    """``run``'s progress as :class:`Progress` (every ``every`` and at the end; called from any thread), then
    its result; the run is cancelled if the caller stops listening."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Progress] = asyncio.Queue()

    def progress(done: int, total: int) -> None:
        if done % every == 0 or done == total:
            loop.call_soon_threadsafe(queue.put_nowait, Progress(done, total))

    task = asyncio.ensure_future(run(progress))
    try:
        while not task.done():
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield getter.result()
            else:
                getter.cancel()
        await asyncio.sleep(0)  # progress posted just before the end
        while not queue.empty():
            yield queue.get_nowait()
        yield task.result()
    finally:
        task.cancel()


class CandidateCompiler:
    """Compiles and runs candidates in child processes, one child per call, with one spare kept warm."""

    def __init__(self, limits: CompileLimits | None = None) -> None:
        self.limits = limits or CompileLimits()
        self._spare: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        # threads of their own: compiles waiting for a child never hold the event loop's default executor,
        # which a Decide needs for its store reads (a few slow validations held a Decide with a key for seconds);
        # runs (tests, what-ifs, impacts) have their own, so a long impact does not hold up a validation
        self._pool = ThreadPoolExecutor(max_workers=max(1, self.limits.at_once), thread_name_prefix="candidate")
        self._runs = ThreadPoolExecutor(max_workers=max(1, self.limits.at_once), thread_name_prefix="candidate-run")

    async def acheck(self, source: str, file: str) -> Checked:
        """:meth:`check` on the compiler's own threads (at most ``limits.at_once`` at a time)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.check, source, file)

    async def arun(self, work: Callable[[], T]) -> T:
        """Other work over a candidate's source (a diff reads both rulesets whole) on the same threads."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    async def aload(self, source: str, file: str) -> Ruleset:
        """A source :meth:`check` passed, compiled in this process on the compiler's own threads: only for a
        version about to be trusted (the CLI's own files); the service's doors use the runs below."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, load_ruleset, source, file,
                                                                self.limits.source)

    async def _in_child(self, work: Callable[[_Run], T], own_thread: bool = False) -> T:
        run = _Run(self)
        # a run that lasts as long as the service (a shadow) has a thread of its own, not one of the pool's
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="candidate-serve") if own_thread else self._runs
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, work, run)
        except asyncio.CancelledError:
            run.kill()
            raise
        finally:
            if own_thread:
                pool.shutdown(wait=False)

    async def asuite(self, source: str, file: str, now: float = 0.0) -> tuple[Checked, SuiteOutcome]:
        """The candidate's embedded tests, run in a bounded child."""
        def work(run: _Run) -> tuple[Checked, SuiteOutcome]:
            checked = run.start("test", source, file, now)
            found = [line["suite"] for line in run.results() if "suite" in line]
            if not found:
                raise CompileLimitExceeded("compile", "the candidate's tests ended without a result")
            suite = found[0]
            return checked, SuiteOutcome([TestOutcome(**r) for r in suite["results"]], suite["rules"],
                                         suite["uncovered"])
        return await self._in_child(work)

    async def ajob(self, job: str, source: str, file: str) -> tuple[Checked, dict[str, Any]]:
        """What the child reads off the compiled candidate for a page: ``dmn`` (its DMN export: ``xml`` and
        ``left_out``, or ``error``) or ``tables`` (each table's rows' lines)."""
        def work(run: _Run) -> tuple[Checked, dict[str, Any]]:
            checked = run.start(job, source, file)
            found = [line[job] for line in run.results() if job in line]
            if not found:
                raise CompileLimitExceeded("compile", f"the candidate's {job} ended without a result")
            return checked, found[0]
        return await self._in_child(work)

    async def awhat_if(self, source: str, file: str, items: Callable[[Checked], tuple[int, Iterable[Item]]],
                       keep: bool = False, progress: Callable[[int, int], None] | None = None,
                       each: Callable[[WhatIf], None] | None = None) -> tuple[Checked, list[WhatIf]]:
        """Stored decisions run on the candidate in a bounded child; the results in the order given.
        ``items``, called on a thread with the child's verdict, may refuse the run by raising, or gives how
        many decisions there are and the decisions, read lazily (it may read the store, or wait for more).
        ``progress`` is called on that thread with (done, total) after each result. With ``each``, each
        result is handed to it as it comes (on that thread) instead of kept, and the run has a thread of its
        own: it may last as long as its items do (a shadow's)."""
        def work(run: _Run) -> tuple[Checked, list[WhatIf]]:
            checked = run.start("what_if", source, file)
            total, decisions = items(checked)
            feeder = run.feed(decisions, keep)
            out: list[WhatIf] = []
            done = 0
            for line in run.results():
                if "w" in line:
                    done += 1
                    if each is not None:
                        each(_what_if(line["w"]))
                    else:
                        out.append(_what_if(line["w"]))
                    if progress is not None:
                        progress(done, total)
            feeder.join()
            return checked, out
        return await self._in_child(work, own_thread=each is not None)

    async def aimpact(self, source: str, file: str, ids_for: Callable[[Checked], Sequence[str]],
                      store: StoredDecisions, jobs: int | None = None,
                      progress: Callable[[int, int], None] | None = None) -> tuple[Checked, list[WhatIf]]:
        """The candidate over the stored decisions ``ids_for`` gives once its name is known, split across
        ``jobs`` children (default: as many as run at once here, no more than the cores) when there are at
        least :data:`PER_JOB` decisions for each: contiguous parts, their results joined in order, so the
        answer is the one child's. ``progress`` gets (done, total) summed over the parts."""
        loop = asyncio.get_running_loop()
        wanted = jobs if jobs is not None else min(self.limits.at_once, os.cpu_count() or 1)
        others: list[concurrent.futures.Future[tuple[Checked, list[WhatIf]]]] = []
        counts: list[int] = []
        lock = threading.Lock()

        def report(k: int, total: int) -> Callable[[int, int], None]:
            def each(done: int, _: int) -> None:
                with lock:
                    counts[k] = done
                    summed = sum(counts)
                if progress is not None:
                    progress(summed, total)
            return each

        def first(checked: Checked) -> tuple[int, Iterable[Item]]:  # on the first child's thread
            ids = list(ids_for(checked))
            n = max(1, min(wanted, len(ids) // PER_JOB))
            size = -(-len(ids) // n) if ids else 0
            parts = [ids[i:i + size] for i in range(0, len(ids), size)] if ids else [[]]
            counts.extend([0] * len(parts))
            def items_of(part: list[str]) -> Callable[[Checked], tuple[int, Iterable[Item]]]:
                return lambda _: (len(part), stored(store, part))

            for k, part in enumerate(parts[1:], 1):
                others.append(asyncio.run_coroutine_threadsafe(self.awhat_if(
                    source, file, items_of(part), progress=report(k, len(ids))), loop))
            reporting[0] = report(0, len(ids))
            return len(parts[0]), stored(store, parts[0])

        def nothing(done: int, total: int) -> None:
            pass

        def first_progress(done: int, total: int) -> None:
            reporting[0](done, total)

        reporting: list[Callable[[int, int], None]] = [nothing]
        try:
            checked, results = await self.awhat_if(source, file, first, progress=first_progress)
            for other in others:
                results += (await asyncio.wrap_future(other))[1]
            return checked, results
        finally:
            for other in others:
                other.cancel()

    def _start(self) -> subprocess.Popen[bytes]:
        # its own session: a Ctrl-C meant for the service does not reach it; it ends when its stdin closes
        return subprocess.Popen([sys.executable, "-m", "adapters.infra.candidate_child"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True,
                                start_new_session=True)

    def _take(self) -> subprocess.Popen[bytes]:
        with self._lock:
            child, self._spare = self._spare, None
            if child is None or child.poll() is not None:
                child = self._start()
            self._spare = self._start()
            return child

    def close(self) -> None:
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.kill()
            spare.wait()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._runs.shutdown(wait=False, cancel_futures=True)

    def check(self, source: str, file: str) -> Checked:
        """The child's verdict on ``source``: :class:`Checked`, or :class:`CompileErrors` as the loader reports
        them, or :class:`CompileLimitExceeded` naming the bound it went over."""
        run = _Run(self)
        checked = run.start("check", source, file)
        assert run.child is not None
        run.child.wait()
        return checked

    def compile(self, source: str, file: str, before: Callable[[Checked], None] | None = None) -> Ruleset:
        """The candidate compiled in this process, once the child has compiled it within the limits (and
        ``before``, given the child's verdict, has not raised). For trusted callers only (the CLI)."""
        checked = self.check(source, file)
        if before is not None:
            before(checked)
        return load_ruleset(source, file, self.limits.source)

    def _refuse(self, code: int, result: dict[str, Any], running: bool = False) -> None:
        limits = self.limits
        if "errors" in result:
            raise CompileErrors([_error(e) for e in result["errors"]])
        doing = "running the candidate" if running else "compiling the ruleset"
        if result.get("limit") == "memory" or code in (-signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS):
            raise CompileLimitExceeded("limits.compile_memory_mb", f"{doing} needed more than "
                                       f"{limits.memory_mb} MB (limits.compile_memory_mb)")
        if code in (-signal.SIGXCPU, -signal.SIGKILL):
            raise CompileLimitExceeded("limits.compile_cpu_s", f"{doing} needed more than "
                                       f"{limits.cpu_s} CPU seconds (limits.compile_cpu_s)")
        raise CompileLimitExceeded("compile", f"the compiler process ended without a verdict (exit {code})")
