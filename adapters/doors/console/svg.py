"""Charts and the decision graph as inline SVG, drawn on the server: no chart library, no script, every label
escaped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

PALETTE = ("#2f6fb3", "#d9822b", "#3a9d5d", "#b33f62", "#7b5ea7", "#8a8a8a", "#c7a21a", "#1b998b")


def bars(items: Sequence[tuple[str, float]], width: int = 820, unit: str = "") -> Markup:
    """Horizontal bars: one per (label, value)."""
    if not items:
        return Markup('<p class="muted">nothing to chart</p>')
    top = max(v for _, v in items) or 1.0
    row, label_w = 26, 420
    height = row * len(items) + 8
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}">']
    for i, (label, value) in enumerate(items):
        y = 4 + i * row
        w = max(2.0, (width - label_w - 70) * value / top)
        shown = label if len(label) <= 64 else label[:63] + "…"
        parts.append(f'<text x="0" y="{y + 16}" class="label">{escape(shown)}</text>'
                     f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" fill="{PALETTE[0]}"/>'
                     f'<text x="{label_w + w + 6:.1f}" y="{y + 16}" class="value">{escape(_fmt(value))}{unit}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def columns(series: Sequence[tuple[str, Sequence[float]]], labels: Sequence[str], width: int = 560,
            height: int = 180, unit: str = "") -> Markup:
    """Stacked columns over time: one colour per series, a legend below."""
    if not series or not labels:
        return Markup('<p class="muted">nothing to chart</p>')
    n = len(labels)
    totals = [sum(s[1][i] for s in series) for i in range(n)]
    top = max(totals) or 1.0
    plot_h, left = height - 40, 50
    col_w = (width - left) / n
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height + 20 * len(series)}" width="{width}" '
             f'height="{height + 20 * len(series)}">',
             f'<text x="0" y="12" class="value">{escape(_fmt(top))}{unit}</text>',
             f'<line x1="{left}" y1="{plot_h + 10}" x2="{width}" y2="{plot_h + 10}" class="axis"/>']
    for i in range(n):
        y = float(plot_h + 10)
        for k, (_, values) in enumerate(series):
            h = plot_h * values[i] / top
            if h > 0:
                y -= h
                parts.append(f'<rect x="{left + i * col_w + 2:.1f}" y="{y:.1f}" width="{max(1.0, col_w - 4):.1f}" '
                             f'height="{h:.1f}" fill="{PALETTE[k % len(PALETTE)]}"/>')
        if i % max(1, n // 6) == 0:
            parts.append(f'<text x="{left + i * col_w:.1f}" y="{plot_h + 26}" class="tick">{escape(labels[i])}</text>')
    for k, (name, values) in enumerate(series):
        y = height + 6 + 20 * k
        parts.append(f'<rect x="{left}" y="{y}" width="12" height="12" fill="{PALETTE[k % len(PALETTE)]}"/>'
                     f'<text x="{left + 18}" y="{y + 11}" class="label">{escape(name[:60])} '
                     f'({escape(_fmt(sum(values)))}{unit})</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _fmt(value: float) -> str:
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.4f}" if value < 1 else f"{value:,.2f}"


NODE_W, NODE_H, GAP, COL_GAP, TOP = 270, 22, 6, 64, 30
LABEL = 40  # characters a box shows (its tooltip has all of it)


def decision_graph(view: dict[str, Any], outcome: str = "", graph_id: str = "decision-graph") -> Markup:
    """A decision drawn left to right: its input facts, then for each round the rules that fired and what
    came of them (calls with their status, facts added, proposals - the winner marked). An edge joins each
    fact to the firings that matched it and each firing to what its rule added or proposed. Every node has
    the same size and every column lays its nodes out one under another, so 200 firings stay readable (the
    picture grows taller and scrolls); each node's full text is its tooltip."""
    columns: list[tuple[str, list[dict[str, Any]]]] = [("input facts", [
        {"key": f"fact:{f['seq']}", "kind": "fact", "label": f"#{f['seq']} {f['type']}",
         "title": f"input fact #{f['seq']} {f['type']}"} for f in view["inputs"]])]
    edges: list[tuple[str, str]] = []
    for number, events in view["rounds"]:
        fired, results = _round_nodes(number, events, edges)
        if fired:
            columns.append((f"round {number}: rules fired", fired))
        if results:
            columns.append((f"round {number}: calls, facts, proposals", results))
    return _draw_graph(columns, edges, outcome, graph_id)


