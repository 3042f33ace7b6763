"""`baton replay`, `baton impact` and `baton log ...`: the auditor's commands over the decision store."""

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

from adapters.doors.cli import audit_cmds
from adapters.doors.cli.common import err, fail, open_store, out, print_compile_errors, unreachable
from adapters.infra.rulesets import load_file
from adapters.infra.store.sql import SqlStore
from adapters.infra.system import utc_text
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
from engine.errors import BatonError, CompileErrors
from engine.explain import why
from engine.language.loader import load_ruleset
from engine.loop import Engine
from engine.record import DecisionRecord
from engine.replay import WhatIf

if TYPE_CHECKING:
    from adapters.usecases.runtime import Runtime
    from engine.ports import ModelGateway, ToolConnector

DbOpt = Annotated[str | None, typer.Option("--db", help="database URL or SQLite file (default: the user data dir)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]

log_app = typer.Typer(no_args_is_help=True, help="Query and verify the decision log.")


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




def _timestamp(value: str | None, option: str) -> float | None:
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
    since_ts = _timestamp(since, "since")
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
    since_ts = _timestamp(since, "since")
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


@log_app.command("verify")
def log_verify(db: DbOpt = None,
               checkpoints: Annotated[Path | None, typer.Option(
                   "--checkpoints", help="a witness's directory of signed checkpoints to hold the log against")]
               = None,
               public_keys: audit_cmds.MaybeKeysOpt = None,
               origin: audit_cmds.OriginOpt = None) -> None:
    """Walk the hash chain; report the first edited, inserted or deleted record. With --checkpoints: also
    that the log still has every signed tree (a history rewritten and re-hashed since is named by the first
    checkpoint it contradicts). Exit 1 when broken."""
    if checkpoints is not None and not public_keys:
        raise fail("--checkpoints needs --public-key FILE (the keys that signed them)")
    store = open_store(db)
    walked = bytearray()  # the chain hashes the walk recomputed (32 bytes each): the checkpoints' tree is built of them
    checked, problem = store.verify(verified=None if checkpoints is None else
                                    lambda digest: walked.extend(bytes.fromhex(digest)))
    if problem is None:
        out.print(f"ok: {checked} decisions, hash chain intact")
    else:
        where = f"decision {problem.decision_id} (position {problem.chain_seq})" if problem.decision_id else \
            "the chain"
        out.print(f"BROKEN at {where}: {problem.problem}; {checked} decisions before it verified")
    held = checkpoints is None or audit_cmds.verify_checkpoints(store, checkpoints, public_keys or [], origin,
                                                                None if problem else bytes(walked))
    if problem is not None or not held:
        raise typer.Exit(1)


log_app.command("keygen")(audit_cmds.keygen)
log_app.command("checkpoint")(audit_cmds.checkpoint)
log_app.command("prove")(audit_cmds.prove)
log_app.command("check-proof")(audit_cmds.check_proof_cmd)


@log_app.command("list")
def log_list(db: DbOpt = None, ruleset: Annotated[str | None, typer.Option()] = None,
             outcome: Annotated[str | None, typer.Option()] = None,
             since: Annotated[str | None, typer.Option(help="ISO 8601")] = None,
             until: Annotated[str | None, typer.Option(help="ISO 8601")] = None,
             limit: Annotated[int, typer.Option()] = 50, as_json: JsonOpt = False) -> None:
    """List stored decisions, newest first, with per-ruleset cost."""
    store = open_store(db)
    rows = store.list_decisions(ruleset, outcome, _timestamp(since, "since"), _timestamp(until, "until"), limit)
    if as_json:
        out.print_json(json.dumps({"decisions": rows, "cost_by_ruleset": store.cost_by_ruleset()}))
        return
    table = Table("id", "when (UTC)", "ruleset", "outcome", "rule", "ms", "cost $")
    for r in rows:
        table.add_row(r["id"], utc_text(r["created_at"]), f"{r['ruleset']}@{r['version'][:8]}", r["outcome"],
                      r["rule"], f"{r['latency_ms']:.1f}", f"{r['cost_usd']:.5f}")
    out.print(table)
    costs = Table("ruleset", "decisions", "tokens", "cost $", title="cost by ruleset")
    for c in store.cost_by_ruleset():
        costs.add_row(c["ruleset"], str(c["decisions"]), str(c["tokens"] or 0), f"{c['cost_usd'] or 0:.5f}")
    out.print(costs)


@log_app.command("show")
def log_show(decision_id: str, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Show a stored decision's trace: which rule fired on which facts, each model answer, cost."""
    record = stored_record(open_store(db), decision_id)
    if as_json:
        out.print_json(json.dumps(record))
        return
    out.print(f"[bold]{record['decision_id']}[/]  {record['ruleset']}@{record['version'][:12]}  "
              f"{utc_text(record['started_at'])} UTC", markup=True)
    out.print(f"outcome: {record['outcome']}  {json.dumps(record['decision'])}  reason: {record['reason'] or '-'}"
              f"  (rule {record['rule'] or '-'})")
    out.print(f"{record['steps']} firings in {record['rounds']} round(s), {record['calls']} call(s), "
              f"{record['latency_ms']:.1f} ms, cost ${record['cost_usd']:.5f}, {record['tokens']} tokens")
    for e in record["trace"]:
        kind = e["kind"]
        if kind == "fact":
            by = f" by {e['by']}" if e.get("by") else ""
            out.print(f"  r{e['round']} fact #{e['seq']} {e['type']} ({e['source']}{by}) {json.dumps(e['values'])}")
        elif kind == "fired":
            on = ", ".join(f"{b} #{s}" for b, s in e["facts"].items())
            out.print(f"  r{e['round']} step {e['step']}: fired {e['rule']} on {on}")
            for label in ("definitions", "aggregates"):  # each named value the condition read, on these facts
                if e.get(label):
                    shown = ", ".join(f"{name} = {json.dumps(value)}" for name, value in e[label].items())
                    out.print(f"      {label}: {shown}", markup=False)
        elif kind == "proposal":
            mark = ("superseded by its own later firing" if e.get("superseded") else
                    "WON" if e["won"] else "overridden")
            out.print(f"      {e['verb']} {json.dumps(e['payload'])} (priority {e['priority']}, {mark})",
                      markup=False)
        elif kind == "stopped":
            out.print(f"  r{e['round']} step {e['step']}: stopped by final rule {e['stopped_by']} "
                      "(no later firing, no further call)")
        elif kind == "effect":
            held = ", if its proposal wins" if e.get("if_wins") else ""
            out.print(f"      effect {e['name']} {json.dumps(e['with'])}{held}", markup=False)
        elif kind == "call":
            meta = e.get("meta") or {}
            extra = "".join(f" {k}={meta[k]}" for k in ("model", "total_tokens", "cost_usd") if k in meta)
            result = json.dumps(e.get("answer")) if e["status"] == "ok" else json.dumps(e.get("failure"))
            out.print(f"  r{e['round']} call {e['action']} ({e['type']}) {e['status']}"
                      f" {e.get('latency_ms', 0)} ms{extra}")
            out.print(f"      request: {json.dumps(e['request'])}")
            out.print(f"      answer:  {result}")


@log_app.command("why")
def log_why(decision_id: str, rule: str, db: DbOpt = None) -> None:
    """Why RULE did or did not fire on a stored decision."""
    store = open_store(db)
    record = stored_record(store, decision_id)
    engine = engine_for_version(store, record["version"])
    try:
        lines = why(engine.ruleset, record, rule)
    except KeyError:
        raise fail(f"ruleset {record['ruleset']} has no rule {rule!r}", 1) from None
    for line in lines:
        out.print(line)


escalations_app = typer.Typer(no_args_is_help=True, help="The reviewers' queue: list, show and resolve escalations.")


@escalations_app.command("list")
def escalations_list(db: DbOpt = None, queue: Annotated[str | None, typer.Option()] = None,
                     status: Annotated[str, typer.Option(help="open, resolved, expired or all")] = "open",
                     as_json: JsonOpt = False) -> None:
    """Escalations, oldest first, with their SLA."""
    rows = open_store(db).escalations(queue, None if status == "all" else status, 500)
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table("id", "queue", "reason", "expects", "created (UTC)", "SLA (UTC)", "status")
    for r in rows:
        table.add_row(r["id"], r["queue"], r["reason"], r["expects"] or "-", utc_text(r["created_at"]),
                      utc_text(r["sla_at"]) if r["sla_at"] else "-", r["status"])
    out.print(table)


@escalations_app.command("show")
def escalations_show(escalation_id: str, db: DbOpt = None) -> None:
    """An escalation with the facts of the decision that escalated."""
    store = open_store(db)
    row = store.escalation(escalation_id)
    if row is None:
        raise fail(f"no escalation {escalation_id!r}", 1)
    record = stored_record(store, escalation_id)
    out.print_json(json.dumps({"escalation": row, "facts": [
        {"type": e["type"], "values": e["values"], "source": e["source"]}
        for e in record["trace"] if e["kind"] == "fact"]}))


@escalations_app.command("resolve")
def escalations_resolve(escalation_id: str,
                        answer: Annotated[str, typer.Option(help="the reviewer's answer as JSON (the expected fact)")],
                        by: Annotated[str, typer.Option(help="who answers (kept in the record)")],
                        db: DbOpt = None,
                        config: Annotated[Path | None, typer.Option(help="service config for live calls")] = None,
                        rulesets: Annotated[Path, typer.Option(help="rulesets directory")] = Path("rulesets")) -> None:
    """Answer an escalation: the decision resumes and its new outcome is stored."""
    from adapters.usecases.escalations import NotOpen

    try:
        given = json.loads(answer)
    except ValueError as e:
        raise fail(f"--answer is not valid JSON: {e}") from None
    # the service's own wiring (adapters/usecases/runtime.py): the resumed decision is stored, logged, counted and
    # shadowed as one resumed from the console or over gRPC, with the same model gateway, tools and retrieval
    rt = command_runtime(config, db, rulesets)

    async def resolve() -> tuple[dict[str, Any], DecisionRecord]:
        rt.start()
        try:
            found = await rt.escalations.resolve(escalation_id, given, by)
            await rt.shadows.drain()
            return found
        finally:
            await rt.stop()

    try:
        row, record = asyncio.run(resolve())
    except (NotOpen, BatonError) as e:
        raise fail(str(e), 1) from None
    out.print(f"resolved {row['id']} ({row['status']}); resumed as {record['decision_id']}: {record['outcome']} "
              f"{json.dumps(record['decision'])} {record['reason']}")


effects_app = typer.Typer(no_args_is_help=True, help="The effects outbox: list, retry dead letters, run a worker.")


@effects_app.command("list")
def effects_list(db: DbOpt = None, status: Annotated[str | None, typer.Option(
        help="pending, sending, done or dead")] = None, as_json: JsonOpt = False) -> None:
    """Effects in the outbox (dead letters with their last error)."""
    rows = open_store(db).effects(status)
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table("id", "effect", "status", "attempts", "next try (UTC)", "last error", "retried by")
    for r in rows:
        table.add_row(r["id"], r["name"], r["status"], str(r["attempts"]),
                      utc_text(r["next_at"]) if r["status"] == "pending" else "-", (r["last_error"] or "")[:80],
                      f"{r['retried_by']} at {utc_text(r['retried_at'])}" if r.get("retried_by") else "")
    out.print(table)


@effects_app.command("show")
def effects_show(effect_id: Annotated[str, typer.Argument(help="the effect's id (decision id:number)")],
                 db: DbOpt = None) -> None:
    """One effect: its payload, delivery state, attempts and last error."""
    row = open_store(db).effect(effect_id)
    if row is None:
        raise fail(f"no effect {effect_id!r}")
    out.print_json(json.dumps({**row, "payload": json.loads(row["payload"])}))


@effects_app.command("retry")
def effects_retry(ids: Annotated[list[str] | None, typer.Argument(help="effect ids; all dead letters if none")]
                  = None, db: DbOpt = None,
                  by: Annotated[str | None, typer.Option(help="who retries (recorded); default: your login")] = None,
                  ) -> None:
    """Put dead letters back in the queue, recording who did."""
    import getpass
    import time

    who = by or getpass.getuser()
    n = open_store(db).retry_effects(ids or None, time.time(), by=who)
    out.print(f"{n} effect(s) queued again by {who}")


@effects_app.command("run")
def effects_run(config: Annotated[Path, typer.Option(help="service config with an effects: section")],
                db: DbOpt = None, once: Annotated[bool, typer.Option(help="one pass, then exit")] = False,
                lease: Annotated[float, typer.Option(help="seconds a claimed effect stays claimed")] = 30.0,
                max_attempts: Annotated[int | None, typer.Option(help="attempts before an effect is dead (default: "
                                                                      "the config's delivery.give_up_after_s)")] = None
                ) -> None:
    """Deliver effects from the outbox (what `baton serve` does in the background)."""
    import signal

    from adapters.infra.effects import OutboxWorker
    from adapters.usecases.config import effect_connectors, load_config

    try:
        connectors = effect_connectors(load_config(config), config.parent)
    except ValueError as e:
        raise fail(str(e)) from None
    settings = load_config(config)
    d = settings.delivery
    worker = OutboxWorker(open_store(db), connectors, lease_s=lease, max_attempts=max_attempts,
                          first_retry_s=d.first_retry_s, max_retry_s=d.max_retry_s, give_up_after_s=d.give_up_after_s)

    async def main() -> None:
        if once:
            await worker.run_once()
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await worker.run(stop)

    asyncio.run(main())
