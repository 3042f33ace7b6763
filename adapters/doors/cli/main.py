"""The `baton` command line: check, test and decide on ruleset files (more commands join as they land)."""

from __future__ import annotations

import atexit
import gc
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from adapters.doors.cli.common import err, fail, out, print_compile_errors, print_warnings
from adapters.doors.cli.lazy import Lazy, lazy_group
from engine.errors import BatonError, CompileErrors

if TYPE_CHECKING:
    from adapters.usecases.commands import DecideCommand
    from engine.loop import Decision
    from engine.ports import ModelGateway, ToolConnector
    from engine.record import DecisionRecord

# A 10,000-rule ruleset leaves about a million objects behind; the full collection the interpreter runs
# when it shuts down would walk them all, for seconds, to reclaim nothing, since the process is ending.
atexit.register(gc.freeze)

# Commands whose modules load the store, gRPC, brokers or retrieval: imported only when they run, so that
# --help, check and test start quickly (adapters/doors/cli/lazy.py; the help here is tested equal to their own).
LAZY = {
    "index": Lazy("adapters.doors.cli.documents_cmds", "index_cmd",
                  "Index a folder of policy documents as a new version of a corpus (earlier versions stay)."),
    "search": Lazy("adapters.doors.cli.documents_cmds", "search_cmd",
                   "Search a corpus the way a ruleset's retrieve action does."),
    "corpora": Lazy("adapters.doors.cli.documents_cmds", "corpora_cmd", "Indexed corpora and their versions."),
    "replay": Lazy("adapters.doors.cli.store_cmds", "replay_cmd",
                   "Re-run a stored decision exactly (identical, or the first divergence), or on a candidate ruleset."),
    "impact": Lazy("adapters.doors.cli.store_cmds", "impact_cmd",
                   "Run a candidate ruleset over stored decisions and summarise which outcomes would change."),
    "bench": Lazy("adapters.doors.cli.bench", "bench",
                  "Run the standard load and print decisions/s, latency percentiles and CPU per decision."),
    "log": Lazy("adapters.doors.cli.log_cmds", "log_app", "Query and verify the decision log.", group=True),
    "escalations": Lazy("adapters.doors.cli.log_cmds", "escalations_app",
                        "The reviewers' queue: list, show and resolve escalations.", group=True),
    "effects": Lazy("adapters.doors.cli.log_cmds", "effects_app",
                    "The effects outbox: list, retry dead letters, run a worker.", group=True),
    "rulesets": Lazy("adapters.doors.cli.governance_cmds", "rulesets_app", "Ruleset versions, publications and diffs.",
                     group=True),
    "table": Lazy("adapters.doors.cli.governance_cmds", "table_app", "Decision tables as CSV: export and import.",
                  group=True),
    "dmn": Lazy("adapters.doors.cli.dmn_cmds", "dmn_app",
                "DMN models: import into a ruleset, run TCK test files, export.", group=True),
    "shadow": Lazy("adapters.doors.cli.governance_cmds", "shadow_app",
                   "Shadow runs: candidate versions evaluated beside live ones.", group=True),
    "tail": Lazy("adapters.doors.cli.broker_cmds", "tail_app",
                 "Watch messages arrive on a broker (effects, replies, dead letters).", group=True),
}
app = typer.Typer(add_completion=False, no_args_is_help=True, help="Baton: a rules-engine-first decision service.",
                  cls=lazy_group(LAZY))


@app.callback()
def _every_command() -> None:
    # before any command (not for --help): glibc's heap trimming would otherwise page-fault each engine
    # session in again
    from adapters.infra.system import tune_allocator

    tune_allocator()


PathsArg = Annotated[list[Path], typer.Argument(help="ruleset files or directories")]


