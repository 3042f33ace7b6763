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
from engine.loop import Engine, Limits
from engine.model import Ruleset
from engine.ports import ModelGateway, ToolConnector
from engine.record import DecisionRecord

CHUNK = 256  # lines decided together
DecideLine = Callable[[Any], Awaitable[DecisionRecord]]  # a line's facts as sent -> its decision


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


async def _run(source: str, decide: DecideLine, write: Callable[[str], Any]) -> int:
    """Decide every line; the number of lines that failed."""
    failed = 0
    lines = _lines(source)
    while chunk := [line for _, line in zip(range(CHUNK), lines, strict=False)]:

        async def one(text: str) -> DecisionRecord | dict[str, str]:
            """A line's decision, or its error (``_error``)."""
            try:
                given = json.loads(text, parse_constant=_reject_constant)
            except ValueError as e:
                return _error("invalid_json", f"not valid JSON: {e}")
            try:
                return await decide(given)
            except BatonError as e:
                return _error(e.code, e.message, e.where.path if e.where else "")
            except Exception as e:  # the store gone, a connector broken: this line fails, said plainly
                return _error("failed", f"{type(e).__name__}: {e}")

        results = await asyncio.gather(*(one(text) for _, text in chunk))
        for (number, _), result in zip(chunk, results, strict=True):
            if "decision_id" in result:
                write(json.dumps({"line": number, **result}, ensure_ascii=False) + "\n")
                continue
            failed += 1
            write(json.dumps({"line": number, "error": result}, ensure_ascii=False) + "\n")
            where = f" {result['path']}:" if result.get("path") and result["path"] not in result["message"] else ""
            err.print(f"{escape(source)}:{number}:{escape(where)} {escape(result['message'])}", markup=True)
    return failed


async def run_batch(source: str, decide: DecideLine) -> int:
    failed = await _run(source, decide, sys.stdout.write)
    sys.stdout.flush()
    return failed


def batch_cmd(rs: Ruleset, source: str, ports: tuple[ModelGateway, ToolConnector], store: bool,
              config: Path | None, db: str | None, rulesets: Path) -> int:
    """`baton decide RULESET --batch SOURCE`: the number of lines that failed. Stored (``store``): through the
    service's bootstrap and one decision path, as `baton decide --db` is."""
    engine = Engine(rs)
    if not store:  # not stored: nothing to log, count or shadow
        async def alone(given: Any) -> DecisionRecord:
            validated = engine.validate_input(given)
            d = await engine.run(validated, *ports, SystemClock(), TimeOrderedIds(), Limits())
            return d.to_dict()

        return asyncio.run(run_batch(source, alone))
    from adapters.doors.cli.store_cmds import command_runtime
    from adapters.usecases.commands import DecideCommand

    rt = command_runtime(config, db, rulesets, ports)

    async def go() -> int:
        rt.start()
        try:
            rt.store.save_ruleset(rs)

            async def stored(given: Any) -> DecisionRecord:  # the Decide use case, as every door decides
                return (await rt.decide.one(DecideCommand(caller="cli", engine=engine, facts=given))).record

            failed = await run_batch(source, stored)
            await rt.shadows.drain()
            return failed
        finally:
            await rt.stop()

    return asyncio.run(go())
