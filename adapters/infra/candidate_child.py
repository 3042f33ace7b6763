"""The child process that compiles one candidate ruleset for adapters/infra/candidates.py: it reads its request,
caps its own address space and CPU seconds before it compiles, writes the verdict as a JSON line, then runs the
job asked of the compiled ruleset (its tests, its DMN view, its tables' rows, what-ifs over records fed on
stdin) and exits. Started as ``python -m adapters.infra.candidate_child``."""

from __future__ import annotations

import asyncio
import json
import resource
import sys
from dataclasses import asdict
from typing import IO, Any

from engine.documents import Document
from engine.errors import BatonError, CompileErrors
from engine.language.loader import load_ruleset
from engine.language.source import SourceLimits
from engine.model import Ruleset


def _write(out: IO[bytes], line: dict[str, Any]) -> None:
    out.write(json.dumps(line).encode() + b"\n")
    out.flush()


def _document(d: dict[str, Any]) -> Document:
    return Document(str(d["id"]), str(d["name"]), str(d["media_type"]), tuple(str(p) for p in d["pages"]))


def _compile(request: dict[str, Any]) -> tuple[Ruleset | None, dict[str, Any]]:
    limits = SourceLimits(request["max_chars"], request["max_rules"], request["max_table_rows"])
    try:
        rs = load_ruleset(request["source"], request["file"], limits)
    except CompileErrors as e:
        return None, {"ok": False, "errors": [x.as_dict() for x in e.errors]}
    except BatonError as e:
        return None, {"ok": False, "errors": [e.as_dict()]}
    except MemoryError:
        return None, {"ok": False, "limit": "memory"}
    return rs, {"ok": True, "name": rs.name, "version": rs.version, "rules": len(rs.rules), "tests": len(rs.tests),
                "description": rs.description, "warnings": [w.as_dict() for w in rs.warnings]}


def _suite(rs: Ruleset, now: float) -> dict[str, Any]:
    from engine.testing import run_suite

    suite = asyncio.run(run_suite(rs, now))
    return {"results": [{"name": r.name, "line": r.line, "failures": r.failures} for r in suite.results],
            "rules": len(rs.rules), "uncovered": suite.uncovered}


def _dmn(rs: Ruleset) -> dict[str, Any]:
    from engine.dmn.export import NotExportable, export_dmn

    try:
        xml, left_out = export_dmn(rs)
    except NotExportable as e:
        return {"error": str(e)}
    return {"xml": xml, "left_out": left_out}


def _what_ifs(rs: Ruleset, lines: IO[bytes], out: IO[bytes]) -> None:
    from engine.loop import Engine
    from engine.replay import what_if

    engine = Engine(rs)
    loop = asyncio.new_event_loop()
    for line in lines:
        item = json.loads(line)
        docs = [_document(d) for d in item["documents"]]
        w = loop.run_until_complete(what_if(engine, item["record"], documents=docs, keep=bool(item["keep"])))
        _write(out, {"w": asdict(w)})


def _child() -> None:
    """One request: read it, cap this process, compile the ruleset, write the verdict, run the job, exit."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(b"ready\n")
    stdout.flush()
    request = json.loads(stdin.readline())
    limit = request["memory_mb"] << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    used = int(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]))
    resource.setrlimit(resource.RLIMIT_CPU, (used + request["cpu_s"], resource.RLIM_INFINITY))
    rs, verdict = _compile(request)
    _write(stdout, verdict)
    if rs is None or request["job"] == "check":
        return
    # the compile's CPU bound is spent; a run is bounded by its caller's deadline, and stays in the address space
    resource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    try:
        if request["job"] == "test":
            _write(stdout, {"suite": _suite(rs, float(request["now"]))})
        elif request["job"] == "dmn":
            _write(stdout, {"dmn": _dmn(rs)})
        elif request["job"] == "tables":
            _write(stdout, {"tables": {t.name: [r.where.line for r in t.rows] for t in rs.tables}})
        elif request["job"] == "what_if":
            _what_ifs(rs, stdin, stdout)
    except MemoryError:
        _write(stdout, {"ok": False, "limit": "memory"})
        sys.exit(3)


if __name__ == "__main__":
    _child()