@app.command()
def check(paths: PathsArg,
          strict: Annotated[bool, typer.Option(help="treat static-analysis warnings as errors")] = False) -> None:
    """Validate ruleset files; print every error and warning with file:line:column.

    Exit 1 on any error (or, with --strict, any warning)."""
    from adapters.infra.rulesets import display, load_file, ruleset_files

    files = ruleset_files(paths)
    if not files:
        raise fail("no ruleset files found")
    bad = 0
    warned = 0
    for f in files:
        try:
            rs = load_file(f)
        except CompileErrors as e:
            print_compile_errors(e)
            bad += 1
            continue
        print_warnings(rs.warnings, as_errors=strict)
        warned += bool(rs.warnings)
        note = f", {len(rs.warnings)} warning(s)" if rs.warnings else ""
        status = "ok " if not (strict and rs.warnings) else "bad"
        out.print(f"{status} {display(f)}  {rs.ref}  ({len(rs.rules)} rules, {len(rs.tests)} tests{note})")
    if bad or (strict and warned):
        err.print(f"{bad + (warned if strict else 0)} of {len(files)} ruleset file(s) have "
                  f"{'errors' if not strict else 'errors or warnings (--strict)'}")
        raise typer.Exit(1)


@app.command()
def schema(output: Annotated[Path | None, typer.Option("-o", "--output", help="write it to this file")] = None,
           ) -> None:
    """Print the JSON Schema of ruleset files, for editors that validate YAML as you type.

    Save it (baton schema -o ruleset.schema.json) and put this first line in a ruleset:
    # yaml-language-server: $schema=ruleset.schema.json"""
    from engine.language.schema import ruleset_schema

    text = json.dumps(ruleset_schema(), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    output.write_text(text, encoding="utf-8")
    err.print(f"wrote {output}")


@app.command("test")
def test_cmd(paths: PathsArg,
             min_coverage: Annotated[float, typer.Option(help="fail below this rule coverage (percent)")] = 0.0,
             rows: Annotated[bool, typer.Option("--rows", help="list each table's rows no test hit")] = False,
             ) -> None:
    """Run the tests embedded in ruleset files with their recorded answers; report rule coverage (and,
    for decision tables, rows hit per table)."""
    import asyncio

    from adapters.infra.rulesets import display, load_file, ruleset_files
    from engine.language.tables import table_coverage, table_rule_names
    from engine.testing import run_suite

    files = ruleset_files(paths)
    if not files:
        raise fail("no ruleset files found")
    failed = errors = total = 0
    for f in files:
        try:
            rs = load_file(f)
        except CompileErrors as e:
            print_compile_errors(e)
            errors += 1
            continue
        suite = asyncio.run(run_suite(rs, time.time()))
        out.print(f"[bold]{display(f)}[/] ({rs.ref})", markup=True)
        for r in suite.results:
            total += 1
            if r.passed:
                out.print(f"  [green]PASS[/] {r.name}", markup=True)
            else:
                failed += 1
                out.print(f"  [red]FAIL[/] {r.name}  ({display(f)}:{r.line})", markup=True)
                for line in r.failures:
                    out.print("       " + line.replace("\n", "\n       "), markup=False)
        covered = len(rs.rules) - len(suite.uncovered)
        pct = 100.0 * covered / len(rs.rules) if rs.rules else 100.0
        out.print(f"  coverage: {covered}/{len(rs.rules)} rules fired ({pct:.0f}%)")
        table_rules = table_rule_names(rs.tables)
        fired = {name for r in suite.results if r.record for name in r.record.fired}
        for table, hit, never in table_coverage(rs.tables, fired):
            out.print(f"  table {table.name}: {hit}/{len(table.rows)} rows hit", markup=False)
            if rows and never:
                out.print(f"    rows never hit: {', '.join(f'{r.number} (line {r.where.line})' for r in never)}",
                          markup=False)
        if suite.uncovered:
            plain_rules = [name for name in suite.uncovered if name not in table_rules]
            if plain_rules:
                out.print(f"  [yellow]never fired:[/] {', '.join(plain_rules)}", markup=True)
            if pct < min_coverage:
                failed += 1
    out.print(f"{total - failed} passed, {failed} failed" + (f", {errors} ruleset(s) with errors" if errors else ""))
    if failed or errors:
        raise typer.Exit(1)


def read_json(source: str, what: str) -> Any:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as e:
        raise fail(f"cannot read {what} {source}: {e.strerror}") from None
    try:
        return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"{c} is not allowed")))
    except ValueError as e:
        raise fail(f"{what} {source} is not valid JSON: {e}") from None


