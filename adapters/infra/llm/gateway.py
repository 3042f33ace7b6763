"""The model gateway on LiteLLM's Router: model groups, fallbacks, retries with backoff, timeouts,
per-group concurrency limits, typed JSON answers (retried with the validation error), provenance.

A model's answer is only ever a fact: the gateway returns parsed JSON, the engine validates it against
the action's ``produces`` type and asserts it. Library errors are translated to failure kinds here, once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Before litellm is imported: no network for the cost map, and short retry delays (LiteLLM reads these
# at import time; its defaults are 0.5 s doubling to 8 s, plus up to 0.75 s of jitter).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("INITIAL_RETRY_DELAY", "0.05")
os.environ.setdefault("MAX_RETRY_DELAY", "2")
os.environ.setdefault("JITTER", "0.05")

import litellm
from litellm.exceptions import (
    AuthenticationError,
    BadRequestError,
    PermissionDeniedError,
    RateLimitError,
    Timeout,
)
from litellm.router import Router

from engine.ports import CallRequest, CallResult

litellm.suppress_debug_info = True
litellm.telemetry = False
# LiteLLM's loggers write to stdout themselves: a notice per deployment, and "Router ... 200 OK" per call
# (which filled a pipe and stalled a worker under load). Warnings and worse only.
for _name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
    logging.getLogger(_name).setLevel(logging.WARNING)

SYSTEM = ("You produce one JSON object and nothing else. It must match this JSON schema exactly (no other "
          "keys):\n{schema}")
ENV_REF = re.compile(r"^os\.environ/([A-Za-z_][A-Za-z0-9_]*)$")


@dataclass(slots=True)
class ModelsConfig:
    """The `models:` section of the service config: LiteLLM's model_list shape plus Baton's settings."""

    model_list: list[dict[str, Any]]
    fallbacks: list[dict[str, list[str]]] = field(default_factory=list)
    timeout_s: float = 30.0
    group_limits: dict[str, int] = field(default_factory=dict)  # max concurrent calls per group
    structured_output: str = "json_schema"  # json_schema | json_object | none
    redact_answers: bool = True

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "models") -> ModelsConfig:
        model_list = data.get("model_list")
        if not isinstance(model_list, list) or not model_list:
            raise ValueError(f"{where}.model_list: a list of {{model_name, litellm_params}} is required")
        for i, entry in enumerate(model_list):
            if not isinstance(entry, dict) or not isinstance(entry.get("model_name"), str) or not isinstance(
                    entry.get("litellm_params"), dict) or not entry["litellm_params"].get("model"):
                raise ValueError(f"{where}.model_list[{i}]: needs model_name and litellm_params.model")
            key = entry["litellm_params"].get("api_key")
            if isinstance(key, str) and key and not ENV_REF.match(key) and not key.startswith("${"):
                raise ValueError(f"{where}.model_list[{i}].litellm_params.api_key: give a reference "
                                 "(os.environ/NAME), never the key itself")
        structured = str(data.get("structured_output", "json_schema"))
        if structured not in ("json_schema", "json_object", "none"):
            raise ValueError(f"{where}.structured_output: one of json_schema, json_object, none")
        limits = data.get("group_limits") or {}
        if not isinstance(limits, dict) or not all(isinstance(v, int) and v > 0 for v in limits.values()):
            raise ValueError(f"{where}.group_limits: group -> positive whole number")
        return cls(model_list=model_list, fallbacks=list(data.get("fallbacks") or []),
                   timeout_s=float(data.get("timeout_s", 30.0)), group_limits=dict(limits),
                   structured_output=structured, redact_answers=bool(data.get("redact_answers", True)))


def _failure_kind(error: BaseException) -> str:
    if isinstance(error, (Timeout, asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(error, RateLimitError):
        return "rate_limited"
    if isinstance(error, (AuthenticationError, PermissionDeniedError)):
        return "auth"
    if isinstance(error, BadRequestError):
        return "bad_request"
    return "error"


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 2:
            text = text.replace(secret, "[redacted]")
    return text


def _parse(content: str) -> object:
    text = content.strip()
    if text.startswith("```"):  # some models fence JSON even when asked not to
        text = text.strip("`")
        text = text[4:] if text.startswith("json") else text
    return json.loads(text)


class LiteLLMGateway:
    def __init__(self, config: ModelsConfig) -> None:
        self.config = config
        self.router = Router(model_list=config.model_list, fallbacks=config.fallbacks, num_retries=0,
                                     retry_after=0, timeout=config.timeout_s)
        self.groups = {m["model_name"] for m in config.model_list}
        self.limits = {g: asyncio.Semaphore(n) for g, n in config.group_limits.items()}
        self.system_prompts: dict[str, str] = {}  # by produced type: the schema instructions

    def _response_format(self, call: CallRequest) -> dict[str, Any] | None:
        if self.config.structured_output == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": call.produces, "schema": call.schema,
                                                           "strict": False}}
        if self.config.structured_output == "json_object":
            return {"type": "json_object"}
        return None

    async def complete(self, call: CallRequest) -> CallResult:
        group = str(call.sent.get("group", ""))
        if group not in self.groups:
            return CallResult(failure_kind="not_configured", error=f"no model group {group!r} is configured")
        limit = self.limits.get(group)
        if limit is None:
            return await self._complete(call, group)
        async with limit:
            return await self._complete(call, group)

    def request_args(self, call: CallRequest) -> tuple[list[dict[str, str]], dict[str, Any]]:
        """The messages and Router arguments of a call's first attempt."""
        system = self.system_prompts.get(call.produces)
        if system is None:
            system = self.system_prompts[call.produces] = SYSTEM.format(schema=json.dumps(call.schema))
        messages = [{"role": "system", "content": system},
                    {"role": "user", "content": str(call.sent.get("prompt", ""))}]
        kwargs: dict[str, Any] = {"timeout": call.timeout_s, "num_retries": call.retries}
        response_format = self._response_format(call)
        if response_format is not None:
            kwargs["response_format"] = response_format
        return messages, kwargs

    async def _complete(self, call: CallRequest, group: str) -> CallResult:
        messages, kwargs = self.request_args(call)
        meta: dict[str, Any] = {"group": group, "attempts": [], "prompt_tokens": 0, "completion_tokens": 0,
                                "total_tokens": 0, "cost_usd": 0.0}
        started = time.monotonic()
        last_error = ""
        for attempt in range(1 + call.retries):
            try:
                response = await self.router.acompletion(model=group, messages=messages, **kwargs)
            except Exception as e:  # every library error becomes a failure kind, once, here
                meta["latency_ms"] = round((time.monotonic() - started) * 1000, 3)
                return CallResult(failure_kind=_failure_kind(e), error=_redact(str(e)[:500], call.secrets),
                                  attempts=len(meta["attempts"]) + 1, meta=meta)
            content = response.choices[0].message.content or ""
            self._account(meta, response, content, call)
            try:
                answer = _parse(content)
                problem = call.check(answer) if call.check is not None else ""
            except ValueError as e:
                answer, problem = None, f"the answer is not valid JSON: {e}"
            meta["attempts"][-1]["valid"] = not problem
            if not problem:
                meta["latency_ms"] = round((time.monotonic() - started) * 1000, 3)
                return CallResult(answer=answer, attempts=attempt + 1, meta=meta)
            last_error = problem
            messages += [{"role": "assistant", "content": content},
                         {"role": "user", "content": f"That answer is invalid: {problem}. Answer again with only "
                                                     "a JSON object matching the schema."}]
        meta["latency_ms"] = round((time.monotonic() - started) * 1000, 3)
        return CallResult(failure_kind="invalid_answer", error=_redact(last_error, call.secrets),
                          attempts=1 + call.retries, meta=meta)

    def _account(self, meta: dict[str, Any], response: Any, content: str, call: CallRequest) -> None:
        hidden = getattr(response, "_hidden_params", {}) or {}
        headers = hidden.get("additional_headers") or {}
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        cost = hidden.get("response_cost")
        if cost is None:
            try:
                cost = litellm.completion_cost(completion_response=response)
            except Exception:  # a model the cost map does not know: cost unknown, recorded as 0
                cost = 0.0
        meta["prompt_tokens"] += prompt_tokens
        meta["completion_tokens"] += completion_tokens
        meta["total_tokens"] += prompt_tokens + completion_tokens
        meta["cost_usd"] = round(meta["cost_usd"] + float(cost or 0.0), 10)
        meta["model"] = str(hidden.get("litellm_model_name") or getattr(response, "model", ""))
        meta["deployment"] = str(hidden.get("model_id") or "")
        meta["api_base"] = str(hidden.get("api_base") or "")
        meta["attempts"].append({
            "model": meta["model"], "retries": int(headers.get("x-litellm-attempted-retries") or 0),
            "fallbacks": int(headers.get("x-litellm-attempted-fallbacks") or 0),
            "raw": _redact(content[:4000], call.secrets) if self.config.redact_answers else content[:4000],
        })
