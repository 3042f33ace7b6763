"""A decision table's gaps as an analyst would write them: the uncovered inputs merged into intervals and
value lists written as the cells write them (``claim.amount in [150..200), claim.tier = "a"``), not one
line per point and open interval of the exact analysis (engine/language/table_checks.py ``atoms``)."""

from __future__ import annotations

import math
from itertools import product

from engine.language.tables import MAX_ATOM_COMBINATIONS, MAX_GAPS_SHOWN, Atom, Table, atoms, clock_text, literal

Gap = tuple[frozenset[int], ...]  # per input column, the indices of the column's atoms the gap covers


def gap_text(table: Table) -> str:
    """'no row covers ...' for a table's gaps, merged ('' when there are none or they were not worked out)."""
    per_column = [atoms(col, [row.cells[k] for row in table.rows]) for k, col in enumerate(table.inputs)]
    if math.prod(len(a) for a in per_column) > MAX_ATOM_COMBINATIONS:
        return ""
    index = table.index()
    gaps: list[Gap] = []
    for combo in product(*(range(len(a)) for a in per_column)):
        if not index.matching([per_column[c][k].value for c, k in enumerate(combo)]):
            gaps.append(tuple(frozenset((k,)) for k in combo))
    merged = []
    for order in (range(len(per_column)), reversed(range(len(per_column)))):  # the one that merges more
        these = gaps
        for c in order:
            these = _merge(these, c, numeric=_numeric(per_column[c]))
        merged.append(these)
    gaps = min(merged, key=len)
    texts = [_text(table, per_column, gap) for gap in gaps]
    shown = "; ".join(texts[:MAX_GAPS_SHOWN])
    return shown + (f"; and {len(texts) - MAX_GAPS_SHOWN} more" if len(texts) > MAX_GAPS_SHOWN else "")


def _numeric(column: list[Atom]) -> bool:
    return any(isinstance(a.value, float) for a in column)


def _merge(gaps: list[Gap], c: int, numeric: bool) -> list[Gap]:
    """Gaps that differ only in column ``c`` as one (a numeric column: one per run of adjacent atoms)."""
    groups: dict[tuple[frozenset[int], ...], set[int]] = {}
    for gap in gaps:
        groups.setdefault(gap[:c] + gap[c + 1:], set()).update(gap[c])
    out: list[Gap] = []
    for rest, members in groups.items():
        runs = _runs(sorted(members)) if numeric else [frozenset(members)]
        out.extend((*rest[:c], run, *rest[c:]) for run in runs)
    return out


def _runs(indices: list[int]) -> list[frozenset[int]]:
    runs: list[list[int]] = []
    for k in indices:
        if runs and runs[-1][-1] == k - 1:
            runs[-1].append(k)
        else:
            runs.append([k])
    return [frozenset(r) for r in runs]


def _text(table: Table, per_column: list[list[Atom]], gap: Gap) -> str:
    parts = []
    for col, column, members in zip(table.inputs, per_column, gap, strict=True):
        if len(members) == len(column):
            continue  # every value of this input
        if len(members) == 1:
            parts.append(column[next(iter(members))].text)
        elif _numeric(column):
            parts.append(_interval(col.ref, column, min(members), max(members), col.spec.kind if col.spec else ""))
        else:
            parts.append(_values(col.ref, column, members))
    return ", ".join(parts) or "any input"


def _point(column: list[Atom], k: int) -> bool:
    return " = " in column[k].text and isinstance(column[k].value, float)


def _interval(ref: str, column: list[Atom], first: int, last: int, kind: str) -> str:
    """Atoms first..last of a numeric column as one interval in DMN notation, or a comparison when it is
    unbounded on one side."""
    clock = kind if kind in ("date", "datetime") else ""

    def show(x: float) -> str:
        return clock_text(x, clock) if clock else literal(x)

    def bound(k: int, step: int) -> float:  # an open interval's bound: the neighbouring point, if any
        j = k + step
        return float(column[j].value) if 0 <= j < len(column) and _point(column, j) else (  # type: ignore[arg-type]
            -math.inf if step < 0 else math.inf)

    lo_closed, hi_closed = _point(column, first), _point(column, last)
    lo = float(column[first].value) if lo_closed else bound(first, -1)  # type: ignore[arg-type]
    hi = float(column[last].value) if hi_closed else bound(last, 1)  # type: ignore[arg-type]
    if not math.isfinite(lo):
        return f"{ref} {'<=' if hi_closed else '<'} {show(hi)}"
    if not math.isfinite(hi):
        return f"{ref} {'>=' if lo_closed else '>'} {show(lo)}"
    return f"{ref} in {'[' if lo_closed else '('}{show(lo)}..{show(hi)}{']' if hi_closed else ')'}"


def _values(ref: str, column: list[Atom], members: frozenset[int]) -> str:
    """Several values of a text or boolean column: 'x in [a, b]', or 'x not in [c]' when 'any other value'
    is among them."""
    named = [column[k] for k in sorted(members)]
    if any(a.text.endswith("any other value") for a in named):
        rest = [a.text.split(" = ", 1)[1] for k, a in enumerate(column) if k not in members and " = " in a.text]
        return f"{ref} not in [{', '.join(rest)}]"
    return f"{ref} in [{', '.join(a.text.split(' = ', 1)[1] for a in named)}]"
