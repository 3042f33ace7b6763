"""`baton replay` and `baton impact`: the auditor's commands over the decision store, and the helpers every command
over the store shares (its options, a stored record, a stored version's engine, the command's runtime)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from adapters.doors.cli.common import err, fail, open_store, out, print_compile_errors, unreachable
from adapters.infra.rulesets import load_file
from adapters.infra.store.sql import SqlStore
from adapters.usecases.decisions import replay_stored, what_if_stored
from adapters.usecases.impact import (
    Impact,
    Replayed,
    effective_jobs,
    impact_jobs,
    impact_steps,
    parse_part,
    part_of,
    replay_jobs,
    replay_many,
)
from engine.errors import CompileErrors
from engine.language.loader import load_ruleset
from engine.loop import Engine
from engine.record import DecisionRecord
from engine.replay import WhatIf

if TYPE_CHECKING:
    from adapters.usecases.runtime import Runtime
    from engine.ports import ModelGateway, ToolConnector

DbOpt = Annotated[str | None, typer.Option("--db", help="database URL or SQLite file (default: the user data dir)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]

def command_runtime(config: Path | None, db: str | None, rulesets: Path,
                    given_ports: tuple[ModelGateway, ToolConnector] | None = None) -> Runtime:
    """The service's bootstrap for a command that decides and stores (`baton decide --db`, `baton escalations
    resolve`): the config's store (or ``db``), rulesets and ports (or ``given_ports``); nothing published
    or indexed. A bad config, connector or store is one clear line."""
    from adapters.usecases.config import load_config
    from adapters.usecases.runtime import Runtime

    try:
        settings = load_config(config)
    except ValueError as e:
        raise fail(str(e)) from None
    settings = settings.model_copy(update={"db": db or settings.db, "rulesets": rulesets})
    try:
        return Runtime.build(settings, config.parent if config is not None else Path.cwd(), serving=False,
                             given_ports=given_ports)
    except ValueError as e:  # a connector the config names cannot be built
        raise fail(str(e)) from None
    except Exception as e:
        raise unreachable(e) from None


def stored_record(store: SqlStore, decision_id: str) -> DecisionRecord:
    record = store.get(decision_id)
    if record is None:
        raise fail(f"no decision {decision_id!r} in {store.url}", 1)
    return record


def engine_for_version(store: SqlStore, version: str, cache: dict[str, Engine] | None = None) -> Engine:
    if cache is not None and version in cache:
        return cache[version]
    found = store.ruleset_source(version)
    if found is None:
        raise fail(f"ruleset version {version[:12]} is not in the store", 1)
    engine = Engine(load_ruleset(found[1], f"{found[0]}@{version[:12]}"))
    if cache is not None:
        cache[version] = engine
    return engine


def load_candidate(path: Path) -> Engine:
    try:
        return Engine(load_file(path))
    except CompileErrors as e:
        print_compile_errors(e)
        raise typer.Exit(1) from None




def timestamp_option(value: str | None, option: str) -> float | None:
    """An ISO 8601 option as epoch seconds (UTC when no zone is given)."""
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"--{option} {value!r} is not an ISO 8601 date") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def whatif_dict(w: WhatIf) -> dict[str, Any]:
    return {"decision_id": w.decision_id, "changed": w.changed, "before": w.old, "after": w.new,
            "fired_only_before": w.fired_only_before, "fired_only_after": w.fired_only_after,
            "unanswered": w.unanswered, "error": w.error}


def replay_cmd(decision_id: Annotated[str | None, typer.Argument(help="a stored decision id")] = None,
               db: DbOpt = None,
               ruleset: Annotated[Path | None, typer.Option(help="candidate ruleset file: what-if")] = None,
               live: Annotated[bool, typer.Option(help="what-if: make calls never recorded live (needs --config)")]
               = False,
               config: Annotated[Path | None, typer.Option(help="service config YAML, for --live")] = None,
               as_json: JsonOpt = False,
               all_: Annotated[bool, typer.Option("--all", help="replay every stored decision (or --name's)")]
               = False,
               name: Annotated[str | None, typer.Option("--name", help="with --all: only this ruleset's")] = None,
               since: Annotated[str | None, typer.Option(help="with --all: decisions since this date (ISO 8601)")]
               = None,
               jobs: JobsOpt = None, part: PartOpt = None) -> None:
    """Re-run a stored decision exactly (identical, or the first divergence), or on a candidate ruleset.

    With --all: every stored decision, split across --jobs worker processes (the same result as one);
    --part K/N takes one of N disjoint parts, for N machines sharing one PostgreSQL store. Exit 1 when any
    decision does not replay identically."""
    if all_:
        if decision_id is not None or ruleset is not None:
            raise fail("--all replays every stored decision on its own version: give no DECISION_ID or --ruleset")
        _replay_all(db, name, since, as_json, jobs, part)
        return
    if decision_id is None:
        raise fail("give a DECISION_ID, or --all")
    store = open_store(db)
    record = stored_record(store, decision_id)
    if ruleset is not None:
        _what_if_one(store, record, decision_id, ruleset, live, config, as_json)
    else:
        _replay_one(store, record, decision_id, as_json)


def _live_ports(config: Path | None) -> tuple[ModelGateway | None, ToolConnector | None]:
    """What-if --live: the model groups and tools the service config names, to call what was never recorded."""
    if config is None:
        raise fail("--live needs --config FILE (the model groups and tools to call)")
    from adapters.usecases.config import load_config, model_gateway, tool_connectors

    try:
        settings = load_config(config)
        return model_gateway(settings), tool_connectors(settings, config.parent)
    except ValueError as e:
        raise fail(str(e)) from None


def _what_if_one(store: SqlStore, record: DecisionRecord, decision_id: str, ruleset: Path, live: bool,
                 config: Path | None, as_json: bool) -> None:
    """`baton replay ID --ruleset FILE`: the stored decision on the candidate, beside what it was."""
    live_models, live_tools = _live_ports(config) if live else (None, None)
    w = asyncio.run(what_if_stored(store, load_candidate(ruleset), record, live_models, live_tools))
    if as_json:
        out.print_json(json.dumps(whatif_dict(w)))
        return
    if w.error:
        raise fail(w.error, 1)
    table = Table("", "stored", "candidate", title=f"what-if {decision_id}")
    for key in ("outcome", "decision", "reason", "rule"):
        before, after = w.old.get(key), w.new.get(key)
        mark = "" if before == after else " [bold yellow]*[/]"
        table.add_row(key + mark, json.dumps(before), json.dumps(after))
    out.print(table)
    out.print(f"fired only before: {', '.join(w.fired_only_before) or '-'}")
    out.print(f"fired only after:  {', '.join(w.fired_only_after) or '-'}")
    for u in w.unanswered:
        out.print(f"unanswered: {u['action']} {json.dumps(u['request'])} (never called live)")
    for u in w.live:
        out.print(f"called live: {u['action']} {json.dumps(u['request'])}")
    out.print("CHANGED" if w.changed else "unchanged")


def _replay_one(store: SqlStore, record: DecisionRecord, decision_id: str, as_json: bool) -> None:
    """`baton replay ID`: the stored decision re-run exactly on its own version; exit 1 when it diverges."""
    result = asyncio.run(replay_stored(store, lambda version: engine_for_version(store, version), record))
    if as_json:
        div = result.divergence
        out.print_json(json.dumps({"decision_id": decision_id, "identical": result.identical,
                                   "divergence": None if div is None else {
                                       "index": div.index, "what": div.what, "expected": div.expected,
                                       "got": div.got}}))
    elif result.identical:
        out.print(f"identical: {decision_id} replays to the same trace and outcome ({record['outcome']})")
    else:
        div = result.divergence
        assert div is not None
        out.print(f"DIVERGED at {'trace event ' + str(div.index) if div.index >= 0 else div.what}")
        out.print(f"  expected: {json.dumps(div.expected)}")
        out.print(f"  got:      {json.dumps(div.got)}")
    if not result.identical:
        raise typer.Exit(1)


JobsOpt = Annotated[int | None, typer.Option("--jobs", min=1, help="worker processes [the machine's cores]")]
PartOpt = Annotated[str | None, typer.Option("--part", help="K/N: only the K-th of N disjoint parts of the history "
                                             "(one per machine; parts are chosen by a hash of the decision id)")]


def _parted(ids: list[str], part: str | None) -> list[str]:
    if part is None:
        return ids
    try:
        return part_of(ids, *parse_part(part))
    except ValueError as e:
        raise fail(str(e)) from None


def _with_progress(what: str, total: int, show: bool, work: Callable[[Callable[[int], None]], Any]) -> Any:
    columns = (TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    # redrawn at each update, not by a refresh thread: worker processes are forked from this one, and a thread
    # running at the fork (holding the terminal's lock, say) would leave them a lock nobody releases
    with Progress(*columns, console=err, disable=not show, transient=True, auto_refresh=False) as progress:
        task = progress.add_task(what, total=total)
        return work(lambda done: progress.update(task, completed=done, refresh=True))


def _replay_all(db: str | None, name: str | None, since: str | None, as_json: bool, jobs: int | None,
                part: str | None) -> None:
    store = open_store(db)
    since_ts = timestamp_option(since, "since")
    names = [name] if name else sorted({str(row[0]) for row in store.version_rows()})
    ids = _parted([i for n in names for i in store.recent_ids(n, since=since_ts)], part)
    workers = effective_jobs(jobs, len(ids))
    if workers > 1:
        results = _with_progress("replay", len(ids), not as_json,
                                 lambda progress: replay_jobs(store, ids, workers, progress))
    else:
        results = _with_progress("replay", len(ids), not as_json,
                                 lambda progress: asyncio.run(_replay_here(store, ids, progress)))
    bad = [r for r in results if not r.identical]
    if as_json:
        out.print_json(json.dumps({"replayed": len(results), "identical": len(results) - len(bad), "diverged": [
            {"decision_id": r.decision_id, "error": r.error, "divergence": None if r.divergence is None else {
                "index": r.divergence.index, "what": r.divergence.what, "expected": r.divergence.expected,
                "got": r.divergence.got}} for r in bad]}))
    else:
        out.print(f"{len(results) - len(bad)} of {len(results)} decisions replay identically")
        for r in bad:
            what = r.error or (f"trace event {r.divergence.index}: {r.divergence.what}" if r.divergence else "")
            out.print(f"DIVERGED {r.decision_id}: {what}")
    if bad:
        raise typer.Exit(1)


async def _replay_here(store: SqlStore, ids: list[str], progress: Callable[[int], None]) -> list[Replayed]:
    engines: dict[str, Engine] = {}
    out_: list[Replayed] = []
    for start in range(0, len(ids), 100):
        out_.extend(await replay_many(store, engines, ids[start:start + 100]))
        progress(len(out_))
    return out_


def impact_cmd(candidate: Annotated[Path, typer.Argument(help="candidate ruleset file")], db: DbOpt = None,
               last: Annotated[int | None, typer.Option(help="the last N decisions of this ruleset")] = None,
               since: Annotated[str | None, typer.Option(help="decisions since this date (ISO 8601)")] = None,
               as_json: JsonOpt = False, jobs: JobsOpt = None, part: PartOpt = None) -> None:
    """Run a candidate ruleset over stored decisions and summarise which outcomes would change.

    The history is split across --jobs worker processes (the same result as one); --part K/N takes one of N
    disjoint parts, for N machines sharing one PostgreSQL store (sum their --json outputs)."""
    store = open_store(db)
    engine = load_candidate(candidate)
    since_ts = timestamp_option(since, "since")
    ids = _parted(store.recent_ids(engine.ruleset.name, limit=last if last is not None or since_ts else 1000,
                                   since=since_ts), part)
    n = effective_jobs(jobs, len(ids))
    if n > 1:
        results = _with_progress("impact", len(ids), not as_json, lambda progress: impact_jobs(
            store, engine, candidate, ids, n, progress))
    else:
        results = asyncio.run(_impact(store, engine, ids, show=not as_json))
    changed = [w for w in results if w.changed]
    moves = Counter((w.old.get("outcome"), w.new.get("outcome", "error")) for w in changed)
    examples: dict[tuple[Any, Any], list[str]] = {}
    for w in changed:
        examples.setdefault((w.old.get("outcome"), w.new.get("outcome", "error")), []).append(w.decision_id)
    route_moves = Counter((json.dumps(w.old.get("decision")), json.dumps(w.new.get("decision"))) for w in changed)
    if as_json:
        out.print_json(json.dumps({
            "ruleset": engine.ruleset.name, "candidate": engine.ruleset.version, "decisions": len(results),
            "changed": len(changed),
            "changes": [{"from": a, "to": b, "count": n, "examples": examples[(a, b)][:5]}
                        for (a, b), n in moves.most_common()],
            "decision_changes": [{"from": json.loads(a), "to": json.loads(b), "count": n}
                                 for (a, b), n in route_moves.most_common()],
            "unanswered": sum(1 for w in results if w.unanswered),
        }))
        return
    out.print(f"{len(changed)} of {len(results)} decisions would change under {engine.ruleset.ref}")
    table = Table("from", "to", "count", "examples")
    for (a, b), n in moves.most_common():
        table.add_row(str(a), str(b), str(n), ", ".join(examples[(a, b)][:3]))
    for (a, b), n in route_moves.most_common():
        table.add_row(a, b, str(n), "")
    if changed:
        out.print(table)
    unanswered = sum(1 for w in results if w.unanswered)
    if unanswered:
        out.print(f"{unanswered} decision(s) needed a call that was never recorded (shown as unanswered)")


async def _impact(store: SqlStore, engine: Engine, ids: list[str], show: bool) -> list[WhatIf]:
    columns = (TextColumn("impact"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    impact = Impact()
    with Progress(*columns, console=err, disable=not show, transient=True) as progress:
        task = progress.add_task("impact", total=len(ids))
        async for done, _ in impact_steps(store, engine, ids, impact, every=1):
            progress.update(task, completed=done)
    return impact.results
