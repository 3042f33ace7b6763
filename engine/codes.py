"""Every stable error and warning code Baton raises, in one table: its category, what it means, and the gRPC
status a request failing with it gets. docs/language.md's table of codes is printed from here
(``python -m engine.codes --markdown``), the gRPC and console mappings read the statuses from here, and
tests/engine/test_codes.py fails when a raise site names a code missing from this table.

The raise sites keep their string literals (``BatonError("bad_shape", ...)``); ``BatonError`` accepts any
code at run time, so a code missing here is caught by the test, never by a failing request."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import StrEnum


class Category(StrEnum):
    COMPILE = "compile error"
    WARNING = "warning"
    REQUEST = "request"
    GOVERNANCE = "governance"
    SERVICE = "service"


class Status(StrEnum):
    """gRPC status codes by name (the engine does not import grpc; adapters/doors/grpc looks them up by name)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True, slots=True)
class Info:
    """``categories``: where the code is raised (the first is its main one; a code shared by the compiler and
    request validation is both). ``status``: the gRPC status of a request that fails with it (None: not
    raised by the service on its own; compile errors sent to the service come back as INVALID_ARGUMENT).
    ``hint``: what usually fixes it, where one thing does."""

    categories: tuple[Category, ...]
    meaning: str
    status: Status | None = None
    hint: str = ""


class Code(StrEnum):
    # the YAML and its structure
    YAML_SYNTAX = "yaml_syntax"
    BAD_SHAPE = "bad_shape"
    UNKNOWN_KEY = "unknown_key"
    MISSING_KEY = "missing_key"
    MISPLACED_KEY = "misplaced_key"
    UNREADABLE = "unreadable"
    BAD_ENCODING = "bad_encoding"
    # limits
    TOO_LARGE = "too_large"
    TOO_MANY_RULES = "too_many_rules"
    TOO_MANY_ROWS = "too_many_rows"
    YAML_ALIASES = "yaml_aliases"
    YAML_NESTING = "yaml_nesting"
    TOO_DEEP = "too_deep"
    TOO_MANY_BRANCHES = "too_many_branches"
    TOO_MANY_PATTERNS = "too_many_patterns"
    TOO_MANY_FIELDS = "too_many_fields"
    COMPILE_LIMIT = "compile_limit"
    ENGINE_LIMIT = "engine_limit"
    # names
    BAD_NAME = "bad_name"
    DUPLICATE_RULE = "duplicate_rule"
    DUPLICATE_ACTION = "duplicate_action"
    DUPLICATE_ALIAS = "duplicate_alias"
    NAME_CLASH = "name_clash"
    UNKNOWN_FACT_TYPE = "unknown_fact_type"
    UNKNOWN_FIELD = "unknown_field"
    UNKNOWN_VALUE = "unknown_value"
    UNKNOWN_ACTION = "unknown_action"
    UNKNOWN_RULE = "unknown_rule"
    UNKNOWN_FUNCTION = "unknown_function"
    UNKNOWN_NAME = "unknown_name"
    CYCLIC_DEFINITION = "cyclic_definition"
    DEFINITION_ERROR = "definition_error"
    # declarations, literals and expressions
    BAD_TYPE = "bad_type"
    BAD_VALUE = "bad_value"
    BAD_FINAL = "bad_final"
    BAD_DATE = "bad_date"
    BAD_REGEX = "bad_regex"
    BAD_TEMPLATE = "bad_template"
    BAD_CELL = "bad_cell"
    SYNTAX_ERROR = "syntax_error"
    AMBIGUOUS_POWER = "ambiguous_power"
    UNBOUND_FACT = "unbound_fact"
    AMBIGUOUS_FACT = "ambiguous_fact"
    AMBIGUOUS_VALUE = "ambiguous_value"
    TYPE_MISMATCH = "type_mismatch"
    NEGATION_ONLY = "negation_only"
    AGGREGATE_ONLY = "aggregate_only"
    NEEDS_DOCUMENT = "needs_document"
    # tables and tests
    TABLE_OVERLAP = "table_overlap"
    TABLE_CONFLICT = "table_conflict"
    BAD_OUTPUT_ORDER = "bad_output_order"
    UNEXPECTED_ANSWER = "unexpected_answer"
    NOT_AN_INPUT = "not_an_input"
    MISSING_FIELD = "missing_field"
    # warnings
    NEVER_FIRES = "never_fires"
    SHADOWED = "shadowed"
    UNUSED_FACT = "unused_fact"
    UNUSED_ACTION = "unused_action"
    TABLE_GAP = "table_gap"
    UNREACHABLE_ROW = "unreachable_row"
    TABLE_UNANALYSED = "table_unanalysed"
    TEST_DATE_UNFIXED = "test_date_unfixed"
    UNANSWERABLE_ESCALATION = "unanswerable_escalation"
    # request validation
    INVALID_FACT = "invalid_fact"
    NOT_IN_ENUM = "not_in_enum"
    OUT_OF_RANGE = "out_of_range"
    NOT_FINITE = "not_finite"
    TOO_LONG = "too_long"
    TOO_SHORT = "too_short"
    TOO_MANY_FACTS = "too_many_facts"
    NO_FACTS = "no_facts"
    BAD_REQUEST = "bad_request"
    DOCUMENT_TOO_LARGE = "document_too_large"
    EMPTY_DOCUMENT = "empty_document"
    UNREADABLE_DOCUMENT = "unreadable_document"
    UNSUPPORTED_DOCUMENT = "unsupported_document"
    EMPTY_NOTE = "empty_note"
    FIXED_FIELD = "fixed_field"
    NOT_THE_REVIEWER = "not_the_reviewer"
    # governance
    FOUR_EYES = "four_eyes"
    NOTE_REQUIRED = "note_required"
    NOT_PENDING = "not_pending"
    UNCHANGED = "unchanged"
    UNPUBLISHED_VERSION = "unpublished_version"
    # service
    UNKNOWN_RULESET = "unknown_ruleset"
    UNKNOWN_VERSION = "unknown_version"
    UNKNOWN_DECISION = "unknown_decision"
    UNKNOWN_ESCALATION = "unknown_escalation"
    UNKNOWN_PUBLICATION = "unknown_publication"
    NOT_OPEN = "not_open"
    NO_ANSWER_EXPECTED = "no_answer_expected"
    STALE_VERSION = "stale_version"
    SHADOW_ENDED = "shadow_ended"
    OVERLOADED = "overloaded"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    ENGINE_ERROR = "engine_error"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"
    UNKNOWN_CORPUS = "unknown_corpus"
    EMPTY_CORPUS = "empty_corpus"

    @property
    def info(self) -> Info:
        return CODES[self]


