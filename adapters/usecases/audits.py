"""Replay, what-if and impact - what an auditor or a ruleset's author asks of stored decisions, whatever door
they ask by (gRPC ReplayDecision, WhatIf and Impact; the console's decision and editor pages):

- ``replay``: a stored decision re-run exactly on its own version, with the documents it read;
- ``what_if``: a stored decision's inputs, documents and recorded answers run on another version - one loaded
  here already runs here; any other stored version (pending and rejected ones too) and any candidate's
  source are compiled and run in the bounded child (adapters/infra/candidates.py), never in this process;
- ``impact``: a candidate over the stored history of its ruleset (the last ``last`` decisions, or those since
  ``since``), in bounded children, with progress.

`baton replay` and `baton impact` run the same engine functions over a local store in worker processes
(adapters/usecases/impact.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from adapters.infra.candidates import CandidateCompiler, Checked, Progress, with_progress
from adapters.infra.store.sql import SqlStore
from adapters.usecases.commands import Refused
from adapters.usecases.decisions import replay_stored, what_if_stored
from adapters.usecases.impact import Impact
from adapters.usecases.registry import RulesetRegistry
from engine.codes import Code
from engine.errors import BatonError
from engine.record import DecisionRecord
from engine.replay import ReplayResult, WhatIf

RECENT = 1000  # decisions an impact runs over when the caller names neither how many nor since when


@dataclass(slots=True)
class ImpactReport:
    """An impact's end: the changes (``impact``) and the decisions it ran over (``ids``, newest first)."""

    impact: Impact
    ids: list[str] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class Audits:
    store: SqlStore
    registry: RulesetRegistry
    candidates: CandidateCompiler

    async def record(self, decision_id: str) -> DecisionRecord:
        record = await asyncio.to_thread(self.store.get, decision_id)
        if record is None:
            raise BatonError(Code.UNKNOWN_DECISION.value, f"no decision {decision_id!r}")
        return record

    async def replay(self, record: DecisionRecord) -> ReplayResult:
        return await replay_stored(self.store, self.registry.engine_for, record)

    async def what_if(self, record: DecisionRecord, *, version: str = "", source: str = "",
                      file: str = "candidate.yaml", keep: bool = False) -> tuple[str, WhatIf]:
        """The decision on a stored ``version`` (a hash or prefix) or on a candidate's ``source``: the version it
        ran on, and how it came out (``keep``: with the new record, to draw it)."""
        if version:
            resolved = await asyncio.to_thread(self.registry.resolve, version)
            engine = self.registry.loaded(resolved)  # in use here already: no compile
            if engine is not None:
                return resolved, await what_if_stored(self.store, engine, record, keep=keep)
            found = await asyncio.to_thread(self.store.ruleset_source, resolved)
            if found is None:
                raise BatonError(Code.UNKNOWN_VERSION.value, f"no ruleset version {resolved[:12]}")
            source, file = found[1], f"{found[0]}@{resolved[:12]}"
        elif not source:
            raise Refused(Code.BAD_REQUEST, "give the candidate's source or version", "candidate", "required")
        documents = await asyncio.to_thread(self.store.documents_of, record)
        checked, results = await self.candidates.awhat_if(source, file, lambda _: (1, [(record, documents)]),
                                                          keep=keep)
        return checked.version, results[0]

    async def impact(self, source: str, *, file: str = "candidate.yaml", last: int | None = None,
                     since: float | None = None, every: int = 25) -> AsyncIterator[Progress | ImpactReport]:
        """A candidate over its ruleset's stored decisions: :class:`Progress` as it goes (every ``every``), then
        the :class:`ImpactReport`. Neither ``last`` nor ``since``: the last ``RECENT`` decisions."""
        store, seen = self.store, []
        count = last if last else (None if since is not None else RECENT)

        def decisions(checked: Checked) -> list[str]:  # on the run's thread
            seen.extend(store.recent_ids(checked.name, count, since))
            return seen

        result = Impact()  # in bounded children, side by side when there are enough decisions
        async for step in with_progress(lambda progress: self.candidates.aimpact(
                source, file, decisions, store, progress=progress), every=every):
            if isinstance(step, Progress):
                yield step
            else:
                result.results = step[1]
        yield ImpactReport(result, seen)