def _round_nodes(number: int, events: list[dict[str, Any]],
                 edges: list[tuple[str, str]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One round's two columns of nodes: the rules that fired, and the calls, facts and proposals that came of
    them; the round's edges (fact to firing, firing to what it added or proposed) go to ``edges``."""
    fired: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    firing_of: dict[str, str] = {}
    for e in events:
        kind = e.get("kind")
        if kind == "fired":
            key = f"fired:{number}:{len(fired)}"
            firing_of[str(e["rule"])] = key
            matched = " ".join(f"{b} #{s}" for b, s in e.get("facts", {}).items())
            fired.append({"key": key, "kind": "fired", "label": str(e["rule"]),
                          "title": f"round {number}: {e['rule']} fired on {matched}"})
            edges.extend((f"fact:{s}", key) for s in e.get("facts", {}).values())
        elif kind == "call":
            results.append({"key": f"call:{e.get('call')}", "kind": "call " + str(e.get("status", "")),
                            "label": f"{e.get('type', '')} {e.get('action', '')} · {e.get('status', '')}",
                            "title": f"{e.get('type', '')} call {e.get('action', '')}: {e.get('status', '')}"})
        elif kind == "fact" and e.get("source") != "input":
            by = str(e.get("by", ""))
            results.append({"key": f"fact:{e['seq']}", "kind": "fact", "label": f"#{e['seq']} {e['type']}",
                            "title": f"fact #{e['seq']} {e['type']} from {e.get('source', '')}"
                                     + (f" ({by})" if by else "")})
            if e.get("source") == "rule" and by in firing_of:
                edges.append((firing_of[by], f"fact:{e['seq']}"))
        elif kind == "proposal":
            key = f"proposal:{number}:{len(results)}"
            won = bool(e.get("won"))
            results.append({"key": key, "kind": "proposal won" if won else "proposal",
                            "label": f"{'★ ' if won else ''}{e.get('verb', '')} · {e.get('rule', '')}",
                            "title": f"{e.get('verb', '')} proposed by {e.get('rule', '')} (priority "
                                     f"{e.get('priority', '')})" + (": the winner" if won else ": overridden")})
            if str(e.get("rule")) in firing_of:
                edges.append((firing_of[str(e["rule"])], key))
    return fired, results


def _draw_graph(columns: list[tuple[str, list[dict[str, Any]]]], edges: list[tuple[str, str]], outcome: str,
                graph_id: str) -> Markup:
    """The columns side by side, each node in a box of the same size, and the edges as curves behind them."""
    where: dict[str, tuple[float, float, int]] = {}
    tallest = max((len(nodes) for _, nodes in columns), default=0)
    width = len(columns) * (NODE_W + COL_GAP) - COL_GAP + 2
    height = TOP + tallest * (NODE_H + GAP) + 4
    for c, (_, nodes) in enumerate(columns):
        for i, node in enumerate(nodes):
            where.setdefault(node["key"], (c * (NODE_W + COL_GAP), TOP + i * (NODE_H + GAP), c))
    parts = [f'<svg class="graph" id="{escape(graph_id)}" role="img" aria-label="the decision as a graph'
             f'{" (" + escape(outcome) + ")" if outcome else ""}" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}">']
    for a, b in edges:  # behind the nodes; only left to right (a fact matched later, never backwards)
        if a in where and b in where and where[a][2] < where[b][2]:
            (x1, y1, _), (x2, y2, _) = where[a], where[b]
            sx, sy, ex, ey = x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
            parts.append(f'<path class="edge" d="M{sx:.0f},{sy:.0f} C{sx + COL_GAP / 2:.0f},{sy:.0f} '
                         f'{ex - COL_GAP / 2:.0f},{ey:.0f} {ex:.0f},{ey:.0f}"/>')
    for c, (title, nodes) in enumerate(columns):
        x = c * (NODE_W + COL_GAP)
        parts.append(f'<text x="{x}" y="14" class="column">{escape(title)}</text>')
        for i, node in enumerate(nodes):
            y = TOP + i * (NODE_H + GAP)
            label = node["label"] if len(node["label"]) <= LABEL else node["label"][:LABEL - 1] + "…"
            parts.append(f'<g class="node {escape(node["kind"])}"><title>{escape(node["title"])}</title>'
                         f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="4"/>'
                         f'<text x="{x + 7}" y="{y + 15}">{escape(label)}</text></g>')
    parts.append("</svg>")
    return Markup("".join(parts))
