"""The compiled ruleset: what the loader produces and the compiler, loop and test runner consume."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from jinja2 import Template

from engine.documents import Document
from engine.errors import BatonError, Where
from engine.language.check import EMPTY, Condition, Eval, empty_mapping
from engine.language.prompts import Prompt
from engine.language.table_model import Precedence, Table
from engine.language.types import FactType

DEFAULT_STEP_LIMIT = 1000
DEFAULT_CHUNK_CHARS = 8000


@dataclass(slots=True)
class ModelAction:
    name: str
    group: str
    produces: str
    prompt: str
    template: Prompt | None  # the prompt, compiled once (sandboxed; plain substitutions without Jinja's runtime)
    retries: int = 0
    timeout_s: float = 30.0
    where: Where = field(default_factory=Where)
    from_document: bool = False  # reads the document its rule matched, chunk by chunk
    chunk_chars: int = DEFAULT_CHUNK_CHARS


@dataclass(slots=True)
class ToolAction:
    name: str
    connector: str
    produces: str
    config: dict[str, object]  # connector settings from the ruleset (query, path, table, ...)
    params: dict[str, Eval]
    param_text: dict[str, str]
    retries: int = 0
    timeout_s: float = 10.0
    where: Where = field(default_factory=Where)


@dataclass(slots=True)
class Step:
    """One thing a rule does when it fires."""

    kind: str  # decide | escalate | assert | call | effect
    payload: dict[str, object] = field(default_factory=dict)  # decide/escalate payload (reason split out)
    reason: str = ""
    fact_type: str = ""  # assert
    action: str = ""  # call: model or tool action name
    templates: Mapping[str, Template] = field(default_factory=empty_mapping)  # effect: `with` values, rendered
    expects: str = ""  # escalate: the fact type of the reviewer's answer
    sla_s: float | None = None  # escalate: after this long without an answer, a `timeout` fact
    identity: str = ""  # escalate: the answer's field that holds the signed-in reviewer's name (never typed)
    # computed values ("=expr"): (path into the payload, its text, evaluator); the path ("reason",) is the reason
    computed: Sequence[tuple[tuple[str, ...], str, Eval]] = ()

    def __post_init__(self) -> None:  # what most steps leave empty is shared, not a dict or list each
        self.computed = tuple(self.computed)
        if not self.templates:
            self.templates = EMPTY


@dataclass(slots=True)
class Rule:
    name: str
    index: int
    priority: int
    when: str
    condition: Condition
    steps: list[Step]
    where: Where = field(default_factory=Where)
    precedence: Precedence | None = None  # a first/priority table row: no earlier row matches its facts
    final: bool = False  # final: true - when it fires, the decision stops (no later firing, no further call)

    @property
    def proposes(self) -> bool:
        return any(s.kind in ("decide", "escalate") for s in self.steps)


@dataclass(slots=True)
class TestCase:
    name: str
    given: object
    answers: dict[str, object]
    expect: dict[str, object]
    where: Where = field(default_factory=Where)
    human: dict[str, object] = field(default_factory=dict)  # reviewer answers asserted when it escalates
    documents: list[Document] = field(default_factory=list)
    at: float | None = None  # the decision's start (decision.date/decision.time); None: when the tests run


@dataclass(slots=True)
class Ruleset:
    name: str
    version: str  # sha-256 of the canonical content
    source: str
    file: str
    description: str
    types: dict[str, FactType]
    inputs: list[str]
    models: dict[str, ModelAction]
    tools: dict[str, ToolAction]
    rules: list[Rule]
    tests: list[TestCase]
    step_limit: int = DEFAULT_STEP_LIMIT
    deadline_s: float | None = None
    max_calls: int | None = None  # per-decision model budget (settings.budget)
    max_cost_usd: float | None = None
    tables: list[Table] = field(default_factory=list)
    warnings: list[BatonError] = field(default_factory=list)  # static analysis: see engine.language.analysis
    compiled: object = field(default=None, repr=False, compare=False)  # engine.compile's default build, once

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version[:12]}"
