"""The state one decision's run holds (engine/loop.py ``_Run``), declared once for the two halves that share
it: firing activations (engine/firing.py) and making calls (engine/calls.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from engine.decision import Decision, Event, HumanInput, Values
from engine.documents import Document
from engine.memory import WorkingMemory
from engine.model import Rule, Step
from engine.ports import CallRequest, CallResult, Clock, ModelGateway, ToolConnector

if TYPE_CHECKING:
    from engine.calls import Extraction
    from engine.driver import Agenda, SoloAgenda
    from engine.loop import Engine


class RunState:
    """Every field of a run (slots: a run is made for every decision); set by ``_Run.__init__``."""

    __slots__ = ("aggregated", "called", "carried_cost", "clock", "d", "deadline", "documents", "effects", "engine",
                 "epoch_counts", "extractions", "held", "human", "intents", "mask_pii", "max_calls",
                 "max_combinations", "max_cost", "merged_rows", "model_calls", "models", "now_models", "now_tools",
                 "proposals", "round", "session", "step_limit", "stopped", "summaries", "tools", "unreadable", "wm")

    engine: Engine
    d: Decision
    wm: WorkingMemory
    session: Agenda | SoloAgenda | None
    models: ModelGateway
    tools: ToolConnector
    clock: Clock
    human: list[HumanInput]  # reviewers' answers still to assert, in order
    documents: dict[str, Document]  # by id: the texts this decision may read
    round: int
    step_limit: int
    deadline: float | None  # monotonic seconds
    max_calls: int | None
    max_cost: float | None
    max_combinations: int
    mask_pii: bool
    merged_rows: bool
    stopped: str  # the final rule that stopped the decision
    effects: int
    held: list[Event]  # effects of rules that propose: sent only if the proposal wins
    epoch_counts: dict[str, int]
    aggregated: set[tuple[object, ...]]  # (rule, branch, facts, values) that fired
    # a summary rule's latest proposal per (rule, branch, facts, step): a re-firing replaces it (item 20)
    summaries: dict[tuple[object, ...], tuple[Rule, Step, int, Event]]
    proposals: list[tuple[Rule, Step, int, Event]]
    model_calls: int
    carried_cost: float  # spent by the escalated decision this one resumes: in the budget, not in cost_usd
    # ports that answer from memory (recorded, canned): asked at once, no task made
    now_models: Callable[[CallRequest], CallResult | None] | None
    now_tools: Callable[[CallRequest], CallResult | None] | None
    extractions: dict[str, Extraction]  # call key -> the extraction it is a chunk of
    unreadable: list[tuple[str, Values]]  # failures found while intending, asserted next round
    intents: list[tuple[CallRequest, str]]
    called: dict[str, int]  # call key -> call number
