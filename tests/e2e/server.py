"""Start a real `baton serve` on a free localhost port for end-to-end tests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import struct_pb2

if TYPE_CHECKING:
    from adapters.doors.grpc.gen.baton.v1 import decision_pb2

ROOT = Path(__file__).resolve().parents[2]
TOKENS = {
    "caller": "tok-caller", "caller2": "tok-caller2", "editor": "tok-editor", "auditor": "tok-auditor",
    "reviewer": "tok-reviewer", "admin": "tok-admin", "approver": "tok-approver",
    "lead": "tok-lead",  # an editor who is also an approver: four eyes still applies to their own changes
}
ROLES = {"caller2": "caller", "lead": "editor, approver"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[str]
    address: str
    db: str
    log: list[str]
    log_file: Path

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the workers too: they hold the stdout pipe open
            self.proc.wait()
        assert self.proc.stdout is not None
        self.log.extend(self.proc.stdout.read().splitlines())
        return self.proc.returncode


def write_tokens(path: Path) -> Path:
    lines = ["tokens:"]
    for role, token in TOKENS.items():
        name = role
        roles = ROLES.get(role, role)
        lines.append(f"  - {{token: {token}, name: {name}, roles: [{roles}]}}")
    path.write_text("\n".join(lines) + "\n")
    return path


def start(tmp: Path, *extra: str, auth: bool = True, db: str | None = None, port: int | None = None,
          env: dict[str, str] | None = None, rulesets: Path | None = None, canned: bool = True) -> Server:
    port = port or free_port()
    db = db or str(tmp / "baton.db")
    args = [sys.executable, "-m", "adapters.doors.cli.main", "serve", "--listen", f"127.0.0.1:{port}", "--db", db,
            "--rulesets", str(rulesets or ROOT / "rulesets"),
            *(["--answers", str(ROOT / "rulesets/demo-answers.json")] if canned else []), *extra]
    if auth:
        args += ["--tokens", str(write_tokens(tmp / "tokens.yaml"))]
    errors = (tmp / f"server-{port}.log").open("w")  # structured logs: a file, so a full pipe never blocks
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=errors, text=True,
                            env={**os.environ, **(env or {})}, start_new_session=True)
    errors.close()
    log: list[str] = []
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    listening = 0
    workers = next((int(extra[i + 1]) for i, a in enumerate(extra) if a == "--workers"), 1)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("server exited:\n" + "\n".join(log) + (tmp / f"server-{port}.log").read_text())
        log.append(line.rstrip())
        listening += len(re.findall(r"baton listening on", line))
        if listening >= workers:
            return Server(proc, f"127.0.0.1:{port}", db, log, tmp / f"server-{port}.log")
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError("server did not start:\n" + "\n".join(log))


def start_fake_openai() -> tuple[subprocess.Popen[str], str]:
    """The scripted OpenAI-compatible server in its own process: (process, base URL)."""
    proc = subprocess.Popen([sys.executable, "-m", "adapters.infra.llm.fake_openai"], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    assert proc.stdout is not None
    port = proc.stdout.readline().split()[-1]
    return proc, f"http://127.0.0.1:{port}"


def details_of(err: grpc.RpcError) -> str:
    """A failed call's status message (the stubs type it optional; Baton always sends one)."""
    details = err.details()
    assert details is not None, err
    return details


def metadata(role: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {TOKENS[role]}"),)


def struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    """JSON-like values as a protobuf Struct."""
    s = struct_pb2.Struct()
    s.update(values)
    return s


def fact(type_: str, values: Mapping[str, Any]) -> decision_pb2.Fact:
    """A baton.v1.Fact with its values as a Struct."""
    from adapters.doors.grpc.gen.baton.v1 import decision_pb2

    return decision_pb2.Fact(type=type_, values=struct(values))