@app.command()
def decide(ruleset: Annotated[str, typer.Argument(help="ruleset name or .yaml path")],
           facts: Annotated[str | None, typer.Option("--facts", help="JSON file of facts, or - for stdin")] = None,
           document: Annotated[list[Path] | None, typer.Option("--document", help="a PDF, Markdown or text file "
                                                               "sent beside the facts (repeatable)")] = None,
           answers: Annotated[str | None, typer.Option(help="JSON file of recorded answers by action")] = None,
           config: Annotated[Path | None, typer.Option(help="service config YAML: live model and tool calls")]
           = None,
           rulesets: Annotated[Path, typer.Option(help="rulesets directory")] = Path("rulesets"),
           db: Annotated[str | None, typer.Option("--db", help="store the decision in this database")] = None,
           store: Annotated[bool, typer.Option(help="store the decision (in --db or the default database)")]
           = False,
           batch: Annotated[str | None, typer.Option("--batch", help="JSON Lines file, one facts object a line "
                                                     "(- for stdin): one result line out per line")] = None,
           ) -> None:
    """Make one decision and print its record as JSON (stored with --db or --store).

    With --batch FILE.jsonl: one decision per line, one JSON line out per line in order (the record, or the
    line's error; errors also on stderr as FILE:LINE); exit 1 if any line failed."""
    import asyncio

    from adapters.infra.rulesets import find_ruleset, load_file
    from adapters.usecases.commands import DecideCommand, RawDocument
    from engine.loop import Engine

    try:
        rs = load_file(find_ruleset(ruleset, rulesets))
    except CompileErrors as e:
        print_compile_errors(e)
        raise typer.Exit(1) from None
    except BatonError as e:
        raise fail(str(e)) from None
    if batch is not None and (facts or document):
        raise fail("--batch reads every request from its file: give it without --facts or --document")
    given = read_json(facts, "facts") if facts else {}
    sent = []
    for path in document or []:
        try:
            sent.append(RawDocument(path.name, path.read_bytes()))
        except OSError as e:
            raise fail(f"{path}: cannot read: {e.strerror}") from None
    if not facts and not sent and batch is None:
        raise fail("give --facts FILE, --document FILE, or both")
    model_port, tool_port = _ports(answers, config)
    if batch is not None:
        from adapters.doors.cli.decide_batch import batch_cmd

        raise typer.Exit(1 if batch_cmd(rs, batch, (model_port, tool_port), bool(db or store), config, db,
                                        rulesets) else 0)
    command = DecideCommand(caller="cli", engine=Engine(rs), facts=given, documents=sent)
    try:
        if db or store:
            data: Any = _decide_and_store(config, db, rulesets, rs, command, (model_port, tool_port))
        else:  # not stored: nothing to log, count or shadow
            data = asyncio.run(_decide_alone(command, model_port, tool_port)).to_dict()
    except BatonError as e:
        raise fail(_named_documents(str(e), document or []), 1) from None
    out.print_json(json.dumps(data, ensure_ascii=False))


def _named_documents(text: str, documents: list[Path]) -> str:
    """An error about ``documents[i]`` (the request's words) in the command's: the ``--document`` it came from."""
    for i, path in enumerate(documents):
        text = text.replace(f"documents[{i}]", f"--document {path}")
    return text


