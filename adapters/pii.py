"""Personal data, by the ruleset's own ``pii: true`` marking: who may read it, and where it must not go.

A person whose roles may not see PII reads every PII field masked wherever a decision shows it — input
facts, derived and answered facts, matched facts, the calls' requests, prompts and raw answers, proposals,
effects, escalation answers — because the values of a decision's PII fields are also scrubbed from every
other string of its record. Search never indexes PII fields (adapters/store/sql.py ``Pending``)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Mapping
from typing import Any

MASK = "•••• (pii)"

Private = Mapping[str, Collection[str]]  # fact type -> its pii fields


def mask_record(record: Mapping[str, Any], private: Private) -> dict[str, Any]:
    """A copy of ``record`` with PII masked everywhere it appears."""
    out: dict[str, Any] = copy.deepcopy(dict(record))
    if not private:
        return out
    secrets: set[str] = set()

    def mask(type_name: str, values: Any) -> None:
        if not isinstance(values, dict):
            return
        for name in private.get(type_name, ()):
            value = values.get(name)
            if value is None or value == "":
                continue
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, (str, int, float)) and not isinstance(item, bool) and len(str(item)) >= 3:
                    secrets.add(str(item))
            values[name] = MASK

    for item in out.get("inputs") or ():
        mask(str(item.get("type")), item.get("values"))
    for event in out.get("trace") or ():
        if event.get("kind") == "fact":
            mask(str(event.get("type")), event.get("values"))
    scrub = scrubber(secrets)
    for key in ("decision", "reason", "escalation"):
        if key in out:
            out[key] = scrub(out[key])
    out["trace"] = [scrub(e) for e in out.get("trace") or ()]  # other facts may quote it (a model's answer)
    for item in out.get("inputs") or ():
        item["values"] = scrub(item.get("values"))
    return out


def secrets_of(record: Mapping[str, Any], private: Private) -> set[str]:
    """The values of a record's PII fields (what must not be shown in clear anywhere near it)."""
    found: set[str] = set()
    facts = [(i.get("type"), i.get("values")) for i in record.get("inputs") or ()] + [
        (e.get("type"), e.get("values")) for e in record.get("trace") or () if e.get("kind") == "fact"]
    for type_name, values in facts:
        if not isinstance(values, dict):
            continue
        for name in private.get(str(type_name), ()):
            value = values.get(name)
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, (str, int, float)) and not isinstance(item, bool) and len(str(item)) >= 3:
                    found.add(str(item))
    return found


def scrubber(secrets: Collection[str]) -> Callable[[Any], Any]:
    """A function that masks every occurrence of these values in strings, however deeply nested."""
    ordered = sorted(set(secrets), key=len, reverse=True)  # a longer value first: its parts are not left behind

    def scrub(value: Any) -> Any:
        if not ordered:
            return value
        if isinstance(value, str):
            for s in ordered:
                if s in value:
                    value = value.replace(s, MASK)
            return value
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        return value

    return scrub


def searchable(values: Mapping[str, Any], type_name: str, private: Private | None) -> list[Any]:
    """The values of one fact that search may index (PII fields left out)."""
    hidden = private.get(type_name, ()) if private else ()
    return [v for k, v in values.items() if k not in hidden]
