"""Charts as inline SVG, drawn on the server: no chart library, no script, every label escaped."""

from __future__ import annotations

from collections.abc import Sequence

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