def _ports(answers: str | None, config: Path | None) -> tuple[ModelGateway, ToolConnector]:
    """`baton decide`'s model gateway and tools: the config's live ones, else the recorded answers given."""
    from engine.recorded import RecordedAnswers

    recorded = RecordedAnswers(read_json(answers, "answers") if answers else {})
    if config is None:
        return recorded, recorded
    from adapters.usecases.config import load_config, model_gateway, tool_connectors

    try:
        settings = load_config(config)
        return model_gateway(settings) or recorded, tool_connectors(settings, config.parent) or recorded
    except ValueError as e:
        raise fail(str(e)) from None


async def _decide_alone(command: DecideCommand, models: ModelGateway, tools: ToolConnector) -> Decision:
    """`baton decide` without a store: the engine alone, under its own limits."""
    from adapters.infra.documents import read_document
    from adapters.infra.system import SystemClock, TimeOrderedIds
    from engine.loop import Limits

    assert command.engine is not None
    validated = command.engine.validate_input(command.facts, allow_empty=bool(command.documents))
    incoming = [read_document(d.name, d.content, path=f"documents[{i}]") for i, d in enumerate(command.documents)]
    decision: Decision = await command.engine.run(validated, models, tools, SystemClock(), TimeOrderedIds(),
                                                  Limits(), documents=[i.document for i in incoming])
    return decision


def _decide_and_store(config: Path | None, db: str | None, rulesets: Path, rs: Any, command: DecideCommand,
                      given_ports: tuple[ModelGateway, ToolConnector]) -> DecisionRecord:
    """The CLI door onto the Decide use case, wired by the service's own composition root: stored, logged,
    counted, traced and shadowed as a decision that came in over gRPC or a broker is, and its tools search the
    store's corpora (attached shadows are evaluated before the command ends)."""
    import asyncio

    from adapters.doors.cli.store_cmds import command_runtime

    rt = command_runtime(config, db, rulesets, given_ports)

    async def go() -> DecisionRecord:
        rt.start()
        try:
            rt.store.save_ruleset(rs)
            answer = await rt.decide.one(command)
            await rt.shadows.drain()
            return answer.record
        finally:
            await rt.stop()

    return asyncio.run(go())


@app.command()
def serve(listen: Annotated[str | None, typer.Option(help="host:port to listen on [127.0.0.1:50051]")] = None,
          db: Annotated[str | None, typer.Option("--db", help="database URL or SQLite file")] = None,
          rulesets: Annotated[Path | None, typer.Option(help="rulesets directory loaded at start")] = None,
          workers: Annotated[int | None, typer.Option(help="worker processes sharing the port")] = None,
          config: Annotated[Path | None, typer.Option(help="service config (see baton.example.yaml)")] = None,
          tokens: Annotated[Path | None, typer.Option(help="YAML/JSON file of bearer tokens and roles")] = None,
          answers: Annotated[Path | None, typer.Option(help="canned model/tool answers (offline demo)")] = None,
          metrics: Annotated[str | None, typer.Option(help="host:port for the Prometheus /metrics endpoint")] = None,
          tls_cert: Annotated[Path | None, typer.Option(help="server certificate (PEM)")] = None,
          tls_key: Annotated[Path | None, typer.Option(help="server private key (PEM)")] = None,
          tls_client_ca: Annotated[Path | None, typer.Option(help="require client certificates from this CA")]
          = None,
          max_inflight: Annotated[int | None, typer.Option(help="decisions in flight per worker")] = None,
          insecure_no_auth: Annotated[bool, typer.Option(help="serve a non-local address without auth")] = False,
          sla_check: Annotated[float | None, typer.Option(help="seconds between SLA checks")] = None,
          console: Annotated[str | None, typer.Option(help="host:port to serve the browser console on")] = None,
          ) -> None:
    """Run the gRPC decision service. Options override the config file, which env BATON_* overrides."""
    from adapters.doors.grpc.auth import load_tokens
    from adapters.doors.grpc.workers import serve as run
    from adapters.usecases.config import load_config

    try:
        settings = load_config(config)
        update: dict[str, object] = {k: v for k, v in {
            "listen": listen, "db": db, "rulesets": rulesets, "workers": workers, "answers": answers,
            "metrics": metrics, "sla_check_s": sla_check, "console": console}.items() if v is not None}
        if insecure_no_auth:
            update["insecure_no_auth"] = True
        if max_inflight is not None:
            update["limits"] = settings.limits.model_copy(update={"max_inflight": max_inflight})
        if tls_cert or tls_key or tls_client_ca:
            update["tls"] = settings.tls.model_copy(update={k: v for k, v in {
                "cert": tls_cert, "key": tls_key, "client_ca": tls_client_ca}.items() if v is not None})
        if tokens is not None:
            load_tokens(tokens, extra_roles=settings.pii_roles)  # a file that does not read stops the start here
            update["tokens_file"] = tokens.resolve()
        settings = settings.model_copy(update=update)
        run(settings, config.parent if config else Path.cwd())
    except CompileErrors as e:
        print_compile_errors(e)
        raise typer.Exit(1) from None
    except (ValueError, OSError) as e:
        raise fail(str(e)) from None


