"""Signed checkpoints of the decision log and the proofs checked against them, with no database.

A checkpoint says "the log ``origin`` had ``size`` decisions, and the Merkle tree over their chain hashes
(RFC 9162; engine/merkle.py) had root ``root``, at ``time``", signed with Ed25519. The private key is
given to Baton as a secret reference and never stored; checkpoints go to witnesses outside the database
(adapters/infra/witnesses.py). Whoever later rewrites the stored history - even recomputing every chain hash, as
anyone with write access to the database can - cannot make the tree over the first ``size`` decisions
have the signed root again without the key (`baton log verify --checkpoints`; docs/audit.md).

A proof (`baton log prove`) carries one decision exactly as it was hashed (its canonical head and trace
events, its chain position and the hash before it), its inclusion proof and the signed checkpoint; this
module checks it with the checkpoint's public key alone. It imports nothing of the store: an auditor's
machine needs neither the database nor its drivers."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from engine import merkle
from engine.audit import chain_hash, tree_leaf

BODY_HEADER = "baton checkpoint v1"
PROOF_FORMAT = "baton-proof/v1"
PRIVATE_FILE, PUBLIC_FILE = "checkpoint.key", "checkpoint.pub"


# -- keys ------------------------------------------------------------------------------------------------
def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """A short name for a public key: the first 8 bytes of the SHA-256 of its 32 bytes, in hex."""
    return hashlib.sha256(raw_public(key)).hexdigest()[:16]


def generate_keys(folder: Path) -> tuple[Path, Path]:
    """A new key pair in ``folder``: the private key (PKCS#8 PEM, readable by its owner only) and the public
    key (PEM) to hand to verifiers. Refuses to overwrite either."""
    folder.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    priv_path, pub_path = folder / PRIVATE_FILE, folder / PUBLIC_FILE
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    with pub_path.open("xb") as f:
        f.write(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv_path, pub_path


def load_private_key(text: str, where: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM text, or from the base64 of its 32 raw bytes (fits an environment
    variable). ValueError naming ``where`` otherwise."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))
    except (ValueError, TypeError, binascii.Error) as e:
        raise ValueError(f"{where}: not an Ed25519 private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{where}: the key is {type(key).__name__}, not Ed25519")
    return key


def load_public_key(text: str, where: str) -> Ed25519PublicKey:
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (ValueError, TypeError, binascii.Error) as e:
        raise ValueError(f"{where}: not an Ed25519 public key ({e})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{where}: the key is {type(key).__name__}, not Ed25519")
    return key


def read_public_keys(paths: Iterable[Path]) -> list[Ed25519PublicKey]:
    keys = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"{path}: cannot read the public key: {e.strerror}") from None
        keys.append(load_public_key(text, str(path)))
    return keys


# -- checkpoints -----------------------------------------------------------------------------------------
def utc_stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str  # names the log: checkpoints of another log never verify against this one
    size: int
    root: bytes
    time: str  # UTC, ISO 8601, as signed
    key_id: str
    signature: bytes

    def body(self) -> bytes:
        return signed_body(self.origin, self.size, self.root, self.time)

    def to_json(self) -> dict[str, Any]:
        return {"origin": self.origin, "size": self.size, "root": self.root.hex(), "time": self.time,
                "key_id": self.key_id, "signature": base64.b64encode(self.signature).decode()}

    @classmethod
    def from_json(cls, data: Any, where: str) -> Checkpoint:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: a checkpoint is a JSON object")
        try:
            origin, size, root, at = data["origin"], data["size"], data["root"], data["time"]
            kid, signature = data["key_id"], data["signature"]
        except KeyError as e:
            raise ValueError(f"{where}: the checkpoint has no {e.args[0]!r}") from None
        if not isinstance(origin, str) or "\n" in origin or not origin:
            raise ValueError(f"{where}: origin: a non-empty line of text")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"{where}: size: a whole number of decisions, not {size!r}")
        if not isinstance(at, str) or "\n" in at:
            raise ValueError(f"{where}: time: a line of text")
        try:
            root_bytes = bytes.fromhex(root)
            sig = base64.b64decode(signature, validate=True)
        except (ValueError, TypeError, binascii.Error):
            raise ValueError(f"{where}: root (hex) or signature (base64) is malformed") from None
        if len(root_bytes) != 32:
            raise ValueError(f"{where}: root: 32 bytes in hex")
        return cls(origin, size, root_bytes, at, str(kid), sig)

    def describe(self) -> str:
        return f"checkpoint of {self.size} decisions signed at {self.time}"


def signed_body(origin: str, size: int, root: bytes, at: str) -> bytes:
    """The exact bytes signed: a header line, then origin, size, root (hex) and time, one per line."""
    return f"{BODY_HEADER}\n{origin}\n{size}\n{root.hex()}\n{at}\n".encode()


def sign(key: Ed25519PrivateKey, origin: str, size: int, root: bytes, at: float | None = None) -> Checkpoint:
    stamp = utc_stamp(time.time() if at is None else at)
    return Checkpoint(origin, size, root, stamp, key_id(key.public_key()),
                      key.sign(signed_body(origin, size, root, stamp)))


class Verifier:
    """Checks checkpoints against one or more public keys: old keys stay listed after a rotation, so the
    checkpoints they signed stay verifiable."""

    def __init__(self, keys: Sequence[Ed25519PublicKey], origin: str | None = None) -> None:
        if not keys:
            raise ValueError("no public key to verify checkpoints with")
        self.keys = {key_id(k): k for k in keys}
        self.origin = origin

    def problem(self, cp: Checkpoint) -> str | None:
        """None when the checkpoint is signed by one of the keys (and is of ``origin`` when one is set)."""
        key = self.keys.get(cp.key_id)
        if key is None:
            return f"it names key {cp.key_id}, which is not among the public keys given " \
                   f"({', '.join(sorted(self.keys))}): signed by another key, or a key not passed with --public-key"
        try:
            key.verify(cp.signature, cp.body())
        except InvalidSignature:
            return "its signature does not verify: the checkpoint was forged or altered after signing"
        if self.origin is not None and cp.origin != self.origin:
            return f"it is a checkpoint of another log ({cp.origin!r}, this log is {self.origin!r})"
        return None


def keep_in(store: Any, cp: Checkpoint) -> None:
    """Keep a copy in the store (``add_checkpoint``), where proofs and the console find the latest."""
    store.add_checkpoint(f"{cp.size}-{cp.key_id}-{cp.time}", cp.size, cp.time, json.dumps(cp.to_json()))


def checkpoint_file(folder: Path, cp: Checkpoint) -> Path:
    """Where a directory witness keeps a checkpoint: one file each, never overwritten."""
    stamp = cp.time.replace(":", "").replace("-", "").replace(".", "")
    digest = hashlib.sha256(cp.body() + cp.signature).hexdigest()[:12]
    return folder / f"checkpoint-{cp.size:012d}-{stamp}-{digest}.json"


def write_checkpoint(folder: Path, cp: Checkpoint) -> Path:
    """Add a checkpoint to a directory: written to a new file, synced, then linked into place, so a reader
    never sees half a checkpoint and an existing file is never replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    path = checkpoint_file(folder, cp)
    tmp = folder / f".{path.name}.tmp"
    data = json.dumps(cp.to_json(), indent=1, sort_keys=True).encode() + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if the file exists: append-only
    finally:
        tmp.unlink()
    return path


def read_checkpoints(folder: Path) -> list[tuple[Path, Checkpoint]]:
    """Every checkpoint file in ``folder``, oldest first (by size, then time). ValueError names a bad file."""
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such directory of checkpoints")
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as e:  # RecursionError: arrays nested beyond Python's stack
            raise ValueError(f"{path}: not a readable JSON checkpoint ({type(e).__name__}: {e})") from None
        found.append((path, Checkpoint.from_json(data, str(path))))
    found.sort(key=lambda pc: (pc[1].size, pc[1].time))
    return found


# -- proofs ------------------------------------------------------------------------------------------------
def make_proof(decision_id: str, entry: dict[str, Any], inclusion: list[bytes], cp: Checkpoint) -> dict[str, Any]:
    """The bundle `baton log prove` writes. ``entry`` is the store's ``chained_entry``."""
    seq = int(entry["chain_seq"])
    return {
        "format": PROOF_FORMAT, "decision_id": decision_id, "record": record_of(entry),
        "entry": {"chain_seq": seq, "prev_hash": entry["prev_hash"], "hash": entry["hash"],
                  "head": entry["head"], "events": list(entry["events"])},
        "leaf_index": seq - 1, "leaf_hash": tree_leaf(entry["hash"]).hex(),
        "inclusion": [h.hex() for h in inclusion], "checkpoint": cp.to_json(),
    }


def prove_stored(store: Any, decision_id: str) -> dict[str, Any]:
    """The proof of a stored decision in the latest kept checkpoint that covers it. LookupError says why there
    is none (no such decision, no checkpoint covers it yet, the store's tree lacks a node)."""
    entry = store.chained_entry(decision_id)
    if entry is None:
        raise LookupError(f"no decision {decision_id!r}")
    seq = int(entry["chain_seq"])
    kept = store.latest_checkpoints(covering=seq)
    if not kept:
        raise LookupError(f"no signed checkpoint covers decision {decision_id} (position {seq}) yet: "
                          "`baton log checkpoint` signs one, or the service's next will")
    cp = Checkpoint.from_json(json.loads(kept[0]), "the store's latest checkpoint")
    return make_proof(decision_id, entry, store.inclusion_proof(seq - 1, cp.size), cp)


def record_of(entry: dict[str, Any]) -> dict[str, Any]:
    """The decision record the hashed texts hold: the head with its trace events. ValueError when the head is
    not a JSON object."""
    record = json.loads(entry["head"])
    if not isinstance(record, dict):
        raise ValueError("the hashed head is not a JSON object")
    record["trace"] = [json.loads(e) for e in entry["events"]]
    return record


def _whole(value: Any, name: str) -> int:
    """A proof's position or index: a JSON integer, nothing else (no float, no text, no boolean)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name}: a whole number, not {value!r:.40}")
    return value


def _texts(entry: Any) -> tuple[str, str, str, list[str]]:
    """prev_hash, hash, head and events of a proof's entry, each the text it must be."""
    prev, digest, head, events = entry["prev_hash"], entry["hash"], entry["head"], entry["events"]
    if not all(isinstance(t, str) for t in (prev, digest, head)):
        raise ValueError("entry: prev_hash, hash and head are texts")
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise ValueError("entry.events: a list of texts (each trace event's canonical JSON)")
    return prev, digest, head, events


@dataclass(slots=True)
class ProofResult:
    checkpoint: Checkpoint | None
    problems: list[str]
    notes: list[str]


def check_proof(bundle: Any, verifier: Verifier, witnessed: Sequence[Checkpoint] = ()) -> ProofResult:
    """Everything a proof claims, checked without the store: the checkpoint's signature (and origin), the
    decision's chain hash recomputed from its hashed texts, its leaf hash, its inclusion in the signed tree,
    the readable record against the hashed one; and, given the checkpoints a witness kept, that the log never
    showed two different trees of one size."""
    problems: list[str] = []
    notes: list[str] = []
    if not isinstance(bundle, dict) or bundle.get("format") != PROOF_FORMAT:
        return ProofResult(None, [f"not a {PROOF_FORMAT} proof"], notes)
    try:
        cp = Checkpoint.from_json(bundle.get("checkpoint"), "checkpoint")
        entry = bundle["entry"]
        seq, (prev, digest, head, events) = _whole(entry["chain_seq"], "entry.chain_seq"), _texts(entry)
        index = _whole(bundle["leaf_index"], "leaf_index")
        if not isinstance(bundle["inclusion"], list):
            raise ValueError("inclusion: a list of hex hashes")
        path = [bytes.fromhex(h) for h in bundle["inclusion"]]
        leaf = bytes.fromhex(bundle["leaf_hash"])
        tree_leaf(digest)  # a chain hash is hex
    except (KeyError, TypeError, ValueError) as e:
        return ProofResult(None, [f"the proof is malformed: {e}"], notes)
    signature = verifier.problem(cp)
    if signature:
        problems.append(f"the {cp.describe()}: {signature}")
    if chain_hash(prev, seq, head, events) != digest:
        problems.append("the decision's hashed texts do not give its chain hash: the record was altered")
    try:
        if record_of(entry) != bundle.get("record"):
            problems.append("the readable record differs from the hashed one: trust only the hashed texts")
        if record_of(entry).get("decision_id") != bundle.get("decision_id"):
            problems.append("the hashed record is of another decision")
    except (ValueError, RecursionError):
        problems.append("the decision's hashed texts are not a JSON record")
    if tree_leaf(digest) != leaf or index != seq - 1:
        problems.append("the leaf hash or index does not follow from the decision's chain hash and position")
    if not merkle.verify_inclusion(tree_leaf(digest), seq - 1, cp.size, path, cp.root):
        problems.append(f"the inclusion proof does not lead to the root of the {cp.describe()}")
    twins = [w for w in witnessed if w.origin == cp.origin and w.size == cp.size]
    if any(w.root != cp.root for w in twins):
        problems.append(f"a witness holds a checkpoint of the same log and size {cp.size} with another root: "
                        "the log showed two different histories")
    elif twins:
        notes.append(f"the checkpoint is among the {len(witnessed)} the witness kept")
    elif witnessed:
        notes.append("the witness's checkpoints do not include this one (it may be newer than they are)")
    return ProofResult(cp, problems, notes)


# -- the log against its checkpoints -------------------------------------------------------------------------
@dataclass(slots=True)
class LogAudit:
    size: int  # decisions whose chain hashes were read
    root: bytes  # the root of the tree rebuilt over all of them
    verified: list[str]  # the checkpoints the stored history agrees with
    contradicted: list[str]  # those it does not, in the log's order: the first is where a rewrite shows
    problems: list[str]  # what is wrong, for each checkpoint that does not verify


def audit_log(pages: Iterable[list[tuple[int, str]]], checkpoints: Sequence[tuple[str, Checkpoint]],
              verifier: Verifier) -> LogAudit:
    """Rebuild the Merkle tree from the stored chain hashes (``pages`` of (position, hash) in chain order:
    never the store's own tree) and hold every checkpoint against it: signed by a given key and of this log;
    the tree over its first ``size`` decisions has its root; consecutive checkpoints are consistent
    (RFC 9162 consistency proofs from the rebuilt tree, verified against both signed roots); and no two
    checkpoints show different trees of one size. ``checkpoints`` are (label, checkpoint): the label names it
    in reports (its file)."""
    problems: list[str] = []
    valid = _signed_in_order(checkpoints, verifier, problems)
    tree, roots, whole = _rebuild(pages, sorted({cp.size for _, cp in valid}), problems)
    if not whole:
        return LogAudit(tree.size, tree.root(), [], [label for label, _ in valid], problems)
    verified, contradicted = _hold_against(valid, tree, roots, problems)
    return LogAudit(tree.size, tree.root(), verified, contradicted, problems)


def _signed_in_order(checkpoints: Sequence[tuple[str, Checkpoint]], verifier: Verifier,
                     problems: list[str]) -> list[tuple[str, Checkpoint]]:
    """The checkpoints whose signature verifies, by size then time; each other one is a problem."""
    valid: list[tuple[str, Checkpoint]] = []
    for label, cp in checkpoints:
        problem = verifier.problem(cp)
        if problem:
            problems.append(f"{label} ({cp.describe()}): {problem}")
        else:
            valid.append((label, cp))
    valid.sort(key=lambda lc: (lc[1].size, lc[1].time))
    return valid


def _rebuild(pages: Iterable[list[tuple[int, str]]], wanted: list[int],
             problems: list[str]) -> tuple[merkle.Tree, dict[int, bytes], bool]:
    """The tree over the stored chain hashes and its root at each of the ``wanted`` sizes (ascending), and
    whether the chain was whole: a missing position or a malformed hash stops the rebuild there."""
    roots: dict[int, bytes] = {}
    tree = merkle.Tree()
    at = 0
    if wanted and wanted[0] == 0:
        roots[0], at = merkle.EMPTY_ROOT, 1
    for page in pages:
        for seq, digest in page:
            if seq != tree.size + 1:
                problems.append(f"chain position {tree.size + 1} is missing (found {seq} next)")
                return tree, roots, False
            try:
                leaf = tree_leaf(digest)
            except ValueError:
                problems.append(f"chain position {seq} has a hash that is not 32 bytes of hex: {digest[:70]!r}")
                return tree, roots, False
            tree.append(leaf)
            if at < len(wanted) and tree.size == wanted[at]:
                roots[tree.size], at = tree.frontier.root(), at + 1
    return tree, roots, True


def _hold_against(valid: list[tuple[str, Checkpoint]], tree: merkle.Tree, roots: dict[int, bytes],
                  problems: list[str]) -> tuple[list[str], list[str]]:
    """The labels of the checkpoints the rebuilt tree agrees with, and of those it contradicts, in the log's
    order; why each one is contradicted (and any two that sign different trees of one size) go to ``problems``."""
    verified: list[str] = []
    contradicted: list[str] = []
    last_good: tuple[str, Checkpoint] | None = None
    previous: tuple[str, Checkpoint] | None = None
    for label, cp in valid:
        since = f"after position {last_good[1].size} " if last_good else ""
        if cp.size > tree.size:
            problems.append(f"{label} ({cp.describe()}) is contradicted: the store holds only {tree.size} "
                            f"decisions - decisions {since}up to position {cp.size} were deleted (the log truncated, "
                            "or a decision removed and the rest renumbered) after it was signed")
        elif roots[cp.size] != cp.root:
            problems.append(
                f"{label} ({cp.describe()}) is contradicted: the tree over the first {cp.size} stored decisions has "
                f"root {roots[cp.size].hex()[:16]}..., the checkpoint signed {cp.root.hex()[:16]}... - a decision "
                f"{since}up to position {cp.size} was rewritten after the checkpoint was signed (its chain may have "
                "been re-hashed to hide it)")
        elif previous is not None and not _consistent(previous[1], cp, tree):
            problems.append(f"{previous[0]} and {label}: no consistency proof joins them: the checkpoints do not "
                            "describe one append-only log")
        else:
            verified.append(label)
            last_good = (label, cp)
        if verified[-1:] != [label]:
            contradicted.append(label)
        if previous is not None and previous[1].size == cp.size and previous[1].root != cp.root:
            problems.append(f"{previous[0]} and {label} sign two different trees of {cp.size} decisions: the log "
                            "showed two histories")
        previous = (label, cp)
    return verified, contradicted


def extension_problem(store: Any, previous: Checkpoint, size: int, root: bytes) -> str | None:
    """None when the tree the store shows now (``size``, ``root``: its ``tree_head``) extends the tree
    ``previous`` signed, by an RFC 9162 consistency proof the store serves, verified against both roots; else
    why not. A signer checks this before signing, so that it never signs a history rewritten since its last
    checkpoint (it would be a second, forked history under the same key: a proof of a rewritten decision would
    verify against it)."""
    if size < previous.size:
        return f"the log has {size} decisions, fewer than the {previous.describe()}"
    try:
        proof = store.consistency_proof(previous.size, size) if 0 < previous.size < size else []
    except (LookupError, ValueError) as e:
        return f"the store cannot prove that its tree of {size} extends the {previous.describe()} ({e})"
    if not merkle.verify_consistency(previous.size, size, previous.root, root, proof):
        return (f"the stored tree of {size} decisions (root {root.hex()[:16]}...) does not extend the "
                f"{previous.describe()} (root {previous.root.hex()[:16]}...): the history it signed was rewritten")
    return None


def _consistent(old: Checkpoint, new: Checkpoint, tree: merkle.Tree) -> bool:
    proof = merkle.consistency_proof(old.size, new.size, tree.node)
    return merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
