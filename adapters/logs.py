"""Structured logs: one JSON object per line on stderr; one line per decision at info, never a fact value."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from adapters.config import Settings

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


def setup_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for noisy in ("alembic", "LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


decision_log = logging.getLogger("baton.decision")


def log_decision(record: dict[str, Any], request_id: str, caller: str) -> None:
    """The one info line per decision: ids, ruleset version, outcome, timing and cost. No facts, no PII."""
    if decision_log.isEnabledFor(logging.INFO):
        decision_log.info("decision", extra={
            "decision_id": record["decision_id"], "request_id": request_id, "caller": caller,
            "ruleset": record["ruleset"], "version": record["version"][:12], "outcome": record["outcome"],
            "rule": record["rule"], "latency_ms": record["latency_ms"], "cost_usd": record["cost_usd"],
            "tokens": record["tokens"], "steps": record["steps"], "calls": record["calls"]})
