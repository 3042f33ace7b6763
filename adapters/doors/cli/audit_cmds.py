"""`baton log keygen | checkpoint | prove | check-proof` and the checkpoint half of `baton log verify`: signed
checkpoints of the decision log and the proofs an auditor hands to a regulator (adapters/infra/checkpoints.py,
docs/audit.md). `check-proof` reads no database: this module imports the store only inside the commands
that open one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from adapters.doors.cli.common import fail, out
from adapters.infra.checkpoints import (
    Checkpoint,
    Verifier,
    audit_log,
    check_proof,
    extension_problem,
    generate_keys,
    keep_in,
    load_private_key,
    prove_stored,
    read_checkpoints,
    read_public_keys,
    sign,
    write_checkpoint,
)

if TYPE_CHECKING:
    from adapters.infra.store.sql import SqlStore

DbOpt = Annotated[str | None, typer.Option("--db", help="database URL or SQLite file (default: the user data dir)")]
KEYS_HELP = "public key file (PEM); repeat for keys rotated out, whose checkpoints stay valid"
KeysOpt = Annotated[list[Path], typer.Option("--public-key", help=KEYS_HELP)]
MaybeKeysOpt = Annotated[list[Path] | None, typer.Option("--public-key", help=KEYS_HELP)]
OriginOpt = Annotated[str | None, typer.Option(help="the log's name in its checkpoints (default: the store's, "
                                                    "baton/<log id>)")]


def default_origin(store: SqlStore) -> str:
    return f"baton/{store.log_id()}"


def keygen(out_dir: Annotated[Path, typer.Option("--out", help="folder for checkpoint.key and checkpoint.pub")]
           ) -> None:
    """Write a new Ed25519 key pair for signing checkpoints: the private key (owner-only) for the service's
    `audit.signing_key` secret, the public key for verifiers. Never overwrites a key."""
    try:
        private, public = generate_keys(out_dir)
    except FileExistsError as e:
        raise fail(f"{e.filename}: already exists; keys are never overwritten (choose another --out)") from None
    except OSError as e:
        raise fail(f"{out_dir}: {e.strerror}") from None
    out.print(f"private key: {private} (keep it secret; give it to the service as a secret reference)")
    out.print(f"public key:  {public} (give it to whoever verifies)")


def checkpoint(db: DbOpt = None,
               key: Annotated[Path, typer.Option("--key", help="the private key file (PEM or base64)")] = Path(
                   "checkpoint.key"),
               out_dir: Annotated[Path, typer.Option("--out", help="the witness directory to add it to")] = Path(
                   "checkpoints"),
               origin: OriginOpt = None) -> None:
    """Sign a checkpoint of the log as it is now and add it to a directory (and to the store's copy)."""
    from adapters.doors.cli.common import open_store

    try:
        private = load_private_key(key.read_text(encoding="utf-8"), str(key))
    except OSError as e:
        raise fail(f"{key}: cannot read the private key: {e.strerror}") from None
    except ValueError as e:
        raise fail(str(e)) from None
    store = open_store(db)
    size, root = read_tree_head(store)
    origin = origin or default_origin(store)
    for where, previous in signed_before(store, out_dir, Verifier([private.public_key()], origin)):
        problem = extension_problem(store, previous, size, root)
        if problem:
            raise fail(f"not signed: {problem} ({where}); `baton log verify --checkpoints` names the rewrite", 1)
    cp = sign(private, origin, size, root)
    path = write_checkpoint(out_dir, cp)
    keep_in(store, cp)
    out.print(f"checkpoint: {size} decisions, root {root.hex()}, signed at {cp.time} -> {path}")


def read_tree_head(store: SqlStore) -> tuple[int, bytes]:
    """The store's tree size and root, or a CLI error when its chain head's tree columns do not make a tree."""
    try:
        return store.tree_head()
    except (ValueError, LookupError) as e:
        raise fail(f"{store.url}: the store's own tree head cannot be read ({e}): its chain_head row was edited; "
                   "`baton log verify --checkpoints` checks the log without it", 1) from None


def signed_before(store: SqlStore, folder: Path, verifier: Verifier) -> list[tuple[str, Checkpoint]]:
    """The newest checkpoint this key signed for this log, in ``folder`` and in the store's copy (either may be
    missing; the store's is taken only with a good signature, as anyone who can write the database can add one)."""
    found: list[tuple[str, Checkpoint]] = []
    if folder.is_dir():
        try:
            found = [(str(path), cp) for path, cp in read_checkpoints(folder)]
        except ValueError as e:
            raise fail(str(e)) from None
    for text in store.latest_checkpoints():
        try:
            found.append(("the store's copy", Checkpoint.from_json(json.loads(text), "the store's copy")))
        except (ValueError, RecursionError):
            pass
    mine = [(where, cp) for where, cp in found if verifier.problem(cp) is None]
    return [max(mine, key=lambda wc: (wc[1].size, wc[1].time))] if mine else []


def walked_pages(walked: bytes, size: int = 10_000) -> Iterator[list[tuple[int, str]]]:
    """(position, chain hash) pages of the hashes a chain walk recomputed, 32 bytes each, in chain order."""
    count = len(walked) // 32
    for start in range(0, count, size):
        yield [(i + 1, walked[32 * i:32 * i + 32].hex()) for i in range(start, min(start + size, count))]


def verify_checkpoints(store: SqlStore, folder: Path, keys: list[Path], origin: str | None,
                       walked: bytes | None = None) -> bool:
    """The checkpoint half of `baton log verify`: prints what it found; False when anything contradicts.
    ``walked``: the chain hashes the chain walk recomputed from the records (32 bytes each), the leaves of the
    tree held against the checkpoints - never the hash column read again, which a database can answer
    differently to a second query (a view that shows the original hashes to any query that does not read the
    records). None (a broken chain): the stored hashes, to tell whether they still match what was signed."""
    try:
        verifier = Verifier(read_public_keys(keys), origin or default_origin(store))
        found = read_checkpoints(folder)
    except ValueError as e:
        raise fail(str(e)) from None
    if not found:
        raise fail(f"{folder}: no checkpoints (checkpoint-*.json) to verify against")
    origins = sorted({cp.origin for _, cp in found})
    if verifier.origin not in origins:
        out.print(f"note: no checkpoint here is of log {verifier.origin!r}"
                  + ("" if origin else " (the store's log id)") + f"; they are of {', '.join(map(repr, origins))}"
                  + ("" if origin else ": the store's log id was changed, or these are another log's checkpoints "
                     "(--origin NAME holds the store against a log of that name)"))
    pages = store.chain_hashes() if walked is None else walked_pages(walked)
    audit = audit_log(pages, [(str(path), cp) for path, cp in found], verifier)
    if audit.problems:
        if audit.contradicted:
            out.print(f"CONTRADICTED: the stored log contradicts {audit.contradicted[0]}, the first of "
                      f"{len(audit.contradicted)} checkpoints it contradicts")
        for problem in audit.problems:
            out.print(f"  {problem}")
        return False
    out.print(f"ok: {len(audit.verified)} signed checkpoints, the last of {max(cp.size for _, cp in found)} "
              f"decisions, agree with the stored log ({audit.size} decisions)")
    try:
        size, root = store.tree_head()
    except (ValueError, LookupError) as e:
        out.print(f"warning: the store's own tree head cannot be read ({e}): proofs it serves will not verify (was its "
                  "chain_head row edited?)")
        return False
    if size < audit.size:  # decisions written by a process of an earlier version: the next batch takes them in
        out.print(f"note: the store's own tree covers {size} of the {audit.size} decisions so far")
    elif (size, root) != (audit.size, audit.root):
        out.print(f"warning: the store's own tree (size {size}, root {root.hex()[:16]}...) differs from the one "
                  "rebuilt from the chain: proofs it serves will not verify (were its tables edited?)")
        return False
    return True


def prove(decision_id: Annotated[str, typer.Argument(help="a stored decision id")], db: DbOpt = None,
          output: Annotated[Path | None, typer.Option("-o", "--output", help="write the proof here (default: "
                                                                             "standard output)")] = None) -> None:
    """A decision's proof of inclusion in the latest signed checkpoint that covers it: its record as hashed,
    its leaf hash, the inclusion proof and the checkpoint. `baton log check-proof` verifies it offline."""
    from adapters.doors.cli.common import open_store

    store = open_store(db)
    try:
        bundle = prove_stored(store, decision_id)
    except LookupError as e:
        raise fail(f"cannot prove {decision_id} from {store.url}: {e.args[0]}", 1) from None
    text = json.dumps(bundle, indent=1)
    if output is None:
        out.print(text, markup=False)
        return
    output.write_text(text + "\n", encoding="utf-8")
    cp = bundle["checkpoint"]
    out.print(f"proof of {decision_id} (position {bundle['entry']['chain_seq']}) in the checkpoint of {cp['size']} "
              f"decisions signed at {cp['time']} -> {output}")


def check_proof_cmd(proof: Annotated[Path, typer.Argument(help="a proof from `baton log prove`")], keys: KeysOpt,
                    checkpoints: Annotated[Path | None, typer.Option(
                        "--checkpoints", help="a witness's checkpoint directory, to hold the proof's against")]
                    = None,
                    origin: Annotated[str | None, typer.Option(help="the log's expected name (default: any)")]
                    = None) -> None:
    """Verify a decision's proof with the log's public key alone: no database. Exit 1 when it does not hold."""
    try:
        bundle = json.loads(proof.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # RecursionError: arrays nested beyond Python's stack
        raise fail(f"{proof}: not a readable JSON proof ({type(e).__name__}: {e})") from None
    try:
        verifier = Verifier(read_public_keys(keys), origin)
        witnessed = read_checkpoints(checkpoints) if checkpoints is not None else []
    except ValueError as e:
        raise fail(str(e)) from None
    good = []
    for path, cp in witnessed:
        problem = verifier.problem(cp)
        if problem:
            out.print(f"witness: {path}: {problem} (ignored)")
        else:
            good.append(cp)
    result = check_proof(bundle, verifier, good)
    for note in result.notes:
        out.print(f"note: {note}")
    if result.problems:
        out.print(f"NOT PROVEN: {proof}")
        for problem in result.problems:
            out.print(f"  {problem}")
        raise typer.Exit(1)
    signed = result.checkpoint
    assert signed is not None
    out.print(f"proven: decision {bundle['decision_id']} is entry {bundle['entry']['chain_seq']} of log "
              f"{signed.origin!r}, included in the {signed.describe()} (key {signed.key_id})")


if __name__ == "__main__":  # python -m adapters.doors.cli.audit_cmds PROOF --public-key FILE: the checker alone
    checker = typer.Typer(add_completion=False)
    checker.command()(check_proof_cmd)
    checker()
