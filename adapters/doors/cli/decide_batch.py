"""`baton decide RULESET --batch FILE.jsonl`: one decision per line of FILE (each line a JSON object of facts,
as `--facts` takes them; blank lines are skipped), one JSON line out per request line, in the file's order:
the decision record with its line number first, or ``{"line": N, "error": {"code", "message", "path"}}``
(also on stderr as FILE:N: message). Lines are read and decided a chunk at a time, the decisions of a chunk
together, so a file of any length runs in bounded memory; stored (``--db``/``--store``), each goes through the
one decision path as `baton decide --db` does - stored, chained, logged, counted, shadowed."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from rich.markup import escape

from adapters.doors.cli.common import err, fail
from adapters.infra.system import SystemClock, TimeOrderedIds
from engine.errors import BatonError
from engine.loop import Decision, Engine, Limits
from engine.model import Ruleset
from engine.ports import ModelGateway, ToolConnector
from engine.record import DecisionRecord

CHUNK = 256  # lines decided together
Decide = Callable[[list[tuple[str, Any]]], Awaitable[DecisionRecord]]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _lines(source: str) -> Iterator[tuple[int, str]]:
    try:
        with nullcontext(sys.stdin) if source == "-" else Path(source).open(encoding="utf-8") as stream:
            for number, text in enumerate(stream, 1):
                if text.strip():
                    yield number, text.rstrip("\r\n")
    except OSError as e:
        raise fail(f"cannot read batch {source}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise fail(f"batch {source} is not UTF-8 text: {e}") from None


def _error(code: str, message: str, path: str = "") -> dict[str, str]:
    return {"code": code, "message": message, "path": path}


def _parse(engine: Engine, text: str) -> list[tuple[str, Any]] | dict[str, str]:
    """A line's validated facts, or its error."""
    try:
        given = json.loads(text, parse_constant=_reject_constant)
    except ValueError as e:
        return _error("invalid_json", f"not valid JSON: {e}")
    try:
        return engine.validate_input(given)
    except BatonError as e:
        return _error(e.code, e.message, e.where.path if e.where else "")


async def _run(engine: Engine, source: str, decide: Decide, write: Callable[[str], Any]) -> int:
    """Decide every line; the number of lines that failed."""
    failed = 0
    lines = _lines(source)
    while chunk := [line for _, line in zip(range(CHUNK), lines, strict=False)]:
        parsed = [(number, _parse(engine, text)) for number, text in chunk]

        async def one(given: list[tuple[str, Any]] | dict[str, str]) -> DecisionRecord | dict[str, str]:
            if isinstance(given, dict):
                return given
            try:
                return await decide(given)
            except BatonError as e:
                return _error(e.code, e.message, e.where.path if e.where else "")
            except Exception as e:  # the store gone, a connector broken: this line fails, said plainly
                return _error("failed", f"{type(e).__name__}: {e}")

        results = await asyncio.gather(*(one(given) for _, given in parsed))
        for (number, _), result in zip(parsed, results, strict=True):
            if "decision_id" in result:
                write(json.dumps({"line": number, **result}, ensure_ascii=False) + "\n")
                continue
            failed += 1
            write(json.dumps({"line": number, "error": result}, ensure_ascii=False) + "\n")
            where = f" {result['path']}:" if result.get("path") and result["path"] not in result["message"] else ""
            err.print(f"{escape(source)}:{number}:{escape(where)} {escape(result['message'])}", markup=True)
    return failed


async def run_batch(engine: Engine, source: str, decide: Decide) -> int:
    failed = await _run(engine, source, decide, sys.stdout.write)
    sys.stdout.flush()
    return failed


def batch_cmd(rs: Ruleset, source: str, ports: tuple[ModelGateway, ToolConnector], store: bool,
              config: Path | None, db: str | None, rulesets: Path) -> int:
    """`baton decide RULESET --batch SOURCE`: the number of lines that failed. Stored (``store``): through the
    service's bootstrap and one decision path, as `baton decide --db` is."""
    engine = Engine(rs)

    def run(validated: list[tuple[str, Any]], models: ModelGateway,
            tools: ToolConnector) -> Callable[[], Awaitable[Decision]]:
        return lambda: engine.run(validated, models, tools, SystemClock(), TimeOrderedIds(), Limits())

    if not store:  # not stored: nothing to log, count or shadow
        async def alone(validated: list[tuple[str, Any]]) -> DecisionRecord:
            return (await run(validated, *ports)()).to_dict()

        return asyncio.run(run_batch(engine, source, alone))
    from adapters.doors.cli.store_cmds import command_runtime

    rt = command_runtime(config, db, rulesets, ports)

    async def go() -> int:
        rt.start()
        try:
            rt.store.save_ruleset(rs)

            async def stored(validated: list[tuple[str, Any]]) -> DecisionRecord:
                record, _ = await rt.path.decide(rs.name, run(validated, rt.models, rt.tools), "cli",
                                                 received=rt.path.received())
                return record

            failed = await run_batch(engine, source, stored)
            await rt.shadows.drain()
            return failed
        finally:
            await rt.stop()

    return asyncio.run(go())
