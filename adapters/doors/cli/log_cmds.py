"""`baton log`, `baton escalations` and `baton effects`: the decision log (list, show, why, verify, and the
signed checkpoints of audit_cmds.py), the reviewers' queue and the effects outbox, read and worked from the
command line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from adapters.doors.cli import audit_cmds
from adapters.doors.cli.common import fail, open_store, out
from adapters.doors.cli.store_cmds import (
    DbOpt,
    JsonOpt,
    command_runtime,
    engine_for_version,
    stored_record,
    timestamp_option,
)
from adapters.infra.system import utc_text
from engine.errors import BatonError
from engine.explain import why
from engine.record import DecisionRecord

log_app = typer.Typer(no_args_is_help=True, help="Query and verify the decision log.")


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
    rows = store.list_decisions(ruleset, outcome, timestamp_option(since, "since"), timestamp_option(until, "until"),
                                limit)
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
