"""`baton index` and `baton search`: policy corpora for the `retrieve` connector."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from adapters.doors.cli.common import err, fail, open_store, out
from adapters.doors.cli.store_cmds import DbOpt, JsonOpt
from adapters.infra.retrieval import corpora, index_directory, search
from engine.errors import BatonError


def index_cmd(directory: Annotated[Path, typer.Argument(help="folder of .md, .txt and .pdf policy documents")],
              corpus: Annotated[str, typer.Option("--corpus", help="the corpus name rulesets retrieve from")],
              db: DbOpt = None) -> None:
    """Index a folder of policy documents as a new version of a corpus (earlier versions stay)."""
    if not directory.is_dir():
        raise fail(f"{directory}: not a folder")
    store = open_store(db)
    columns = (TextColumn("indexing {task.fields[name]}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[file]}"))
    started = time.perf_counter()
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("index", total=None, name=corpus, file="")

        def tick(done: int, total: int, name: str) -> None:
            progress.update(task, completed=done, total=total, file=name[-40:])

        try:
            version, documents, passages = index_directory(store, directory, corpus, tick)
        except BatonError as e:
            raise fail(e.message, 1) from None
    out.print(f"corpus {corpus} v{version}: {documents} documents, {passages} passages "
              f"in {time.perf_counter() - started:.1f}s", markup=False)


def search_cmd(corpus: Annotated[str, typer.Argument(help="corpus name")],
               query: Annotated[str, typer.Argument(help="what to look for")],
               top: Annotated[int, typer.Option(help="how many passages")] = 5,
               version: Annotated[int | None, typer.Option(help="corpus version (default: the latest)")] = None,
               db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Search a corpus the way a ruleset's retrieve action does."""
    store = open_store(db)
    try:
        found = search(store, corpus, query, top, version)
    except BatonError as e:
        raise fail(e.message, 1) from None
    if as_json:
        out.print_json(json.dumps(found))
        return
    table = Table("score", "document", "section", "text")
    for p in found:
        text = p["text"].replace("\n", " ")
        table.add_row(f"{p['score']:.3f}", p["document"], p["section"], text[:160] + ("…" if len(text) > 160 else ""))
    out.print(table)


def corpora_cmd(db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Indexed corpora and their versions."""
    rows = corpora(open_store(db))
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table("corpus", "version", "status", "documents", "passages", "source")
    for r in rows:
        table.add_row(r["name"], str(r["version"]), r["status"], str(r["documents"]), str(r["passages"]),
                      str(r["source"]).split("#")[0])
    out.print(table)
