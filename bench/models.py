"""500 decisions in flight, each making one model call that the fake OpenAI server (its own process)
answers after 200 ms: Baton's figure next to LiteLLM's Router alone in the same run.

Calls are never serialised behind the engine or each other when Baton's wall time is close to Router's.
    .venv/bin/python bench/models.py [--n 500] [--delay-ms 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from adapters.infra.llm.gateway import LiteLLMGateway, ModelsConfig  # noqa: E402
from adapters.infra.rulesets import load_file  # noqa: E402
from adapters.infra.system import SystemClock, TimeOrderedIds  # noqa: E402
from engine.loop import Engine  # noqa: E402
from engine.ports import CallRequest, CallResult  # noqa: E402
from engine.recorded import RecordedAnswers  # noqa: E402

INJURY = {"category": "injury", "confidence": 0.93, "fraud_signals": []}


class Capture:
    """The model port that records the CallRequest Baton makes, so Router alone can make the same call."""

    def __init__(self) -> None:
        self.calls: list[CallRequest] = []

    async def complete(self, call: CallRequest) -> CallResult:
        self.calls.append(call)
        return CallResult(answer=INJURY)


async def router_alone(gw: LiteLLMGateway, call: CallRequest, n: int) -> float:
    """The same request Baton's gateway sends (messages, response format, retries, timeout), n at once."""
    messages, kwargs = gw.request_args(call)
    start = time.perf_counter()
    await asyncio.gather(*(gw.router.acompletion(model="fast", messages=messages, **kwargs) for _ in range(n)))
    return time.perf_counter() - start


async def baton(gw: LiteLLMGateway, engine: Engine, n: int) -> tuple[float, int]:
    tools = RecordedAnswers({"lookup_policy": {"policy_ref": "P-1", "active": True, "coverage_limit": 1}})
    clock, ids = SystemClock(), TimeOrderedIds()
    claim = {"claim_ref": "C", "amount": 80000, "policy_ref": "P-1", "description": "whiplash",
             "customer_tier": "standard"}
    start = time.perf_counter()
    decisions = await asyncio.gather(*(engine.decide({"claim": {**claim, "claim_ref": f"C-{i}"}}, gw, tools, clock,
                                                     ids) for i in range(n)))
    elapsed = time.perf_counter() - start
    return elapsed, sum(d.decision == {"route": "senior-assessor"} for d in decisions)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--delay-ms", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    proc = subprocess.Popen([sys.executable, "-m", "adapters.infra.llm.fake_openai"], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    base = f"http://127.0.0.1:{proc.stdout.readline().split()[-1]}"
    httpx.post(f"{base}/script", json={"model": "m-fast", "default": {
        "status": 200, "content": json.dumps(INJURY), "delay_ms": args.delay_ms}})
    os.environ.setdefault("FAKE_OPENAI_KEY", "sk-bench")
    gw = LiteLLMGateway(ModelsConfig.from_dict({"model_list": [{"model_name": "fast", "litellm_params": {
        "model": "openai/m-fast", "api_base": f"{base}/v1", "api_key": "os.environ/FAKE_OPENAI_KEY"}}]}))
    engine = Engine(load_file(ROOT / "rulesets/claims-triage.yaml"))
    capture = Capture()
    asyncio.run(baton(capture, engine, 1))  # type: ignore[arg-type]
    call = capture.calls[0]
    routers, batons, right = [], [], 0
    try:
        asyncio.run(router_alone(gw, call, 20))  # warm up connections and imports
        for i in range(args.rounds):  # alternate, and alternate who goes first: run-to-run noise is ~10%
            if i % 2:
                batons.append(asyncio.run(baton(gw, engine, args.n)))
                routers.append(asyncio.run(router_alone(gw, call, args.n)))
            else:
                routers.append(asyncio.run(router_alone(gw, call, args.n)))
                batons.append(asyncio.run(baton(gw, engine, args.n)))
    finally:
        proc.terminate()
    b_times = [b for b, _ in batons]
    right = min(ok for _, ok in batons)
    r, b = statistics.median(routers), statistics.median(b_times)
    print(f"{args.n} concurrent model calls, fake OpenAI server answering after {args.delay_ms} ms (own process),"
          f" {args.rounds} alternating rounds")
    print(f"  LiteLLM Router alone       median {r:5.2f} s  best {min(routers):5.2f} s  ({args.n / r:,.0f} calls/s)")
    print(f"  Baton decisions, one call  median {b:5.2f} s  best {min(b_times):5.2f} s  ({args.n / b:,.0f} "
          f"decisions/s; {right} decided correctly)")
    print(f"  Baton / Router wall time   median {b / r:5.2f}x  best {min(b_times) / min(routers):5.2f}x")


if __name__ == "__main__":
    main()