@app.command()
def consume(config: Annotated[Path, typer.Option(help="service config with a consumers: section")],
            db: Annotated[str | None, typer.Option("--db", help="database URL or SQLite file")] = None,
            rulesets: Annotated[Path | None, typer.Option(help="rulesets directory loaded at start")] = None,
            answers: Annotated[Path | None, typer.Option(help="canned model/tool answers (offline demo)")] = None,
            ) -> None:
    """Take decision requests from JetStream or RabbitMQ (the config's consumers:), decide, store, reply,
    then acknowledge; deliver effects. Runs until SIGTERM; SIGHUP re-reads secrets."""
    from adapters.doors.grpc.server import run_consumer_process
    from adapters.infra.logs import setup_logging
    from adapters.infra.system import run_loop
    from adapters.usecases.config import load_config

    try:
        settings = load_config(config)
        settings = settings.model_copy(update={k: v for k, v in {"db": db, "rulesets": rulesets,
                                                                 "answers": answers}.items() if v is not None})
        setup_logging(settings.log_format, settings.log_level)
        run_loop(settings.event_loop, run_consumer_process(settings, config.parent))
    except CompileErrors as e:
        print_compile_errors(e)
        raise typer.Exit(1) from None
    except (ValueError, OSError) as e:
        raise fail(str(e)) from None


config_app = typer.Typer(no_args_is_help=True, help="Service configuration.")
app.add_typer(config_app, name="config")


@config_app.command("check")
def config_check(config: Annotated[Path | None, typer.Argument(help="the config file")] = None) -> None:
    """Validate the config (file and BATON_* environment) and every connector it names; exit 1 on error."""
    from adapters.infra.witnesses import check_audit
    from adapters.usecases.config import effect_connectors, load_config, model_gateway, tool_connectors

    try:
        settings = load_config(config)
        base = config.parent if config else Path.cwd()
        model_gateway(settings)
        tool_connectors(settings, base)
        effect_connectors(settings, base)
        witnesses = check_audit(settings, base) if settings.audit is not None else []
        from adapters.doors.intake import consumers_from

        consumers = consumers_from(settings.consumers)
    except ValueError as e:
        err.print(str(e), markup=False)
        raise typer.Exit(1) from None
    out.print(f"ok: listen {settings.listen}, db {settings.db or 'default SQLite'}, {settings.workers} worker(s), "
              f"{len(settings.tokens)} token(s), models: {'yes' if settings.models else 'no'}, tools: "
              f"{', '.join(settings.tools or {}) or 'none'}, effects: {', '.join(settings.effects or {}) or 'none'}, "
              f"consumers: {', '.join(c.name for c in consumers) or 'none'}, checkpoints to: "
              f"{', '.join(witnesses) or 'none'}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
