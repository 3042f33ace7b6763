"""Operations: traffic, latency, cost, the hash chain's verification, the effects outbox."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from adapters.doors.console import svg
from adapters.doors.console.ui import (
    UI,
    _int,
    _quote,
)
from adapters.infra.system import utc_text


class OperationPages:
    def __init__(self, ui: UI) -> None:
        self.ui, self.c = ui, ui.c

    async def ops(self, request: Request) -> Response:
        self.ui.need(request)
        hours = _int(request.query_params.get("hours"), 1, 1, 24 * 30)
        since = time.time() - hours * 3600
        st = await asyncio.to_thread(self.c.store.stats, since)
        checks = await asyncio.to_thread(self.c.store.chain_checks, 1)
        costs = await asyncio.to_thread(self.c.store.cost_totals, since)
        labels = [utc_text(since + i * st["bucket_s"])[11:16] for i in range(len(st["per_bucket"]))]
        rate = [n / st["bucket_s"] for n in st["per_bucket"]]
        cost_series = [(f"{r} / {m if m and m != '?' else 'model not reported'}", v)
                       for (r, m), v in sorted(st["cost"].items())]
        return self.ui.page(request, "ops.html", st=st, hours=hours,
                    rate_chart=svg.columns([("decisions/s", rate)], labels, unit="/s"),
                    cost_chart=svg.columns(cost_series, labels, unit=" USD"),
                    outcome_chart=svg.bars([(k, float(v)) for k, v in sorted(st["outcomes"].items())]),
                    total=sum(st["per_bucket"]), check=checks[0] if checks else None, costs=costs)

    async def verify_log(self, request: Request) -> Response:
        """NDJSON progress, then the result, which is kept with who ran it (the console's script shows it;
        without the script the POST answers when it is done)."""
        session = self.ui.need(request, "auditor")
        await self.ui.form(request, session)
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def progress(checked: int, total: int) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, json.dumps({"done": checked, "total": total}) + "\n")

        async def run() -> None:
            started = time.time()
            try:
                checked, problem = await asyncio.to_thread(self.c.store.verify, 500, progress)
                row = await asyncio.to_thread(self.c.store.record_chain_check, session.name, started, time.time(),
                                              checked, problem)
                html = self.ui.env.get_template("_chain.html").render(check=row, session=session)
                banner = self.ui.env.get_template("_banner.html").render(
                    chain_alert=row if problem is not None else None, rows_broken={})
                await queue.put(json.dumps({"html": html, "intact": problem is None, "banner": banner}) + "\n")
            finally:
                await queue.put(None)

        task = asyncio.create_task(run())
        if "text/html" in request.headers.get("accept", ""):
            await task
            return RedirectResponse("/ops#chain", status_code=303)

        async def lines() -> AsyncIterator[str]:
            while (line := await queue.get()) is not None:
                yield line
            await task

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def effects(self, request: Request) -> Response:
        self.ui.need(request, "auditor")
        status = request.query_params.get("status", "dead")
        rows = await asyncio.to_thread(self.c.store.effects, status or None, 500)
        return self.ui.page(request, "effects.html", rows=rows, wanted=status, now=time.time(),
                            effect_names=self.c.effect_names)

    async def effect(self, request: Request) -> Response:
        self.ui.need(request, "auditor")
        row = await asyncio.to_thread(self.c.store.effect, request.path_params["id"])
        if row is None:
            return self.ui.page(request, "error.html", status=404, message="no such effect")
        return self.ui.page(request, "effect.html", row=row, payload=json.loads(row["payload"]), now=time.time(),
                            effect_names=self.c.effect_names,
                            notes=await asyncio.to_thread(self.c.store.effect_notes, row["id"]))

    async def retry_effects(self, request: Request) -> Response:
        """Dead letters back in the queue (one, or all): an auditor who found them failing may retry them;
        who did it is recorded with each."""
        session = self.ui.need(request, "auditor")
        data = await self.ui.form(request, session)
        effect_id = request.path_params.get("id")
        picked = list(dict.fromkeys(str(v) for v in data.getlist("pick")))[:500]
        note = str(data.get("note", "")).strip()[:4000]
        if data.get("selected") is not None:  # the selected ones, with one note kept with each
            if not picked or not note:
                rows = await asyncio.to_thread(self.c.store.effects, "dead", 500)
                return self.ui.page(request, "effects.html", status=400, rows=rows, wanted="dead", now=time.time(),
                                    effect_names=self.c.effect_names, picked=set(picked), bulk_note=note,
                                    bulk_error="select at least one dead effect" if not picked else
                                    "say why they are retried (one note, kept with each)")
            ids: list[str] | None = picked
        else:
            ids = [effect_id] if effect_id else None
        now = time.time()
        dead = [str(r["id"]) for r in await asyncio.to_thread(self.c.store.effects, "dead", 100_000)
                if ids is None or r["id"] in ids]
        await asyncio.to_thread(self.c.store.retry_effects, dead, now, session.name)
        await asyncio.to_thread(self.c.store.note_effects, dead, session.name, "retried", note, now)
        return RedirectResponse(f"/effects/{_quote(effect_id)}" if effect_id else "/effects?status=pending",
                                status_code=303)

    def routes(self) -> list[Route]:
        g = self.ui.guarded
        return [
            Route("/ops", g(self.ops)),
            Route("/ops/verify", g(self.verify_log), methods=["POST"]),
            Route("/effects", g(self.effects)),
            Route("/effects/retry", g(self.retry_effects), methods=["POST"]),
            Route("/effects/{id}", g(self.effect)),
            Route("/effects/{id}/retry", g(self.retry_effects), methods=["POST"]),
        ]
