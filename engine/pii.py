"""Personal data, by the ruleset's own ``pii: true`` marking: who may read it, and where it must not go.

A person whose roles may not see PII reads every PII field masked wherever a decision shows it — input
facts, derived and answered facts, matched facts, the calls' requests, prompts and raw answers, proposals,
effects, escalation answers — because the values of a decision's PII fields are also scrubbed from every
other string of its record. Search never indexes PII fields (adapters/infra/store/sql.py ``Pending``)."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Collection, Mapping
from typing import Any

from engine.record import DecisionRecord

MASK = "•••• (pii)"

Private = Mapping[str, Collection[str]]  # fact type -> its pii fields


def mask_record(record: DecisionRecord, private: Private) -> DecisionRecord:
    """A copy of ``record`` with PII masked everywhere it appears: the pii fields themselves, and their values
    wherever else they are quoted (a model's answer, a prompt, a proposal)."""
    out: DecisionRecord = copy.deepcopy(record)
    if not private:
        return out
    secrets = secrets_of(out, private)
    for type_name, values in _facts(out):
        for name in private.get(type_name, ()):
            if values.get(name) not in (None, ""):
                values[name] = MASK
    scrub = scrubber(secrets)
    for key in ("decision", "reason", "escalation"):
        if key in out:
            out[key] = scrub(out[key])
    out["trace"] = [scrub(e) for e in out.get("trace") or ()]
    for item in out.get("inputs") or ():
        item["values"] = scrub(item.get("values"))
    return out


def _facts(record: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(type, values) of every fact a record holds: its inputs and the facts of its trace."""
    facts = [*(record.get("inputs") or ()), *(e for e in record.get("trace") or () if e.get("kind") == "fact")]
    return [(str(f.get("type")), f["values"]) for f in facts if isinstance(f.get("values"), dict)]


def secrets_of(record: Mapping[str, Any], private: Private) -> set[str]:
    """The values of a record's PII fields (what must not be shown in clear anywhere near it)."""
    found: set[str] = set()
    for type_name, values in _facts(record):
        for name in private.get(type_name, ()):
            value = values.get(name)
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, (str, int, float)) and not isinstance(item, bool) and len(str(item)) >= 3:
                    found.add(str(item))
    return found


def scrubber(secrets: Collection[str]) -> Callable[[Any], Any]:
    """A function that masks every occurrence of these values in strings, however deeply nested. A partial
    of a module function, not a closure calling itself: that was a reference cycle per decision with PII,
    left for the garbage collector."""
    ordered = tuple(sorted(set(secrets), key=len, reverse=True))  # a longer value first: its parts stay masked
    return functools.partial(_scrub, ordered) if ordered else _unchanged


def _unchanged(value: Any) -> Any:
    return value


def _scrub(ordered: tuple[str, ...], value: Any) -> Any:
    if isinstance(value, str):
        for s in ordered:
            if s in value:
                value = value.replace(s, MASK)
        return value
    if isinstance(value, dict):
        return {k: _scrub(ordered, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(ordered, v) for v in value]
    return value


def searchable(values: Mapping[str, Any], type_name: str, private: Private | None) -> list[Any]:
    """The values of one fact that search may index (PII fields left out)."""
    hidden = private.get(type_name, ()) if private else ()
    return [v for k, v in values.items() if k not in hidden]
