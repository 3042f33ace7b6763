"""What keeps the service's processes honest with each other: workers that end with their supervisor, a
port that one service holds at a time, and a worker's resident memory as the supervisor reads it."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import os
import signal
import socket
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, signum: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``signum`` to this process when the process that started it ends (Linux's
    parent-death signal), so that a supervisor killed with SIGKILL leaves no orphan workers serving its
    port. The signal is tied to the thread that forked this process: the supervisor starts workers from its
    main thread only. A parent already gone by the time this runs ends this process at once."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signum)


def orphaned(parent_pid: int) -> bool:
    """True once the supervisor that started this process is gone (it is then re-parented)."""
    return os.getppid() != parent_pid


def rss_mb(pid: int) -> float | None:
    """A process's resident memory in MiB (None: no such process, or not Linux)."""
    try:
        resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def listener_on(address: str) -> str | None:
    """Who already listens on ``host:port``: None when nobody does (or the port is 0), else a description
    naming the process where it can be found. Tried by binding without SO_REUSEPORT - the workers' own
    sockets share the port with each other through it, so a second service would bind beside the first."""
    host, _, port_text = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        port = int(port_text)
    except ValueError:
        return None
    if port == 0:
        return None
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:  # a host name: resolved by gRPC when it binds
        family = socket.AF_INET
        try:
            host = socket.gethostbyname(host)
        except OSError:
            return None
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free
        probe.bind((host, port))
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            return None
        kind = "another Baton" if _answers_as_baton(address) else "another process"
        owner = _owner(port)
        return f"{address} is already in use by {kind}" + (f" ({owner})" if owner else "")
    finally:
        probe.close()
    return None


def _owner(port: int) -> str | None:
    """The process holding a listening socket on ``port``, read from /proc (Linux; None elsewhere)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                    return f"pid {proc.name}: {cmdline[:120]}"
    return None


def _answers_as_baton(address: str) -> bool:
    """Whether the listener answers a gRPC health check for Baton's decision service (plaintext only)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="baton.v1.DecisionService"), timeout=2)
        except grpc.RpcError:
            return False
    return True