C, W, R, G, S = Category.COMPILE, Category.WARNING, Category.REQUEST, Category.GOVERNANCE, Category.SERVICE
_BAD, _MISSING, _FAILED = Status.INVALID_ARGUMENT, Status.NOT_FOUND, Status.FAILED_PRECONDITION

CODES: dict[Code, Info] = {
    Code.YAML_SYNTAX: Info((C,), "the file is not valid YAML"),
    Code.BAD_SHAPE: Info((C,), "a section of the wrong YAML shape (a list where a mapping belongs, ...)"),
    Code.UNKNOWN_KEY: Info((C,), "a key the language does not have there (with a suggestion)"),
    Code.MISSING_KEY: Info((C,), "a key that must be given is absent"),
    Code.MISPLACED_KEY: Info((C,), "a test's key written in the wrong place (`answers:` indented inside `given:`)",
                             hint="check its indentation"),
    Code.UNREADABLE: Info((C,), "the ruleset file cannot be read"),
    Code.BAD_ENCODING: Info((C, R), "a file, or a string in a request, that is not valid UTF-8", _BAD),
    Code.TOO_LARGE: Info((C,), "a file, expression or literal over a size limit"),
    Code.TOO_MANY_RULES: Info((C,), "more rules than the limit",
                              hint="split the ruleset, or raise the limit in the service's configuration"),
    Code.TOO_MANY_ROWS: Info((C,), "a decision table with more rows than the limit",
                             hint="split the table, or raise the limit in the service's configuration"),
    Code.YAML_ALIASES: Info((C,), "more YAML aliases than the limit (an alias bomb)",
                            hint="write the values out instead of aliasing them"),
    Code.YAML_NESTING: Info((C,), "YAML nested deeper than the limit"),
    Code.TOO_DEEP: Info((C,), "an expression or prompt template nested too deeply to compile"),
    Code.TOO_MANY_BRANCHES: Info((C,), "a condition that expands to more alternatives than the limit",
                                 hint="split the rule into several rules"),
    Code.TOO_MANY_PATTERNS: Info((C,), "a condition matching more facts than the limit",
                                 hint="split the rule, deriving an intermediate fact"),
    Code.TOO_MANY_FIELDS: Info((C,), "a fact type with more fields than the limit",
                               hint="split it into several fact types"),
    Code.COMPILE_LIMIT: Info((C, S), "the service's compile of a ruleset sent to it went over `limits.compile_*`",
                             Status.RESOURCE_EXHAUSTED,
                             "simplify or split the ruleset, or raise the limit in the service's configuration"),
    Code.ENGINE_LIMIT: Info((C,), "a network beyond durable-rules' limits (never expected; report it)"),
    Code.BAD_NAME: Info((C,), "a ruleset, fact type, field, action, rule or corpus name the language does not "
                              "allow (or a built-in one)"),
    Code.DUPLICATE_RULE: Info((C,), "two rules of one name", hint="rule names are unique in a ruleset"),
    Code.DUPLICATE_ACTION: Info((C,), "two models or tools of one name"),
    Code.DUPLICATE_ALIAS: Info((C,), "one alias bound twice in a condition"),
    Code.NAME_CLASH: Info((C,), "a value, definition or alias named like a fact type, a function, or another "
                                "value or definition"),
    Code.UNKNOWN_FACT_TYPE: Info((C, R), "a fact type that is not declared (with a suggestion)", _BAD),
    Code.UNKNOWN_FIELD: Info((C, R), "a field its fact type does not declare (with a suggestion)", _BAD),
    Code.UNKNOWN_VALUE: Info((C,), "an enum literal its field does not list (with a suggestion)"),
    Code.UNKNOWN_ACTION: Info((C,), "a model or tool that is not declared (with a suggestion)"),
    Code.UNKNOWN_RULE: Info((C, S), "a rule that is not declared (with a suggestion), or a request naming one",
                            _MISSING),
    Code.UNKNOWN_FUNCTION: Info((C,), "a function the language does not have (with a suggestion)"),
    Code.UNKNOWN_NAME: Info((C,), "a bare name that is no value or definition (with a suggestion)"),
    Code.CYCLIC_DEFINITION: Info((C,), "a definition that uses itself, directly or through others",
                                 hint="a definition may use values and other definitions, never itself"),
    Code.DEFINITION_ERROR: Info((C,), "a use of a definition with errors of its own (never shown: the error is "
                                      "reported once, at the definition)"),
    Code.BAD_TYPE: Info((C,), "a field declaration of no known type (or an enum that is not a list of strings)"),
    Code.BAD_VALUE: Info((C,), "a setting, option or value the language does not accept there"),
    Code.BAD_FINAL: Info((C,), "`final: true` on a rule that neither decides nor escalates, or on a table"),
    Code.BAD_DATE: Info((C, R), "a date or datetime that does not exist or has no offset", _BAD),
    Code.BAD_REGEX: Info((C,), "a regular expression outside RE2 syntax",
                         hint="RE2 syntax: no backreferences or lookaround"),
    Code.BAD_TEMPLATE: Info((C,), "a prompt template the engine cannot read"),
    Code.BAD_CELL: Info((C,), "a decision table cell the engine cannot read"),
    Code.SYNTAX_ERROR: Info((C,), "an expression that does not parse"),
    Code.AMBIGUOUS_POWER: Info((C,), "`-x ** n` without brackets", hint="write `-(x ** n)` or `(-x) ** n`"),
    Code.UNBOUND_FACT: Info((C,), "a computed value names a fact its rule did not match"),
    Code.AMBIGUOUS_FACT: Info((C,), "`claim.x` where `claim` has aliases"),
    Code.AMBIGUOUS_VALUE: Info((C,), "a literal that spells a field path", hint="write `=path`"),
    Code.TYPE_MISMATCH: Info((C, R), "operands, function arguments, a computed field or an input value of the "
                                     "wrong type", _BAD),
    Code.NEGATION_ONLY: Info((C,), "a condition that names no fact that must exist (only `not ...`)",
                             hint="join it with a positive condition: `exists claim and not exists policy`"),
    Code.AGGREGATE_ONLY: Info((C,), "a condition that names no fact that must exist (only aggregates)",
                              hint="join it with a positive condition: `exists applicant and count(loan) >= 2`"),
    Code.NEEDS_DOCUMENT: Info((C,), "a document-reading model called by a rule that matches no document",
                              hint="add `exists document` (or a condition on `document.*`) to its `when:`"),
    Code.TABLE_OVERLAP: Info((C,), "two rows of a `unique` table overlap",
                             hint="narrow one of them, or use `hit: first`"),
    Code.TABLE_CONFLICT: Info((C,), "two rows of an `any` table overlap with different outputs",
                              hint="give them the same outputs, or use `hit: first`"),
    Code.BAD_OUTPUT_ORDER: Info((C,), "an `output_order` table whose first output is not an enum",
                                hint="declare the output field as `{enum: [...]}`, highest first"),
    Code.UNEXPECTED_ANSWER: Info((C,), "a test's `human:` answer of a type no `escalate` expects"),
    Code.NOT_AN_INPUT: Info((C, R), "a fact type that exists but is not among the ruleset's `input:`", _BAD,
                            hint="list it under `input:`, or give the facts it is derived from"),
    Code.MISSING_FIELD: Info((C, R), "a required field is absent", _BAD, hint="give every field that is not optional"),
    Code.NEVER_FIRES: Info((W,), "a rule whose comparisons contradict each other",
                           hint="check the comparisons on each field"),
    Code.SHADOWED: Info((W,), "a rule that never wins: whenever it fires, another rule fires too and its "
                              "proposal wins",
                        hint="narrow the rule that wins, or raise this one's priority"),
    Code.UNUSED_FACT: Info((W,), "a declared fact type no rule reads",
                           hint="use it in a condition, or stop producing it"),
    Code.UNUSED_ACTION: Info((W,), "a declared model or tool no rule calls",
                             hint="call it from a rule's `then:`, or remove it"),
    Code.TABLE_GAP: Info((W,), "inputs no row of a table covers",
                         hint="add a row for it, or a last catch-all row of `-` cells (`hit: first`)"),
    Code.UNREACHABLE_ROW: Info((W,), "a table row that can never fire (earlier rows cover every case it covers)",
                               hint="remove it or reorder the rows"),
    Code.TABLE_UNANALYSED: Info((W,), "a table whose expression-bounded cells are not analysed for gaps and overlaps"),
    Code.TEST_DATE_UNFIXED: Info((W,), "the rules read `decision.date` or `decision.time` and a test fixes neither",
                                 hint="add `decision_date:` (or `decision_time:`) to the test"),
    Code.UNANSWERABLE_ESCALATION: Info((W,), "an `escalate` with an `sla:` and no `expects:` can only time out",
                                       hint="name the answer's fact type (`expects:`), or leave out `sla:`"),
    Code.INVALID_FACT: Info((R,), "a fact that is not an object with `type` and `values`", _BAD),
    Code.NOT_IN_ENUM: Info((R,), "a value its enum field does not list", _BAD),
    Code.OUT_OF_RANGE: Info((R,), "a number outside its field's `min`/`max` (or 64 bits)", _BAD),
    Code.NOT_FINITE: Info((R,), "`NaN` or `Infinity`", _BAD),
    Code.TOO_LONG: Info((R,), "a string or list over its `max_length`", _BAD),
    Code.TOO_SHORT: Info((R,), "a string under its `min_length`", _BAD),
    Code.TOO_MANY_FACTS: Info((R,), "more facts in one request than the limit", _BAD),
    Code.NO_FACTS: Info((R,), "a request with no facts", _BAD),
    Code.BAD_REQUEST: Info((R,), "a request the service cannot take as sent", _BAD),
    Code.DOCUMENT_TOO_LARGE: Info((R,), "a document over the byte or page limit", _BAD),
    Code.EMPTY_DOCUMENT: Info((R,), "an empty document", _BAD),
    Code.UNREADABLE_DOCUMENT: Info((R,), "a document that cannot be read as its type (not UTF-8, encrypted, no "
                                         "text layer)", _BAD),
    Code.UNSUPPORTED_DOCUMENT: Info((R,), "a document of a type Baton does not read (PDF, Markdown and text only)",
                                    _BAD),
    Code.EMPTY_NOTE: Info((R,), "a comment or closing reason with no text", _BAD),
    Code.FIXED_FIELD: Info((R,), "an answer that changes a field the escalation fixes", _BAD),
    Code.NOT_THE_REVIEWER: Info((R,), "an answer naming a reviewer other than the signed-in one", _BAD),
    Code.FOUR_EYES: Info((G,), "the author of a publication approving it", Status.PERMISSION_DENIED),
    Code.NOTE_REQUIRED: Info((G,), "a publication without a change note, or a rejection without a reason", _BAD),
    Code.NOT_PENDING: Info((G,), "a publication already decided (or decided concurrently)", _FAILED),
    Code.UNCHANGED: Info((G,), "a publication of the version already in effect", _FAILED),
    Code.UNPUBLISHED_VERSION: Info((G,), "a decision asked of a version never published (pending or rejected): "
                                   "what-if and impact run it; Decide waits for its approval", _FAILED),
    Code.UNKNOWN_RULESET: Info((S,), "no ruleset of that name", _MISSING),
    Code.UNKNOWN_VERSION: Info((S,), "no ruleset version with that hash", _MISSING),
    Code.UNKNOWN_DECISION: Info((S,), "no decision with that id", _MISSING),
    Code.UNKNOWN_ESCALATION: Info((S,), "no escalation with that id", _MISSING),
    Code.UNKNOWN_PUBLICATION: Info((S,), "no publication with that id", _MISSING),
    Code.NOT_OPEN: Info((S,), "an escalation already resolved or expired", _FAILED),
    Code.NO_ANSWER_EXPECTED: Info((S,), "an escalation that expects no answer (it can only time out)", _FAILED),
    Code.STALE_VERSION: Info((S,), "a stored version that no longer compiles (stored by an older Baton)",
                             Status.INTERNAL),
    Code.SHADOW_ENDED: Info((S,), "a shadow's child process ended (over its bounds): logged, counted in "
                            "baton_shadow_dropped_total and restarted; never a caller's error"),
    Code.OVERLOADED: Info((S,), "too many decisions in flight; retry later", Status.RESOURCE_EXHAUSTED,
                          hint="retry with the same idempotency key"),
    Code.IDEMPOTENCY_CONFLICT: Info((S,), "an idempotency key already used by the caller for a different request "
                                    "(other facts, documents or version)", _FAILED,
                                    hint="send a new key for new facts; retry with the same key only the same request"),
    Code.DEADLINE_EXCEEDED: Info((S,), "the caller's deadline passed before the decision started (nothing stored), "
                                 "or during it (the failed decision is stored and returned with the status)",
                                 Status.DEADLINE_EXCEEDED, hint="give the request a longer deadline"),
    Code.ENGINE_ERROR: Info((S,), "durable-rules failed on validated input (never expected; report it)",
                            Status.INTERNAL),
    Code.UNAUTHENTICATED: Info((S,), "no credential, or one the service does not know", Status.UNAUTHENTICATED),
    Code.PERMISSION_DENIED: Info((S,), "a credential without the role the call needs", Status.PERMISSION_DENIED),
    Code.UNKNOWN_CORPUS: Info((S,), "no indexed corpus of that name (`baton index` first)",
                              hint="run `baton index` first"),
    Code.EMPTY_CORPUS: Info((S,), "`baton index` found no .md, .txt or .pdf files"),
}

