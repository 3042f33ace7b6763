"""Generated rulesets of any size, and inputs for them (tests and bench/rules_scale.py).

Rules mix what real policies hold: equality on codes, numeric ranges with an enum, ``in`` with a
range, ``contains`` on a list, an equality join with a literal, and an arithmetic guard across two
facts. Inputs are drawn so that only a handful of rules can match any one of them.
"""

from __future__ import annotations

import random

FACTS = """\
ruleset: {name}
description: generated, {n} rules / {rows} table rows
facts:
  txn:
    ref: str
    amount: {{type: number, min: 0}}
    code: str
    country: {{enum: [DE, FR, NL, BE, AT, IT, ES, PL]}}
    channel: {{enum: [web, branch, phone]}}
    tags: {{type: list, items: str}}
    customer_ref: str
    score: int
  customer:
    ref: str
    limit: number
    segment: str
input: [txn, customer]
"""
COUNTRIES = ["DE", "FR", "NL", "BE", "AT", "IT", "ES", "PL"]
CHANNELS = ["web", "branch", "phone"]
SPAN = 1_000_000


def condition(i: int, n: int) -> str:
    width = SPAN / max(1, n // 6 + 1)
    kind = i % 6
    if kind == 0:
        return f'txn.code == "c{i}"'
    if kind == 1:
        lo = (i // 6) * width
        return f'txn.amount >= {lo:.2f} and txn.amount < {lo + width:.2f} and txn.channel == "{CHANNELS[i % 3]}"'
    if kind == 2:
        return f'txn.country in ["{COUNTRIES[i % 8]}", "{COUNTRIES[(i + 3) % 8]}"] and txn.score == {i}'
    if kind == 3:
        return f'txn.tags contains "t{i}"'
    if kind == 4:
        return f'customer.ref == txn.customer_ref and txn.code == "c{i}"'
    return f'txn.amount * 2 > customer.limit and customer.segment == "s{i}"'


def ruleset_text(n: int, rows: int = 0, name: str = "scale") -> str:
    out = [FACTS.format(name=name, n=n, rows=rows), "rules:\n"]
    for i in range(n):
        out.append(f"  - name: r{i}\n    priority: {i % 10 - 5}\n    when: {condition(i, n)}\n"
                   f"    then:\n      decide: {{route: q{i}}}\n")
    if rows:
        out.append(table_text(rows))
    return "".join(out)


def table_text(rows: int, hit: str = "unique") -> str:
    """A rate table: disjoint amount bands per channel, so every row is reachable and none overlap."""
    bands = rows // 3 + 1
    width = SPAN / bands
    lines = ["tables:\n", "  - name: rate\n", f"    hit: {hit}\n", "    inputs: [txn.amount, txn.channel]\n",
             "    outputs: [decide.route]\n", "    rows:\n"]
    for r in range(rows):
        band, channel = divmod(r, 3)
        lo = band * width
        lines.append(f'      - ["[{lo:.2f}..{lo + width:.2f})", {CHANNELS[channel]}, rate{r}]\n')
    return "".join(lines)


def inputs(n: int, count: int, seed: int = 7) -> list[dict[str, dict[str, object]]]:
    rnd = random.Random(seed)
    out: list[dict[str, dict[str, object]]] = []
    for k in range(count):
        i = rnd.randrange(max(1, n))
        out.append({
            "txn": {"ref": f"T{k}", "amount": round(rnd.uniform(0, SPAN - 1), 2), "code": f"c{i - i % 6}",
                    "country": rnd.choice(COUNTRIES), "channel": rnd.choice(CHANNELS),
                    "tags": [f"t{rnd.randrange(max(1, n))}" for _ in range(2)], "customer_ref": f"K{k % 3}",
                    "score": rnd.randrange(max(1, n))},
            "customer": {"ref": f"K{k % 3}", "limit": rnd.uniform(0, SPAN), "segment": f"s{rnd.randrange(max(1, n))}"},
        })
    return out
