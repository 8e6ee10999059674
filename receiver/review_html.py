"""HTML for the review pages that templates cannot say simply: an item as pretty JSON with its
offending paths highlighted and masked values marked, and bar charts as inline SVG (readable
without JavaScript, each with the numbers beside it in a table).

Written by hand because both are small and exact: a JSON pretty-printer that knows each line's
JSON pointer, and bars sized from counts. Every text goes through ``escape``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from markupsafe import Markup, escape

INDENT = "  "
PALETTE = ("#1f5f99", "#c2571a", "#3a7d44", "#8e3b8f", "#b8860b", "#2f6f6f", "#a33a3a", "#555")


def json_html(
    value: Any,
    *,
    offending: Iterable[str],
    masked: Iterable[str],
    revealed: Mapping[str, Any] | None = None,
) -> Markup:
    """``value`` pretty-printed, one ``<span class="line">`` per line with ``data-pointer``;
    lines at an offending pointer get ``offending``, masked values ``masked``, and values in
    ``revealed`` (pointer → value) are shown in place with ``revealed``."""
    bad = set(offending)
    hidden = set(masked)
    shown = dict(revealed or {})
    lines: list[str] = []

    def line(depth: int, pointer: str, html: str) -> None:
        classes = "line offending" if pointer in bad else "line"
        lines.append(
            f'<span class="{classes}" data-pointer="{escape(pointer)}">'
            f"{INDENT * depth}{html}</span>"
        )

    def scalar(node: Any, pointer: str) -> str:
        if pointer in shown:
            return f'<mark class="revealed">{escape(_dump(shown[pointer]))}</mark>'
        text = escape(_dump(node))
        if pointer in hidden:
            return f'<span class="masked" title="Maskert">{text}</span>'
        return f'<span class="value">{text}</span>'

    def walk(node: Any, depth: int, pointer: str, label: str, comma: str) -> None:
        if isinstance(node, dict) and node:
            line(depth, pointer, f"{label}{{")
            keys = list(node)
            for n, key in enumerate(keys):
                child = f"{pointer}/{_escape_pointer(key)}"
                walk(
                    node[key],
                    depth + 1,
                    child,
                    f'<span class="key">{escape(_dump(key))}</span>: ',
                    "," if n < len(keys) - 1 else "",
                )
            line(depth, pointer, f"}}{comma}")
        elif isinstance(node, list) and node:
            line(depth, pointer, f"{label}[")
            for n, child in enumerate(node):
                walk(child, depth + 1, f"{pointer}/{n}", "", "," if n < len(node) - 1 else "")
            line(depth, pointer, f"]{comma}")
        else:
            line(depth, pointer, f"{label}{scalar(node, pointer)}{comma}")

    walk(value, 0, "", "", "")
    return Markup("".join(lines))  # noqa: S704 - every piece of text was escaped above


def bar_chart(
    rows: Sequence[tuple[str, int]], *, title: str, chart_id: str, width: int = 560
) -> Markup:
    """Horizontal bars, one per (label, count), largest first as given."""
    bar_height, gap, label_width = 18, 6, 170
    height = max(1, len(rows)) * (bar_height + gap) + gap
    top = max((n for _, n in rows), default=0) or 1
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="100%" aria-labelledby="{escape(chart_id)}-title">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
    ]
    span = width - label_width - 60
    for n, (label, count) in enumerate(rows):
        y = gap + n * (bar_height + gap)
        length = round(span * count / top)
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 13}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{label_width}" y="{y}" width="{max(length, 1)}" height="{bar_height}" '
            f'fill="{PALETTE[0]}"><title>{escape(label)}: {count}</title></rect>'
            f'<text x="{label_width + length + 4}" y="{y + 13}">{count}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - labels and titles escaped above


def stacked_days(
    days: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
    *,
    title: str,
    chart_id: str,
    width: int = 760,
    height: int = 220,
) -> Markup:
    """Columns per day, stacked by series (e.g. rule), with a legend."""
    left, bottom, top_pad = 40, 40, 10
    plot_w, plot_h = width - left - 10, height - bottom - top_pad
    totals = [sum(values[i] for _, values in series) for i in range(len(days))]
    top = max(totals, default=0) or 1
    col = plot_w / max(1, len(days))
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" role="img" viewBox="0 0 {width} '
        f'{height + 20 * ((len(series) + 3) // 4)}" width="100%" '
        f'aria-labelledby="{escape(chart_id)}-title">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{left + plot_w}" '
        f'y2="{top_pad + plot_h}" stroke="#999"/>',
        f'<text x="{left - 4}" y="{top_pad + 10}" text-anchor="end">{top}</text>',
        f'<text x="{left - 4}" y="{top_pad + plot_h}" text-anchor="end">0</text>',
    ]
    for i, day in enumerate(days):
        x = left + i * col
        y = float(top_pad + plot_h)
        for n, (name, values) in enumerate(series):
            h = plot_h * values[i] / top
            if values[i]:
                y -= h
                parts.append(
                    f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(col - 2, 1):.1f}" '
                    f'height="{h:.1f}" fill="{PALETTE[n % len(PALETTE)]}">'
                    f"<title>{escape(day)} {escape(name)}: {values[i]}</title></rect>"
                )
        if len(days) <= 16 or i % max(1, len(days) // 8) == 0:
            parts.append(
                f'<text x="{x + col / 2:.1f}" y="{top_pad + plot_h + 14}" '
                f'text-anchor="middle" class="tick">{escape(day[5:])}</text>'
            )
    for n, (name, _) in enumerate(series):
        lx = left + (n % 4) * 180
        ly = height + 20 * (n // 4) - 6
        parts.append(
            f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" '
            f'fill="{PALETTE[n % len(PALETTE)]}"/>'
            f'<text x="{lx + 16}" y="{ly}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - labels and titles escaped above


def _dump(value: Any) -> str:
    return orjson.dumps(value).decode()


def _escape_pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")
