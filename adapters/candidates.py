"""Candidate rulesets - sent by editors, analysts and tools - compiled in a bounded child process.

A ruleset is untrusted input: its cost is known only by compiling it, and a compile runs pure Python that
no deadline can interrupt. So a candidate is first compiled by a child process that caps its own address
space and CPU seconds before it reads the source, and that the caller kills once the wall time is up. The
worker's event loop and memory see only the child's verdict: the errors and warnings, or the name and
version. Where the caller needs the compiled ruleset (publish, what-if, impact, shadows), it is compiled
again in the worker - in a thread - only once the child has compiled the same source within the same
limits; the compile is deterministic, so the second costs what the first did.

One spare child is kept started (imports done, limits not yet set, waiting for its source) so that a
validation does not wait for the interpreter to start; each child compiles one source and exits.
"""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from engine.errors import BatonError, CompileErrors, Where
from engine.language.loader import load_ruleset
from engine.language.source import SourceLimits
from engine.model import Ruleset

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CompileLimits:
    """Bounds on compiling one candidate: the child's CPU seconds, address space and wall time, and the
    sizes the loader refuses by name before building anything."""

    cpu_s: int = 60
    memory_mb: int = 2048
    wall_s: float = 90.0
    source: SourceLimits = field(default_factory=SourceLimits)
    at_once: int = 2  # compiles per worker at a time (children and the worker's own); more calls wait their turn


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


def _error(d: dict[str, Any]) -> BatonError:
    return BatonError(str(d["code"]), str(d["message"]),
                      Where(str(d.get("file", "")), int(d.get("line", 0)), int(d.get("column", 0)),
                            str(d.get("path", ""))), str(d.get("hint", "")))


class CandidateCompiler:
    """Compiles candidates in child processes, one at a time per call, with one spare child kept warm."""

    def __init__(self, limits: CompileLimits | None = None) -> None:
        self.limits = limits or CompileLimits()
        self._spare: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        # threads of their own: compiles waiting for a child never hold the event loop's default executor,
        # which a Decide needs for its store reads (seven slow validations held a Decide with a key 22 s)
        self._pool = ThreadPoolExecutor(max_workers=max(1, self.limits.at_once), thread_name_prefix="candidate")

    async def acheck(self, source: str, file: str) -> Checked:
        """:meth:`check` on the compiler's own threads (at most ``limits.at_once`` at a time)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.check, source, file)

    async def acompile(self, source: str, file: str, before: Callable[[Checked], None] | None = None) -> Ruleset:
        """:meth:`compile` on the compiler's own threads (at most ``limits.at_once`` at a time)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.compile, source, file, before)

    async def arun(self, work: Callable[[], T]) -> T:
        """Other work over a candidate's source (a diff reads both rulesets whole) on the same threads."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    async def aload(self, source: str, file: str) -> Ruleset:
        """A source :meth:`check` passed, compiled in this process on the compiler's own threads."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, load_ruleset, source, file,
                                                                self.limits.source)

    def _start(self) -> subprocess.Popen[bytes]:
        # its own session: a Ctrl-C meant for the service does not reach it; it ends when its stdin closes
        return subprocess.Popen([sys.executable, "-m", "adapters.candidates"], stdin=subprocess.PIPE,
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

    def check(self, source: str, file: str) -> Checked:
        """The child's verdict on ``source``: :class:`Checked`, or :class:`CompileErrors` as the loader reports
        them, or :class:`CompileLimitExceeded` naming the bound it went over."""
        limits = self.limits
        request = json.dumps({"source": source, "file": file, "cpu_s": limits.cpu_s, "memory_mb": limits.memory_mb,
                              "max_chars": limits.source.max_chars, "max_rules": limits.source.max_rules,
                              "max_table_rows": limits.source.max_table_rows}).encode()
        child = self._take()
        assert child.stdout is not None
        child.stdout.readline()  # "ready": its imports done, so the wall time counts the compile alone
        try:
            out, _ = child.communicate(request, timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            raise CompileLimitExceeded("limits.compile_wall_s", f"compiling the ruleset took longer than "
                                       f"{limits.wall_s:g} s (limits.compile_wall_s)") from None
        return self._verdict(child.returncode, out)

    def compile(self, source: str, file: str, before: Callable[[Checked], None] | None = None) -> Ruleset:
        """The candidate compiled in this process, once the child has compiled it within the limits (and
        ``before``, given the child's verdict, has not raised: a call that will refuse the ruleset anyway -
        a shadow of no live ruleset - refuses it before the worker spends the compile)."""
        checked = self.check(source, file)
        if before is not None:
            before(checked)
        return load_ruleset(source, file, self.limits.source)

    def _verdict(self, code: int, out: bytes) -> Checked:
        limits = self.limits
        try:
            result = json.loads(out) if out else {}
        except ValueError:
            result = {}
        if result.get("ok"):
            return Checked(result["name"], result["version"], result["rules"], result["tests"],
                           [_error(w) for w in result["warnings"]])
        if "errors" in result:
            raise CompileErrors([_error(e) for e in result["errors"]])
        if result.get("limit") == "memory" or code in (-signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS):
            raise CompileLimitExceeded("limits.compile_memory_mb", f"compiling the ruleset needed more than "
                                       f"{limits.memory_mb} MB (limits.compile_memory_mb)")
        if code in (-signal.SIGXCPU, -signal.SIGKILL):
            raise CompileLimitExceeded("limits.compile_cpu_s", f"compiling the ruleset needed more than "
                                       f"{limits.cpu_s} CPU seconds (limits.compile_cpu_s)")
        raise CompileLimitExceeded("compile", f"the compiler process ended without a verdict (exit {code})")


def _child() -> None:
    """One compile: read the request, cap this process, load the ruleset, write the verdict, exit."""
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    request = json.loads(sys.stdin.buffer.read())
    limit = request["memory_mb"] << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    used = int(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]))
    resource.setrlimit(resource.RLIMIT_CPU, (used + request["cpu_s"], used + request["cpu_s"] + 5))
    limits = SourceLimits(request["max_chars"], request["max_rules"], request["max_table_rows"])
    try:
        rs = load_ruleset(request["source"], request["file"], limits)
        verdict: dict[str, Any] = {"ok": True, "name": rs.name, "version": rs.version, "rules": len(rs.rules),
                                   "tests": len(rs.tests), "warnings": [w.as_dict() for w in rs.warnings]}
    except CompileErrors as e:
        verdict = {"ok": False, "errors": [x.as_dict() for x in e.errors]}
    except BatonError as e:
        verdict = {"ok": False, "errors": [e.as_dict()]}
    except MemoryError:
        verdict = {"ok": False, "limit": "memory"}
    sys.stdout.write(json.dumps(verdict))
    sys.stdout.flush()


if __name__ == "__main__":
    _child()