_MISSING_ENTRIES = set(Code) - set(CODES)
if _MISSING_ENTRIES:  # a member added without its entry: fail at import, in every test, not at a raise
    raise AssertionError(f"engine/codes.py: no entry for {sorted(_MISSING_ENTRIES)}")


def lookup(code: str) -> Code | None:
    """The registered code of that name, or None (an unregistered code is a bug the tests catch; at run time
    it is still raised and reported as written)."""
    try:
        return Code(code)
    except ValueError:
        return None


def status_of(code: str) -> Status | None:
    """The gRPC status a request failing with ``code`` gets (None: unregistered, or none of its own)."""
    found = lookup(code)
    return CODES[found].status if found is not None else None


def with_status(status: Status) -> frozenset[str]:
    return frozenset(c.value for c, info in CODES.items() if info.status is status)


def in_category(category: Category) -> frozenset[str]:
    return frozenset(c.value for c, info in CODES.items() if category in info.categories)


_HEADINGS = {
    C: "Compile errors (`baton check`, and `INVALID_ARGUMENT` with each error's position when sent to the "
       "service)",
    W: "Warnings (`baton check --strict` fails on them)",
    R: "Request errors (gRPC status as given, the field path in the `BadRequest` details)",
    G: "Governance (publishing and approving)",
    S: "Service",
}


def markdown() -> str:
    """docs/language.md's table of codes: one table per category, a code listed under each it belongs to."""
    out: list[str] = []
    for category in Category:
        rows = [(c, info) for c, info in CODES.items() if category in info.categories]
        statuses = category not in (C, W)  # compile errors and warnings come back together, not as a status
        out += [f"**{_HEADINGS[category]}**", "",
                "| code | meaning | what usually fixes it |" + (" status |" if statuses else ""),
                "|---|---|---|" + ("---|" if statuses else "")]
        for code, info in rows:
            status = f" {f'`{info.status}`' if info.status else ''} |" if statuses else ""
            out.append(f"| `{code}` | {info.meaning} | {info.hint} |{status}")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    if argv != ["--markdown"]:
        print("usage: python -m engine.codes --markdown", file=sys.stderr)
        return 2
    print(markdown(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
