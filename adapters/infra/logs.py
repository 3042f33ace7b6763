"""Structured logs: one JSON object per line on stderr; one line per decision at info, never a fact value."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import orjson

from adapters.infra.secrets import RedactingFilter
from engine.record import DecisionRecord

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def setup_logging(log_format: str, log_level: str) -> None:
    """The process's log handler: ``log_format`` json or text, at ``log_level`` (the config's ``log_*``)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactingFilter())  # no secret value ever reaches a log line
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log_level.upper())
    for noisy in ("alembic", "LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


decision_log = logging.getLogger("baton.decision")


def log_decision(record: DecisionRecord, request_id: str, caller: str) -> None:
    """The one info line per decision: ids, ruleset version, outcome, timing and cost. No facts, no PII.

    Buffered and written straight to the log handler's stream in the JSON format above: going through
    `logging`, a line at a time, cost a tenth of the service's throughput (bench/grpc_load.py)."""
    if not decision_log.isEnabledFor(logging.INFO):
        return
    now = time.time()
    line = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z",
            "level": "info", "logger": "baton.decision", "msg": "decision", "decision_id": record["decision_id"],
            "request_id": request_id, "caller": caller, "ruleset": record["ruleset"],
            "version": record["version"][:12], "outcome": record["outcome"], "rule": record["rule"],
            "latency_ms": record["latency_ms"], "cost_usd": record["cost_usd"], "tokens": record["tokens"],
            "steps": record["steps"], "calls": record["calls"]}
    handlers = logging.getLogger().handlers
    if not handlers or not isinstance(handlers[0].formatter, JsonFormatter):
        decision_log.info("decision", extra={k: v for k, v in line.items() if k not in ("ts", "level", "logger",
                                                                                          "msg")})
        return
    _pending.append(orjson.dumps(line).decode())
    if len(_pending) >= 128:
        flush_decision_log()


_pending: list[str] = []


def flush_decision_log() -> None:
    """Write buffered decision lines in one go (the server calls this every half second and at exit):
    a write per line cost a tenth of the service's throughput (bench/grpc_load.py)."""
    if not _pending:
        return
    handlers = logging.getLogger().handlers
    stream = getattr(handlers[0], "stream", None) if handlers else None
    lines, _pending[:] = "\n".join(_pending) + "\n", []
    if stream is not None:
        stream.write(lines)
        stream.flush()


def say(message: str) -> None:
    """One line on stdout in one write: worker processes share the stream, and print() writes the text and
    the newline separately when stdout is unbuffered, which interleaved two workers' lines."""
    sys.stdout.write(message + "\n")
    sys.stdout.flush()
