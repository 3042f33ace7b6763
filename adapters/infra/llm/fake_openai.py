"""An OpenAI-compatible chat-completions server with scripted answers, for tests and benchmarks.

Run: python -m adapters.infra.llm.fake_openai [--port N]  (prints "fake-openai listening on PORT")
Script it over HTTP:
  POST /script {"model": M, "steps": [{"status": 200, "content": "...", "delay_ms": 0}, ...]}  queue per model
  POST /script {"model": M, "default": {...}}                                            when the queue is empty
  GET  /requests  -> every request received, in order;   POST /reset  -> forget scripts and requests
A step may be {"status": 429} or {"status": 500}, {"content": "not json"}, {"delay_ms": 5000} (a timeout).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import defaultdict, deque
from typing import Any

from aiohttp import web

DEFAULT_STEP: dict[str, Any] = {"status": 200, "content": "{}", "delay_ms": 0}


class Script:
    def __init__(self) -> None:
        self.queues: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        self.defaults: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []

    def next(self, model: str) -> dict[str, Any]:
        queue = self.queues[model]
        if queue:
            return queue.popleft()
        return self.defaults.get(model) or self.defaults.get("*") or DEFAULT_STEP


def app() -> web.Application:
    script = Script()

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        model = str(body.get("model", ""))
        script.requests.append({"model": model, "messages": body.get("messages"),
                                "response_format": body.get("response_format"), "at": time.time()})
        step = {**DEFAULT_STEP, **script.next(model)}
        if step.get("delay_ms"):
            await asyncio.sleep(step["delay_ms"] / 1000)
        if step["status"] != 200:
            return web.json_response({"error": {"message": f"scripted {step['status']}", "type": "server_error",
                                                "code": step["status"]}}, status=step["status"])
        content = step["content"] if isinstance(step["content"], str) else json.dumps(step["content"])
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages") or [])
        completion_tokens = max(1, len(content.split()))
        return web.json_response({
            "id": f"chatcmpl-{len(script.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "system_fingerprint": "fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })

    async def set_script(request: web.Request) -> web.Response:
        body = await request.json()
        if "steps" in body:
            script.queues[body["model"]].extend(body["steps"])
        if "default" in body:
            script.defaults[body["model"]] = body["default"]
        return web.json_response({"ok": True})

    async def requests(_: web.Request) -> web.Response:
        return web.json_response(script.requests)

    async def reset(_: web.Request) -> web.Response:
        script.queues.clear()
        script.defaults.clear()
        script.requests.clear()
        return web.json_response({"ok": True})

    application = web.Application(client_max_size=16 << 20)
    application.add_routes([web.post("/v1/chat/completions", completions), web.post("/chat/completions", completions),
                            web.post("/script", set_script), web.get("/requests", requests),
                            web.post("/reset", reset)])
    return application


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    async def run() -> None:
        runner = web.AppRunner(app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=4096)
        await site.start()
        port = runner.addresses[0][1]
        print(f"fake-openai listening on {port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
